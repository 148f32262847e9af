"""`antechamber rooms ...`: create rooms and change their state from the command line."""

import argparse
import asyncio
import dataclasses
import datetime
import functools
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from signedjson.types import SigningKey

from app.cli.output import CommandError, emit, escape_text
from app.config import Config
from app.federation.client import FederationClient, FederationHttp
from app.federation.sender import CollectedDestinations, FederationSender
from app.rooms import moderation
from app.rooms.admin import RoomAdmin, get_members, get_timeline
from app.rooms.hosted import get_hosted_room_version
from app.rooms.invite import send_invite
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
    store = Store.open(config.database)
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
        outbox = CollectedDestinations()
        yield RoomAdmin(store, config.server_name, signing_key, _wall_clock_ms, outbox)
        if outbox.pending:
            # The stored events are in the durable outbox: try to deliver them now, as the
            # server would (the log says what was sent where); what a destination that is
            # down does not take stays queued, and the running server retries it.
            asyncio.run(_deliver(config, signing_key, store, outbox.pending))


# How long the CLI waits for its deliveries before leaving the rest to the server.
CLI_DELIVERY_WAIT_S = 10.0


async def _deliver(
    config: Config, signing_key: SigningKey, store: Store, destinations: set[str]
) -> None:
    http = FederationHttp(config)
    try:
        client = FederationClient(config.server_name, signing_key, config, http=http)
        sender = FederationSender(store, client, _wall_clock_ms, owner=f"cli-{os.getpid()}")
        await sender.deliver_now(sorted(destinations), CLI_DELIVERY_WAIT_S)
    finally:
        await http.aclose()


def _matrix_errors_as_one_line(func: Command) -> Command:
    """A refused change is one line on stderr and exit status 1, never a stack trace."""

    @functools.wraps(func)
    def wrapper(config: Config, args: argparse.Namespace) -> int:
        try:
            return func(config, args)
        except MatrixError as exc:
            # the message may quote another server's answer: one line, no terminal escapes
            raise CommandError(escape_text(f"{exc.errcode}: {exc.message}")) from None

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
    with _open_store(config) as store:
        rows = [dataclasses.asdict(room) for room in moderation.list_rooms(store)]
    text = "\n".join(
        escape_text(
            f"{row['room_id']}  v{row['room_version']}  {row['join_rule']}"
            + (f"  {row['name']}" if row["name"] else "")
        )
        + (f"  ({row['pending_knocks']} waiting)" if row["pending_knocks"] else "")
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
        rows = [
            dataclasses.asdict(knock)
            for knock in moderation.get_pending_knocks(store, args.room_id)
        ]
    text = "\n".join(
        escape_text(
            f"{row['user_id']}  {row['origin_server_ts']}  {row['event_id']}"
            + (f"  reason: {row['reason']}" if row["reason"] else "")
        )
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


def _when(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts / 1000, datetime.UTC).isoformat(timespec="seconds")


InviteCall = Callable[..., Awaitable[str]]


def _invite(config: Config, admin: RoomAdmin, call: InviteCall, **kwargs: Any) -> str:
    """Run an invite (send_invite, accept_knock) with a federation client built from config."""

    async def main() -> str:
        http = FederationHttp(config)
        try:
            client = FederationClient(
                config.server_name, admin.signer.signing_key, config, http=http
            )
            return await call(admin, client, **kwargs)
        finally:
            await http.aclose()

    return asyncio.run(main())


@_matrix_errors_as_one_line
def cmd_rooms_accept(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = _invite(
            config,
            admin,
            moderation.accept,
            room_id=args.room_id,
            user_id=args.user_id,
            reason=args.reason,
            sender=args.sender,
        )
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_invite(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = _invite(
            config,
            admin,
            send_invite,
            room_id=args.room_id,
            user_id=args.user_id,
            reason=args.reason,
            sender=args.sender,
        )
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_deny(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = moderation.deny(
            admin, args.room_id, args.user_id, reason=args.reason, sender=args.sender
        )
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_kick(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = admin.kick(args.room_id, args.user_id, args.reason, args.sender)
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_message(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = admin.send_message(args.room_id, args.text, args.sender)
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_topic(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = admin.send_state_event(
            args.room_id, "m.room.topic", "", {"topic": args.text}, args.sender
        )
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_power(config: Config, args: argparse.Namespace) -> int:
    with _open(config, args.room_id) as admin:
        event_id = admin.set_power_level(args.room_id, args.user_id, args.level, args.sender)
    return _changed(args, args.room_id, event_id)


@_matrix_errors_as_one_line
def cmd_rooms_members(config: Config, args: argparse.Namespace) -> int:
    with _open_store(config) as store:
        members = get_members(store, args.room_id)
    text = "\n".join(
        escape_text(
            f"{m.user_id}  {m.membership}  {_when(m.origin_server_ts)}  by {m.sender}"
            + (f"  reason: {m.reason}" if m.reason else "")
        )
        + f"  {m.event_id}"
        for m in members
    )
    emit(args, [dataclasses.asdict(m) for m in members], text or "no members")
    return 0


@_matrix_errors_as_one_line
def cmd_rooms_timeline(config: Config, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise MatrixError("M_INVALID_PARAM", "--limit must be at least 1")
    with _open_store(config) as store:
        entries = get_timeline(store, args.room_id, args.limit)
    text = "\n".join(
        escape_text(f"{_when(e.origin_server_ts)}  {e.sender}  {e.type}  {e.summary}")
        for e in entries
    )
    emit(args, [dataclasses.asdict(e) for e in entries], text or "no events")
    return 0


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

    def membership_command(
        name: str, func: Command, help_text: str, *, reason: bool = True
    ) -> argparse.ArgumentParser:
        sub = add(rooms, name, func, help_text)
        sub.add_argument("room_id")
        sub.add_argument("user_id")
        if reason:
            sub.add_argument("--reason")
        sub.add_argument("--sender", help="a local member with the power (default: the creator)")
        return sub

    membership_command(
        "accept", cmd_rooms_accept, "accept a pending knock: invite the knocker via its server"
    )
    membership_command("deny", cmd_rooms_deny, "deny a pending knock (a leave sent by the admin)")
    membership_command(
        "invite", cmd_rooms_invite, "invite a user of another server (its server countersigns)"
    )
    membership_command("kick", cmd_rooms_kick, "kick a member, withdraw an invite or deny a knock")
    power = membership_command("power", cmd_rooms_power, "set a user's power level", reason=False)
    power.add_argument("level", type=int)

    members = add(rooms, "members", cmd_rooms_members, "every membership in current state")
    members.add_argument("room_id")

    message = add(rooms, "message", cmd_rooms_message, "post an m.room.message (m.text)")
    message.add_argument("room_id")
    message.add_argument("text")
    message.add_argument("--sender", help="a local member (default: the creator)")

    topic = add(rooms, "topic", cmd_rooms_topic, "set the room's m.room.topic")
    topic.add_argument("room_id")
    topic.add_argument("text")
    topic.add_argument("--sender", help="a local member with the power (default: the creator)")

    timeline = add(rooms, "timeline", cmd_rooms_timeline, "the newest events, newest last")
    timeline.add_argument("room_id")
    timeline.add_argument("--limit", type=int, default=20, help="how many (default 20)")

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
