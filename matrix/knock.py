"""The knock handshake's decisions (knocks.yaml; knock-digest §1, §5): pure functions, no I/O."""

from collections.abc import Iterable, Mapping, Sequence

from matrix.auth_rules import (
    CREATE_KEY,
    StateKey,
    StateMap,
    check_auth_rules,
    get_auth_event_keys,
)
from matrix.errors import MatrixError
from matrix.events import compute_event_id
from matrix.ids import get_domain, parse_user_id
from matrix.room_events import build_event
from matrix.room_versions import RoomVersion
from matrix.types import JsonDict

# knocks.yaml does not bound prev_events; pdu schemas allow 20. Ten keeps templates small and
# is what the make_knock issue asks for; Synapse uses at most 10 forward extremities too.
MAX_TEMPLATE_PREV_EVENTS = 10


def _knock_skeleton(user_id: str) -> JsonDict:
    # knocks.yaml: the template is the user's own m.room.member with membership "knock".
    return {
        "type": "m.room.member",
        "sender": user_id,
        "state_key": user_id,
        "content": {"membership": "knock"},
    }


def get_knock_state_keys(user_id: str, room_version: RoomVersion) -> list[StateKey]:
    """The state a knock by ``user_id`` is judged on: its auth-events selection (SS §Auth
    events selection) plus the create event, which the rules need even in v12, where it is
    not an auth event."""
    keys = get_auth_event_keys(_knock_skeleton(user_id), room_version)
    return list(dict.fromkeys([*keys, CREATE_KEY]))


def check_make_knock_allowed(
    room_version: RoomVersion, supported_versions: Sequence[str], user_id: str, origin: str
) -> None:
    """Rows 6-8 of make_knock, in Synapse's order (knock-digest §1.1)."""
    # knocks.yaml 400: the room's version is not one the knocking server supports. Versions are
    # opaque strings: compare exactly (rooms/_index.md §Room version grammar).
    if room_version.identifier not in supported_versions:
        raise MatrixError(
            "M_INCOMPATIBLE_ROOM_VERSION",
            f"Your homeserver does not support room version {room_version.identifier}, which "
            "this room uses; upgrade it to knock on this room",
            room_version=room_version.identifier,
        )
    # knocks.yaml 403 "room not set up for receiving knocks": knocking exists from v7 (rooms/v7).
    if not room_version.knock_join_rule:
        raise MatrixError(
            "M_FORBIDDEN",
            f"Room version {room_version.identifier} does not support knocking; the room must "
            "be upgraded to version 7 or later",
        )
    # knocks.yaml (v1.18): the user MUST be on the origin server. Synapse: 403 "User not from
    # origin".
    if get_domain(user_id) != origin:
        raise MatrixError(
            "M_FORBIDDEN", f"{user_id} is not a user of the requesting server {origin}"
        )


def build_knock_template(
    room_version: RoomVersion,
    *,
    room_id: str,
    user_id: str,
    state: StateMap,
    state_event_ids: Mapping[StateKey, str],
    prev_events: Iterable[tuple[str, int]],
    origin: str,
    origin_server_ts: int,
) -> JsonDict:
    """The unsigned knock event a resident returns from make_knock.

    Synapse's get_templated_pdu_json: a whole, auth-checked event without hashes, signatures,
    unsigned and (v3+) event_id (knock-digest §1.1). ``prev_events`` are (event_id, depth) of the
    forward extremities, newest first; ``state`` holds the events of get_knock_state_keys that
    exist and ``state_event_ids`` their ids (v3+ PDUs do not carry their own id).
    """
    prev = list(prev_events)[:MAX_TEMPLATE_PREV_EVENTS]
    skeleton = _knock_skeleton(user_id)
    # SS §Auth events selection (v1.16): v12 never selects the create event.
    keys = get_auth_event_keys(skeleton, room_version)
    event = build_event(
        room_version,
        room_id=room_id,
        **skeleton,
        prev_events=[event_id for event_id, _ in prev],
        auth_events=[state_event_ids[key] for key in keys if key in state_event_ids],
        # pdu_v*: depth = max depth of prev_events + 1 (build_event caps it per version).
        depth=max((d for _, d in prev), default=0) + 1,
        origin=origin,
        origin_server_ts=origin_server_ts,
    )
    # Rule 9: the would-be knock must pass the version's auth rules against current state
    # (join rule, prior membership, m.federate); failure is 403 M_FORBIDDEN (knocks.yaml).
    check_auth_rules(event, state, room_version, create_event=state.get(CREATE_KEY))
    return event


# knocks.yaml / CS §Stripped state: the state that helps a knocker identify the room. The create
# event MUST be included (v1.16, MSC4311); the others SHOULD be when set.
KNOCK_ROOM_STATE_KEYS: list[StateKey] = [
    CREATE_KEY,
    ("m.room.join_rules", ""),
    ("m.room.name", ""),
    ("m.room.avatar", ""),
    ("m.room.topic", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.encryption", ""),
]


def _invalid(message: str) -> MatrixError:
    return MatrixError("M_INVALID_PARAM", message)


def check_send_knock_event(
    event: JsonDict, room_version: RoomVersion, *, room_id: str, event_id: str, origin: str
) -> None:
    """The knocks.yaml checks on a send_knock body (SHOULD be 400 M_INVALID_PARAM, v1.18).

    Runs after check_pdu_format (the intake, app/rooms/ingest.py); the signature check needs keys
    and is the intake's too. The event id in the path is compared with the id computed for the
    version.
    """
    # knocks.yaml (v1.18) lists the SHOULD-be-M_INVALID_PARAM checks below: not a membership
    # event, membership not knock, sender not on the origin, state_key not the sender, and a
    # bad signature (the caller's). The room id and event id checks are ours (knock-digest §1.3).
    # Synapse: "Room ID in body does not match that in request path"; we use the SHOULD code.
    if event["room_id"] != room_id:
        raise _invalid("The event's room_id does not match the room in the path")
    if event["type"] != "m.room.member" or "state_key" not in event:
        raise _invalid("Not a membership event")
    if event["content"].get("membership") != "knock":
        raise _invalid("Not a knock event")
    sender = event["sender"]
    try:
        parse_user_id(sender)
    except MatrixError:
        raise _invalid("The sender is not a valid user id") from None
    if get_domain(sender) != origin:
        raise _invalid(f"The sender is not a user of the requesting server {origin}")
    if event["state_key"] != sender:
        raise _invalid("A knock's state_key must be its sender")
    if compute_event_id(event, room_version) != event_id:
        raise _invalid("The event id in the path is not the id of this event")
