"""Server configuration: defaults, an optional TOML file, then ANTECHAMBER_* variables."""

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from matrix.errors import MatrixError
from matrix.ids import parse_server_name

ENV_PREFIX = "ANTECHAMBER_"

# Synapse's DEFAULT_IP_RANGE_BLOCKLIST (synapse/config/server.py), plus the unspecified addresses
# Synapse always adds (0.0.0.0 reaches the local host on Linux). IPv4-mapped IPv6 addresses are
# checked as their IPv4 address (app/ip_ranges.py).
DEFAULT_IP_RANGE_DENYLIST = (
    "0.0.0.0/8",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::/128",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
)


class ConfigError(Exception):
    """A bad configuration value: one line naming the key, shown instead of a stack trace."""


@dataclass(frozen=True)
class Config:
    # The name other servers know us by; its port is the one they connect to (SS §Server discovery).
    server_name: str = "localhost:8448"
    bind_host: str = "127.0.0.1"
    bind_port: int = 8448
    # Holds the SQLite database (unless database_url names another) and the signing key.
    data_dir: str = "./data"
    # "" (SQLite at <data_dir>/antechamber.db), sqlite:///path, or postgresql://user@host/db:
    # several instances with the same server_name and signing key may share a PostgreSQL one.
    database_url: str = ""
    # Synapse's one-line format "ed25519 <key_id> <seed>", so keys move between servers.
    signing_key_path: str = ""
    # Both set: serve HTTPS. Unset: plain HTTP (behind a reverse proxy).
    tls_certificate: str = ""
    tls_private_key: str = ""
    workers: int = 1
    # Check every response against the contract (on in tests; costs ~0.2 ms a request).
    validate_responses: bool = False
    log_level: str = "INFO"
    # Serve Swagger UI live under this path (e.g. "/_antechamber/docs"); empty = off.
    docs_path: str = ""
    # Largest request body accepted, in bytes (CS §Size limits: events are at most 65,536).
    max_request_body_bytes: int = 262144
    # Outbound federation (key fetching).
    federation_verify_certificates: bool = True
    federation_ca_file: str = ""
    key_fetch_timeout_s: float = 10.0
    # How long a failed key fetch is remembered before the origin is asked again.
    key_fetch_failure_backoff_s: float = 30.0
    # Key fetches in flight per worker, for servers whose keys we hold and, as many again, for
    # new ones (one per server at a time); a fetch finding its pool full is not made.
    key_fetch_max_concurrent: int = 16
    # Bound on asking an origin for the events a transaction's PDU builds on (the origin waits
    # for our answer to its transaction meanwhile).
    missing_events_timeout_s: float = 10.0
    # No SSRF through key fetching: outbound connections to these ranges are refused (checked on
    # the resolved addresses), unless an allowlist range also contains the address.
    federation_ip_range_denylist: list[str] = field(
        default_factory=lambda: list(DEFAULT_IP_RANGE_DENYLIST)
    )
    federation_ip_range_allowlist: list[str] = field(default_factory=list)
    # Per-origin token bucket applied after authentication (Synapse's rc_federation, simplified).
    rc_federation_enabled: bool = True
    rc_federation_per_second: float = 50.0
    rc_federation_burst_count: int = 200
    # Slow clients: the request head (request line and headers) must arrive within this time,
    # and the body within request_body_timeout_s; the head and the URL are bounded in size.
    request_head_timeout_s: float = 10.0
    request_body_timeout_s: float = 30.0
    max_request_head_bytes: int = 65536
    max_request_uri_bytes: int = 8192
    # Per worker: open connections (past it, 503 and close), and request bodies held in memory
    # at once, summed over requests (past it, 429 M_LIMIT_EXCEEDED).
    max_connections: int = 4096
    max_buffered_body_bytes: int = 64 * 1024 * 1024
    # The admin API, its page and the metrics: their own listener, never the federation port.
    admin_enabled: bool = True
    admin_bind_host: str = "127.0.0.1"
    admin_bind_port: int = 8449
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def database(self) -> str:
        """The database to open: ``database_url``, or SQLite in the data dir by default."""
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'antechamber.db'}"

    @property
    def resolved_signing_key_path(self) -> Path:
        return Path(self.signing_key_path or Path(self.data_dir) / "signing.key")

    @property
    def old_verify_keys_path(self) -> Path:
        return self.resolved_signing_key_path.with_name("old_verify_keys.json")

    @property
    def admin_token_path(self) -> Path:
        return Path(self.data_dir) / "admin.token"

    @property
    def metrics_dir(self) -> Path:
        """PROMETHEUS_MULTIPROC_DIR: every process of the server writes its counts here."""
        return Path(self.data_dir) / "metrics"

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_certificate and self.tls_private_key)


_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name != "extra"}
_TYPES = get_type_hints(Config)


def _coerce(key: str, value: Any, from_env: bool) -> Any:
    kind = _TYPES[key]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.lower() in {"true", "1", "false", "0"}:
            return value.lower() in {"true", "1"}
        raise ConfigError(f"config key '{key}': expected true/false/1/0, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    if kind == list[str]:
        if from_env and isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise ConfigError(f"config key '{key}': expected a list of strings, got {value!r}")
    raise ConfigError(f"config key '{key}': unsupported type")  # pragma: no cover


def _check(config: Config) -> Config:
    try:
        parse_server_name(config.server_name)
    except MatrixError:
        raise ConfigError(
            f"config key 'server_name': {config.server_name!r} is not a valid server name"
        ) from None
    if not 0 < config.bind_port < 65536:
        raise ConfigError(f"config key 'bind_port': {config.bind_port} is not a TCP port")
    if not 0 < config.admin_bind_port < 65536:
        raise ConfigError(
            f"config key 'admin_bind_port': {config.admin_bind_port} is not a TCP port"
        )
    if (
        config.admin_enabled
        and config.admin_bind_port == config.bind_port
        and config.admin_bind_host == config.bind_host
    ):
        raise ConfigError(
            "config key 'admin_bind_port': the admin API never shares the federation listener"
        )
    if config.workers < 1:
        raise ConfigError(f"config key 'workers': must be at least 1, got {config.workers}")
    if config.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(
            f"config key 'log_level': expected one of {sorted(_LOG_LEVELS)}, got "
            f"{config.log_level!r}"
        )
    if bool(config.tls_certificate) != bool(config.tls_private_key):
        raise ConfigError(
            "config key 'tls_certificate': tls_certificate and tls_private_key must be set together"
        )
    for key in ("tls_certificate", "tls_private_key", "federation_ca_file"):
        path = getattr(config, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"config key '{key}': no such file {path!r}")
    if config.max_request_body_bytes < 1024:
        raise ConfigError("config key 'max_request_body_bytes': must be at least 1024")
    for key in ("federation_ip_range_denylist", "federation_ip_range_allowlist"):
        for entry in getattr(config, key):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(f"config key '{key}': {entry!r} is not an IP range") from None
    for key in (
        "key_fetch_timeout_s",
        "key_fetch_failure_backoff_s",
        "key_fetch_max_concurrent",
        "missing_events_timeout_s",
        "rc_federation_per_second",
        "rc_federation_burst_count",
        "request_head_timeout_s",
        "request_body_timeout_s",
    ):
        if getattr(config, key) <= 0:
            raise ConfigError(f"config key '{key}': must be positive")
    if config.max_request_head_bytes < 4096:
        raise ConfigError("config key 'max_request_head_bytes': must be at least 4096")
    if config.max_connections < 1:
        raise ConfigError("config key 'max_connections': must be at least 1")
    if config.max_buffered_body_bytes < config.max_request_body_bytes:
        raise ConfigError(
            "config key 'max_buffered_body_bytes': must be at least max_request_body_bytes"
        )
    if config.max_request_uri_bytes < 1024:
        raise ConfigError("config key 'max_request_uri_bytes': must be at least 1024")
    if config.database_url and not config.database_url.startswith(
        ("sqlite:///", "postgresql://", "postgres://")
    ):
        raise ConfigError(
            "config key 'database_url': expected sqlite:///<path> or postgresql://<user>@<host>/<db>"
        )
    if config.docs_path and not config.docs_path.startswith("/"):
        raise ConfigError("config key 'docs_path': must start with '/'")
    return config


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file (``path`` or ANTECHAMBER_CONFIG), then ANTECHAMBER_<KEY>."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = path or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as handle:
                document = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"config file {path!r}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path!r}: not valid TOML ({exc})") from None
        for key, value in document.items():
            if key not in _FIELDS:
                raise ConfigError(f"config key '{key}': unknown key in {path!r}")
            values[key] = _coerce(key, value, from_env=False)
    for key in _FIELDS:
        env_value = environ.get(ENV_PREFIX + key.upper())
        if env_value is not None:
            values[key] = _coerce(key, env_value, from_env=True)
    if "log_level" in values:
        values["log_level"] = values["log_level"].upper()
    return _check(Config(**values))
