"""The knock handshake's decisions (knocks.yaml; knock-digest §1, §5): pure functions, no I/O."""

from collections.abc import Callable, Iterable, Mapping, Sequence

from matrix.auth_rules import (
    CREATE_KEY,
    StateKey,
    StateMap,
    check_auth_events_selection,
    check_auth_rules,
    get_auth_event_keys,
)
from matrix.canonical import check_canonical_json, encode_canonical_json
from matrix.errors import MatrixError
from matrix.events import compute_event_id, is_content_hash_valid, redact_event
from matrix.ids import get_domain, parse_event_id, parse_user_id
from matrix.room_events import MAX_AUTH_EVENTS, MAX_PREV_EVENTS, build_event
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


# CS §Size limits: a whole event is at most 65,536 bytes of canonical JSON, signatures included.
MAX_PDU_BYTES = 65536
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


def _bad_json(message: str) -> MatrixError:
    return MatrixError("M_BAD_JSON", message)


def _invalid(message: str) -> MatrixError:
    return MatrixError("M_INVALID_PARAM", message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_pdu_format(event: JsonDict, room_version: RoomVersion) -> None:
    """The PDU schema of the room version (SS §Checks performed on receipt of a PDU, step 1).

    Knocking exists from v7, so only the v3+ formats (event ids as strings, no event_id key)
    reach this function.
    """
    # frag/v6-canonical-json: floats and out-of-range integers are rejected (M_BAD_JSON).
    if room_version.strict_canonical_json:
        check_canonical_json(event)
    # CS §Size limits.
    if len(encode_canonical_json(event)) > MAX_PDU_BYTES:
        raise MatrixError("M_TOO_LARGE", f"Event is larger than {MAX_PDU_BYTES} bytes")
    for key in ("room_id", "sender", "type", "origin"):
        if key in event and not isinstance(event[key], str):
            raise _bad_json(f"'{key}' must be a string")
    for key in ("room_id", "sender", "type"):
        if key not in event:
            raise _bad_json(f"Missing '{key}'")
    if not isinstance(event.get("content"), dict):
        raise _bad_json("'content' must be an object")
    if not _is_int(event.get("origin_server_ts")):
        raise _bad_json("'origin_server_ts' must be an integer")
    depth = event.get("depth")
    # pdu_v6: depth is an integer in [0, 2**53 - 1].
    if (
        not isinstance(depth, int)
        or isinstance(depth, bool)
        or not 0 <= depth <= room_version.max_depth
    ):
        raise _bad_json("'depth' must be a non-negative integer within the version's limit")
    # pdu_v*: hashes {"sha256": unpadded base64} and signatures {server: {key id: sig}}.
    hashes = event.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        raise _bad_json("'hashes' must hold a sha256 string")
    if not isinstance(event.get("signatures"), dict):
        raise _bad_json("'signatures' must be an object")
    for key, limit in (("prev_events", MAX_PREV_EVENTS), ("auth_events", MAX_AUTH_EVENTS)):
        ids = event.get(key)
        if not isinstance(ids, list) or len(ids) > limit:
            raise _bad_json(f"'{key}' must be a list of at most {limit} event ids")
        for event_id in ids:
            try:
                parse_event_id(event_id if isinstance(event_id, str) else "", room_version)
            except MatrixError:
                raise _bad_json(f"'{key}' must hold event ids of this room version") from None
    # rooms/v3: event ids are computed, never sent; one in the body would be hashed and signed.
    if "event_id" in event:
        raise _bad_json("Events in this room version carry no 'event_id'")
    if "state_key" in event and not isinstance(event["state_key"], str):
        raise _bad_json("'state_key' must be a string")
    for key in ("sender", "state_key", "type"):
        value = event.get(key)
        # CS §Size limits: these are at most 255 bytes.
        if isinstance(value, str) and len(value.encode("utf-8")) > 255:
            raise _bad_json(f"'{key}' is longer than 255 bytes")


def check_send_knock_event(
    event: JsonDict, room_version: RoomVersion, *, room_id: str, event_id: str, origin: str
) -> None:
    """The knocks.yaml checks on a send_knock body (SHOULD be 400 M_INVALID_PARAM, v1.18).

    The signature check needs keys and is the caller's (check_event_signature); the event id in
    the path is compared with the id computed for the version.
    """
    check_pdu_format(event, room_version)
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


def get_redacted_if_hash_mismatch(event: JsonDict, room_version: RoomVersion) -> JsonDict:
    """SS §Validating hashes and signatures: on a content-hash mismatch, keep the redacted copy."""
    if is_content_hash_valid(event):
        return event
    return redact_event(event, room_version)


def check_send_knock_auth(
    event: JsonDict,
    room_version: RoomVersion,
    *,
    auth_events: list[JsonDict],
    state_before: StateMap,
    current_state: StateMap,
    create_event: JsonDict | None,
    is_signed_by: Callable[[str], bool] | None = None,
) -> None:
    """SS §Checks performed on receipt of a PDU, steps 4-6, for a knock (403 on failure).

    The knock must pass the auth rules against its own auth_events, against the state before it
    (from its prev_events) and against the room's current state; knocks.yaml: a rejected or
    soft-failed knock is 403 M_FORBIDDEN (Synapse: "knock event was rejected").
    """
    # Step 4: auth_events are exactly a valid selection (rule 2 / v12 rule 3).
    check_auth_events_selection(event, auth_events, room_version)
    auth_state = {(e["type"], e["state_key"]): e for e in auth_events}
    for state in (auth_state, state_before, current_state):
        check_auth_rules(
            event, state, room_version, create_event=create_event, is_signed_by=is_signed_by
        )
