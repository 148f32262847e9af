"""Checks on any PDU received from another server (SS §Checks performed on receipt of a PDU)."""

from collections.abc import Callable, Mapping

from matrix.auth_rules import StateMap, check_auth_events_selection, check_auth_rules
from matrix.canonical import check_canonical_json, encode_canonical_json
from matrix.errors import MatrixError
from matrix.events import is_content_hash_valid, redact_event
from matrix.ids import parse_event_id
from matrix.room_events import MAX_AUTH_EVENTS, MAX_PREV_EVENTS
from matrix.room_versions import RoomVersion
from matrix.types import JsonDict

# CS §Size limits: a whole event is at most 65,536 bytes of canonical JSON, signatures included.
MAX_PDU_BYTES = 65536


def _bad_json(message: str) -> MatrixError:
    return MatrixError("M_BAD_JSON", message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# transactions.yaml: origin_server_ts is an int64 (format: int64), as every timestamp is.
_INT64_MAX = 2**63 - 1


def check_transaction_format(transaction: JsonDict) -> None:
    """What the transaction schema says and JSON-schema validation leaves out: the
    timestamp's int64 range (M_BAD_JSON)."""
    ts = transaction.get("origin_server_ts")
    if not isinstance(ts, int) or isinstance(ts, bool) or not -_INT64_MAX - 1 <= ts <= _INT64_MAX:
        raise _bad_json("origin_server_ts must be a 64-bit integer")


def check_pdu_format(event: JsonDict, room_version: RoomVersion) -> None:
    """The PDU schema of the room version (SS §Checks performed on receipt of a PDU, step 1).

    Only the v3+ formats are covered (event ids as strings, no event_id key): its one caller so
    far, the intake, receives knocks, which exist from v7. The v1/v2 format (an ``event_id`` key,
    ``[id, hashes]`` references) must be added here before any endpoint takes v1/v2 events.
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


# SS §PDUs: ``unsigned`` is covered by neither hashes nor signatures, so a sender can put
# anything there; the PDU schema names only ``age``. As Synapse does
# (federation_base._strip_unsigned_values), a received PDU keeps only ``age``, plus the stripped
# room state a membership may carry (``invite_room_state``, ``knock_room_state``); a non-object
# becomes {} (issue 21, finding 9).
UNSIGNED_KEPT = frozenset({"age"})
UNSIGNED_KEPT_MEMBER = frozenset({"age", "invite_room_state", "knock_room_state"})


def build_received_pdu(event: JsonDict) -> JsonDict:
    """``event`` with ``unsigned`` cut down to what may be stored and relayed."""
    if "unsigned" not in event:
        return event
    unsigned = event["unsigned"]
    kept = UNSIGNED_KEPT_MEMBER if event.get("type") == "m.room.member" else UNSIGNED_KEPT
    filtered = (
        {k: v for k, v in unsigned.items() if k in kept} if isinstance(unsigned, dict) else {}
    )
    return {**event, "unsigned": filtered}


def check_pdu_references_in_room(
    event: JsonDict, room_id: str, known_room_ids: Mapping[str, str]
) -> None:
    """prev_events and auth_events must be events of the event's own room (M_FORBIDDEN).

    ``known_room_ids`` maps each referenced event known here to its room; unknown ones are left
    to the later steps. The spec is silent; Synapse refuses an auth event of another room
    (event_auth.check_state_independent_auth_rules), and a prev_event of another room would make
    the event a forward extremity of the wrong room (issue 21, finding 8).
    """
    for key in ("prev_events", "auth_events"):
        for event_id in event[key]:
            found = known_room_ids.get(event_id)
            if found is not None and found != room_id:
                raise MatrixError("M_FORBIDDEN", f"{key} holds {event_id} of another room")


def get_redacted_if_hash_mismatch(event: JsonDict, room_version: RoomVersion) -> JsonDict:
    """SS §Validating hashes and signatures: on a content-hash mismatch, keep the redacted copy."""
    if is_content_hash_valid(event):
        return event
    return redact_event(event, room_version)


def check_pdu_auth(
    event: JsonDict,
    room_version: RoomVersion,
    *,
    auth_events: list[JsonDict],
    state_before: StateMap,
    current_state: StateMap,
    create_event: JsonDict | None,
    is_signed_by: Callable[[str], bool] | None = None,
    allow_soft_failure: bool = False,
) -> bool:
    """SS §Checks performed on receipt of a PDU, steps 4-6 (M_FORBIDDEN on failure).

    The event must pass the auth rules against its own auth_events, against the state before it
    (from its prev_events) and against the room's current state. Failing only the current state
    is the spec's soft failure (§Soft failure): with ``allow_soft_failure`` (events of a
    transaction) it returns True, and the event is stored without becoming part of the room;
    the handshakes (send_knock, send_join, send_leave) refuse it like a rejection, as
    knocks.yaml allows (403 M_FORBIDDEN; Synapse: "knock event was rejected"). False: passed.
    """
    # Step 4: auth_events are exactly a valid selection (rule 2 / v12 rule 3).
    check_auth_events_selection(event, auth_events, room_version)
    auth_state = {(e["type"], e["state_key"]): e for e in auth_events}
    for state in (auth_state, state_before):
        check_auth_rules(
            event, state, room_version, create_event=create_event, is_signed_by=is_signed_by
        )
    # Step 6
    try:
        check_auth_rules(
            event,
            current_state,
            room_version,
            create_event=create_event,
            is_signed_by=is_signed_by,
        )
    except MatrixError:
        if not allow_soft_failure:
            raise
        return True
    return False


def check_outlier_auth(
    event: JsonDict,
    room_version: RoomVersion,
    *,
    auth_events: list[JsonDict],
    create_event: JsonDict | None,
    is_signed_by: Callable[[str], bool] | None = None,
) -> None:
    """SS §Checks performed on receipt of a PDU, step 4 alone, for an event fetched to fill a
    gap (an outlier: the state before it is not known here, so steps 5 and 6 cannot run; Synapse
    checks outliers the same way). M_FORBIDDEN on failure."""
    check_auth_events_selection(event, auth_events, room_version)
    auth_state = {(e["type"], e["state_key"]): e for e in auth_events}
    check_auth_rules(
        event, auth_state, room_version, create_event=create_event, is_signed_by=is_signed_by
    )
