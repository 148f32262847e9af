"""Pure builders for the PDUs and state contents a resident server creates (no I/O, no signing)."""

import secrets
from collections.abc import Iterable, Mapping, Sequence

from unpaddedbase64 import encode_base64

from matrix.errors import MatrixError
from matrix.events import compute_reference_hash
from matrix.ids import parse_room_id, parse_user_id
from matrix.room_versions import EventIdFormat, RoomVersion, get_room_version
from matrix.types import JsonDict

# CS §Room membership (m.room.join_rules schema): every join rule the spec defines.
KNOWN_JOIN_RULES = ("public", "invite", "private", "knock", "restricted", "knock_restricted")
# rooms/v8, rooms/v10: the join rules whose content carries an "allow" list.
RESTRICTED_JOIN_RULES = ("restricted", "knock_restricted")
# m.room.history_visibility schema.
HISTORY_VISIBILITIES = ("invited", "joined", "shared", "world_readable")
# SS §PDUs: at most 20 prev_events and 10 auth_events.
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10


def parse_room_version(identifier: str) -> RoomVersion:
    """The known room version ``identifier`` (compared exactly), or M_UNSUPPORTED_ROOM_VERSION."""
    room_version = get_room_version(identifier)
    if room_version is None:
        # CS §createRoom: an unknown version is 400 M_UNSUPPORTED_ROOM_VERSION
        raise MatrixError("M_UNSUPPORTED_ROOM_VERSION", f"unsupported room version {identifier!r}")
    return room_version


def check_join_rule_supported(room_version: RoomVersion, join_rule: str) -> None:
    """Raise unless ``join_rule`` exists and this room version's auth rules know it.

    An unknown rule is M_INVALID_PARAM; a rule the version predates (knock before v7,
    restricted before v8, knock_restricted before v10) is M_FORBIDDEN, as make_knock answers for
    a room that is "not set up" for knocks.
    """
    if join_rule not in KNOWN_JOIN_RULES:
        raise MatrixError("M_INVALID_PARAM", f"unknown join rule {join_rule!r}")
    if not room_version.supports_join_rule(join_rule):
        raise MatrixError(
            "M_FORBIDDEN",
            f"room version {room_version.identifier} does not support join rule {join_rule!r}",
        )


def build_reference_hash(event: JsonDict, room_version: RoomVersion) -> str:
    """The reference hash as v1/v2 prev_events/auth_events pairs carry it (std unpadded base64)."""
    # rooms/v1 §Event format: [event_id, {"sha256": reference hash}]
    return encode_base64(compute_reference_hash(event, room_version))


def build_event(
    room_version: RoomVersion,
    *,
    room_id: str | None,
    sender: str,
    type: str,
    content: JsonDict,
    state_key: str | None = None,
    prev_events: Sequence[str],
    auth_events: Sequence[str],
    depth: int,
    origin: str,
    origin_server_ts: int,
    event_hashes: Mapping[str, str] | None = None,
    event_id: str | None = None,
) -> JsonDict:
    """An unsigned, unhashed PDU in ``room_version``'s event format.

    ``prev_events`` and ``auth_events`` are event ids. Rooms with v1 event ids (v1, v2) also need
    ``event_hashes`` (event id -> reference hash) to write ``[id, {"sha256": hash}]`` pairs, and
    carry ``event_id`` (``$random:origin`` when not given).
    """
    if len(prev_events) > MAX_PREV_EVENTS or len(auth_events) > MAX_AUTH_EVENTS:
        # SS §PDUs: prev_events at most 20, auth_events at most 10
        raise ValueError("too many prev_events or auth_events")
    event: JsonDict = {
        "type": type,
        "sender": sender,
        "content": content,
        # SS §PDUs: depth is the prev_events' max + 1, capped (2**63-1 in v1-v5, 2**53-1 in v6+)
        "depth": min(depth, room_version.max_depth),
        "origin": origin,
        "origin_server_ts": origin_server_ts,
    }
    if state_key is not None:
        event["state_key"] = state_key
    is_v12_create = type == "m.room.create" and room_version.room_id_from_create_event
    if is_v12_create:
        # rooms/v12: the create event has no room_id (its event id names the room)
        if room_id is not None:
            raise ValueError("a v12 m.room.create event has no room_id")
    elif room_id is None:
        raise ValueError("every event but a v12 m.room.create needs a room_id")
    else:
        event["room_id"] = room_id
    if room_version.event_id_format is EventIdFormat.V1:
        # rooms/v1: event ids are "$opaque:origin" in the PDU; references carry reference hashes
        hashes = event_hashes or {}
        missing = [ref for ref in (*prev_events, *auth_events) if ref not in hashes]
        if missing:
            raise ValueError(f"reference hashes needed for {missing}")
        event["prev_events"] = [[ref, {"sha256": hashes[ref]}] for ref in prev_events]
        event["auth_events"] = [[ref, {"sha256": hashes[ref]}] for ref in auth_events]
        event["event_id"] = event_id or f"${secrets.token_urlsafe(18)}:{origin}"
    else:
        # rooms/v3: event ids are reference hashes, never sent in the PDU
        if event_id is not None:
            raise ValueError(f"room version {room_version.identifier} events carry no event_id")
        event["prev_events"] = list(prev_events)
        event["auth_events"] = list(auth_events)
    return event


def build_create_content(
    room_version: RoomVersion,
    creator: str,
    additional_creators: Iterable[str] = (),
    *,
    federate: bool = True,
) -> JsonDict:
    """m.room.create content: room_version always; creator only where the version needs it."""
    content: JsonDict = {"room_version": room_version.identifier}
    if not federate:
        # m.room.create schema: m.federate false keeps users of other servers out (auth rule 3)
        content["m.federate"] = False
    # rooms/v11: the creator is the sender; v1-v10 require content.creator
    if not room_version.implicit_room_creator:
        content["creator"] = creator
    extra = [parse_user_id(user_id) for user_id in additional_creators]
    if extra:
        # rooms/v12: additional_creators share the creator's infinite power
        if not room_version.additional_creators:
            raise MatrixError(
                "M_INVALID_PARAM",
                f"room version {room_version.identifier} has no additional creators",
            )
        content["additional_creators"] = extra
    return content


def build_power_levels_content(room_version: RoomVersion, creator: str) -> JsonDict:
    """Synapse's default m.room.power_levels for a new room."""
    events: dict[str, int] = {
        "m.room.name": 50,
        "m.room.topic": 50,
        "m.room.avatar": 50,
        "m.room.canonical_alias": 50,
        "m.room.power_levels": 100,
        "m.room.history_visibility": 100,
        "m.room.tombstone": 100,
        "m.room.server_acl": 100,
        "m.room.encryption": 100,
    }
    if room_version.additional_creators:
        # rooms/v12 (MSC4289): upgrading stays with the creators, whose power is infinite
        events["m.room.tombstone"] = 150
    return {
        # rooms/v12 rule 10.4: creators must not be listed in users (their power is implied)
        "users": {} if room_version.additional_creators else {creator: 100},
        "users_default": 0,
        "events": events,
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50,
    }


def build_join_rules_content(join_rule: str, allow_rooms: Iterable[str] = ()) -> JsonDict:
    """m.room.join_rules content; restricted rules take an allow list of room memberships."""
    if join_rule not in KNOWN_JOIN_RULES:
        raise MatrixError("M_INVALID_PARAM", f"unknown join rule {join_rule!r}")
    rooms = [parse_room_id(room_id) for room_id in allow_rooms]
    content: JsonDict = {"join_rule": join_rule}
    if join_rule in RESTRICTED_JOIN_RULES:
        # rooms/v8 (v10 knock_restricted): membership of an allowed room lets a user join
        content["allow"] = [{"type": "m.room_membership", "room_id": room} for room in rooms]
    elif rooms:
        raise MatrixError("M_INVALID_PARAM", f"join rule {join_rule!r} takes no allowed rooms")
    return content


def build_history_visibility_content(history_visibility: str) -> JsonDict:
    if history_visibility not in HISTORY_VISIBILITIES:
        raise MatrixError("M_INVALID_PARAM", f"unknown history visibility {history_visibility!r}")
    return {"history_visibility": history_visibility}


def build_member_content(membership: str, reason: str | None = None) -> JsonDict:
    content: JsonDict = {"membership": membership}
    if reason:
        content["reason"] = reason
    return content


def build_server_acl_content(
    allow: Iterable[str], deny: Iterable[str], allow_ip_literals: bool = True
) -> JsonDict:
    """m.room.server_acl content, every key written out (missing allow would deny everyone)."""
    return {"allow": list(allow), "deny": list(deny), "allow_ip_literals": allow_ip_literals}
