"""`antechamber rooms ...`: create rooms and change their state from the command line."""

import argparse
import asyncio
import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from signedjson.types import SigningKey

from app.cli.output import CommandError, emit
from app.config import Config
from app.federation.client import FederationClient, FederationHttp
from app.federation.sender import CollectedPdus
from app.rooms.admin import RoomAdmin
from app.rooms.hosted import get_hosted_room_version
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from matrix.errors import MatrixError
from matrix.events import compute_event_id
from matrix.room_events import KNOWN_JOIN_RULES, parse_room_version
from matrix.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS

Command = Callable[[Config, argparse.Namespace], int]


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


@contextmanager
def _open_store(config: Config) -> Iterator[Store]:
    store = Store.open(config.database_path)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _open(config: Config, room_id: str | None = None) -> Iterator[RoomAdmin]:
    """The server's store and signing key, as the running server sees them (no caches).

    With ``room_id``, the room must exist: checked before a signing key could be generated.
    """
    with _open_store(config) as store:
        if room_id is not None:
            get_hosted_room_version(store, room_id)
        signing_key = load_or_generate_signing_key(config.resolved_signing_key_path)
        outbox = CollectedPdus()
        yield RoomAdmin(store, config.server_name, signing_key, _wall_clock_ms, outbox)
    if outbox.pending:
        # The stored events reach the room's other servers as the server's own would (the log
        # says what was sent where); a destination that is down misses them, as it would miss
        # the server's (durable delivery is not built yet).
        asyncio.run(_deliver(config, signing_key, outbox))


async def _deliver(config: Config, signing_key: SigningKey, outbox: CollectedPdus) -> None:
    http = FederationHttp(config)
    try:
        await outbox.deliver(
            FederationClient(config.server_name, signing_key, config, http=http), _wall_clock_ms
        )
    finally:
        await http.aclose()


def _matrix_errors_as_one_line(func: Command) -> Command:
    """A refused change is one line on stderr and exit status 1, never a stack trace."""

    @functools.wraps(func)
    def wrapper(config: Config, args: argparse.Namespace) -> int:
        try:
            return func(config, args)
        except MatrixError as exc:
            raise CommandError(f"{exc.errcode}: {exc.message}") from None

    return wrapper


@_matrix_errors_as_one_line
def cmd_rooms_create(config: Config, args: argparse.Namespace) -> int:
    parse_room_version(args.version)  # refuse before a key or database is created
    with _open(config) as admin:
        room_id = admin.create_room(
            args.version,
            args.join_rule,
            name=args.name,
            topic=args.topic,
            creator_localpart=args.creator,
            allow_rooms=args.allow_room,
        )
    data = {"room_id": room_id, "room_version": args.version, "join_rule": args.join_rule}
    emit(args, data, room_id)
    return 0


@_matrix_errors_as_one_line
def cmd_rooms_list(config: Config, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    with _open_store(config) as store:
        for room in store.list_rooms():
            join_rules = store.get_current_state_event(room.room_id, "m.room.join_rules", "")
            name = store.get_current_state_event(room.room_id, "m.room.name", "")
            rows.append(
                {
                    "room_id": room.room_id,
                    "room_version": room.room_version,
                    "created_ts": room.created_ts,
                    "join_rule": None
                    if join_rules is None
                    else join_rules["content"].get("join_rule"),
                    "name": None if name is None else name["content"].get("name"),
                }
            )
    text = "\n".join(
        f"{row['room_id']}  v{row['room_version']}  {row['join_rule']}"
        + (f"  {row['name']}" if row["name"] else "")
        for row in rows
    )
    emit(args, rows, text or "no rooms")
    return 0


@_matrix_errors_as_one_line
def cmd_rooms_state(config: Config, args: argparse.Namespace) -> int:
    with _open_store(config) as store:
        version = get_hosted_room_version(store, args.room_id)
        events = store.get_current_state(args.room_id)
    lines = [
        f"{compute_event_id(event, version)}  {event['type']}  {event['state_key']!r}  "
        f"{json.dumps(event['content'], sort_keys=True)}"
        for event in events
    ]
    emit(args, events, "\n".join(lines))
    return 0


@_matrix_errors_as_one_line
def cmd_rooms_knocks(config: Config, args: argparse.Namespace) -> int:
    """Pending knocks: users whose current membership is knock (CS §Knocking on rooms)."""
    with _open_store(config) as store:
        version = get_hosted_room_version(store, args.room_id)
        events = store.get_memberships(args.room_id, "knock")
    rows = [
        {
            "user_id": event["state_key"],
            "reason": event["content"].get("reason"),
            "origin_server_ts": event["origin_server_ts"],
            "event_id": compute_event_id(event, version),
        }
        for event in events
    ]
    text = "\n".join(
        f"{row['user_id']}  {row['origin_server_ts']}  {row['event_id']}"
        + (f"  reason: {row['reason']}" if row["reason"] else "")
        for row in rows
    )
    emit(args, rows, text or "no pending knocks")
    return 0


def _changed(args: argparse.Namespace, room_id: str, event_id: str) -> int:
    emit(args, {"room_id": room_id, "event_id": event_id}, event_id)
    return 0


@_matrix_errors_as_one_line
def cmd_rooms_join_rule(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = admin.set_join_rule(args.room_id, args.join_rule, args.allow_room)
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_ban(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = admin.ban(args.room_id, args.user_id, args.reason)
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_unban(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = admin.unban(args.room_id, args.user_id)
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_acl(config: Config, args: argparse.Namespace) -> int:
    allow = args.allow if args.allow is not None else ["*"]
    with _open(config, args.room_id) as admin:
        event_id = admin.set_server_acl(
            args.room_id, allow, args.deny or [], allow_ip_literals=not args.no_ip_literals
        )
    return _changed(args, args.room_id, event_id)


def register(commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the `rooms` command group to the `antechamber` parser."""
    rooms = commands.add_parser("rooms", help="create rooms and change their state").add_subparsers(
        dest="rooms_command", required=True, metavar="ROOMS_COMMAND"
    )
    versions = ", ".join(KNOWN_ROOM_VERSIONS)
    rules = ", ".join(KNOWN_JOIN_RULES)

    create = add(rooms, "create", cmd_rooms_create, "create a room; prints its room id")
    create.add_argument(
        "--version",
        default=DEFAULT_ROOM_VERSION.identifier,
        help=f"room version ({versions}; default {DEFAULT_ROOM_VERSION.identifier})",
    )
    create.add_argument("--join-rule", required=True, help=f"join rule ({rules})")
    create.add_argument("--name", help="m.room.name")
    create.add_argument("--topic", help="m.room.topic")
    create.add_argument(
        "--creator", default="admin", help="localpart of the creating user (default admin)"
    )
    create.add_argument(
        "--allow-room",
        action="append",
        default=[],
        metavar="ROOM_ID",
        help="room whose members may join (restricted / knock_restricted; repeatable)",
    )

    add(rooms, "list", cmd_rooms_list, "list the rooms on this server")

    state = add(rooms, "state", cmd_rooms_state, "show a room's current state (full events)")
    state.add_argument("room_id")

    knocks = add(rooms, "knocks", cmd_rooms_knocks, "list a room's pending knocks")
    knocks.add_argument("room_id")

    join_rule = add(rooms, "join-rule", cmd_rooms_join_rule, "change a room's join rule")
    join_rule.add_argument("room_id")
    join_rule.add_argument("join_rule", help=f"join rule ({rules})")
    join_rule.add_argument(
        "--allow-room", action="append", default=[], metavar="ROOM_ID", help="(repeatable)"
    )

    ban = add(rooms, "ban", cmd_rooms_ban, "ban a user from a room")
    ban.add_argument("room_id")
    ban.add_argument("user_id")
    ban.add_argument("--reason")

    unban = add(rooms, "unban", cmd_rooms_unban, "lift a user's ban")
    unban.add_argument("room_id")
    unban.add_argument("user_id")

    acl = add(rooms, "acl", cmd_rooms_acl, "set the room's server ACL (m.room.server_acl)")
    acl.add_argument("room_id")
    acl.add_argument(
        "--allow",
        action="append",
        metavar="GLOB",
        help="servers allowed (repeatable; default '*' when none is given)",
    )
    acl.add_argument("--deny", action="append", metavar="GLOB", help="servers denied (repeatable)")
    acl.add_argument(
        "--no-ip-literals", action="store_true", help="deny servers named by an IP address"
    )
