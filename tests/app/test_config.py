"""Configuration: defaults, TOML file, environment overrides, and one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_config_defaults_match_the_readme():
    config = load_config(environ={})
    assert config == Config()
    assert config.server_name == "localhost:8448"
    assert config.bind_host == "127.0.0.1"
    assert config.bind_port == 8448
    assert config.data_dir == "./data"
    assert config.resolved_signing_key_path == Path("./data/signing.key")
    assert config.workers == 1
    assert config.validate_responses is False
    assert config.tls_enabled is False


def test_config_file_then_environment_override(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('server_name = "file.example"\nbind_port = 9000\nworkers = 2\n')
    config = load_config(
        str(path), environ={"ANTECHAMBER_BIND_PORT": "9001", "ANTECHAMBER_LOG_LEVEL": "debug"}
    )
    assert config.server_name == "file.example"
    assert config.bind_port == 9001
    assert config.workers == 2
    assert config.log_level == "DEBUG"


def test_config_file_named_by_environment(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('server_name = "env-file.example"\n')
    assert load_config(environ={"ANTECHAMBER_CONFIG": str(path)}).server_name == (
        "env-file.example"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("1", True), ("TRUE", True), ("false", False), ("0", False)],
)
def test_config_env_booleans(raw, expected):
    config = load_config(environ={"ANTECHAMBER_VALIDATE_RESPONSES": raw})
    assert config.validate_responses is expected


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"ANTECHAMBER_VALIDATE_RESPONSES": "yes"}, "validate_responses"),
        ({"ANTECHAMBER_BIND_PORT": "eighty"}, "bind_port"),
        ({"ANTECHAMBER_WORKERS": "--5"}, "workers"),
        ({"ANTECHAMBER_WORKERS": "\u00b2"}, "workers"),
        ({"ANTECHAMBER_KEY_FETCH_FAILURE_BACKOFF_S": "-1"}, "key_fetch_failure_backoff_s"),
        ({"ANTECHAMBER_BIND_PORT": "70000"}, "bind_port"),
        ({"ANTECHAMBER_WORKERS": "0"}, "workers"),
        ({"ANTECHAMBER_SERVER_NAME": "bad name!"}, "server_name"),
        ({"ANTECHAMBER_LOG_LEVEL": "LOUD"}, "log_level"),
        ({"ANTECHAMBER_TLS_CERTIFICATE": "/nonexistent.pem"}, "tls_certificate"),
        ({"ANTECHAMBER_KEY_FETCH_TIMEOUT_S": "soon"}, "key_fetch_timeout_s"),
        ({"ANTECHAMBER_KEY_FETCH_TIMEOUT_S": "0"}, "key_fetch_timeout_s"),
        ({"ANTECHAMBER_DOCS_PATH": "docs"}, "docs_path"),
        ({"ANTECHAMBER_MAX_REQUEST_BODY_BYTES": "10"}, "max_request_body_bytes"),
    ],
)
def test_config_bad_value_names_the_key(environ, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(environ=environ)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("server_name = 3\n", "'server_name'"),
        ("workers = true\n", "'workers'"),
        ("nonsense = 1\n", "'nonsense'"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_config_bad_file(tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(str(path), environ={})


def test_config_missing_file():
    with pytest.raises(ConfigError, match="config file"):
        load_config("/nonexistent/antechamber.toml", environ={})


def test_config_error_stops_the_cli_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("bind_port = 'x'\n")
    result = subprocess.run(
        [sys.executable, "-m", "app", "--config", str(bad), "keys", "show"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "'bind_port'" in lines[0]
    assert "Traceback" not in result.stderr


def test_config_admin_listener_defaults_and_environment():
    config = load_config(environ={})
    assert (config.admin_enabled, config.admin_bind_host, config.admin_bind_port) == (
        True,
        "127.0.0.1",
        8449,
    )
    assert config.admin_token_path == Path("./data/admin.token")
    assert config.metrics_dir == Path("./data/metrics")
    config = load_config(
        environ={"ANTECHAMBER_ADMIN_ENABLED": "false", "ANTECHAMBER_ADMIN_BIND_PORT": "9449"}
    )
    assert (config.admin_enabled, config.admin_bind_port) == (False, 9449)


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({"ANTECHAMBER_ADMIN_BIND_PORT": "0"}, id="port-0"),
        pytest.param({"ANTECHAMBER_ADMIN_BIND_PORT": "8448"}, id="federation-port"),
    ],
)
def test_config_admin_listener_refused_names_the_key(environ):
    with pytest.raises(ConfigError, match="admin_bind_port"):
        load_config(environ=environ)


def test_config_admin_port_shared_is_fine_when_admin_is_off():
    environ = {"ANTECHAMBER_ADMIN_BIND_PORT": "8448", "ANTECHAMBER_ADMIN_ENABLED": "false"}
    assert load_config(environ=environ).admin_enabled is False
