"""The `antechamber` command line: serve, and the admin work on keys and rooms."""

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.admin_token import (
    AdminTokenError,
    load_or_generate_admin_token,
    read_admin_token,
    rotate_admin_token,
)
from app.cli import db, federation, rooms
from app.cli.output import CommandError, emit
from app.config import Config, ConfigError, load_config
from app.signing_key import (
    SigningKeyError,
    key_id,
    load_old_verify_keys,
    load_or_generate_signing_key,
    load_signing_key,
    public_key_base64,
    rotate_signing_key,
)
from db.dialect import DatabaseError

logger = logging.getLogger(__name__)

Command = Callable[[Config, argparse.Namespace], int]


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LineFormatter(logging.Formatter):
    """LOG_FORMAT, with the date and time (the stdlib's own "%Y-%m-%d %H:%M:%S,mmm") formatted
    once a second rather than once a line: the access log writes one line per request."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._text},{int(record.msecs):03d}"


def setup_logging(level: str) -> None:
    # Python's Logging HOWTO, "Optimization": what LOG_FORMAT never shows is not collected
    # (the caller's file and line is a walk up the stack for every line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter(LOG_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    import contextlib

    from app import metrics
    from app.admin_api import admin_server
    from app.main import wall_clock_ms

    # Generate the key and the admin token once here, before any worker starts.
    key = load_or_generate_signing_key(config.resolved_signing_key_path)
    load_or_generate_admin_token(config.admin_token_path)
    # Every process (workers, and this one for the admin listener) counts into one directory,
    # which the metrics endpoint reads whole; inherited by the workers through the environment.
    metrics.enable_multiprocess(config.metrics_dir)
    scheme = "https" if config.tls_enabled else "http"
    logger.info(
        "Antechamber %s listening on %s://%s:%d (%d worker%s), key %s",
        config.server_name,
        scheme,
        config.bind_host,
        config.bind_port,
        config.workers,
        "" if config.workers == 1 else "s",
        key_id(key),
    )
    tls: dict[str, Any] = {}
    if config.tls_enabled:
        tls = {"ssl_certfile": config.tls_certificate, "ssl_keyfile": config.tls_private_key}
    common: dict[str, Any] = {
        "host": config.bind_host,
        "port": config.bind_port,
        "log_config": None,
        "access_log": False,
        "timeout_keep_alive": 30,
        "h11_max_incomplete_event_size": config.max_request_head_bytes,
        **tls,
    }
    with contextlib.ExitStack() as stack:
        if config.admin_enabled:
            # In this process only, beside the federation server or above its workers
            # (app/admin_api.py: admin_server); never on the federation port.
            try:
                stack.enter_context(admin_server(config, wall_clock_ms))
            except RuntimeError as exc:  # it could not bind
                raise CommandError(str(exc)) from None
        _serve_federation(config, args, common)
    return 0


def _serve_federation(config: Config, args: argparse.Namespace, common: dict[str, Any]) -> None:
    import uvicorn

    from app.main import create_app

    if config.workers > 1:
        # Workers are new processes: they read the same configuration from the environment.
        if args.config:
            os.environ["ANTECHAMBER_CONFIG"] = os.path.abspath(args.config)
        uvicorn.run(
            "app.main:create_app_from_environment",
            factory=True,
            workers=config.workers,
            # httptools with a request-head deadline and size cap (app/http/server.py); workers
            # are new processes, so they load it (and its limits) by name.
            http="app.http.server:EnvironmentHttpToolsProtocol",
            **common,
        )
    else:
        from app.http.server import protocol_for

        uvicorn.run(create_app(config), http=protocol_for(config), **common)


def cmd_keys_show(config: Config, args: argparse.Namespace) -> int:
    key = load_signing_key(config.resolved_signing_key_path)
    old = load_old_verify_keys(config.old_verify_keys_path)
    data = {
        "server_name": config.server_name,
        "key_id": key_id(key),
        "public_key": public_key_base64(key),
        "old_verify_keys": old,
    }
    lines = [
        f"server_name: {config.server_name}",
        f"key_id:      {key_id(key)}",
        f"public_key:  {public_key_base64(key)}",
    ]
    lines += [f"old key:     {k} {v['key']} (expired_ts {v['expired_ts']})" for k, v in old.items()]
    emit(args, data, "\n".join(lines))
    return 0


def cmd_keys_generate(config: Config, args: argparse.Namespace) -> int:
    path = config.resolved_signing_key_path
    existed = path.exists()
    key = load_or_generate_signing_key(path)
    verb = "exists" if existed else "generated"
    emit(args, {"key_id": key_id(key), "path": str(path), "status": verb}, f"{verb}: {path}")
    return 0


def cmd_keys_rotate(config: Config, args: argparse.Namespace) -> int:
    from app.main import wall_clock_ms

    old = load_signing_key(config.resolved_signing_key_path)
    new = rotate_signing_key(
        config.resolved_signing_key_path, config.old_verify_keys_path, wall_clock_ms()
    )
    emit(
        args,
        {"retired": key_id(old), "current": key_id(new)},
        f"retired {key_id(old)}; current key is {key_id(new)} (restart the server to use it)",
    )
    return 0


def cmd_sign_request(config: Config, args: argparse.Namespace) -> int:
    """An X-Matrix Authorization header from this server's key (SS §Request Authentication)."""
    from matrix.canonical import parse_json_object
    from matrix.errors import MatrixError
    from matrix.xmatrix import sign_request

    if not args.uri.startswith("/"):
        raise CommandError("URI must be the request target as sent, starting with '/'")
    content = None
    if args.body is not None:
        try:
            content = parse_json_object(args.body.encode("utf-8"))
        except MatrixError as exc:
            raise CommandError(f"--body: {exc.message}") from None
    key = load_signing_key(config.resolved_signing_key_path)
    header = sign_request(
        args.method.upper(), args.uri, config.server_name, args.destination, key, content
    )
    emit(args, {"authorization": header}, header)
    return 0


def cmd_admin_token(config: Config, args: argparse.Namespace) -> int:
    path = config.admin_token_path
    token = read_admin_token(path)
    if token is None:
        raise CommandError(f"no admin token yet in {path}: `antechamber serve` makes one")
    emit(args, {"token": token, "path": str(path)}, token)
    return 0


def cmd_admin_rotate_token(config: Config, args: argparse.Namespace) -> int:
    path = config.admin_token_path
    token = rotate_admin_token(path)
    emit(
        args,
        {"token": token, "path": str(path)},
        f"{token}\n(the old token stopped working; a running server reads {path} each request)",
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="antechamber", description="A spec-first Matrix federation server (knocking)."
    )
    parser.add_argument("--config", help="TOML configuration file (or ANTECHAMBER_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(parent: Any, name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.set_defaults(func=func)
        return sub

    add(commands, "serve", cmd_serve, "run the federation server in the foreground")
    keys = commands.add_parser("keys", help="the server's signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="KEYS_COMMAND"
    )
    add(keys, "show", cmd_keys_show, "show server name, key id and public key")
    add(keys, "generate", cmd_keys_generate, "generate the signing key if there is none")
    add(keys, "rotate", cmd_keys_rotate, "retire the current key and make a new one")
    sign = add(
        commands,
        "sign-request",
        cmd_sign_request,
        "print an X-Matrix Authorization header for a request, signed by this server",
    )
    sign.add_argument("method", help="HTTP method, e.g. GET")
    sign.add_argument("uri", help="the request target exactly as sent: path and ?query")
    sign.add_argument("--destination", required=True, help="the receiving server's name")
    sign.add_argument("--body", help="the JSON body of a PUT/POST")
    admin = commands.add_parser(
        "admin", help="the admin API's bearer token (the moderators' page asks for it)"
    ).add_subparsers(dest="admin_command", required=True, metavar="ADMIN_COMMAND")
    add(admin, "token", cmd_admin_token, "print the admin API token")
    add(admin, "rotate-token", cmd_admin_rotate_token, "replace the admin API token")
    rooms.register(commands, add)
    federation.register(commands, add)
    db.register(commands, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        setup_logging(config.log_level)
        code: int = args.func(config, args)
        return code
    except (ConfigError, SigningKeyError, AdminTokenError, CommandError, DatabaseError) as exc:
        print(f"antechamber: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, CommandError) else 2
    except KeyboardInterrupt:
        return 130
