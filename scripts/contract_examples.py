"""Generate the example events of openapi/federation.yaml: real, hashed, signed, ids computed.

One v12 room on ``knock.example`` lives through a knock, an invite, a join, a message, a
refused message and a leave. Every event is built with the project's own rules (``matrix/``:
auth-events selection, the make_knock / make_join / make_leave templates, the auth rules,
content hashes, signatures, event ids and the v12 room id) and signed with the fixed test keys
of tests/factories.py: LOCAL_KEY_SEED for knock.example, REMOTE_KEY_SEED for remote.example,
both ``ed25519:k1``. The knock.example key document of ``/_matrix/key/v2/server`` is built the
same way.

The events go into the contract once, in the block between the ``contract_examples`` markers
(YAML anchors ``&create``, ``&join_id``, ...); the operations' examples refer to them by alias
(``*create``). ``placements()`` says what each operation's example must be; tests/test_contract.py
checks the block is current, every placement, and every event's hash, signature and id.

Usage: ``.venv/bin/python -m scripts.contract_examples --write`` (rewrite the block),
``--check`` (exit 1 when it is stale), or no option (print it).
"""

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from unpaddedbase64 import encode_base64

from matrix.auth_rules import StateKey, check_auth_rules, get_auth_event_keys
from matrix.errors import MatrixError
from matrix.events import compute_event_id, compute_room_id_v12, sign_event
from matrix.knock import build_knock_template, get_knock_state_keys
from matrix.membership import build_membership_template, get_membership_state_keys
from matrix.room_events import (
    build_create_content,
    build_event,
    build_join_rules_content,
    build_member_content,
    build_power_levels_content,
)
from matrix.room_versions import RoomVersion, get_room_version
from matrix.server_keys import build_server_keys
from matrix.types import JsonDict
from tests.factories import LOCAL_KEY_SEED, REMOTE_KEY_SEED, make_signing_key

CONTRACT = Path(__file__).resolve().parent.parent / "openapi" / "federation.yaml"
START = "  # contract_examples:start\n"
END = "  # contract_examples:end\n"

_version = get_room_version("12")
assert _version is not None
V12: RoomVersion = _version
RESIDENT, KNOCKER = "knock.example", "remote.example"
ADMIN, ALICE, MALLORY = "@admin:knock.example", "@alice:remote.example", "@mallory:remote.example"
TS = 1790000000000
# A retired knock.example key, so the key document shows old_verify_keys too.
OLD_KEY_SEED = encode_base64(hashlib.sha256(b"antechamber retired key").digest())


@dataclass
class ExampleRoom:
    """The room as knock.example holds it: accepted events in order, current state, the
    forward extremities (a linear history: the newest accepted event)."""

    pdus: dict[str, JsonDict] = field(default_factory=dict)
    state: dict[StateKey, str] = field(default_factory=dict)
    room_id: str = ""

    def state_events(self, keys: list[StateKey] | None = None) -> dict[StateKey, JsonDict]:
        wanted = self.state if keys is None else [k for k in keys if k in self.state]
        return {key: self.pdus[self.state[key]] for key in wanted}

    def newest(self) -> list[tuple[str, int]]:
        if not self.pdus:
            return []
        event_id = next(reversed(self.pdus))
        return [(event_id, self.pdus[event_id]["depth"])]

    def build(self, ts: int, **fields: object) -> JsonDict:
        """An unsigned event of this server's with SS §Auth events selection over the current
        state, on the newest event."""
        keys = get_auth_event_keys(dict(fields), V12)
        prev = self.newest()
        return build_event(
            V12,
            room_id=self.room_id or None,
            prev_events=[event_id for event_id, _ in prev],
            auth_events=[self.state[key] for key in keys if key in self.state],
            depth=max((depth for _, depth in prev), default=0) + 1,
            origin=RESIDENT,
            origin_server_ts=ts,
            **fields,  # type: ignore[arg-type]
        )

    def check(self, pdu: JsonDict) -> None:
        """The auth rules against the current state (raises MatrixError)."""
        check_auth_rules(
            pdu,
            self.state_events(),
            V12,
            create_event=self.state_events().get(("m.room.create", "")),
            is_signed_by=lambda server_name: server_name in pdu["signatures"],
        )

    def accept(self, pdu: JsonDict) -> str:
        self.check(pdu)
        event_id = compute_event_id(pdu, V12)
        if pdu["type"] == "m.room.create":
            self.room_id = compute_room_id_v12(pdu)
        self.pdus[event_id] = pdu
        if "state_key" in pdu:
            self.state[(pdu["type"], pdu["state_key"])] = event_id
        return event_id

    def state_ids_before(self, event_id: str) -> list[str]:
        """The state before ``event_id``, ordered by (type, state_key) as this server answers."""
        state: dict[StateKey, str] = {}
        for known, pdu in self.pdus.items():
            if known == event_id:
                break
            if "state_key" in pdu:
                state[(pdu["type"], pdu["state_key"])] = known
        return [state[key] for key in sorted(state)]

    def auth_chain_ids(self, event_ids: list[str]) -> list[str]:
        """Every event reachable through auth_events, oldest first, the start excluded unless
        reached; in v12 the create event heads every chain (MSC4291, as app/rooms/hosted.py)."""
        create_id = "$" + self.room_id[1:]
        reached: set[str] = {create_id} if any(e != create_id for e in event_ids) else set()
        todo = list(event_ids)
        while todo:
            for auth_id in self.pdus[todo.pop()]["auth_events"]:
                if auth_id not in reached:
                    reached.add(auth_id)
                    todo.append(auth_id)
        return [event_id for event_id in self.pdus if event_id in reached]


@dataclass(frozen=True)
class Examples:
    """Named example values (events, templates, ids) and what each operation's examples are."""

    named: dict[str, object]
    placements: dict[tuple[str, str], object]


def build_examples() -> Examples:
    local, remote = make_signing_key(LOCAL_KEY_SEED), make_signing_key(REMOTE_KEY_SEED)
    room = ExampleRoom()
    named: dict[str, object] = {}

    def resident_event(name: str, ts: int, **fields: object) -> str:
        pdu = sign_event(room.build(ts, **fields), V12, RESIDENT, local)
        return keep(name, pdu)

    def remote_event(name: str, template: JsonDict, ts: int) -> str:
        # The remote keeps the template's fields, sets its own origin and time, and signs.
        pdu = sign_event(
            {**template, "origin": KNOCKER, "origin_server_ts": ts}, V12, KNOCKER, remote
        )
        return keep(name, pdu)

    def keep(name: str, pdu: JsonDict) -> str:
        event_id = room.accept(pdu)
        named[name], named[f"{name}_id"] = pdu, event_id
        return event_id

    def member_template(name: str, membership: str, ts: int) -> JsonDict:
        keys = (
            get_knock_state_keys(ALICE, V12)
            if membership == "knock"
            else get_membership_state_keys(ALICE, membership, V12)
        )
        state = room.state_events(keys)
        common: dict[str, object] = {
            "room_id": room.room_id,
            "user_id": ALICE,
            "state": state,
            "state_event_ids": {key: room.state[key] for key in state},
            "prev_events": room.newest(),
            "origin": RESIDENT,
            "origin_server_ts": ts,
        }
        template: JsonDict = (
            dict(build_knock_template(V12, **common))  # type: ignore[arg-type]
            if membership == "knock"
            else build_membership_template(V12, membership, **common)  # type: ignore[arg-type]
        )
        named[name] = template
        return template

    create_id = resident_event(
        "create",
        TS + 1,
        sender=ADMIN,
        type="m.room.create",
        state_key="",
        content=build_create_content(V12, ADMIN),
    )
    named["room_id"] = room.room_id
    resident_event(
        "admin_join",
        TS + 2,
        sender=ADMIN,
        type="m.room.member",
        state_key=ADMIN,
        content=build_member_content("join"),
    )
    resident_event(
        "power_levels",
        TS + 3,
        sender=ADMIN,
        type="m.room.power_levels",
        state_key="",
        content=build_power_levels_content(V12, ADMIN),
    )
    resident_event(
        "join_rules",
        TS + 4,
        sender=ADMIN,
        type="m.room.join_rules",
        state_key="",
        content=build_join_rules_content("knock"),
    )
    knock_id = remote_event("knock", member_template("knock_template", "knock", TS + 5), TS + 6)
    # The operator accepts the knock: an invite, countersigned by remote.example (invites-v2).
    invite = room.build(
        TS + 7,
        sender=ADMIN,
        type="m.room.member",
        state_key=ALICE,
        content=build_member_content("invite"),
    )
    invite = sign_event(sign_event(invite, V12, RESIDENT, local), V12, KNOCKER, remote)
    invite_id = keep("invite", invite)
    join_id = remote_event("join", member_template("join_template", "join", TS + 8), TS + 9)
    message_id = remote_event(
        "message",
        room.build(
            TS + 10,
            sender=ALICE,
            type="m.room.message",
            content={"msgtype": "m.text", "body": "Hello from remote.example"},
        ),
        TS + 10,
    )
    # A message by a user who never joined: signed and well formed, refused by the auth rules.
    refused = sign_event(
        room.build(
            TS + 11,
            sender=MALLORY,
            type="m.room.message",
            content={"msgtype": "m.text", "body": "Let me in"},
        )
        | {"origin": KNOCKER},
        V12,
        KNOCKER,
        remote,
    )
    try:
        room.check(refused)
    except MatrixError as exc:
        refusal = f"{exc.errcode}: {exc.message}"
    else:
        raise AssertionError("the refused example message passes the auth rules")
    refused_id = compute_event_id(refused, V12)
    named["refused_message"], named["refused_message_id"] = refused, refused_id
    leave_id = remote_event("leave", member_template("leave_template", "leave", TS + 13), TS + 14)
    old = make_signing_key(OLD_KEY_SEED, "k0")
    named["server_keys"] = build_server_keys(
        RESIDENT,
        local,
        {"ed25519:k0": {"key": encode_base64(old.verify_key.encode()), "expired_ts": TS - 1}},
        TS,
    )

    def pdus(event_ids: list[str]) -> list[JsonDict]:
        return [room.pdus[event_id] for event_id in event_ids]

    join_state = room.state_ids_before(join_id)
    message_state = room.state_ids_before(message_id)
    backfill = [message_id, join_id, invite_id]
    knock, join, message = room.pdus[knock_id], room.pdus[join_id], room.pdus[message_id]
    placements: dict[tuple[str, str], object] = {
        ("make_knock", "200"): {"room_version": "12", "event": named["knock_template"]},
        ("send_knock", "eventId"): knock_id,
        ("send_knock", "body"): knock,
        ("send_knock", "200"): {
            "knock_room_state": pdus([create_id, room.state[("m.room.join_rules", "")]])
        },
        ("make_join", "200"): {"room_version": "12", "event": named["join_template"]},
        ("send_join", "eventId"): join_id,
        ("send_join", "body"): join,
        ("send_join", "200"): {
            "state": pdus(join_state),
            "auth_chain": pdus(room.auth_chain_ids([*join_state, join_id])),
            "event": join,
            "members_omitted": False,
            "servers_in_room": [RESIDENT],
        },
        ("make_leave", "200"): {"room_version": "12", "event": named["leave_template"]},
        ("send_leave", "eventId"): leave_id,
        ("send_leave", "body"): room.pdus[leave_id],
        ("send_transaction", "body"): {
            "origin": KNOCKER,
            "origin_server_ts": TS + 12,
            "pdus": [message, refused],
            "edus": [
                {
                    "edu_type": "m.typing",
                    "content": {"room_id": room.room_id, "user_id": ALICE, "typing": True},
                }
            ],
        },
        ("send_transaction", "200"): {"pdus": {message_id: {}, refused_id: {"error": refusal}}},
        ("get_event", "eventId"): message_id,
        ("get_event", "200"): {"origin": RESIDENT, "origin_server_ts": TS + 20, "pdus": [message]},
        ("get_state", "200"): {
            "pdus": pdus(message_state),
            "auth_chain": pdus(room.auth_chain_ids(message_state)),
        },
        ("get_state_ids", "200"): {
            "pdu_ids": message_state,
            "auth_chain_ids": room.auth_chain_ids(message_state),
        },
        ("get_event_auth", "eventId"): join_id,
        ("get_event_auth", "200"): {"auth_chain": pdus(room.auth_chain_ids([join_id]))},
        ("backfill", "v"): [message_id],
        ("backfill", "limit"): len(backfill),
        ("backfill", "200"): {
            "origin": RESIDENT,
            "origin_server_ts": TS + 20,
            "pdus": pdus(backfill),
        },
        ("get_missing_events", "body"): {
            "earliest_events": [knock_id],
            "latest_events": [message_id],
            "limit": 10,
            "min_depth": 0,
        },
        # Walked back from the message to the knock (skipped), then oldest first.
        ("get_missing_events", "200"): {"events": pdus([invite_id, join_id])},
        ("get_server_keys", "200"): named["server_keys"],
    }
    return Examples(named=named, placements=placements)


def render_block(examples: Examples) -> str:
    """The YAML between the markers: each named value with an anchor of its name."""
    lines = [START]
    for name, value in examples.named.items():
        if isinstance(value, str):
            # A JSON string is a YAML double-quoted scalar ("!" and "$" need no thought).
            lines.append(f"  {name}: &{name} {json.dumps(value)}\n")
            continue
        dumped = yaml.safe_dump(value, sort_keys=True, default_flow_style=False, width=1000)
        lines.append(f"  {name}: &{name}\n")
        lines.extend(f"    {line}\n" for line in dumped.splitlines())
    lines.append(END)
    return "".join(lines)


def replace_block(document: str, block: str) -> str:
    start, end = document.index(START), document.index(END) + len(END)
    return document[:start] + block + document[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the block in the contract")
    mode.add_argument("--check", action="store_true", help="exit 1 when the block is stale")
    args = parser.parse_args(argv)
    block = render_block(build_examples())
    if not (args.write or args.check):
        sys.stdout.write(block)
        return 0
    current = CONTRACT.read_text(encoding="utf-8")
    wanted = replace_block(current, block)
    if args.check:
        if wanted != current:
            print(
                f"{CONTRACT}: examples are stale; run python -m scripts.contract_examples --write"
            )
            return 1
        return 0
    CONTRACT.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
