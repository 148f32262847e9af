"""Print the signed example PDUs of openapi/federation.yaml (run once; paste the output).

The examples are real events of a v12 room on ``knock.example``, hashed and signed with the
fixed test keys of tests/factories.py (LOCAL_KEY_SEED for knock.example, REMOTE_KEY_SEED for
remote.example, both ``ed25519:k1``), so tests/test_contract.py can check their hashes,
signatures and event ids. Usage: ``.venv/bin/python -m scripts.contract_examples``.
"""

import json

from matrix.events import compute_event_id, compute_room_id_v12, sign_event
from matrix.room_events import (
    build_create_content,
    build_event,
    build_join_rules_content,
    build_member_content,
    build_power_levels_content,
)
from matrix.room_versions import get_room_version
from matrix.types import JsonDict
from tests.factories import LOCAL_KEY_SEED, REMOTE_KEY_SEED, make_signing_key

V12 = get_room_version("12")
assert V12 is not None
RESIDENT, KNOCKER = "knock.example", "remote.example"
ADMIN, ALICE = "@admin:knock.example", "@alice:remote.example"
TS = 1790000000000


def build_examples() -> dict[str, object]:
    local, remote = make_signing_key(LOCAL_KEY_SEED), make_signing_key(REMOTE_KEY_SEED)

    def event(room_id: str | None, prev: list[str], auth: list[str], depth: int, **kw) -> JsonDict:
        unsigned = build_event(
            V12,
            room_id=room_id,
            prev_events=prev,
            auth_events=auth,
            depth=depth,
            origin=RESIDENT,
            origin_server_ts=TS + depth,
            **kw,
        )
        return sign_event(unsigned, V12, RESIDENT, local)

    create = event(
        None,
        [],
        [],
        1,
        sender=ADMIN,
        type="m.room.create",
        state_key="",
        content=build_create_content(V12, ADMIN),
    )
    room_id = compute_room_id_v12(create)
    create_id = compute_event_id(create, V12)
    member = event(
        room_id,
        [create_id],
        [],
        2,
        sender=ADMIN,
        type="m.room.member",
        state_key=ADMIN,
        content=build_member_content("join"),
    )
    member_id = compute_event_id(member, V12)
    power = event(
        room_id,
        [member_id],
        [member_id],
        3,
        sender=ADMIN,
        type="m.room.power_levels",
        state_key="",
        content=build_power_levels_content(V12, ADMIN),
    )
    power_id = compute_event_id(power, V12)
    join_rules = event(
        room_id,
        [power_id],
        [power_id, member_id],
        4,
        sender=ADMIN,
        type="m.room.join_rules",
        state_key="",
        content=build_join_rules_content("knock"),
    )
    join_rules_id = compute_event_id(join_rules, V12)
    # make_knock's template: v12 selects power levels and join rules, never the create event.
    template = build_event(
        V12,
        room_id=room_id,
        sender=ALICE,
        type="m.room.member",
        state_key=ALICE,
        content=build_member_content("knock"),
        prev_events=[join_rules_id],
        auth_events=[power_id, join_rules_id],
        depth=5,
        origin=RESIDENT,
        origin_server_ts=TS + 5,
    )
    # The knocking server keeps the template's fields, sets its own origin and time, and signs.
    knock = sign_event(
        {**template, "origin": KNOCKER, "origin_server_ts": TS + 6}, V12, KNOCKER, remote
    )
    return {
        "room_id": room_id,
        "template": template,
        "knock": knock,
        "knock_event_id": compute_event_id(knock, V12),
        "knock_room_state": [create, join_rules],
    }


if __name__ == "__main__":
    print(json.dumps(build_examples(), indent=2, sort_keys=True))
