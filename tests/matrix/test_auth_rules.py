"""Tests for the room auth rules (rooms/v1..v12) and auth events selection (SS §Auth events)."""

import math
from typing import Any

import pytest
from signedjson.key import decode_signing_key_base64
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from matrix.auth_rules import (
    check_auth_events_selection,
    check_auth_rules,
    get_auth_event_keys,
    get_join_rule,
    get_power_level,
)
from matrix.errors import MatrixError
from matrix.events import compute_event_id
from matrix.room_versions import (
    KNOWN_ROOM_VERSIONS,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    V10,
    V11,
    V12,
    EventIdFormat,
    RoomVersion,
)
from matrix.types import JsonDict

HOME = "origin.test"
REMOTE = "remote.test"
CREATOR = f"@creator:{HOME}"
MOD = f"@mod:{HOME}"
ALICE = f"@alice:{HOME}"
BOB = f"@bob:{HOME}"
KNOCKER = f"@knocker:{REMOTE}"
V12_ROOM_ID = "!" + "A" * 43
V12_CREATE_ID = "$" + "A" * 43

ALL_VERSIONS = [pytest.param(rv, id=f"v{rv.identifier}") for rv in KNOWN_ROOM_VERSIONS.values()]


# --- factories -------------------------------------------------------------------------------


def room_id(rv: RoomVersion) -> str:
    return V12_ROOM_ID if rv.room_id_from_create_event else f"!room:{HOME}"


def make_event(
    rv: RoomVersion,
    event_type: str,
    sender: str,
    content: JsonDict,
    state_key: str | None = None,
    **extra: Any,
) -> JsonDict:
    event: JsonDict = {
        "type": event_type,
        "sender": sender,
        "content": content,
        "room_id": room_id(rv),
        "prev_events": ["$prev"],
        "auth_events": [],
        "depth": 5,
        "origin_server_ts": 1,
    }
    if state_key is not None:
        event["state_key"] = state_key
    event.update(extra)
    return event


def make_create(rv: RoomVersion, sender: str = CREATOR, **content: Any) -> JsonDict:
    body: JsonDict = {"room_version": rv.identifier}
    if not rv.implicit_room_creator:
        body["creator"] = sender
    body.update(content)
    event = make_event(rv, "m.room.create", sender, body, "", prev_events=[], depth=1)
    if rv.room_id_from_create_event:
        del event["room_id"]
    if rv.event_id_format is EventIdFormat.V1:
        event["event_id"] = f"$create:{HOME}"  # rooms/v1: the PDU carries its event id
    return event


def reference(rv: RoomVersion, event_id: str) -> object:
    """A prev_events entry: v1/v2 [event_id, hashes] pairs, v3+ bare event ids."""
    if rv.event_id_format is EventIdFormat.V1:
        return [event_id, {"sha256": "A" * 43}]
    return event_id


def create_id(rv: RoomVersion, create: JsonDict) -> str:
    """The create event's id: v12 from the room id, v1/v2 its event_id, v3+ computed."""
    return V12_CREATE_ID if rv.room_id_from_create_event else compute_event_id(create, rv)


def first_join(rv: RoomVersion, create: JsonDict, user: str = CREATOR, **kwargs: Any) -> JsonDict:
    """``user``'s join whose only prev_event is the create event."""
    join = member(rv, user, "join", **kwargs)
    join["prev_events"] = [reference(rv, create_id(rv, create))]
    return join


def member(rv: RoomVersion, user: str, membership: str, sender: str | None = None, **content: Any):
    return make_event(
        rv, "m.room.member", sender or user, {"membership": membership, **content}, user
    )


def power_levels(rv: RoomVersion, users: dict[str, Any] | None = None, **content: Any) -> JsonDict:
    if users is None:
        users = {MOD: 50} if rv.additional_creators else {CREATOR: 100, MOD: 50}
    return make_event(rv, "m.room.power_levels", CREATOR, {"users": users, **content}, "")


def join_rules(rv: RoomVersion, rule: str) -> JsonDict:
    return make_event(rv, "m.room.join_rules", CREATOR, {"join_rule": rule}, "")


def state_of(*events: JsonDict) -> dict[tuple[str, str], JsonDict]:
    return {(e["type"], e["state_key"]): e for e in events}


def room(
    rv: RoomVersion, join_rule: str | None = "public", *members: JsonDict, **pl: Any
) -> dict[tuple[str, str], JsonDict]:
    """A room: create, creator and mod joined, power levels, join rules, plus ``members``."""
    events = [
        make_create(rv),
        member(rv, CREATOR, "join"),
        member(rv, MOD, "join"),
        power_levels(rv, **pl),
    ]
    if join_rule is not None:
        events.append(join_rules(rv, join_rule))
    return state_of(*events, *members)


def check(event: JsonDict, state: Any, rv: RoomVersion, **kwargs: Any) -> None:
    check_auth_rules(event, state, rv, **kwargs)


def assert_forbidden(event: JsonDict, state: Any, rv: RoomVersion, **kwargs: Any) -> None:
    with pytest.raises(MatrixError) as excinfo:
        check_auth_rules(event, state, rv, **kwargs)
    assert excinfo.value.errcode == "M_FORBIDDEN"


def signed_by(*servers: str):
    return lambda server: server in servers


# --- knock: the full table -------------------------------------------------------------------

# Expected outcome per version and join rule, one letter per prior membership of the knocker in
# the order (none, leave, knock, invite, join, ban): A = allowed, R = rejected. Written out from
# knock-digest §5.2: v7-v9 need join rule "knock"; v10+ "knock" or "knock_restricted"; only no
# membership, leave and knock may (re)knock; v1-v6 have no knock membership at all.
PRIOR_MEMBERSHIPS = ("none", "leave", "knock", "invite", "join", "ban")
KNOCK_JOIN_RULES = ("public", "invite", "knock", "restricted", "knock_restricted", "none")
# fmt: off
KNOCK_TABLE: dict[str, tuple[str, ...]] = {
    #      public    invite    knock     restrict  knock_rs  none
    "1":  ("RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR"),
    "2":  ("RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR"),
    "3":  ("RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR"),
    "4":  ("RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR"),
    "5":  ("RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR"),
    "6":  ("RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR", "RRRRRR"),
    "7":  ("RRRRRR", "RRRRRR", "AAARRR", "RRRRRR", "RRRRRR", "RRRRRR"),
    "8":  ("RRRRRR", "RRRRRR", "AAARRR", "RRRRRR", "RRRRRR", "RRRRRR"),
    "9":  ("RRRRRR", "RRRRRR", "AAARRR", "RRRRRR", "RRRRRR", "RRRRRR"),
    "10": ("RRRRRR", "RRRRRR", "AAARRR", "RRRRRR", "AAARRR", "RRRRRR"),
    "11": ("RRRRRR", "RRRRRR", "AAARRR", "RRRRRR", "AAARRR", "RRRRRR"),
    "12": ("RRRRRR", "RRRRRR", "AAARRR", "RRRRRR", "AAARRR", "RRRRRR"),
}
# fmt: on
KNOCK_CASES = [
    pytest.param(version, join_rule, prior, outcome == "A", id=f"v{version}-{join_rule}-{prior}")
    for version, row in KNOCK_TABLE.items()
    for join_rule, outcomes in zip(KNOCK_JOIN_RULES, row, strict=True)
    for prior, outcome in zip(PRIOR_MEMBERSHIPS, outcomes, strict=True)
]


def test_knock_table_has_every_combination():
    assert len(KNOCK_CASES) == 12 * 6 * 6


@pytest.mark.parametrize(("version", "join_rule", "prior", "allowed"), KNOCK_CASES)
def test_knock_auth_rules_table(version, join_rule, prior, allowed):
    rv = KNOWN_ROOM_VERSIONS[version]
    prior_events = [] if prior == "none" else [member(rv, KNOCKER, prior, sender=MOD)]
    state = room(rv, None if join_rule == "none" else join_rule, *prior_events)
    knock = member(rv, KNOCKER, "knock", reason="let me in")
    if allowed:
        check(knock, state, rv)
    else:
        assert_forbidden(knock, state, rv)


@pytest.mark.parametrize("rv", [V7, V10, V12], ids=["v7", "v10", "v12"])
def test_knock_rejected_when_room_not_federated_and_knocker_foreign(rv):
    state = room(rv, "knock")
    create = make_create(rv, **{"m.federate": False})
    state[("m.room.create", "")] = create
    assert_forbidden(member(rv, KNOCKER, "knock"), state, rv, create_event=create)
    check(member(rv, BOB, "knock"), state, rv, create_event=create)


def test_knock_on_behalf_of_another_user_rejected():
    knock = member(V7, KNOCKER, "knock", sender=MOD)
    assert_forbidden(knock, room(V7, "knock"), V7)


def test_knock_with_join_authoriser_needs_authoriser_signature_v8():
    knock = member(V8, KNOCKER, "knock", join_authorised_via_users_server=MOD)
    state = room(V8, "knock")
    assert_forbidden(knock, state, V8)
    assert_forbidden(knock, state, V8, is_signed_by=signed_by(REMOTE))
    check(knock, state, V8, is_signed_by=signed_by(HOME))
    # v7 predates the rule: the key means nothing there
    check(member(V7, KNOCKER, "knock", join_authorised_via_users_server=MOD), room(V7, "knock"), V7)


def test_knock_with_invalid_join_authoriser_rejected():
    knock = member(V9, KNOCKER, "knock", join_authorised_via_users_server="nobody")
    assert_forbidden(knock, room(V9, "knock"), V9, is_signed_by=signed_by(HOME))


def test_knock_v12_uses_separate_create_event():
    state = room(V12, "knock")
    create = state.pop(("m.room.create", ""))
    check(member(V12, KNOCKER, "knock"), state, V12, create_event=create)
    assert_forbidden(member(V12, KNOCKER, "knock"), state, V12)


# --- m.room.create ---------------------------------------------------------------------------


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_create_valid_allowed(rv):
    check(make_create(rv), {}, rv)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_create_with_prev_events_rejected(rv):
    create = make_create(rv)
    create["prev_events"] = ["$x"]
    assert_forbidden(create, {}, rv)


@pytest.mark.parametrize("rv", [V1, V6, V10, V11], ids=["v1", "v6", "v10", "v11"])
def test_create_room_id_domain_must_match_sender(rv):
    create = make_create(rv)
    create["room_id"] = f"!room:{REMOTE}"
    assert_forbidden(create, {}, rv)
    create["room_id"] = "!nodomain"
    assert_forbidden(create, {}, rv)


def test_create_v12_with_room_id_rejected():
    create = make_create(V12)
    create["room_id"] = V12_ROOM_ID
    assert_forbidden(create, {}, V12)


@pytest.mark.parametrize("room_version", ["13", "", 7, None])
def test_create_unknown_room_version_rejected(room_version):
    assert_forbidden(make_create(V10, room_version=room_version), {}, V10)


def test_create_without_room_version_allowed():
    create = make_create(V1)
    del create["content"]["room_version"]
    check(create, {}, V1)


@pytest.mark.parametrize("rv", [V1, V5, V10], ids=["v1", "v5", "v10"])
def test_create_without_creator_rejected_before_v11(rv):
    create = make_create(rv)
    del create["content"]["creator"]
    assert_forbidden(create, {}, rv)


@pytest.mark.parametrize("rv", [V11, V12], ids=["v11", "v12"])
def test_create_without_creator_allowed_from_v11(rv):
    check(make_create(rv), {}, rv)


def test_create_v12_additional_creators_valid():
    check(make_create(V12, additional_creators=[ALICE, f"@bob:{REMOTE}:8448"]), {}, V12)
    check(make_create(V12, additional_creators=[]), {}, V12)


@pytest.mark.parametrize(
    "additional",
    [
        pytest.param(ALICE, id="not-array"),
        pytest.param([ALICE, 5], id="non-string"),
        pytest.param(["alice"], id="no-sigil"),
        pytest.param(["@alice"], id="no-server"),
        pytest.param(["@a\x00b:origin.test"], id="nul-localpart"),
        pytest.param(["@a\ud800b:origin.test"], id="surrogate-localpart"),
        pytest.param(["@al:ice:bad server"], id="bad-server"),
        pytest.param(["@" + "a" * 250 + ":origin.test"], id="too-long"),
    ],
)
def test_create_v12_additional_creators_invalid_rejected(additional):
    assert_forbidden(make_create(V12, additional_creators=additional), {}, V12)


def test_create_v11_ignores_additional_creators():
    check(make_create(V11, additional_creators="junk"), {}, V11)


# APPX §Historical User IDs (v1.14): localparts of any non-surrogate code points except ':' and
# NUL, "including other control characters and the empty string", are accepted.
HISTORICAL_USER_IDS = [
    pytest.param("@al ice:a.test", id="space"),
    pytest.param("@:a.test", id="empty"),
    pytest.param("@ålice:a.test", id="non-ascii"),
    pytest.param("@a\tb:a.test", id="control-char"),
    pytest.param("@" + "é" * 123 + "a:a.test", id="255-bytes"),
]


@pytest.mark.parametrize("user_id", HISTORICAL_USER_IDS)
@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_sender_historical_user_id_allowed(rv, user_id):
    state = room(rv, "public", member(rv, user_id, "join"))
    check(make_event(rv, "m.room.message", user_id, {"body": "hi"}), state, rv)
    check(member(rv, user_id, "leave"), state, rv)


@pytest.mark.parametrize("user_id", HISTORICAL_USER_IDS)
@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_power_levels_users_historical_user_id_allowed(rv, user_id):
    check(power_levels(rv, users={MOD: 50, user_id: 10}), room(rv), rv)


@pytest.mark.parametrize("user_id", HISTORICAL_USER_IDS)
def test_create_v12_additional_creators_historical_user_id_allowed(user_id):
    check(make_create(V12, additional_creators=[ALICE, user_id]), {}, V12)


@pytest.mark.parametrize(
    "sender",
    [
        pytest.param("creator", id="no-sigil"),
        pytest.param("@a\x00b:origin.test", id="nul-localpart"),
        pytest.param("@a\ud800b:origin.test", id="surrogate-localpart"),
        pytest.param("@" + "é" * 124 + ":a.test", id="256-bytes"),
    ],
)
def test_sender_invalid_user_id_rejected(sender):
    state = room(V11, "public", member(V11, sender, "join"))
    assert_forbidden(make_event(V11, "m.room.message", sender, {}), state, V11)


def test_create_with_invalid_sender_rejected():
    create = make_create(V11)
    create["sender"] = "creator"
    assert_forbidden(create, {}, V11)


# --- rules before the per-type ones ----------------------------------------------------------


def test_event_without_create_event_rejected():
    state = room(V10)
    del state[("m.room.create", "")]
    assert_forbidden(make_event(V10, "m.room.message", MOD, {"body": "hi"}), state, V10)


@pytest.mark.parametrize("rv", [V1, V11, V12], ids=["v1", "v11", "v12"])
def test_m_federate_false_blocks_foreign_sender(rv):
    state = room(rv, "public", member(rv, KNOCKER, "join"))
    create = make_create(rv, **{"m.federate": False})
    state[("m.room.create", "")] = create
    message = make_event(rv, "m.room.message", KNOCKER, {"body": "hi"})
    assert_forbidden(message, state, rv)
    check(make_event(rv, "m.room.message", MOD, {"body": "hi"}), state, rv)


def test_m_federate_true_allows_foreign_sender():
    state = room(V10, "public", member(V10, KNOCKER, "join"))
    state[("m.room.create", "")] = make_create(V10, **{"m.federate": True})
    check(make_event(V10, "m.room.message", KNOCKER, {"body": "hi"}), state, V10)


# --- m.room.member: join ---------------------------------------------------------------------


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_creator_first_join_allowed(rv):
    create = make_create(rv)
    check(first_join(rv, create), state_of(create), rv, create_event=create)


# Member rule "If the only previous event is an m.room.create and the state_key is the creator,
# allow" looks at prev_events, whatever the auth state holds besides the create event.
CREATOR_FIRST_JOIN_STATE = [
    pytest.param(lambda rv: member(rv, CREATOR, "ban", sender=MOD), id="creator-banned"),
    pytest.param(lambda rv: join_rules(rv, "invite"), id="invite-rule"),
    pytest.param(lambda rv: join_rules(rv, "private"), id="private-rule"),
]


@pytest.mark.parametrize("extra", CREATOR_FIRST_JOIN_STATE)
@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_creator_first_join_allowed_when_state_has_more(rv, extra):
    create = make_create(rv)
    check(first_join(rv, create), state_of(create, extra(rv)), rv, create_event=create)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_creator_first_join_rejected_when_prev_event_not_create(rv):
    # 4.3.1 does not apply and the join rule (none: invite) does not let the creator in
    create = make_create(rv)
    join = member(rv, CREATOR, "join")
    join["prev_events"] = [reference(rv, f"$other:{HOME}")]
    assert_forbidden(join, state_of(create), rv, create_event=create)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_creator_first_join_by_other_sender_rejected_when_prev_event_not_create(rv):
    create = make_create(rv)
    join = member(rv, CREATOR, "join", sender=ALICE)
    assert_forbidden(join, state_of(create), rv, create_event=create)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_creator_first_join_by_other_sender_allowed_when_prev_event_is_create(rv):
    # 4.3.1 names the state_key and the prev_events only, not the sender
    create = make_create(rv)
    check(first_join(rv, create, sender=ALICE), state_of(create), rv, create_event=create)


@pytest.mark.parametrize("rv", [V1, V2], ids=["v1", "v2"])
def test_join_creator_first_join_v1_v2_prev_event_must_be_a_pair(rv):
    # rooms/v1 §Event format: prev_events are [event_id, hashes] pairs
    create = make_create(rv)
    for prev_event in (create["event_id"], [create["event_id"]], {"0": create["event_id"]}):
        join = member(rv, CREATOR, "join")
        join["prev_events"] = [prev_event]
        assert_forbidden(join, state_of(create), rv)


@pytest.mark.parametrize("rv", [V1, V2], ids=["v1", "v2"])
def test_join_creator_first_join_v1_v2_create_without_event_id_rejected(rv):
    create = make_create(rv)
    join = first_join(rv, create)
    del create["event_id"]
    assert_forbidden(join, state_of(create), rv)


@pytest.mark.parametrize("rv", [V3, V4, V11], ids=["v3", "v4", "v11"])
def test_join_creator_first_join_compares_computed_create_id(rv):
    # rooms/v3, frag/v4-event-ids: the id is the reference hash, so another create is another id
    create = make_create(rv)
    join = first_join(rv, create)
    other = make_create(rv)
    other["origin_server_ts"] += 1
    assert_forbidden(join, state_of(other), rv)


@pytest.mark.parametrize("rv", [V1, V12], ids=["v1", "v12"])
def test_join_first_join_by_non_creator_rejected(rv):
    create = make_create(rv)
    assert_forbidden(first_join(rv, create, ALICE), state_of(create), rv, create_event=create)


def test_join_creator_first_join_needs_exactly_one_prev_event():
    create = make_create(V5)
    only = create_id(V5, create)
    for prev_events in ([only, only], [only, "$b"], only, []):
        join = member(V5, CREATOR, "join")
        join["prev_events"] = prev_events
        assert_forbidden(join, state_of(create), V5)


def test_join_creator_first_join_v12_prev_event_must_be_create():
    create = make_create(V12)
    join = member(V12, CREATOR, "join")
    join["prev_events"] = ["$other"]
    assert_forbidden(join, {}, V12, create_event=create)
    join["prev_events"] = [V12_CREATE_ID]
    join["room_id"] = None
    assert_forbidden(join, {}, V12, create_event=create)


def test_join_creator_not_first_when_state_has_more():
    create = make_create(V11)
    state = state_of(create, member(V11, CREATOR, "leave"))
    join = member(V11, CREATOR, "join")
    join["prev_events"] = ["$x"]
    assert_forbidden(join, state, V11)


def test_join_v1_creator_is_content_creator_not_sender():
    create = make_create(V1)
    create["content"]["creator"] = ALICE
    check(first_join(V1, create, ALICE), state_of(create), V1)
    assert_forbidden(first_join(V1, create), state_of(create), V1)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_public_allowed(rv):
    check(member(rv, ALICE, "join"), room(rv, "public"), rv)


def test_join_on_behalf_of_another_user_rejected():
    assert_forbidden(member(V10, ALICE, "join", sender=MOD), room(V10, "public"), V10)


def test_join_banned_user_rejected():
    state = room(V10, "public", member(V10, ALICE, "ban", sender=MOD))
    assert_forbidden(member(V10, ALICE, "join"), state, V10)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_invite_rule(rv):
    assert_forbidden(member(rv, ALICE, "join"), room(rv, "invite"), rv)
    invited = room(rv, "invite", member(rv, ALICE, "invite", sender=MOD))
    check(member(rv, ALICE, "join"), invited, rv)
    joined = room(rv, "invite", member(rv, ALICE, "join"))
    check(member(rv, ALICE, "join", displayname="A"), joined, rv)


def test_join_knock_rule_needs_invite_from_v7():
    assert_forbidden(member(V7, KNOCKER, "join"), room(V7, "knock"), V7)
    state = room(V7, "knock", member(V7, KNOCKER, "invite", sender=MOD))
    check(member(V7, KNOCKER, "join"), state, V7)
    # v6 does not know the knock rule: nobody can join
    state = room(V6, "knock", member(V6, KNOCKER, "invite", sender=MOD))
    assert_forbidden(member(V6, KNOCKER, "join"), state, V6)


def test_join_without_join_rules_treated_as_invite():
    assert_forbidden(member(V10, ALICE, "join"), room(V10, None), V10)
    state = room(V10, None, member(V10, ALICE, "invite", sender=MOD))
    check(member(V10, ALICE, "join"), state, V10)


@pytest.mark.parametrize(
    "join_rule",
    [
        pytest.param(1, id="integer"),
        pytest.param(None, id="null"),
        pytest.param(True, id="true"),
        pytest.param(["invite"], id="array"),
        pytest.param("Invite", id="other-case"),
    ],
)
@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_unknown_join_rule_rejected_when_invited(rv, join_rule):
    # 4.3.7 v1+ (v1-v5 5.2.6, v12 5.3.7): a join rule that is none of the known strings reaches
    # "Otherwise, reject", even for an invited or joined user
    invited = room(rv, "invite", member(rv, ALICE, "invite", sender=MOD))
    invited[("m.room.join_rules", "")]["content"] = {"join_rule": join_rule}
    assert_forbidden(member(rv, ALICE, "join"), invited, rv)
    joined = {**invited, ("m.room.member", ALICE): member(rv, ALICE, "join")}
    assert_forbidden(member(rv, ALICE, "join"), joined, rv)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_join_rules_without_join_rule_treated_as_invite(rv):
    state = room(rv, "invite", member(rv, ALICE, "invite", sender=MOD))
    state[("m.room.join_rules", "")]["content"] = {}
    check(member(rv, ALICE, "join"), state, rv)
    assert_forbidden(member(rv, BOB, "join"), state, rv)


def test_join_private_rule_rejected():
    assert_forbidden(member(V10, ALICE, "join"), room(V10, "private"), V10)


RESTRICTED_CASES = [
    pytest.param(V8, "restricted", id="v8-restricted"),
    pytest.param(V9, "restricted", id="v9-restricted"),
    pytest.param(V10, "knock_restricted", id="v10-knock_restricted"),
    pytest.param(V12, "restricted", id="v12-restricted"),
    pytest.param(V12, "knock_restricted", id="v12-knock_restricted"),
]


@pytest.mark.parametrize(("rv", "rule"), RESTRICTED_CASES)
def test_join_restricted_with_signed_authoriser_allowed(rv, rule):
    join = member(rv, KNOCKER, "join", join_authorised_via_users_server=MOD)
    check(join, room(rv, rule), rv, is_signed_by=signed_by(HOME))


@pytest.mark.parametrize(("rv", "rule"), RESTRICTED_CASES)
def test_join_restricted_without_authoriser_signature_rejected(rv, rule):
    join = member(rv, KNOCKER, "join", join_authorised_via_users_server=MOD)
    assert_forbidden(join, room(rv, rule), rv)
    assert_forbidden(join, room(rv, rule), rv, is_signed_by=signed_by(REMOTE))


@pytest.mark.parametrize(("rv", "rule"), RESTRICTED_CASES)
def test_join_restricted_without_authoriser_rejected(rv, rule):
    assert_forbidden(member(rv, KNOCKER, "join"), room(rv, rule), rv)


@pytest.mark.parametrize(("rv", "rule"), RESTRICTED_CASES)
def test_join_restricted_when_invited_needs_no_authoriser(rv, rule):
    state = room(rv, rule, member(rv, KNOCKER, "invite", sender=MOD))
    check(member(rv, KNOCKER, "join"), state, rv)


def test_join_restricted_authoriser_must_be_joined():
    join = member(V9, KNOCKER, "join", join_authorised_via_users_server=ALICE)
    assert_forbidden(join, room(V9, "restricted"), V9, is_signed_by=signed_by(HOME))
    state = room(V9, "restricted", member(V9, ALICE, "leave"))
    assert_forbidden(join, state, V9, is_signed_by=signed_by(HOME))


def test_join_restricted_authoriser_needs_invite_power():
    state = room(V10, "restricted", member(V10, ALICE, "join"), invite=10)
    join = member(V10, KNOCKER, "join", join_authorised_via_users_server=ALICE)
    assert_forbidden(join, state, V10, is_signed_by=signed_by(HOME))
    join = member(V10, KNOCKER, "join", join_authorised_via_users_server=MOD)
    check(join, state, V10, is_signed_by=signed_by(HOME))


@pytest.mark.parametrize(
    ("rv", "rule"),
    [
        pytest.param(V7, "restricted", id="v7-restricted"),
        pytest.param(V9, "knock_restricted", id="v9-knock_restricted"),
    ],
)
def test_join_restricted_rules_unknown_before_their_version(rv, rule):
    join = member(rv, KNOCKER, "join", join_authorised_via_users_server=MOD)
    assert_forbidden(join, room(rv, rule), rv, is_signed_by=signed_by(HOME))


# --- m.room.member: invite -------------------------------------------------------------------


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_invite_by_joined_member_allowed(rv):
    check(member(rv, KNOCKER, "invite", sender=MOD), room(rv, "invite"), rv)


def test_invite_accepts_a_knock():
    state = room(V10, "knock", member(V10, KNOCKER, "knock"))
    check(member(V10, KNOCKER, "invite", sender=MOD), state, V10)


def test_invite_by_non_member_rejected():
    assert_forbidden(member(V10, KNOCKER, "invite", sender=ALICE), room(V10), V10)


@pytest.mark.parametrize("membership", ["join", "ban"])
def test_invite_of_joined_or_banned_user_rejected(membership):
    state = room(V10, "invite", member(V10, KNOCKER, membership, sender=MOD))
    assert_forbidden(member(V10, KNOCKER, "invite", sender=MOD), state, V10)


def test_invite_below_invite_level_rejected():
    state = room(V10, "invite", member(V10, ALICE, "join"), invite=10)
    assert_forbidden(member(V10, KNOCKER, "invite", sender=ALICE), state, V10)
    check(member(V10, KNOCKER, "invite", sender=MOD), state, V10)


# 4.4.1 v1+ (v1-v5 5.3.1, v12 5.4.1): third-party invites. The identity server's key signs
# content.third_party_invite.signed; its public keys are in the m.room.third_party_invite event.
TPI_KEY = decode_signing_key_base64("ed25519", "0", encode_base64(b"\x01" * 32))
OTHER_KEY = decode_signing_key_base64("ed25519", "0", encode_base64(b"\x02" * 32))
TPI_PUBLIC = encode_base64(TPI_KEY.verify_key.encode())
OTHER_PUBLIC = encode_base64(OTHER_KEY.verify_key.encode())
TOKEN = "tok"


def tpi_event(rv: RoomVersion, sender: str = MOD, **content: Any) -> JsonDict:
    body = {"display_name": "k…", "key_validity_url": "https://id.test/v", **content}
    if "public_key" not in content:
        body["public_key"] = TPI_PUBLIC
    return make_event(rv, "m.room.third_party_invite", sender, body, TOKEN)


def signed_block(mxid: str = KNOCKER, token: object = TOKEN, key=TPI_KEY, **extra: Any) -> JsonDict:
    return sign_json({"mxid": mxid, "token": token, **extra}, "id.test", key)


def tpi_invite(rv: RoomVersion, third_party_invite: object, sender: str = MOD) -> JsonDict:
    return member(rv, KNOCKER, "invite", sender=sender, third_party_invite=third_party_invite)


def tpi_room(rv: RoomVersion, *events: JsonDict, **tpi_content: Any):
    return room(rv, "invite", tpi_event(rv, **tpi_content), *events)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_invite_third_party_signed_by_public_key_allowed(rv):
    invite = tpi_invite(rv, {"display_name": "k…", "signed": signed_block()})
    check(invite, tpi_room(rv), rv)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_invite_third_party_signed_by_public_keys_entry_allowed(rv):
    # 4.4.1.7.2: "A list of public keys in the public_keys property"
    public_keys = [{"public_key": "not base64!"}, "junk", {"public_key": TPI_PUBLIC}]
    state = tpi_room(rv, public_key=OTHER_PUBLIC, public_keys=public_keys)
    check(tpi_invite(rv, {"signed": signed_block()}), state, rv)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_invite_third_party_url_safe_or_padded_public_key_allowed(rv):
    # CS m.room.third_party_invite: unpadded base64, standard or URL-safe alphabet
    key = decode_signing_key_base64("ed25519", "0", encode_base64(b"\xfb" * 32))
    public = encode_base64(key.verify_key.encode(), urlsafe=True)
    state = tpi_room(rv, public_key=public + "=")
    check(tpi_invite(rv, {"signed": signed_block(key=key)}), state, rv)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_invite_third_party_skips_inviter_membership_and_level(rv):
    # 4.4.1 allows or rejects on its own: 4.4.2-4.4.4 are not reached
    state = tpi_room(rv, invite=100)
    state[("m.room.member", MOD)] = member(rv, MOD, "leave")
    check(tpi_invite(rv, {"signed": signed_block()}), state, rv)


THIRD_PARTY_INVITE_REJECTIONS = [
    pytest.param(lambda: None, {}, id="not-an-object"),
    pytest.param(lambda: {"display_name": "k"}, {}, id="no-signed"),
    pytest.param(lambda: {"signed": "junk"}, {}, id="signed-not-an-object"),
    pytest.param(
        lambda: {"signed": sign_json({"token": TOKEN}, "id.test", TPI_KEY)}, {}, id="no-mxid"
    ),
    pytest.param(
        lambda: {"signed": sign_json({"mxid": KNOCKER}, "id.test", TPI_KEY)}, {}, id="no-token"
    ),
    pytest.param(lambda: {"signed": signed_block(mxid=ALICE)}, {}, id="mxid-not-state-key"),
    pytest.param(lambda: {"signed": signed_block(token="other")}, {}, id="unknown-token"),
    pytest.param(lambda: {"signed": signed_block(token=5)}, {}, id="token-not-a-string"),
    pytest.param(lambda: {"signed": signed_block(key=OTHER_KEY)}, {}, id="other-key"),
    pytest.param(lambda: {"signed": {**signed_block(), "extra": 1}}, {}, id="tampered"),
    pytest.param(lambda: {"signed": {"mxid": KNOCKER, "token": TOKEN}}, {}, id="unsigned"),
    pytest.param(
        lambda: {"signed": {**signed_block(), "signatures": "junk"}}, {}, id="signatures-junk"
    ),
    pytest.param(
        lambda: {"signed": {**signed_block(), "signatures": {"id.test": "junk"}}},
        {},
        id="server-signatures-junk",
    ),
    pytest.param(
        lambda: {"signed": {**signed_block(), "signatures": {"id.test": {"ed25519:0": 5}}}},
        {},
        id="signature-not-a-string",
    ),
    pytest.param(
        lambda: {"signed": {**signed_block(), "signatures": {"id.test": {"ed25519:0": "!!"}}}},
        {},
        id="signature-not-base64",
    ),
    pytest.param(
        lambda: {
            "signed": {
                **signed_block(),
                "signatures": {
                    "id.test": {
                        "curve25519:0": signed_block()["signatures"]["id.test"]["ed25519:0"]
                    }
                },
            }
        },
        {},
        id="not-an-ed25519-signature",
    ),
    pytest.param(lambda: {"signed": signed_block()}, {"public_key": "ab"}, id="short-public-key"),
    pytest.param(lambda: {"signed": signed_block()}, {"public_key": "é"}, id="non-ascii-key"),
    pytest.param(lambda: {"signed": signed_block()}, {"public_key": None}, id="no-public-key"),
]


@pytest.mark.parametrize(("third_party_invite", "tpi_content"), THIRD_PARTY_INVITE_REJECTIONS)
@pytest.mark.parametrize("rv", [V1, V3, V7, V10, V12], ids=["v1", "v3", "v7", "v10", "v12"])
def test_invite_third_party_rejected_when_malformed(rv, third_party_invite, tpi_content):
    assert_forbidden(tpi_invite(rv, third_party_invite()), tpi_room(rv, **tpi_content), rv)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_invite_third_party_rejected_when_target_banned(rv):
    # 4.4.1.1: "If target user is banned, reject"
    state = tpi_room(rv, member(rv, KNOCKER, "ban", sender=MOD))
    assert_forbidden(tpi_invite(rv, {"signed": signed_block()}), state, rv)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_invite_third_party_rejected_when_sender_not_invite_sender(rv):
    # 4.4.1.6: "If sender does not match sender of the m.room.third_party_invite, reject"
    state = tpi_room(rv, member(rv, ALICE, "join"))
    assert_forbidden(tpi_invite(rv, {"signed": signed_block()}, sender=ALICE), state, rv)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_invite_third_party_rejected_without_third_party_invite_event(rv):
    # 4.4.1.5: no m.room.third_party_invite with the token as state key
    assert_forbidden(tpi_invite(rv, {"signed": signed_block()}), room(rv, "invite"), rv)


# --- m.room.member: leave and kick -----------------------------------------------------------


@pytest.mark.parametrize("prior", ["join", "invite"])
@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_leave_self_from_join_or_invite_allowed(rv, prior):
    state = room(rv, "invite", member(rv, ALICE, prior, sender=MOD))
    check(member(rv, ALICE, "leave"), state, rv)


@pytest.mark.parametrize("rv", [V7, V10, V12], ids=["v7", "v10", "v12"])
def test_leave_self_from_knock_retracts_knock(rv):
    state = room(rv, "knock", member(rv, KNOCKER, "knock"))
    check(member(rv, KNOCKER, "leave"), state, rv)


def test_leave_self_from_knock_rejected_before_v7():
    state = room(V6, "knock", member(V6, KNOCKER, "knock"))
    assert_forbidden(member(V6, KNOCKER, "leave"), state, V6)


@pytest.mark.parametrize("prior", ["none", "leave", "ban"])
def test_leave_self_from_other_memberships_rejected(prior):
    extra = [] if prior == "none" else [member(V10, ALICE, prior, sender=MOD)]
    assert_forbidden(member(V10, ALICE, "leave"), room(V10, "public", *extra), V10)


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_kick_by_moderator_allowed(rv):
    state = room(rv, "public", member(rv, ALICE, "join"))
    check(member(rv, ALICE, "leave", sender=MOD), state, rv)


def test_kick_denies_a_knock():
    state = room(V10, "knock", member(V10, KNOCKER, "knock"))
    check(member(V10, KNOCKER, "leave", sender=MOD), state, V10)


def test_kick_by_non_member_rejected():
    state = room(V10, "public", member(V10, ALICE, "join"))
    assert_forbidden(member(V10, ALICE, "leave", sender=BOB), state, V10)


def test_kick_below_kick_level_rejected():
    state = room(V10, "public", member(V10, ALICE, "join"), kick=60)
    assert_forbidden(member(V10, ALICE, "leave", sender=MOD), state, V10)


@pytest.mark.parametrize("rv", [V10, V12], ids=["v10", "v12"])
def test_kick_of_equal_or_higher_user_rejected(rv):
    users = {MOD: 50, ALICE: 50} if rv.additional_creators else {CREATOR: 100, MOD: 50, ALICE: 50}
    state = room(rv, "public", member(rv, ALICE, "join"), users=users)
    assert_forbidden(member(rv, ALICE, "leave", sender=MOD), state, rv)
    assert_forbidden(member(rv, CREATOR, "leave", sender=MOD), state, rv)


def test_unban_needs_ban_level():
    state = room(V10, "public", member(V10, ALICE, "ban", sender=MOD), ban=60)
    assert_forbidden(member(V10, ALICE, "leave", sender=MOD), state, V10)
    check(member(V10, ALICE, "leave", sender=CREATOR), state, V10)


# --- m.room.member: ban ----------------------------------------------------------------------


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_ban_by_moderator_allowed(rv):
    check(member(rv, KNOCKER, "ban", sender=MOD), room(rv), rv)


def test_ban_by_non_member_rejected():
    assert_forbidden(member(V10, KNOCKER, "ban", sender=ALICE), room(V10), V10)


def test_ban_below_ban_level_rejected():
    assert_forbidden(member(V10, KNOCKER, "ban", sender=MOD), room(V10, ban=51), V10)


def test_ban_of_creator_rejected_v12():
    assert_forbidden(member(V12, CREATOR, "ban", sender=MOD), room(V12), V12)


# --- m.room.member: malformed ----------------------------------------------------------------


def test_member_unknown_membership_rejected():
    assert_forbidden(member(V10, ALICE, "wave"), room(V10), V10)


def test_member_without_membership_or_state_key_rejected():
    event = member(V10, ALICE, "join")
    del event["content"]["membership"]
    assert_forbidden(event, room(V10), V10)
    event = member(V10, ALICE, "join")
    del event["state_key"]
    assert_forbidden(event, room(V10), V10)
    event = member(V10, ALICE, "join")
    event["content"] = "join"
    assert_forbidden(event, room(V10), V10)


# --- m.room.power_levels ---------------------------------------------------------------------


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_power_levels_first_event_allowed(rv):
    state = room(rv)
    del state[("m.room.power_levels", "")]
    check(power_levels(rv, ban=100, events={"m.room.name": 10}), state, rv)


@pytest.mark.parametrize(
    ("rv", "value", "allowed"),
    [
        pytest.param(V1, "75", True, id="v1-string"),
        pytest.param(V9, " +075 ", True, id="v9-padded-string"),
        pytest.param(V9, "-5", True, id="v9-negative-string"),
        pytest.param(V9, "1_000", False, id="v9-underscore-string"),
        pytest.param(V9, "7.5", False, id="v9-decimal-string"),
        pytest.param(V10, "75", False, id="v10-string"),
        pytest.param(V12, "75", False, id="v12-string"),
        pytest.param(V1, 75.9, True, id="v1-float"),
        pytest.param(V5, 1e1, True, id="v5-float"),
        pytest.param(V5, math.inf, False, id="v5-infinity"),
        pytest.param(V5, math.nan, False, id="v5-nan"),
        pytest.param(V6, 75.0, False, id="v6-float"),
        pytest.param(V10, True, False, id="v10-bool"),
        pytest.param(V3, None, False, id="v3-null"),
        pytest.param(V10, 75, True, id="v10-int"),
    ],
)
def test_power_levels_value_types(rv, value, allowed):
    for content in ({"ban": value}, {"events": {"m.room.name": value}}, {"users": {ALICE: value}}):
        event = power_levels(rv, **content)
        if allowed:
            check(event, room(rv), rv)
        else:
            assert_forbidden(event, room(rv), rv)


def test_power_levels_notifications_checked_from_v6():
    assert_forbidden(power_levels(V6, notifications={"room": "x"}), room(V6), V6)
    check(power_levels(V5, notifications={"room": "x"}), room(V5), V5)
    assert_forbidden(power_levels(V10, notifications={"room": "50"}), room(V10), V10)


@pytest.mark.parametrize("key", ["events", "users", "notifications"])
def test_power_levels_maps_must_be_objects(key):
    assert_forbidden(power_levels(V10, **{key: [1]}), room(V10), V10)


@pytest.mark.parametrize(
    "user_id",
    [
        pytest.param("alice", id="no-sigil"),
        pytest.param("@alice", id="no-server"),
        pytest.param("@a\x00b:origin.test", id="nul-localpart"),
        pytest.param("@a\udc00b:origin.test", id="surrogate-localpart"),
        pytest.param("@alice:bad server", id="bad-server"),
        pytest.param("@" + "a" * 250 + ":origin.test", id="over-255-bytes"),
    ],
)
def test_power_levels_users_keys_must_be_user_ids(user_id):
    assert_forbidden(power_levels(V10, users={user_id: 10}), room(V10), V10)


@pytest.mark.parametrize("creator", [CREATOR, ALICE], ids=["sender", "additional"])
def test_power_levels_v12_creators_cannot_be_listed(creator):
    state = room(V12)
    create = make_create(V12, additional_creators=[ALICE])
    state[("m.room.create", "")] = create
    assert_forbidden(power_levels(V12, users={creator: 100}), state, V12)
    check(power_levels(V12, users={BOB: 100}), state, V12)


def test_power_levels_v11_creator_may_be_listed():
    check(power_levels(V11, users={CREATOR: 100}), room(V11), V11)


def test_power_levels_sender_needs_state_level():
    state = room(V10, "public", member(V10, ALICE, "join"), users={CREATOR: 100, ALICE: 10})
    event = make_event(V10, "m.room.power_levels", ALICE, {"users": {CREATOR: 100}}, "")
    assert_forbidden(event, state, V10)


@pytest.mark.parametrize("rv", [V10, V12], ids=["v10", "v12"])
def test_power_levels_top_level_changes_within_sender_level(rv):
    def mod_sets(**content):
        users = {MOD: 50} if rv.additional_creators else {CREATOR: 100, MOD: 50}
        return make_event(rv, "m.room.power_levels", MOD, {"users": users, **content}, "")

    state = room(rv, events={"m.room.power_levels": 50})
    check(mod_sets(events={"m.room.power_levels": 50}, kick=40), state, rv)
    # new value above the sender's level
    assert_forbidden(mod_sets(events={"m.room.power_levels": 50}, kick=60), state, rv)
    # current value above the sender's level
    state = room(rv, events={"m.room.power_levels": 50}, ban=70)
    assert_forbidden(mod_sets(events={"m.room.power_levels": 50}), state, rv)
    check(mod_sets(events={"m.room.power_levels": 50}, ban=70), state, rv)


def test_power_levels_events_entries_within_sender_level():
    def mod_sets(events):
        return make_event(
            V10,
            "m.room.power_levels",
            MOD,
            {"users": {CREATOR: 100, MOD: 50}, "events": events},
            "",
        )

    state = room(V10, events={"m.room.power_levels": 50, "m.room.name": 60, "m.room.topic": 10})
    base = {"m.room.power_levels": 50, "m.room.name": 60}
    check(mod_sets({**base, "m.room.topic": 20}), state, V10)  # changed within reach
    check(mod_sets(base), state, V10)  # removed within reach
    check(mod_sets({**base, "m.room.topic": 10, "m.room.avatar": 50}), state, V10)  # added
    assert_forbidden(mod_sets({**base, "m.room.topic": 10, "m.room.avatar": 51}), state, V10)
    # changing or removing an entry above the sender
    assert_forbidden(mod_sets({"m.room.power_levels": 50, "m.room.topic": 10}), state, V10)
    assert_forbidden(
        mod_sets({"m.room.power_levels": 50, "m.room.name": 40, "m.room.topic": 10}), state, V10
    )


def test_power_levels_notifications_entries_within_sender_level():
    def mod_sets(rv, notifications):
        content = {
            "users": {CREATOR: 100, MOD: 50},
            "events": {"m.room.power_levels": 50},
            "notifications": notifications,
        }
        return make_event(rv, "m.room.power_levels", MOD, content, "")

    for rv in (V5, V6):
        state = room(rv, events={"m.room.power_levels": 50}, notifications={"room": 80})
        if rv is V5:
            check(mod_sets(rv, {"room": 10}), state, rv)  # v1-v5 ignore notifications
        else:
            assert_forbidden(mod_sets(rv, {"room": 10}), state, rv)


def test_power_levels_users_changes():
    def sets(sender, users):
        return make_event(V10, "m.room.power_levels", sender, {"users": users}, "")

    state = room(
        V10,
        "public",
        member(V10, ALICE, "join"),
        member(V10, BOB, "join"),
        users={CREATOR: 100, MOD: 50, ALICE: 50, BOB: 10},
        events={"m.room.power_levels": 50},
    )
    everyone = {CREATOR: 100, MOD: 50, ALICE: 50, BOB: 10}
    check(sets(MOD, everyone), state, V10)  # nothing changes
    check(sets(MOD, {**everyone, BOB: 40}), state, V10)  # raise a lower user up to own level
    check(sets(MOD, {**everyone, BOB: 50}), state, V10)
    check(sets(MOD, {**everyone, MOD: 20}), state, V10)  # demote oneself
    assert_forbidden(sets(MOD, {**everyone, BOB: 51}), state, V10)  # above own level
    assert_forbidden(sets(MOD, {**everyone, ALICE: 10}), state, V10)  # demote an equal
    others = dict(everyone)
    del others[ALICE]
    assert_forbidden(sets(MOD, others), state, V10)  # remove an equal
    check(sets(CREATOR, others), state, V10)
    assert_forbidden(sets(MOD, {**everyone, MOD: 60}), state, V10)  # promote oneself


def test_power_levels_v12_creator_can_change_anything():
    state = room(V12, users={MOD: 50}, ban=100)
    check(power_levels(V12, users={MOD: 1000}, ban=9000), state, V12)


def test_power_levels_stringy_old_value_equal_to_new_is_no_change_v9():
    state = room(
        V9,
        "public",
        member(V9, ALICE, "join"),
        users={ALICE: 40},
        ban="60",
        events={"m.room.power_levels": 0},
    )
    event = make_event(
        V9,
        "m.room.power_levels",
        ALICE,
        {"users": {ALICE: 40}, "ban": 60, "events": {"m.room.power_levels": "0"}},
        "",
    )
    check(event, state, V9)


def test_power_levels_unreadable_old_entries_are_ignored_v9():
    events = {"m.room.power_levels": 50, "m.room.name": "high"}
    state = room(V9, events=events, users={CREATOR: 100, MOD: "junk"})
    check(power_levels(V9, events={"m.room.power_levels": 50}, users={CREATOR: 100}), state, V9)


V1_TO_V9 = [p for p in ALL_VERSIONS if not p.values[0].integer_only_power_levels]
V10_ON = [p for p in ALL_VERSIONS if p.values[0].integer_only_power_levels]


def without_power_levels(rv: RoomVersion) -> dict[tuple[str, str], JsonDict]:
    state = room(rv)
    del state[("m.room.power_levels", "")]
    return state


def power_levels_event(rv: RoomVersion, content: JsonDict) -> JsonDict:
    return make_event(rv, "m.room.power_levels", CREATOR, content, "")


@pytest.mark.parametrize("first", [True, False], ids=["first", "later"])
@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_power_levels_users_null_rejected(rv, first):
    # 9.3 v10+ (v1-v9 10.1): "If the users property in content is not an object ... reject";
    # null is not an object, only a missing key means no users
    state = without_power_levels(rv) if first else room(rv)
    assert_forbidden(power_levels_event(rv, {"users": None}), state, rv)


@pytest.mark.parametrize("first", [True, False], ids=["first", "later"])
@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_power_levels_users_missing_allowed(rv, first):
    state = without_power_levels(rv) if first else room(rv)
    check(power_levels_event(rv, {"ban": 50}), state, rv)


@pytest.mark.parametrize("first", [True, False], ids=["first", "later"])
@pytest.mark.parametrize("key", ["events", "notifications"])
@pytest.mark.parametrize("rv", V10_ON)
def test_power_levels_events_or_notifications_null_rejected_from_v10(rv, key, first):
    # 9.2 v10+: "If either of the properties events or notifications in content are present
    # and not an object with values that are integers, reject"
    state = without_power_levels(rv) if first else room(rv)
    assert_forbidden(power_levels(rv, **{key: None}), state, rv)
    check(power_levels(rv, **{key: {}}), state, rv)


# v1-v9 10.1 checks users only; 10.2 "If there is no previous m.room.power_levels event in the
# room, allow". The integer checks on the other properties are v10's 9.1 and 9.2.
FIRST_POWER_LEVELS_OUTSIDE_USERS = [
    pytest.param({"invite": True}, id="invite-true"),
    pytest.param({"events": "x"}, id="events-string"),
    pytest.param({"state_default": "5e1"}, id="state_default-exponent"),
    pytest.param({"ban": None}, id="ban-null"),
    pytest.param({"events": None}, id="events-null"),
    pytest.param({"events": {"m.room.name": "x"}}, id="events-entry-string"),
    pytest.param({"notifications": {"room": [50]}}, id="notifications-entry-array"),
]


@pytest.mark.parametrize("content", FIRST_POWER_LEVELS_OUTSIDE_USERS)
@pytest.mark.parametrize("rv", V1_TO_V9)
def test_power_levels_first_event_v1_to_v9_allowed_outside_users(rv, content):
    check(power_levels(rv, **content), without_power_levels(rv), rv)


@pytest.mark.parametrize("content", FIRST_POWER_LEVELS_OUTSIDE_USERS)
@pytest.mark.parametrize("rv", V10_ON)
def test_power_levels_first_event_from_v10_rejected_outside_users(rv, content):
    if "notifications" in content:
        content = {"events": content["notifications"]}  # the same 9.2 check
    assert_forbidden(power_levels(rv, **content), without_power_levels(rv), rv)


@pytest.mark.parametrize("content", FIRST_POWER_LEVELS_OUTSIDE_USERS)
@pytest.mark.parametrize("rv", V1_TO_V9)
def test_power_levels_later_event_v1_to_v9_unreadable_change_rejected(rv, content):
    # 10.3-10.5: an added or changed value that is no power level cannot be weighed against the
    # sender's level (v1-v5 have no notifications rule, so that change is not looked at)
    if "notifications" in content and rv.special_case_aliases_auth:
        check(power_levels(rv, **content), room(rv), rv)
    else:
        assert_forbidden(power_levels(rv, **content), room(rv), rv)


@pytest.mark.parametrize("rv", V1_TO_V9)
def test_power_levels_later_event_v1_to_v9_unchanged_unreadable_value_allowed(rv):
    # 10.3-10.5 weigh alterations only: a value carried over unchanged is not looked at
    state = room(rv, invite="x", events={"m.room.name": "x"})
    check(power_levels(rv, invite="x", events={"m.room.name": "x"}), state, rv)


@pytest.mark.parametrize("rv", V1_TO_V9)
def test_power_levels_later_event_v1_to_v9_true_is_not_one(rv):
    # JSON true and 1 are different values: replacing one with the other is an alteration
    state = room(rv, invite=1)
    assert_forbidden(power_levels(rv, invite=True), state, rv)


# --- get_power_level -------------------------------------------------------------------------


@pytest.mark.parametrize("rv", [V1, V10, V11], ids=["v1", "v10", "v11"])
def test_get_power_level_without_power_levels_creator_has_100(rv):
    state = state_of(make_create(rv))
    assert get_power_level(CREATOR, state, rv) == 100
    assert get_power_level(ALICE, state, rv) == 0


def test_get_power_level_v12_creators_infinite():
    create = make_create(V12, additional_creators=[ALICE])
    assert get_power_level(CREATOR, {}, V12, create) == math.inf
    assert get_power_level(ALICE, {}, V12, create) == math.inf
    assert get_power_level(BOB, {}, V12, create) == 0
    assert get_power_level(CREATOR, room(V12), V12) == math.inf
    assert get_power_level(MOD, room(V12), V12) == 50


def test_get_power_level_without_create_event():
    assert get_power_level(CREATOR, {}, V10) == 0
    assert get_power_level(CREATOR, {}, V12) == 0


def test_get_power_level_users_default():
    state = room(V10, users_default=5)
    assert get_power_level(ALICE, state, V10) == 5
    assert get_power_level(ALICE, room(V10), V10) == 0
    assert get_power_level(ALICE, room(V10, users="junk", users_default=7), V10) == 7


def test_get_power_level_stringy():
    assert get_power_level(ALICE, room(V9, users={ALICE: "42"}), V9) == 42
    assert get_power_level(ALICE, room(V10, users={ALICE: "42"}), V10) == 0
    assert get_power_level(ALICE, room(V2, users={ALICE: 4.7}), V2) == 4


# --- m.room.join_rules, m.room.server_acl, generic events ------------------------------------


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_join_rules_change_needs_state_level(rv):
    state = room(rv, "public", member(rv, ALICE, "join"))
    check(make_event(rv, "m.room.join_rules", MOD, {"join_rule": "invite"}, ""), state, rv)
    event = make_event(rv, "m.room.join_rules", ALICE, {"join_rule": "invite"}, "")
    assert_forbidden(event, state, rv)
    outsider = make_event(rv, "m.room.join_rules", BOB, {"join_rule": "invite"}, "")
    assert_forbidden(outsider, state, rv)


def test_server_acl_needs_state_level():
    state = room(V10, "public", member(V10, ALICE, "join"), events={"m.room.server_acl": 100})
    acl = {"allow": ["*"], "deny": ["evil.test"], "allow_ip_literals": False}
    check(make_event(V10, "m.room.server_acl", CREATOR, acl, ""), state, V10)
    assert_forbidden(make_event(V10, "m.room.server_acl", MOD, acl, ""), state, V10)


def test_message_by_joined_member_allowed():
    state = room(V10, "public", member(V10, ALICE, "join"))
    check(make_event(V10, "m.room.message", ALICE, {"body": "hi"}), state, V10)


def test_message_by_non_member_rejected():
    state = room(V10, "public", member(V10, ALICE, "invite", sender=MOD))
    assert_forbidden(make_event(V10, "m.room.message", ALICE, {"body": "hi"}), state, V10)


def test_message_events_level_overrides_default():
    state = room(V10, "public", member(V10, ALICE, "join"), events={"m.room.message": 10})
    assert_forbidden(make_event(V10, "m.room.message", ALICE, {"body": "hi"}), state, V10)
    state = room(V10, "public", member(V10, ALICE, "join"), events={"m.room.topic": 100})
    check(make_event(V10, "m.room.message", ALICE, {"body": "hi"}), state, V10)
    state = room(V10, "public", member(V10, ALICE, "join"), events_default=1)
    assert_forbidden(make_event(V10, "m.room.message", ALICE, {"body": "hi"}), state, V10)


def test_state_event_without_power_levels_needs_50():
    create = make_create(V10)
    state = state_of(create, member(V10, CREATOR, "join"), member(V10, ALICE, "join"))
    check(make_event(V10, "m.room.topic", CREATOR, {"topic": "t"}, ""), state, V10)
    assert_forbidden(make_event(V10, "m.room.topic", ALICE, {"topic": "t"}, ""), state, V10)
    check(make_event(V10, "m.room.message", ALICE, {"body": "hi"}), state, V10)


def test_state_key_of_another_user_rejected():
    state = room(V10, "public", member(V10, ALICE, "join"), state_default=0)
    check(make_event(V10, "org.example.status", ALICE, {}, ALICE), state, V10)
    assert_forbidden(make_event(V10, "org.example.status", ALICE, {}, BOB), state, V10)
    check(make_event(V10, "org.example.status", ALICE, {}, "plain"), state, V10)


@pytest.mark.parametrize("rv", [V1, V5], ids=["v1", "v5"])
def test_aliases_v1_to_v5_need_sender_server_as_state_key(rv):
    state = room(rv)
    check(make_event(rv, "m.room.aliases", ALICE, {"aliases": []}, HOME), state, rv)
    assert_forbidden(make_event(rv, "m.room.aliases", ALICE, {"aliases": []}, REMOTE), state, rv)
    assert_forbidden(make_event(rv, "m.room.aliases", ALICE, {"aliases": []}), state, rv)


def test_aliases_v6_are_ordinary_state():
    state = room(V6, "public", member(V6, ALICE, "join"))
    assert_forbidden(make_event(V6, "m.room.aliases", ALICE, {"aliases": []}, HOME), state, V6)
    check(make_event(V6, "m.room.aliases", MOD, {"aliases": []}, HOME), state, V6)


def test_third_party_invite_needs_invite_level():
    state = room(V10, "invite", member(V10, ALICE, "join"), invite=20)
    tpi = {"display_name": "k", "key_validity_url": "https://x", "public_key": "abc"}
    check(make_event(V10, "m.room.third_party_invite", MOD, tpi, "token"), state, V10)
    assert_forbidden(make_event(V10, "m.room.third_party_invite", ALICE, tpi, "token"), state, V10)


@pytest.mark.parametrize("rv", [V1, V2], ids=["v1", "v2"])
def test_redaction_v1_v2_by_level_or_same_server(rv):
    state = room(rv, "public", member(rv, ALICE, "join"), member(rv, KNOCKER, "join"))

    def redaction(sender, redacts, event_id):
        return make_event(rv, "m.room.redaction", sender, {}, redacts=redacts, event_id=event_id)

    check(redaction(MOD, f"$x:{REMOTE}", f"$r:{HOME}"), state, rv)
    check(redaction(ALICE, f"$x:{HOME}", f"$r:{HOME}"), state, rv)
    assert_forbidden(redaction(ALICE, f"$x:{REMOTE}", f"$r:{HOME}"), state, rv)
    assert_forbidden(redaction(ALICE, "$nodomain", "$nodomain2"), state, rv)


def test_redaction_v3_not_checked_against_redact_level():
    state = room(V3, "public", member(V3, ALICE, "join"))
    check(make_event(V3, "m.room.redaction", ALICE, {}, redacts="$abc"), state, V3)


# --- get_join_rule ---------------------------------------------------------------------------


def test_get_join_rule():
    assert get_join_rule(room(V10, "knock")) == "knock"
    assert get_join_rule(room(V10, None)) is None
    state = room(V10)
    state[("m.room.join_rules", "")]["content"] = {"join_rule": 5}
    assert get_join_rule(state) is None


# --- auth events selection -------------------------------------------------------------------

CREATE_K = ("m.room.create", "")
PL_K = ("m.room.power_levels", "")
JR_K = ("m.room.join_rules", "")


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_auth_event_keys_for_create_is_empty(rv):
    assert get_auth_event_keys(make_create(rv), rv) == []


@pytest.mark.parametrize("rv", [V7, V11], ids=["v7", "v11"])
def test_auth_event_keys_knock_v7_to_v11(rv):
    keys = get_auth_event_keys(member(rv, KNOCKER, "knock"), rv)
    assert keys == [CREATE_K, PL_K, ("m.room.member", KNOCKER), JR_K]


def test_auth_event_keys_knock_v12_never_includes_create():
    keys = get_auth_event_keys(member(V12, KNOCKER, "knock"), V12)
    assert keys == [PL_K, ("m.room.member", KNOCKER), JR_K]


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_auth_event_keys_message(rv):
    keys = get_auth_event_keys(make_event(rv, "m.room.message", ALICE, {}), rv)
    expected = [PL_K, ("m.room.member", ALICE)]
    assert keys == ([CREATE_K, *expected] if rv.create_event_in_auth_events else expected)


def test_auth_event_keys_kick_has_both_members_no_join_rules():
    keys = get_auth_event_keys(member(V10, ALICE, "leave", sender=MOD), V10)
    assert keys == [CREATE_K, PL_K, ("m.room.member", MOD), ("m.room.member", ALICE)]


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_auth_event_keys_third_party_invite_selected(rv):
    # SS §Auth events selection: "the current m.room.third_party_invite event with state_key
    # matching content.third_party_invite.signed.token, if any"
    invite = tpi_invite(rv, {"signed": signed_block()})
    assert ("m.room.third_party_invite", TOKEN) in get_auth_event_keys(invite, rv)
    state = tpi_room(rv)
    auth_events = [state[key] for key in get_auth_event_keys(invite, rv) if key in state]
    check_auth_events_selection(invite, auth_events, rv)
    create = make_create(rv)
    check(invite, state_of(*auth_events), rv, create_event=create)


def test_auth_event_keys_invite_with_third_party_token():
    tpi = {"signed": {"mxid": ALICE, "token": "tok"}}
    keys = get_auth_event_keys(
        member(V10, ALICE, "invite", sender=MOD, third_party_invite=tpi), V10
    )
    assert keys == [
        CREATE_K,
        PL_K,
        ("m.room.member", MOD),
        ("m.room.member", ALICE),
        JR_K,
        ("m.room.third_party_invite", "tok"),
    ]
    for broken in ("junk", {"signed": "junk"}, {"signed": {"token": 5}}):
        invite = member(V10, ALICE, "invite", sender=MOD, third_party_invite=broken)
        assert ("m.room.third_party_invite", "tok") not in get_auth_event_keys(invite, V10)


@pytest.mark.parametrize(
    ("rv", "included"),
    [
        pytest.param(V7, False, id="v7"),
        pytest.param(V8, True, id="v8"),
        pytest.param(V12, True, id="v12"),
    ],
)
def test_auth_event_keys_join_authoriser_from_v8(rv, included):
    join = member(rv, KNOCKER, "join", join_authorised_via_users_server=MOD)
    keys = get_auth_event_keys(join, rv)
    assert (("m.room.member", MOD) in keys) is included
    assert keys.count(("m.room.member", KNOCKER)) == 1


def test_auth_event_keys_join_authoriser_not_string_ignored():
    join = member(V10, KNOCKER, "join", join_authorised_via_users_server=5)
    assert get_auth_event_keys(join, V10) == [CREATE_K, PL_K, ("m.room.member", KNOCKER), JR_K]


def test_auth_event_keys_malformed_event():
    event = member(V10, ALICE, "join")
    del event["sender"]
    del event["state_key"]
    assert get_auth_event_keys(event, V10) == [CREATE_K, PL_K, JR_K]


def _auth_events_for(rv: RoomVersion, event: JsonDict) -> list[JsonDict]:
    state = room(rv, "knock")
    return [state[key] for key in get_auth_event_keys(event, rv) if key in state]


@pytest.mark.parametrize("rv", ALL_VERSIONS)
def test_auth_events_selection_valid(rv):
    message = make_event(rv, "m.room.message", MOD, {"body": "hi"})
    check_auth_events_selection(message, _auth_events_for(rv, message), rv)
    check_auth_events_selection(make_create(rv), [], rv)


def test_auth_events_selection_duplicate_rejected():
    knock = member(V10, KNOCKER, "knock")
    auth_events = _auth_events_for(V10, knock)
    with pytest.raises(MatrixError) as excinfo:
        check_auth_events_selection(knock, [*auth_events, auth_events[-1]], V10)
    assert excinfo.value.errcode == "M_FORBIDDEN"


def _assert_selection_forbidden(event, auth_events, rv):
    with pytest.raises(MatrixError) as excinfo:
        check_auth_events_selection(event, auth_events, rv)
    assert excinfo.value.errcode == "M_FORBIDDEN"


def test_auth_events_selection_extra_entry_rejected():
    knock = member(V10, KNOCKER, "knock")
    history = make_event(V10, "m.room.history_visibility", CREATOR, {}, "")
    _assert_selection_forbidden(knock, [*_auth_events_for(V10, knock), history], V10)


def test_auth_events_selection_missing_create_rejected_v1_to_v11():
    for rv in (V1, V6, V11):
        knock = member(rv, KNOCKER, "knock")
        auth_events = [e for e in _auth_events_for(rv, knock) if e["type"] != "m.room.create"]
        _assert_selection_forbidden(knock, auth_events, rv)


def test_auth_events_selection_create_present_rejected_v12():
    knock = member(V12, KNOCKER, "knock")
    auth_events = _auth_events_for(V12, knock)
    check_auth_events_selection(knock, auth_events, V12)
    create = make_create(V12)
    _assert_selection_forbidden(knock, [create, *auth_events], V12)


def test_auth_events_selection_room_mismatch_rejected():
    knock = member(V10, KNOCKER, "knock")
    auth_events = _auth_events_for(V10, knock)
    auth_events[-1] = {**auth_events[-1], "room_id": f"!other:{HOME}"}
    _assert_selection_forbidden(knock, auth_events, V10)


def test_auth_events_selection_non_state_event_rejected():
    message = make_event(V10, "m.room.message", MOD, {"body": "hi"})
    _assert_selection_forbidden(message, [message], V10)


def test_auth_events_selection_create_event_takes_none():
    create = make_create(V10)
    _assert_selection_forbidden(create, [create], V10)
