"""Pure PDU and state-content builders (SS §PDUs, rooms/v1..v12, CS state event schemas)."""

import pytest

from matrix.errors import MatrixError
from matrix.room_events import (
    build_create_content,
    build_event,
    build_history_visibility_content,
    build_join_rules_content,
    build_member_content,
    build_power_levels_content,
    build_reference_hash,
    build_server_acl_content,
    check_join_rule_supported,
    parse_room_version,
)
from matrix.room_versions import KNOWN_ROOM_VERSIONS, V1, V2, V3, V5, V6, V7, V10, V11, V12

ALL_VERSIONS = [pytest.param(rv, id=f"v{rv.identifier}") for rv in KNOWN_ROOM_VERSIONS.values()]
ROOM = "!room:origin.test"
CREATOR = "@admin:origin.test"


def common(**overrides):
    fields = {
        "room_id": ROOM,
        "sender": CREATOR,
        "type": "m.room.name",
        "content": {"name": "N"},
        "state_key": "",
        "prev_events": ["$prev"],
        "auth_events": ["$create", "$pl"],
        "depth": 7,
        "origin": "origin.test",
        "origin_server_ts": 1234,
    }
    fields.update(overrides)
    return fields


V1_HASHES = {"$prev": "cHJldg", "$create": "Y3JlYXRl", "$pl": "cGw"}


# --- room versions and join rules --------------------------------------------------------------


@pytest.mark.parametrize("identifier", ["1", "7", "12"])
def test_parse_room_version_known_is_exact(identifier):
    assert parse_room_version(identifier).identifier == identifier


@pytest.mark.parametrize("identifier", ["13", "07", " 7", "", "org.matrix.msc2403"])
def test_parse_room_version_unknown_is_refused(identifier):
    with pytest.raises(MatrixError) as raised:
        parse_room_version(identifier)
    assert raised.value.errcode == "M_UNSUPPORTED_ROOM_VERSION"
    assert raised.value.status == 400


@pytest.mark.parametrize(
    ("room_version", "join_rule"),
    [
        pytest.param(V1, "public", id="v1-public"),
        pytest.param(V1, "invite", id="v1-invite"),
        pytest.param(V1, "private", id="v1-private"),
        pytest.param(V7, "knock", id="v7-knock"),
        pytest.param(V10, "knock_restricted", id="v10-knock_restricted"),
        pytest.param(V12, "restricted", id="v12-restricted"),
    ],
)
def test_check_join_rule_supported_accepts_the_versions_rules(room_version, join_rule):
    check_join_rule_supported(room_version, join_rule)


@pytest.mark.parametrize(
    ("room_version", "join_rule"),
    [
        pytest.param(V6, "knock", id="v6-no-knock"),
        pytest.param(V7, "restricted", id="v7-no-restricted"),
        pytest.param(V7, "knock_restricted", id="v7-no-knock_restricted"),
    ],
)
def test_check_join_rule_supported_refuses_rules_the_version_predates(room_version, join_rule):
    with pytest.raises(MatrixError) as raised:
        check_join_rule_supported(room_version, join_rule)
    assert raised.value.errcode == "M_FORBIDDEN"


@pytest.mark.parametrize("join_rule", ["Knock", "open", ""])
def test_check_join_rule_supported_unknown_rule_is_invalid(join_rule):
    with pytest.raises(MatrixError) as raised:
        check_join_rule_supported(V12, join_rule)
    assert raised.value.errcode == "M_INVALID_PARAM"


# --- build_event -------------------------------------------------------------------------------


@pytest.mark.parametrize("room_version", [V3, V5, V6, V11, V12], ids=lambda rv: f"v{rv.identifier}")
def test_build_event_v3_plus_uses_plain_ids_and_no_event_id(room_version):
    event = build_event(room_version, **common())
    assert event == {
        "room_id": ROOM,
        "sender": CREATOR,
        "type": "m.room.name",
        "content": {"name": "N"},
        "state_key": "",
        "prev_events": ["$prev"],
        "auth_events": ["$create", "$pl"],
        "depth": 7,
        "origin": "origin.test",
        "origin_server_ts": 1234,
    }


@pytest.mark.parametrize("room_version", [V1, V2], ids=["v1", "v2"])
def test_build_event_v1_format_uses_pairs_and_an_event_id(room_version):
    event = build_event(room_version, **common(), event_hashes=V1_HASHES, event_id="$abc:o.test")
    assert event["prev_events"] == [["$prev", {"sha256": "cHJldg"}]]
    assert event["auth_events"] == [["$create", {"sha256": "Y3JlYXRl"}], ["$pl", {"sha256": "cGw"}]]
    assert event["event_id"] == "$abc:o.test"


def test_build_event_v1_format_makes_a_random_event_id_on_the_origin():
    first = build_event(V1, **common(), event_hashes=V1_HASHES)
    second = build_event(V1, **common(), event_hashes=V1_HASHES)
    assert first["event_id"].startswith("$")
    assert first["event_id"].endswith(":origin.test")
    assert first["event_id"] != second["event_id"]


def test_build_event_v1_format_needs_reference_hashes():
    with pytest.raises(ValueError, match="reference hashes"):
        build_event(V1, **common(), event_hashes={"$prev": "x"})
    with pytest.raises(ValueError, match="reference hashes"):
        build_event(V2, **common())


def test_build_event_v3_plus_refuses_an_event_id():
    with pytest.raises(ValueError, match="no event_id"):
        build_event(V3, **common(), event_id="$abc:o.test")


def test_build_event_message_has_no_state_key():
    event = build_event(V11, **common(type="m.room.message", content={}, state_key=None))
    assert "state_key" not in event


@pytest.mark.parametrize(
    ("room_version", "cap"),
    [pytest.param(V5, 2**63 - 1, id="v5"), pytest.param(V6, 2**53 - 1, id="v6")],
)
def test_build_event_depth_is_capped_for_the_version(room_version, cap):
    assert build_event(room_version, **common(depth=cap))["depth"] == cap
    assert build_event(room_version, **common(depth=cap + 1))["depth"] == cap


def test_build_event_v12_create_has_no_room_id():
    fields = common(type="m.room.create", room_id=None, prev_events=[], auth_events=[])
    event = build_event(V12, **fields)
    assert "room_id" not in event
    with pytest.raises(ValueError, match="no room_id"):
        build_event(V12, **{**fields, "room_id": ROOM})


@pytest.mark.parametrize("room_version", [V11, V12], ids=["v11", "v12"])
def test_build_event_needs_a_room_id_except_v12_create(room_version):
    with pytest.raises(ValueError, match="needs a room_id"):
        build_event(room_version, **common(room_id=None))


def test_build_event_v11_create_keeps_its_room_id():
    event = build_event(V11, **common(type="m.room.create", prev_events=[], auth_events=[]))
    assert event["room_id"] == ROOM


def test_build_event_refuses_too_many_references():
    with pytest.raises(ValueError, match="too many"):
        build_event(V12, **common(prev_events=[f"$p{i}" for i in range(21)]))
    with pytest.raises(ValueError, match="too many"):
        build_event(V12, **common(auth_events=[f"$a{i}" for i in range(11)]))
    build_event(V12, **common(prev_events=[f"$p{i}" for i in range(20)]))


# --- reference hash ----------------------------------------------------------------------------


def test_build_reference_hash_matches_the_appendix_event():
    # APPX §Cryptographic test vectors: the minimal event, hashed and signed (v1-v10 redaction)
    event = {
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "signatures": {"domain": {"ed25519:1": "ignored: signatures are not hashed"}},
        "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
        "type": "X",
        "content": {"dropped": "by redaction"},
        "prev_events": [],
        "auth_events": [],
        "depth": 3,
        "unsigned": {"age_ts": 1000000},
    }
    assert build_reference_hash(event, V1) == "8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"
    # the v11 redaction drops "origin", so the same event hashes differently
    assert build_reference_hash(event, V11) != build_reference_hash(event, V1)


# --- state contents ----------------------------------------------------------------------------


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_build_create_content_per_version(room_version):
    content = build_create_content(room_version, CREATOR)
    assert content["room_version"] == room_version.identifier
    # rooms/v11: no creator key; v1-v10 require it
    assert ("creator" in content) is not room_version.implicit_room_creator
    if "creator" in content:
        assert content["creator"] == CREATOR
    assert "additional_creators" not in content


@pytest.mark.parametrize("room_version", [V1, V12], ids=["v1", "v12"])
def test_build_create_content_unfederated(room_version):
    assert build_create_content(room_version, CREATOR, federate=False)["m.federate"] is False
    assert "m.federate" not in build_create_content(room_version, CREATOR)


def test_build_create_content_v12_additional_creators():
    content = build_create_content(V12, CREATOR, ["@b:other.test"])
    assert content == {"room_version": "12", "additional_creators": ["@b:other.test"]}


def test_build_create_content_additional_creators_need_v12():
    with pytest.raises(MatrixError) as raised:
        build_create_content(V11, CREATOR, ["@b:other.test"])
    assert raised.value.errcode == "M_INVALID_PARAM"


def test_build_create_content_additional_creators_must_be_user_ids():
    with pytest.raises(MatrixError) as raised:
        build_create_content(V12, CREATOR, ["not-a-user"])
    assert raised.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize("room_version", ALL_VERSIONS)
def test_build_power_levels_content_lists_the_creator_except_v12(room_version):
    content = build_power_levels_content(room_version, CREATOR)
    if room_version.additional_creators:
        assert content["users"] == {}
        assert content["events"]["m.room.tombstone"] == 150
    else:
        assert content["users"] == {CREATOR: 100}
        assert content["events"]["m.room.tombstone"] == 100
    assert content["ban"] == content["kick"] == content["redact"] == content["invite"] == 50
    assert content["state_default"] == 50
    assert content["events_default"] == content["users_default"] == 0
    # integers only: valid in every version, including v10+
    assert all(type(level) is int for level in content["events"].values())


@pytest.mark.parametrize("join_rule", ["public", "invite", "knock", "private"])
def test_build_join_rules_content_plain(join_rule):
    assert build_join_rules_content(join_rule) == {"join_rule": join_rule}


@pytest.mark.parametrize("join_rule", ["restricted", "knock_restricted"])
def test_build_join_rules_content_restricted_has_an_allow_list(join_rule):
    assert build_join_rules_content(join_rule, ["!a:x.test"]) == {
        "join_rule": join_rule,
        "allow": [{"type": "m.room_membership", "room_id": "!a:x.test"}],
    }
    assert build_join_rules_content(join_rule)["allow"] == []


def test_build_join_rules_content_refuses_allow_rooms_for_other_rules():
    with pytest.raises(MatrixError) as raised:
        build_join_rules_content("knock", ["!a:x.test"])
    assert raised.value.errcode == "M_INVALID_PARAM"


@pytest.mark.parametrize(("join_rule", "rooms"), [("invented", []), ("restricted", ["a:x.test"])])
def test_build_join_rules_content_refuses_bad_input(join_rule, rooms):
    with pytest.raises(MatrixError) as raised:
        build_join_rules_content(join_rule, rooms)
    assert raised.value.errcode == "M_INVALID_PARAM"


def test_build_history_visibility_content():
    assert build_history_visibility_content("shared") == {"history_visibility": "shared"}
    with pytest.raises(MatrixError) as raised:
        build_history_visibility_content("everyone")
    assert raised.value.errcode == "M_INVALID_PARAM"


def test_build_member_content_reason_only_when_given():
    assert build_member_content("ban") == {"membership": "ban"}
    assert build_member_content("ban", "") == {"membership": "ban"}
    assert build_member_content("ban", "spam") == {"membership": "ban", "reason": "spam"}


def test_build_server_acl_content_writes_every_key():
    assert build_server_acl_content(["*"], ("evil.test",), allow_ip_literals=False) == {
        "allow": ["*"],
        "deny": ["evil.test"],
        "allow_ip_literals": False,
    }
    assert build_server_acl_content([], [])["allow_ip_literals"] is True
