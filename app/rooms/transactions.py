"""Inbound transactions (SS §Transactions): each PDU through the intake, a result per PDU."""

import logging

from app.rooms import Resident, gaps, hosted, ingest
from matrix.errors import MatrixError
from matrix.events import compute_event_id
from matrix.pdu_checks import check_pdu_format, check_transaction_format
from matrix.room_versions import RoomVersion
from matrix.types import JsonDict

logger = logging.getLogger(__name__)


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
    if fetch_missing:
        # SS §Backfilling and retrieving missing events: ask the origin for what the PDU
        # cites and this server lacks (prev events, the state at them, auth events) first.
        await gaps.fill_gaps(
            resident,
            origin,
            room_id,
            room_version,
            pdu,
            event_id,
            lambda missing: _receive_pdu(resident, origin, missing, fetch_missing=False),
        )
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


def _no_endpoint_checks(pdu: JsonDict) -> None:
    """/send adds nothing to the generic receipt checks (SS §Checks performed on receipt)."""


def _get_resident_room_version(resident: Resident, room_id: str) -> RoomVersion | None:
    try:
        return hosted.load_resident_room(resident.store, room_id, resident.server_name)
    except MatrixError:
        return None
