"""matrix/membership.py: the restricted-join decisions, without I/O."""

import pytest

from matrix.errors import MatrixError
from matrix.membership import (
    check_restricted_join_allowed,
    get_join_authoriser,
    get_restricted_allow_room_ids,
)
from matrix.room_versions import KNOWN_ROOM_VERSIONS

V10 = KNOWN_ROOM_VERSIONS["10"]
V7 = KNOWN_ROOM_VERSIONS["7"]


def state_with(join_rules: dict | None = None, power_levels: dict | None = None) -> dict:
    state = {}
    if join_rules is not None:
        state[("m.room.join_rules", "")] = {"type": "m.room.join_rules", "content": join_rules}
    if power_levels is not None:
        state[("m.room.power_levels", "")] = {
            "type": "m.room.power_levels",
            "content": power_levels,
        }
    return state


ALLOW = {"type": "m.room_membership", "room_id": "!a:x"}


@pytest.mark.parametrize(
    ("version", "join_rules", "membership", "expected"),
    [
        pytest.param(V10, {"join_rule": "restricted", "allow": [ALLOW]}, None, ["!a:x"], id="v10"),
        pytest.param(
            V10, {"join_rule": "knock_restricted", "allow": [ALLOW]}, "leave", ["!a:x"], id="kr"
        ),
        pytest.param(V7, {"join_rule": "restricted", "allow": [ALLOW]}, None, None, id="v7-none"),
        pytest.param(V10, {"join_rule": "public"}, None, None, id="public"),
        pytest.param(None, None, None, None, id="no-join-rules"),
        pytest.param(V10, {"join_rule": "restricted"}, "invite", None, id="invited"),
        pytest.param(V10, {"join_rule": "restricted"}, "join", None, id="joined"),
        pytest.param(V10, {"join_rule": "restricted", "allow": "x"}, None, [], id="allow-not-list"),
        pytest.param(
            V10,
            {
                "join_rule": "restricted",
                "allow": [
                    "x",
                    {"type": "m.other", "room_id": "!b:x"},
                    {"type": "m.room_membership", "room_id": 5},
                    ALLOW,
                ],
            },
            None,
            ["!a:x"],
            id="only-room-membership-entries",
        ),
    ],
)
def test_get_restricted_allow_room_ids(version, join_rules, membership, expected):
    room_version = version or V10
    state = state_with(join_rules)
    assert get_restricted_allow_room_ids(room_version, state, membership) == expected


def test_check_restricted_join_allowed():
    with pytest.raises(MatrixError) as unknown:
        check_restricted_join_allowed([], [])
    assert unknown.value.errcode == "M_UNABLE_TO_AUTHORISE_JOIN"
    with pytest.raises(MatrixError) as not_joined:
        check_restricted_join_allowed(["!a:x"], [])
    assert (not_joined.value.errcode, not_joined.value.status) == ("M_FORBIDDEN", 403)
    check_restricted_join_allowed(["!a:x"], ["!a:x"])


@pytest.mark.parametrize(
    ("levels", "candidates", "expected"),
    [
        pytest.param({"users": {"@a:h": 50, "@b:h": 100}}, ["@a:h", "@b:h"], "@b:h", id="most"),
        pytest.param({"users": {"@a:h": 50, "@b:h": 50}}, ["@b:h", "@a:h"], "@a:h", id="tie"),
        pytest.param({"invite": 60, "users": {"@a:h": 50}}, ["@a:h"], None, id="too-weak"),
        pytest.param({"users": {}}, [], None, id="nobody"),
    ],
)
def test_get_join_authoriser(levels, candidates, expected):
    assert get_join_authoriser(V10, state_with(power_levels=levels), candidates) == expected
