"""Room versions 1-12 as a table of named capabilities, each version a delta on the one before.

Sources: content/rooms/v1.md .. v12.md and their fragments (knock-digest §4.1). Code asks for a
capability (``room_version.knock_join_rule``); it never compares version numbers.
"""

from dataclasses import dataclass, replace
from enum import Enum


class EventIdFormat(Enum):
    """How event ids are made (rooms/v1, rooms/v3, frag/v4-event-ids)."""

    V1 = "v1"  # "$opaque:domain", carried in the PDU as event_id; auth/prev events are pairs
    V3 = "v3"  # "$" + standard unpadded base64 of the reference hash
    V4 = "v4"  # "$" + URL-safe unpadded base64 of the reference hash


class StateResVersion(Enum):
    """Which state resolution algorithm applies (rooms/v1, rooms/v2, rooms/v12)."""

    V1 = "v1"
    V2 = "v2"
    V2_1 = "v2.1"  # rooms/v12 (MSC4297): empty start state, conflicted state subgraph


class RedactionRules(Enum):
    """Which redaction algorithm applies (knock-digest §6.7)."""

    V1 = "v1"
    V6 = "v6"  # drops m.room.aliases content
    V8 = "v8"  # keeps join_rules "allow"
    V9 = "v9"  # keeps member "join_authorised_via_users_server"
    V11 = "v11"  # drops top-level origin/membership/prev_state; keeps create content, PL invite


@dataclass(frozen=True)
class RoomVersion:
    identifier: str
    event_id_format: EventIdFormat
    redaction_rules: RedactionRules
    # frag/v5-signing-requirements: key valid_until_ts is enforced for event signatures.
    enforce_key_validity: bool
    # frag/v6-canonical-json: floats and out-of-range integers are rejected.
    strict_canonical_json: bool
    # rooms/v6: depth is capped at 2**53 - 1 instead of 2**63 - 1.
    max_depth: int
    # rooms/v10: power levels must be integers, not strings.
    integer_only_power_levels: bool
    # rooms/v1..v5 special-case m.room.aliases in the auth rules; removed in v6.
    special_case_aliases_auth: bool
    # rooms/v7: the "knock" join rule and membership exist.
    knock_join_rule: bool
    # rooms/v8: the "restricted" join rule exists (join_authorised_via_users_server).
    restricted_join_rule: bool
    # rooms/v10: the "knock_restricted" join rule exists.
    knock_restricted_join_rule: bool
    # rooms/v11: the creator is the create event's sender; content.creator is not required.
    implicit_room_creator: bool
    # rooms/v11: m.room.redaction carries "redacts" in content, not at the top level.
    redacts_in_content: bool
    # rooms/v12: creators (sender + additional_creators) have infinite power.
    additional_creators: bool
    # rooms/v12: the room id is "!" + the create event's reference hash; create has no room_id.
    room_id_from_create_event: bool
    # rooms/v12: the create event is never selected into auth_events.
    create_event_in_auth_events: bool
    # rooms/v1 state resolution; v2 from rooms/v2; v2.1 from rooms/v12.
    state_res: StateResVersion

    def supports_join_rule(self, join_rule: str) -> bool:
        """Whether this version's auth rules know ``join_rule`` (CS §Room membership)."""
        return join_rule in {"public", "invite", "private"} or (
            (join_rule == "knock" and self.knock_join_rule)
            or (join_rule == "restricted" and self.restricted_join_rule)
            or (join_rule == "knock_restricted" and self.knock_restricted_join_rule)
        )


V1 = RoomVersion(
    identifier="1",
    event_id_format=EventIdFormat.V1,
    redaction_rules=RedactionRules.V1,
    enforce_key_validity=False,
    strict_canonical_json=False,
    max_depth=2**63 - 1,
    integer_only_power_levels=False,
    special_case_aliases_auth=True,
    knock_join_rule=False,
    restricted_join_rule=False,
    knock_restricted_join_rule=False,
    implicit_room_creator=False,
    redacts_in_content=False,
    additional_creators=False,
    room_id_from_create_event=False,
    create_event_in_auth_events=True,
    state_res=StateResVersion.V1,
)
V2 = replace(V1, identifier="2", state_res=StateResVersion.V2)
V3 = replace(V2, identifier="3", event_id_format=EventIdFormat.V3)
V4 = replace(V3, identifier="4", event_id_format=EventIdFormat.V4)
V5 = replace(V4, identifier="5", enforce_key_validity=True)
V6 = replace(
    V5,
    identifier="6",
    redaction_rules=RedactionRules.V6,
    strict_canonical_json=True,
    max_depth=2**53 - 1,
    special_case_aliases_auth=False,
)
V7 = replace(V6, identifier="7", knock_join_rule=True)
V8 = replace(V7, identifier="8", redaction_rules=RedactionRules.V8, restricted_join_rule=True)
V9 = replace(V8, identifier="9", redaction_rules=RedactionRules.V9)
V10 = replace(V9, identifier="10", integer_only_power_levels=True, knock_restricted_join_rule=True)
V11 = replace(
    V10,
    identifier="11",
    redaction_rules=RedactionRules.V11,
    implicit_room_creator=True,
    redacts_in_content=True,
)
V12 = replace(
    V11,
    identifier="12",
    additional_creators=True,
    room_id_from_create_event=True,
    create_event_in_auth_events=False,
    state_res=StateResVersion.V2_1,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    rv.identifier: rv for rv in (V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12)
}

# rooms/_index.md: v12 is the default for new rooms.
DEFAULT_ROOM_VERSION = V12


def get_room_version(identifier: str) -> RoomVersion | None:
    """The room version named ``identifier`` (compared exactly: versions are opaque), or None."""
    return KNOWN_ROOM_VERSIONS.get(identifier)
