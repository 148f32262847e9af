"""Room versions 1-12: every capability flag of every version, written out once as a grid."""

import dataclasses

import pytest

from matrix.room_versions import (
    DEFAULT_ROOM_VERSION,
    KNOWN_ROOM_VERSIONS,
    EventIdFormat,
    RedactionRules,
    StateResVersion,
    get_room_version,
)

# Columns in the order of the RoomVersion fields after identifier. Sources: content/rooms/v1..v12
# (knock-digest §4.1). T/F booleans; the first three columns and the last are the enum values.
#        ids   redact  depth  key-valid strict intPL aliases knock restr kn-restr implicit
#        redacts-in-content additional room-id-from-create create-in-auth state-res
GRID = """
1   v1 v1  63 F F F T F F F F F F F T v1
2   v1 v1  63 F F F T F F F F F F F T v2
3   v3 v1  63 F F F T F F F F F F F T v2
4   v4 v1  63 F F F T F F F F F F F T v2
5   v4 v1  63 T F F T F F F F F F F T v2
6   v4 v6  53 T T F F F F F F F F F T v2
7   v4 v6  53 T T F F T F F F F F F T v2
8   v4 v8  53 T T F F T T F F F F F T v2
9   v4 v9  53 T T F F T T F F F F F T v2
10  v4 v9  53 T T T F T T T F F F F T v2
11  v4 v11 53 T T T F T T T T T F F T v2
12  v4 v11 53 T T T F T T T T T T T F v2.1
"""

BOOLEAN_FIELDS = [
    "enforce_key_validity",
    "strict_canonical_json",
    "integer_only_power_levels",
    "special_case_aliases_auth",
    "knock_join_rule",
    "restricted_join_rule",
    "knock_restricted_join_rule",
    "implicit_room_creator",
    "redacts_in_content",
    "additional_creators",
    "room_id_from_create_event",
    "create_event_in_auth_events",
]


def grid_rows():
    for line in GRID.strip().splitlines():
        identifier, ids, redaction, depth_bits, *flags, state_res = line.split()
        yield pytest.param(
            identifier, ids, redaction, int(depth_bits), flags, state_res, id=f"v{identifier}"
        )


@pytest.mark.parametrize(
    ("identifier", "ids", "redaction", "depth_bits", "flags", "state_res"), list(grid_rows())
)
def test_room_version_grid(identifier, ids, redaction, depth_bits, flags, state_res):
    room_version = KNOWN_ROOM_VERSIONS[identifier]
    assert room_version.identifier == identifier
    assert room_version.event_id_format is EventIdFormat(ids)
    assert room_version.redaction_rules is RedactionRules(redaction)
    assert room_version.max_depth == 2**depth_bits - 1
    assert room_version.state_res is StateResVersion(state_res)
    assert {f: getattr(room_version, f) for f in BOOLEAN_FIELDS} == {
        f: flag == "T" for f, flag in zip(BOOLEAN_FIELDS, flags, strict=True)
    }


def test_room_version_grid_covers_every_field_and_version():
    fields = {f.name for f in dataclasses.fields(KNOWN_ROOM_VERSIONS["1"])}
    assert fields == {
        "identifier",
        "event_id_format",
        "redaction_rules",
        "max_depth",
        "state_res",
    } | set(BOOLEAN_FIELDS)
    assert list(KNOWN_ROOM_VERSIONS) == [str(n) for n in range(1, 13)]


@pytest.mark.parametrize("identifier", ["0", "13", "1.0", " 1", "v1", "", "org.matrix.msc9999"])
def test_unknown_room_versions_are_unknown(identifier):
    assert get_room_version(identifier) is None


def test_default_room_version_is_12():
    assert DEFAULT_ROOM_VERSION is get_room_version("12")


@pytest.mark.parametrize(
    ("identifier", "supported"),
    [
        ("6", {"public", "invite", "private"}),
        ("7", {"public", "invite", "private", "knock"}),
        ("8", {"public", "invite", "private", "knock", "restricted"}),
        ("10", {"public", "invite", "private", "knock", "restricted", "knock_restricted"}),
    ],
)
def test_room_version_supported_join_rules(identifier, supported):
    candidates = {"public", "invite", "private", "knock", "restricted", "knock_restricted", "x"}
    room_version = KNOWN_ROOM_VERSIONS[identifier]
    assert {rule for rule in candidates if room_version.supports_join_rule(rule)} == supported
