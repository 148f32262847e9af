"""Inbound transactions (SS §Transactions): each PDU through the intake, a result per PDU."""

import asyncio
import logging
from urllib.parse import quote

from app.federation.client import FederationRequestError
from app.rooms import Resident, hosted, ingest
from matrix.errors import MatrixError
from matrix.events import compute_event_id
from matrix.pdu_checks import check_pdu_format, check_transaction_format
from matrix.room_versions import RoomVersion
from matrix.types import JsonDict

logger = logging.getLogger(__name__)

# What one gap may cost (Synapse asks for 10 events with a 60 s timeout; ours is shorter,
# config missing_events_timeout_s, as the origin waits for our answer to its transaction).
MISSING_EVENTS_LIMIT = 10
MISSING_EVENTS_MAX_BYTES = 1024 * 1024


async def receive_transaction(
    resident: Resident, origin: str, txn_id: str, body: JsonDict
) -> JsonDict:
    """PUT /send/{txnId}: ``{"pdus": {event_id: {} | {"error": ...}}}``, always (a rejected
    PDU does not fail the transaction: SS §Rejection). EDUs are accepted and ignored: nothing
    in the rooms hosted here depends on typing, receipts or presence.

    A retried (origin, txnId) is answered as the first time without being applied again
    (transactions.yaml: the txnId de-duplicates; Synapse keeps received_transactions). PDUs for
    rooms not resident here get no entry (Synapse: "Ignoring PDU for unknown room").
    """
    check_transaction_format(body)
    store = resident.store
    replay = store.get_transaction_response(origin, txn_id)
    if replay is not None:
        return replay
    results: dict[str, JsonDict] = {}
    for pdu in body.get("pdus", []):
        outcome = await _receive_pdu(resident, origin, pdu)
        if outcome is not None:
            event_id, result = outcome
            results[event_id] = result
    response: JsonDict = {"pdus": results}
    store.store_transaction_response(origin, txn_id, response, resident.clock())
    edus = body.get("edus", [])
    logger.info(
        "Transaction %s from %s: %d PDUs (%d refused), %d EDUs ignored",
        txn_id,
        origin,
        len(results),
        sum(1 for result in results.values() if "error" in result),
        len(edus),
    )
    return response


async def _receive_pdu(
    resident: Resident, origin: str, pdu: object, *, fetch_missing: bool = True
) -> tuple[str, JsonDict] | None:
    """(event id, result) for one PDU, or None when it gets no entry (not an object, a room
    not resident here, an event too malformed to name)."""
    if not isinstance(pdu, dict) or not isinstance(pdu.get("room_id"), str):
        return None
    room_id: str = pdu["room_id"]
    room_version = _get_resident_room_version(resident, room_id)
    if room_version is None:
        return None
    try:
        # Step 1 first: only a well-formed event has an id to report against.
        check_pdu_format(pdu, room_version)
    except MatrixError as exc:
        logger.info("Dropped a malformed PDU from %s in %s: %s", origin, room_id, exc.message)
        return None
    event_id = compute_event_id(pdu, room_version)
    if fetch_missing and resident.store.get_newest_stream_ordering(pdu["prev_events"]) is None:
        # SS §Backfilling and retrieving missing events: ask the origin for the gap first.
        await _fetch_missing_events(resident, origin, room_id, room_version, pdu, event_id)
    try:
        # SS §Server Access Control Lists: a denied origin's PDUs are refused, one by one.
        hosted.check_origin_acl(resident.store, room_id, origin)
        # Events of a transaction are the origin's own traffic: it sends them to every server
        # in the room itself, so they are not relayed (fan_out=False).
        await ingest.accept_pdu(
            resident,
            room_id,
            room_version,
            pdu,
            event_id=event_id,
            origin=origin,
            check_endpoint=_no_endpoint_checks,
            fan_out=False,
            # SS §Soft failure: an event that fails only the current state is kept, unseen.
            allow_soft_failure=True,
            # SS §Rejection: kept as rejected, so it is neither fetched nor judged again.
            store_rejected=True,
        )
    except MatrixError as exc:
        logger.info("Refused %s from %s in %s: %s", event_id, origin, room_id, exc.message)
        return event_id, {"error": f"{exc.errcode}: {exc.message}"}
    return event_id, {}


async def _fetch_missing_events(
    resident: Resident,
    origin: str,
    room_id: str,
    room_version: RoomVersion,
    pdu: JsonDict,
    event_id: str,
) -> None:
    """Fill a gap before ``pdu``: POST /get_missing_events to the origin (earliest = our
    forward extremities, latest = the PDU, limit 10, as Synapse asks), then put what comes back
    through the intake, oldest first. Bounded (one request, its timeout and size); a failure
    leaves the gap, and the PDU is then refused in its entry. State at a gap the walk does not
    close (Synapse's /state_ids fallback) is not fetched yet.
    """
    client = resident.federation
    if client is None:
        return
    store = resident.store
    earliest = [event for event, _depth in store.get_forward_extremities(room_id)]
    body = {
        "earliest_events": earliest,
        "latest_events": [event_id],
        "limit": MISSING_EVENTS_LIMIT,
        "min_depth": 0,
    }
    path = f"/_matrix/federation/v1/get_missing_events/{quote(room_id, safe='')}"
    try:
        async with asyncio.timeout(resident.missing_events_timeout_s):
            status, answer = await client.request(
                "POST", origin, path, body, max_bytes=MISSING_EVENTS_MAX_BYTES
            )
    except (FederationRequestError, TimeoutError) as exc:
        logger.info("Could not fetch events missing before %s from %s: %s", event_id, origin, exc)
        return
    events = answer.get("events") if status == 200 and isinstance(answer, dict) else None
    if not isinstance(events, list):
        logger.info("%s answered get_missing_events with HTTP %s", origin, status)
        return
    fetched = [e for e in events[:MISSING_EVENTS_LIMIT] if isinstance(e, dict)]
    fetched.sort(key=_depth_of)
    for missing in fetched:
        if missing.get("room_id") != room_id:
            continue
        outcome = await _receive_pdu(resident, origin, missing, fetch_missing=False)
        if outcome is not None and "error" in outcome[1]:
            logger.info("A fetched event %s was refused: %s", outcome[0], outcome[1]["error"])


def _depth_of(event: JsonDict) -> int:
    depth = event.get("depth")
    return depth if isinstance(depth, int) else 0


def _no_endpoint_checks(pdu: JsonDict) -> None:
    """/send adds nothing to the generic receipt checks (SS §Checks performed on receipt)."""


def _get_resident_room_version(resident: Resident, room_id: str) -> RoomVersion | None:
    try:
        return hosted.load_resident_room(resident.store, room_id, resident.server_name)
    except MatrixError:
        return None
