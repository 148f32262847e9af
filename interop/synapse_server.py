"""The pinned Synapse as a subprocess on loopback: install, config, signing key, admin users.

Shared by `make interop` (interop/run.py, which imports it as a sibling module) and `make bench`
(bench/run.py, as ``interop.synapse_server``), both with the project's virtualenv; Synapse
itself runs from its own (interop/install-synapse.sh) and is never imported here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.config import DEFAULT_IP_RANGE_DENYLIST

ROOT = Path(__file__).resolve().parent.parent
INSTALLER = ROOT / "interop" / "install-synapse.sh"

# Synapse's DEFAULT_IP_RANGE_BLOCKLIST (synapse/config/server.py, 1.163.2) without loopback.
# Synapse checks IP-literal server names against this list alone (the outer
# BlocklistingAgentWrapper in matrixfederationclient.py gets no allowlist), so
# `ip_range_whitelist: [127.0.0.1]` would NOT let it reach 127.0.0.1:<port>. In 1.163.2 the
# config key is still spelled `ip_range_blacklist`; `ip_range_blocklist` would be ignored.
# Our default denylist is Synapse's plus the unspecified addresses Synapse adds by itself.
SYNAPSE_IP_BLOCKLIST = [
    ip_range
    for ip_range in DEFAULT_IP_RANGE_DENYLIST
    if ip_range not in {"0.0.0.0/8", "127.0.0.0/8", "::/128", "::1/128"}
]

LENIENT = {"per_second": 1000, "burst_count": 1000}


def install_synapse() -> str:
    """Run interop/install-synapse.sh (installs once per pin) and return Synapse's python."""
    proc = subprocess.run(
        ["bash", str(INSTALLER)], stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT
    )
    # Absolute but not resolved: a venv python resolved through its symlink loses the venv.
    return os.path.abspath(proc.stdout.strip().splitlines()[-1])


def write_log_config(base: Path, verbose: bool) -> Path:
    """Synapse's logging config: everything to ``base``/homeserver.log, SQL logs quiet."""
    log_config = base / "log.yaml"
    # JSON is YAML: no YAML library needed on this side.
    log_config.write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {
                    "precise": {
                        "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s"
                        " - %(request)s - %(message)s"
                    }
                },
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "formatter": "precise",
                        "filename": str(base / "homeserver.log"),
                        "filters": ["context"],
                    }
                },
                "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter"}},
                "loggers": {
                    "synapse.storage.SQL": {"level": "WARNING"},
                    "synapse.storage.txn": {"level": "WARNING"},
                },
                "root": {"level": "DEBUG" if verbose else "INFO", "handlers": ["file"]},
                "disable_existing_loggers": False,
            }
        )
    )
    return log_config


@dataclass
class SynapseConfig:
    """A written homeserver.yaml and what the caller needs to drive that Synapse."""

    path: Path
    base: Path
    server_name: str
    port: int
    tls: bool
    registration_secret: str

    @property
    def log(self) -> Path:
        return self.base / "homeserver.log"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


def write_synapse_config(
    base: Path,
    *,
    server_name: str,
    port: int,
    ca_file: Path,
    tls: tuple[Path, Path] | None,
    verbose: bool = False,
    overrides: dict[str, Any] | None = None,
) -> SynapseConfig:
    """homeserver.yaml in ``base`` (created): one listener on 127.0.0.1:``port`` with the
    client and federation resources, HTTPS with ``tls`` = (certificate chain, key) or plain HTTP,
    SQLite, outbound federation verified against ``ca_file`` and allowed to reach loopback, keys
    fetched from the servers themselves, and the rate limits relaxed. ``overrides`` replace
    top-level keys."""
    base.mkdir(parents=True, exist_ok=True)
    log_config = write_log_config(base, verbose)
    registration_secret = secrets.token_hex(16)
    listener: dict[str, Any] = {
        "port": port,
        "bind_addresses": ["127.0.0.1"],
        "type": "http",
        "tls": tls is not None,
        "x_forwarded": False,
        "resources": [{"names": ["client", "federation"], "compress": False}],
    }
    config: dict[str, Any] = {
        "server_name": server_name,
        "pid_file": str(base / "homeserver.pid"),
        "listeners": [listener],
        # Verify the other servers' certificates against the throwaway CA (not just "off").
        "federation_verify_certificates": True,
        "federation_custom_ca_list": [str(ca_file)],
        "ip_range_blacklist": SYNAPSE_IP_BLOCKLIST,
        "database": {"name": "sqlite3", "args": {"database": str(base / "homeserver.db")}},
        "log_config": str(log_config),
        "media_store_path": str(base / "media"),
        "signing_key_path": str(base / "signing.key"),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "report_stats": False,
        "enable_registration": False,
        "registration_shared_secret": registration_secret,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "presence": {"enabled": False},
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": 1000,
            "sleep_delay": 0,
            "reject_limit": 1000,
            "concurrent": 100,
        },
        "rc_joins": {"local": LENIENT, "remote": LENIENT},
        "rc_joins_per_room": LENIENT,
        "rc_message": LENIENT,
        "rc_registration": LENIENT,
        "rc_login": {"address": LENIENT, "account": LENIENT, "failed_attempts": LENIENT},
    }
    if tls is not None:
        config["tls_certificate_path"] = str(tls[0])
        config["tls_private_key_path"] = str(tls[1])
    config.update(overrides or {})
    path = base / "homeserver.yaml"
    path.write_text(json.dumps(config, indent=2))
    return SynapseConfig(path, base, server_name, port, tls is not None, registration_secret)


def homeserver_command(synapse_python: str, config: SynapseConfig) -> list[str]:
    return [synapse_python, "-m", "synapse.app.homeserver", "--config-path", str(config.path)]


def generate_signing_key(synapse_python: str, config: SynapseConfig, timeout: float) -> None:
    """Synapse's own tool: writes signing_key_path from the config if it is missing."""
    proc = subprocess.run(
        [*homeserver_command(synapse_python, config), "--generate-keys"],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    key = config.base / "signing.key"
    if proc.returncode != 0 or not key.is_file():
        raise RuntimeError(
            "synapse --generate-keys failed: "
            + (proc.stderr or proc.stdout).decode(errors="replace")[-2000:]
        )


def register_and_login(
    client: httpx.Client,
    url: str,
    registration_secret: str,
    localpart: str,
    *,
    admin: bool = False,
) -> str:
    """Shared-secret registration (admin API, nonce + HMAC-SHA1), then a password login; the
    new user's access token."""
    password = secrets.token_urlsafe(12)
    register = f"{url}/_synapse/admin/v1/register"
    nonce = client.get(register).raise_for_status().json()["nonce"]
    mac = hmac.new(registration_secret.encode(), digestmod=hashlib.sha1)
    role = "admin" if admin else "notadmin"
    mac.update(f"{nonce}\x00{localpart}\x00{password}\x00{role}".encode())
    body = {
        "nonce": nonce,
        "username": localpart,
        "password": password,
        "admin": admin,
        "mac": mac.hexdigest(),
    }
    client.post(register, json=body).raise_for_status()
    login = client.post(
        f"{url}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        },
    ).raise_for_status()
    token = login.json()["access_token"]
    assert isinstance(token, str)
    return token
