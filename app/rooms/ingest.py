"""The one intake for events other servers send (SS §Checks performed on receipt of a PDU).

Every endpoint that accepts a remote event (send_knock today; send_join, send_leave and /send
next) calls ``accept_pdu`` after its own endpoint checks: format, signatures (keys through the
keyring), content hash (redact on mismatch), auth against the event's auth_events, the state
before it and the current state, then persist and fan out in one write transaction. Synapse's
``FederationEventHandler.on_send_membership_event`` / ``on_receive_pdu`` play this part there.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from signedjson.types import VerifyKey

from app.rooms import Resident
from app.rooms.admin import RoomAdmin
from app.rooms.persist import persist_and_fan_out
from db.store import Store
from matrix.auth_rules import CREATE_KEY, StateKey, get_auth_event_keys
from matrix.errors import MatrixError
from matrix.events import check_event_signature, compute_event_id
from matrix.ids import get_domain
from matrix.pdu_checks import (
    build_received_pdu,
    check_outlier_auth,
    check_pdu_auth,
    check_pdu_format,
    check_pdu_references_in_room,
    get_redacted_if_hash_mismatch,
)
from matrix.room_versions import RoomVersion
from matrix.types import JsonDict

logger = logging.getLogger(__name__)

# Forward extremities a room may keep before a dummy event collapses them (Synapse: 10)
MAX_EXTREMITIES = 10

EndpointCheck = Callable[[JsonDict], None]
# Adds this server's own signature to an accepted event (a restricted join it authorises).
Countersign = Callable[[JsonDict], JsonDict]


@dataclass(frozen=True)
class AcceptedPdu:
    """An event the intake accepted: as stored (redacted on a hash mismatch, countersigned),
    and whether this call stored it (False: it was stored already)."""

    event: JsonDict
    event_id: str
    is_new: bool
    # SS §Soft failure: stored, but not part of the room (only with allow_soft_failure)
    soft_failed: bool = False


async def accept_pdu(
    resident: Resident,
    room_id: str,
    room_version: RoomVersion,
    pdu: JsonDict,
    *,
    event_id: str,
    origin: str,
    check_endpoint: EndpointCheck,
    countersign: Countersign | None = None,
    fan_out: bool = True,
    allow_soft_failure: bool = False,
    store_rejected: bool = False,
) -> AcceptedPdu:
    """Check, authorise, store and fan out one PDU sent by ``origin``. An event stored already
    is answered again with nothing written. Raises MatrixError on refusal, writing nothing.

    ``check_endpoint`` holds what the endpoint adds to the generic checks (knocks.yaml's list
    for send_knock); it runs right after the format check, before any key is fetched.
    ``countersign`` adds this server's signature before the auth checks (send_join of a
    restricted join it authorised). ``fan_out`` is False for events a server sends in its own
    transaction (SS §Transactions: each server sends its events to every other itself); the
    handshakes (send_join, send_leave, send_knock) relay on the sender's behalf.
    ``allow_soft_failure`` (transactions): an event that fails only the current state is
    stored soft-failed (SS §Soft failure) instead of refused. ``store_rejected``
    (transactions): an event that fails the auth rules against its auth events or the state
    before it is stored as rejected (SS §Rejection: kept, so it is not fetched again, never
    served or relayed, no state change) before the refusal is raised; the handshakes store
    nothing they refuse.
    """
    # Step 1: valid for the room version (M_BAD_JSON), then the endpoint's own rules.
    check_pdu_format(pdu, room_version)
    pdu = build_received_pdu(pdu)
    check_endpoint(pdu)
    # Step 2: signed by the sender's server (SS §Validating hashes and signatures).
    sender_server = get_domain(pdu["sender"])
    verify_keys = await _get_event_verify_keys(resident, sender_server, pdu)
    check_event_signature(pdu, room_version, sender_server, verify_keys)
    # Step 3: a content-hash mismatch keeps the redacted copy.
    event = get_redacted_if_hash_mismatch(pdu, room_version)
    if countersign is not None:
        event = countersign(event)
    # Every wait (key fetches) happens before the state is read: from here to the write
    # nothing yields, and the write lock is held, so no ban can land between check and store.
    is_signed_by = await _get_authoriser_check(resident, event, room_version)
    store = resident.store
    rejection: MatrixError | None = None
    soft_failed = False
    with store.write_transaction(room_id):
        rejected = store.is_event_rejected(event_id)
        # A rejected event is refused again; an accepted one re-sent is answered again with
        # nothing stored (Synapse treats a known event the same way).
        if rejected:
            raise MatrixError("M_FORBIDDEN", f"The event {event_id} was rejected")
        if rejected is not None:
            stored = store.get_event(event_id)
            return AcceptedPdu(stored if stored is not None else event, event_id, is_new=False)
        check_pdu_references_in_room(
            event, room_id, store.get_event_room_ids([*event["prev_events"], *event["auth_events"]])
        )
        # An event this server cannot judge (an unknown prev or auth event) is refused with
        # nothing stored; one it judges and refuses may be kept as rejected.
        _check_prev_events_known(store, event)
        auth_events = _load_auth_events(store, event)
        try:
            soft_failed = _check_auth(
                store, event, room_id, room_version, auth_events, is_signed_by, allow_soft_failure
            )
        except MatrixError as exc:
            if not store_rejected:
                raise
            rejection = exc
        if rejection is not None or soft_failed:
            # Rejected: kept so it is not fetched again, changing nothing. Soft-failed: kept
            # and served on /event, never relayed, not state, extremity or timeline.
            store.persist_events(
                [(event, event_id)],
                room_version.identifier,
                rejected=rejection is not None,
                soft_failed=soft_failed,
            )
        else:
            persist_and_fan_out(
                store,
                resident.outbox if fan_out else None,
                [(event, event_id)],
                room_id,
                room_version.identifier,
                server_name=resident.server_name,
                origin=origin,
            )
    if rejection is not None:
        logger.info(
            "Rejected %s %s from %s in %s: %s",
            event["type"],
            event_id,
            event["sender"],
            room_id,
            rejection.message,
        )
        raise rejection
    logger.info(
        "%s %s %s from %s in %s",
        "Soft-failed" if soft_failed else "Accepted",
        event["type"],
        event_id,
        event["sender"],
        room_id,
    )
    if not soft_failed:
        _collapse_extremities(resident, room_id)
    return AcceptedPdu(event, event_id, is_new=True, soft_failed=soft_failed)


def _collapse_extremities(resident: Resident, room_id: str) -> None:
    """Past MAX_EXTREMITIES forward extremities (remote events built on old templates, a burst
    of knocks), send an org.matrix.dummy_event citing them, as Synapse does
    (``_send_dummy_events_to_fill_extremities``): every extremity costs each later event a
    state set to resolve. The spec is silent; Synapse's threshold is 10."""
    store = resident.store
    if len(store.get_forward_extremities(room_id, MAX_EXTREMITIES + 1)) <= MAX_EXTREMITIES:
        return
    admin = RoomAdmin(
        store, resident.server_name, resident.signing_key, resident.clock, resident.outbox
    )
    try:
        dummy_id = admin.send_event(room_id, "org.matrix.dummy_event", {})
    except MatrixError as exc:  # no local member may send it (the creator left)
        logger.info("Could not collapse the extremities of %s: %s", room_id, exc.message)
        return
    logger.info("Sent %s to collapse the forward extremities of %s", dummy_id, room_id)


async def accept_outlier(
    resident: Resident, room_id: str, room_version: RoomVersion, pdu: JsonDict, *, event_id: str
) -> bool:
    """Check and store an event fetched to fill a gap (an outlier, app/rooms/gaps.py): format,
    that it is the event asked for, in this room, signed by its sender's server, its hash
    (redact on mismatch), and step 4 against its own auth events, which must be stored here
    already. Failing step 4 stores it rejected. Returns whether it was accepted; raises
    MatrixError when it cannot be judged or is not what was asked for (nothing stored).
    """
    check_pdu_format(pdu, room_version)
    pdu = build_received_pdu(pdu)
    if compute_event_id(pdu, room_version) != event_id or pdu.get("room_id") != room_id:
        raise MatrixError("M_FORBIDDEN", f"The origin answered another event for {event_id}")
    sender_server = get_domain(pdu["sender"])
    verify_keys = await _get_event_verify_keys(resident, sender_server, pdu)
    check_event_signature(pdu, room_version, sender_server, verify_keys)
    event = get_redacted_if_hash_mismatch(pdu, room_version)
    is_signed_by = await _get_authoriser_check(resident, event, room_version)
    store = resident.store
    with store.write_transaction(room_id):
        known = store.is_event_rejected(event_id)
        if known is not None:
            return not known
        auth_events = _load_auth_events(store, event)
        rejected = any(auth_event is None for auth_event in auth_events)
        if not rejected:
            try:
                check_outlier_auth(
                    event,
                    room_version,
                    auth_events=[e for e in auth_events if e is not None],
                    create_event=store.get_current_state_event(room_id, "m.room.create", ""),
                    is_signed_by=is_signed_by,
                )
            except MatrixError:
                rejected = True
        store.persist_events(
            [(event, event_id)], room_version.identifier, rejected=rejected, outlier=True
        )
    logger.info(
        "Fetched %s %s %s in %s",
        "rejected" if rejected else "outlier",
        event["type"],
        event_id,
        room_id,
    )
    return not rejected


async def _get_event_verify_keys(
    resident: Resident, server_name: str, event: JsonDict
) -> dict[str, VerifyKey]:
    signatures = event["signatures"].get(server_name)
    key_ids = list(signatures) if isinstance(signatures, dict) else []
    if not key_ids:
        return {}
    return await resident.keyring.get_event_verify_keys(
        server_name, key_ids, event["origin_server_ts"]
    )


async def _get_authoriser_check(
    resident: Resident, event: JsonDict, room_version: RoomVersion
) -> Callable[[str], bool]:
    """v8+ auth rule 4.2: join_authorised_via_users_server must be signed by that user's server;
    fetch its keys up front so the pure rules can ask synchronously."""
    authoriser = event["content"].get("join_authorised_via_users_server")
    keys: dict[str, dict[str, VerifyKey]] = {}
    if room_version.restricted_join_rule and isinstance(authoriser, str) and ":" in authoriser:
        server = get_domain(authoriser)
        keys[server] = await _get_event_verify_keys(resident, server, event)

    def is_signed_by(server_name: str) -> bool:
        try:
            check_event_signature(event, room_version, server_name, keys.get(server_name, {}))
        except MatrixError:
            return False
        return True

    return is_signed_by


def _check_auth(
    store: Store,
    event: JsonDict,
    room_id: str,
    room_version: RoomVersion,
    auth_events: list[JsonDict | None],
    is_signed_by: Callable[[str], bool],
    allow_soft_failure: bool,
) -> bool:
    """Steps 4-6: the auth rules against the event's auth_events, the state before it and the
    current state (matrix/pdu_checks.py); True when it soft-failed. An auth event that was
    itself rejected rejects the event (step 4)."""
    if any(auth_event is None for auth_event in auth_events):
        raise MatrixError("M_FORBIDDEN", "The event cites a rejected auth event")
    keys = list(dict.fromkeys([*get_auth_event_keys(event, room_version), CREATE_KEY]))
    current = store.get_current_state_events(room_id, keys)
    return check_pdu_auth(
        event,
        room_version,
        auth_events=[auth_event for auth_event in auth_events if auth_event is not None],
        state_before=_load_state_before(store, room_id, room_version, event, keys),
        current_state=current,
        create_event=current.get(CREATE_KEY),
        is_signed_by=is_signed_by,
        allow_soft_failure=allow_soft_failure,
    )


def _load_auth_events(store: Store, event: JsonDict) -> list[JsonDict | None]:
    """Step 4's inputs: each auth event, None for one stored rejected. An unknown one is
    refused with nothing stored: this server cannot judge the event (the callers fetch
    missing auth events first)."""
    found = store.get_events_by_id(event["auth_events"])
    missing = [event_id for event_id in event["auth_events"] if event_id not in found]
    if missing:
        raise MatrixError("M_FORBIDDEN", f"Unknown auth events {missing}")
    return [
        None if store.is_event_rejected(event_id) else found[event_id]
        for event_id in event["auth_events"]
    ]


def _check_prev_events_known(store: Store, event: JsonDict) -> None:
    """Step 5 needs the state after every prev_event (the callers fetch missing ones first:
    SS §Backfilling and retrieving missing events)."""
    missing = store.get_events_without_state(event["prev_events"])
    if missing:
        raise MatrixError(
            "M_FORBIDDEN",
            f"The state at prev_events {missing[:3]} is not known to this server",
        )


def _load_state_before(
    store: Store, room_id: str, room_version: RoomVersion, event: JsonDict, keys: list[StateKey]
) -> dict[StateKey, JsonDict]:
    """Step 5, the state before the event: the resolution of the states after its
    prev_events (SS §Room State Resolution)."""
    return store.get_state_events_after_prev_events(
        room_id, room_version.identifier, event["prev_events"], keys
    )
