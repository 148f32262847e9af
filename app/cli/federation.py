"""`antechamber federation ...`: the durable outbox per destination, and clearing a backoff."""

import argparse
import datetime
from collections.abc import Callable
from typing import Any

from app.cli.output import CommandError, emit, escape_text
from app.config import Config
from db.store import Store

Command = Callable[[Config, argparse.Namespace], int]


def _when(ts: object) -> str:
    if not isinstance(ts, int) or ts <= 0:
        return "-"
    return datetime.datetime.fromtimestamp(ts / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_federation_status(config: Config, args: argparse.Namespace) -> int:
    """Per destination: queued events, last success, next retry, last error."""
    store = Store.open(config.database)
    try:
        rows = store.get_destination_status()
    finally:
        store.close()
    lines = []
    for row in rows:
        retry = _when(row["retry_at_ts"]) if row["retry_at_ts"] else "now"
        line = (
            f"{escape_text(row['destination'])}  queued {row['pending']}  "
            f"last success {_when(row['last_success_ts'])}  next retry {retry}"
        )
        if row["last_error"]:
            line += f"  last error {_when(row['last_error_ts'])}: {escape_text(row['last_error'])}"
        lines.append(line)
    emit(args, rows, "\n".join(lines) or "no destinations")
    return 0


def cmd_federation_retry(config: Config, args: argparse.Namespace) -> int:
    """Clear a destination's backoff: the running server retries it at its next poll."""
    store = Store.open(config.database)
    try:
        known = store.reset_backoff(args.destination)
    finally:
        store.close()
    if not known:
        raise CommandError(f"no deliveries were ever queued for {escape_text(args.destination)}")
    emit(
        args,
        {"destination": args.destination, "retry": "now"},
        f"{escape_text(args.destination)}: retried at the server's next poll",
    )
    return 0


def register(commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the `federation` command group to the `antechamber` parser."""
    group = commands.add_parser(
        "federation", help="outbound delivery to other servers"
    ).add_subparsers(dest="federation_command", required=True, metavar="FEDERATION_COMMAND")
    add(group, "status", cmd_federation_status, "queued events and backoff per destination")
    retry = add(group, "retry", cmd_federation_retry, "retry a destination now")
    retry.add_argument("destination", help="the server name")
