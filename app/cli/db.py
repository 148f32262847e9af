"""`antechamber db migrate --to URL`: move the server's database into an empty PostgreSQL one."""

import argparse
import sys
from collections.abc import Callable
from typing import Any

from app.cli.output import CommandError, emit
from app.config import Config
from db.dialect import DatabaseError, redact_url
from db.port import PortError, port_database
from db.store import Store

Command = Callable[[Config, argparse.Namespace], int]


def cmd_db_migrate(config: Config, args: argparse.Namespace) -> int:
    """Copy every row of the configured database into ``--to`` (made empty by the same
    migrations), verify the copy, and say what to set next. Stop the server first: what it
    writes meanwhile is not copied."""
    if not args.to.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise CommandError("--to: expected postgresql://<user>@<host>/<db> or sqlite:///<path>")
    if args.to == config.database:
        raise CommandError("--to names the database the server uses already")
    try:
        source = Store.open(config.database)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    try:
        try:
            target = Store.open(args.to)
        except DatabaseError as exc:
            raise CommandError(str(exc)) from None
        try:
            report = port_database(source, target, progress=_progress if not args.json else None)
        except PortError as exc:
            raise CommandError(f"not moved: {exc}") from None
        finally:
            target.close()
    finally:
        source.close()
    lines = [f"copied {report.source} to {report.target}:"]
    lines += [f"  {table}: {count} rows" for table, count in report.rows.items()]
    lines.append(
        f"verified: every table's rows and the state of {report.rooms_checked} room(s) match."
    )
    lines.append(f"Next: set database_url = {redact_url(args.to)!r} and start the server.")
    emit(args, report.as_json(), "\n".join(lines))
    return 0


def _progress(table: str, count: int, done: bool) -> None:
    print(f"\r{table}: {count} rows", end="\n" if done else "", file=sys.stderr, flush=True)


def register(commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the `db` command group to the `antechamber` parser."""
    group = commands.add_parser("db", help="the server's database").add_subparsers(
        dest="db_command", required=True, metavar="DB_COMMAND"
    )
    migrate = add(
        group,
        "migrate",
        cmd_db_migrate,
        "copy the database into an empty PostgreSQL one and verify it (stop the server first)",
    )
    migrate.add_argument("--to", required=True, help="postgresql://<user>@<host>/<db>")
