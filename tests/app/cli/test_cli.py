"""The `antechamber` command line: keys commands in-process, and `serve` as a real process."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from app.cli import main
from tests.databases import data_dir_env
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path(sys.executable).parent / "antechamber"


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    for name, value in data_dir_env(str(tmp_path / "data")).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANTECHAMBER_SERVER_NAME", "cli.test")
    return tmp_path / "data"


def test_cli_keys_generate_then_show_json(cli_env, capsys):
    assert main(["keys", "generate", "--json"]) == 0
    generated = json.loads(capsys.readouterr().out)
    assert generated["status"] == "generated"
    assert main(["keys", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["server_name"] == "cli.test"
    assert shown["key_id"] == generated["key_id"]
    assert len(shown["public_key"]) == 43
    assert main(["keys", "generate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "exists"


def test_cli_keys_rotate_lists_the_old_key(cli_env, capsys):
    main(["keys", "generate"])
    capsys.readouterr()
    assert main(["keys", "rotate", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    main(["keys", "show", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["key_id"] == rotated["current"]
    assert list(shown["old_verify_keys"]) == [rotated["retired"]]


def test_cli_keys_show_without_a_key_is_one_line(cli_env, capsys):
    assert main(["keys", "show"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1


def test_cli_console_script_and_module_both_run():
    assert SCRIPT.exists(), "the console script is installed into the virtualenv"
    for command in ([str(SCRIPT), "--help"], [sys.executable, "-m", "app", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0
        for name in ("serve", "keys"):
            assert name in result.stdout


def wait_for(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read()}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not start in time")


def test_cli_serve_generates_key_and_answers(tmp_path):
    port = free_port()
    admin_port = free_port()
    env = {
        **os.environ,
        **data_dir_env(str(tmp_path / "data")),
        "ANTECHAMBER_SERVER_NAME": f"127.0.0.1:{port}",
        "ANTECHAMBER_BIND_PORT": str(port),
        "ANTECHAMBER_ADMIN_BIND_PORT": str(admin_port),
    }
    process = subprocess.Popen(
        [str(SCRIPT), "serve"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/_matrix/federation/v1/version", process)
        assert (tmp_path / "data" / "signing.key").exists()
        version = httpx.get(base + "/_matrix/federation/v1/version").json()
        assert version["server"]["name"] == "Antechamber"
        keys = httpx.get(base + "/_matrix/key/v2/server").json()
        ((key_id, entry),) = keys["verify_keys"].items()
        verify_key = decode_verify_key_bytes(key_id, decode_base64(entry["key"]))
        verify_signed_json(keys, f"127.0.0.1:{port}", verify_key)
        nope = httpx.get(base + "/nope")
        assert (nope.status_code, nope.json()["errcode"]) == (404, "M_UNRECOGNIZED")
        wrong = httpx.post(base + "/_matrix/federation/v1/version")
        assert (wrong.status_code, wrong.json()["errcode"]) == (405, "M_UNRECOGNIZED")
        # The admin API: its own listener, its token generated on first start (0600)
        token_path = tmp_path / "data" / "admin.token"
        assert token_path.stat().st_mode & 0o777 == 0o600
        token = token_path.read_text().strip()
        admin = f"http://127.0.0.1:{admin_port}"
        rooms = httpx.get(
            admin + "/_antechamber/admin/v1/rooms", headers={"Authorization": f"Bearer {token}"}
        )
        assert (rooms.status_code, rooms.json()) == (200, {"rooms": []})
        metrics = httpx.get(
            admin + "/_antechamber/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        assert (
            'antechamber_federation_requests_total{operation="get_version",status="200"}'
            in metrics.text
        )
        not_here = httpx.get(
            base + "/_antechamber/admin/v1/rooms", headers={"Authorization": f"Bearer {token}"}
        )
        assert (not_here.status_code, not_here.json()["errcode"]) == (404, "M_UNRECOGNIZED")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert "GET /_matrix/federation/v1/version 200" in stderr, "one access line per request"
    assert "GET /_antechamber/admin/v1/rooms 200" in stderr
    assert token not in stderr, "the admin token is never logged"


def test_cli_sign_request_verifies_as_the_server(cli_env, capsys):
    from signedjson.key import get_verify_key

    from app.signing_key import load_signing_key
    from matrix.xmatrix import build_request_json, check_request_signature
    from matrix.xmatrix import parse_authorization_headers as parse

    main(["keys", "generate"])
    capsys.readouterr()
    uri = "/_matrix/federation/v1/make_knock/%21r%3Ax/%40u%3Acli.test?ver=12"
    assert main(["sign-request", "GET", uri, "--destination", "dest.test"]) == 0
    header = capsys.readouterr().out.strip()
    auth = parse([header])
    assert (auth.origin, auth.destination) == ("cli.test", "dest.test")
    key = load_signing_key(cli_env / "signing.key")
    request = build_request_json("GET", uri, "cli.test", "dest.test")
    check_request_signature(request, auth, {f"ed25519:{key.version}": get_verify_key(key)})
    assert main(["sign-request", "PUT", uri, "--destination", "d", "--body", '{"a": 1}']) == 0
    assert main(["sign-request", "PUT", uri, "--destination", "d", "--body", "[1]"]) == 1
    assert main(["sign-request", "GET", "no-slash", "--destination", "d"]) == 1


def test_cli_admin_token_before_first_start_is_one_line(cli_env, capsys):
    assert main(["admin", "token"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_admin_rotate_token_then_token_shows_it(cli_env, capsys):
    assert main(["admin", "rotate-token", "--json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert (cli_env / "admin.token").stat().st_mode & 0o777 == 0o600
    assert main(["admin", "token"]) == 0
    assert capsys.readouterr().out.strip() == rotated["token"]
    assert main(["admin", "rotate-token", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["token"] != rotated["token"]


@pytest.mark.parametrize("created", [0.0, 1_764_770_000.0005, 1_764_770_000.9999, 1_764_770_001.25])
def test_log_line_formatter_writes_what_the_stdlib_formatter_writes(created):
    from app.cli import LOG_FORMAT, LineFormatter

    fast = LineFormatter(LOG_FORMAT)
    for when in (created, created + 0.5, created + 1.0, created):  # cached second, then a new one
        record = logging.LogRecord(
            "antechamber.access", logging.INFO, "", 0, "GET %s", ("/x",), None
        )
        record.created, record.msecs = when, (when - int(when)) * 1000
        assert fast.format(record) == logging.Formatter(LOG_FORMAT).format(record)
