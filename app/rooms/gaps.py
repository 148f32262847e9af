"""Filling what a received PDU cites and this server lacks, from its origin, bounded in time,
size and count (SS §Backfilling and retrieving missing events; Synapse's procedure)."""

# Synapse's FederationEventHandler, step by step (lifecycle-digest "Missing prev_events"):
# 1. POST /get_missing_events to the origin (earliest = our forward extremities, latest = the
#    PDU, limit 10); what comes back goes through the intake, oldest first.
# 2. For a prev event still missing: GET /state_ids at it, then GET /event for it and for every
#    state or auth-chain event not stored here; they are stored as outliers (checked against
#    their own auth events), and the state after the prev event is recorded from the answer.
# 3. Auth events of the PDU that are not stored here: GET /event_auth for the PDU, outliers too.
# One deadline (config missing_events_timeout_s) covers all of it: the origin waits for our
# answer to its transaction meanwhile. A gap left open refuses the PDU in its entry.

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import quote

from app.federation.client import FederationRequestError
from app.rooms import Resident, ingest
from matrix.errors import MatrixError
from matrix.events import compute_event_id
from matrix.room_versions import RoomVersion
from matrix.types import JsonDict

logger = logging.getLogger(__name__)

MISSING_EVENTS_LIMIT = 10
MISSING_EVENTS_MAX_BYTES = 1024 * 1024
# A /state_ids answer for a 100,000-member room is about 5 MB of event ids.
STATE_IDS_MAX_BYTES = 16 * 1024 * 1024
EVENT_AUTH_MAX_BYTES = 4 * 1024 * 1024
# One event in a transaction (events are at most 65,536 bytes, CS §Size limits).
EVENT_MAX_BYTES = 128 * 1024
# Per PDU: prev events filled through /state_ids, and events fetched one by one.
MAX_STATE_GAPS = 3
MAX_FETCHED_EVENTS = 100
FETCHES_AT_ONCE = 5

# The intake for a PDU the walk of step 1 brought (transactions.py, without gap filling)
Receive = Callable[[JsonDict], Awaitable[object]]


async def fill_gaps(
    resident: Resident,
    origin: str,
    room_id: str,
    room_version: RoomVersion,
    pdu: JsonDict,
    event_id: str,
    receive: Receive,
) -> None:
    """Fetch what ``pdu`` cites and this server lacks, within one deadline; every failure is
    logged and leaves the gap (the intake then refuses the PDU with a clear error)."""
    if resident.federation is None:
        return
    store = resident.store
    if not store.get_events_without_state(pdu["prev_events"]) and not (
        store.get_unknown_event_ids(pdu["auth_events"])
    ):
        return
    try:
        async with asyncio.timeout(resident.missing_events_timeout_s):
            if store.get_events_without_state(pdu["prev_events"]):
                await _get_missing_events(resident, origin, room_id, pdu, event_id, receive)
            for prev in store.get_events_without_state(pdu["prev_events"])[:MAX_STATE_GAPS]:
                await _fill_state_at(resident, origin, room_id, room_version, prev)
            if store.get_unknown_event_ids(pdu["auth_events"]):
                await _fetch_auth_chain(resident, origin, room_id, room_version, event_id)
    except (FederationRequestError, TimeoutError, _GapError) as exc:
        logger.info(
            "Could not fill what %s cites from %s: %s", event_id, origin, str(exc) or "timed out"
        )


class _GapError(Exception):
    """The origin's answer cannot fill the gap (wrong shape, too many events, refused ones)."""


async def _request(
    resident: Resident, method: str, origin: str, path: str, body: object = None, *, max_bytes: int
) -> JsonDict:
    client = resident.federation
    assert client is not None
    status, answer = await client.request(method, origin, path, body, max_bytes=max_bytes)
    if status != 200 or not isinstance(answer, dict):
        raise _GapError(f"{method} {path.split('?')[0]} answered HTTP {status}")
    return answer


async def _get_missing_events(
    resident: Resident, origin: str, room_id: str, pdu: JsonDict, event_id: str, receive: Receive
) -> None:
    """Step 1: one /get_missing_events (limit 10, as Synapse asks), each event received
    through the intake, oldest first."""
    earliest = [event for event, _depth in resident.store.get_forward_extremities(room_id)]
    body = {
        "earliest_events": earliest,
        "latest_events": [event_id],
        "limit": MISSING_EVENTS_LIMIT,
        "min_depth": 0,
    }
    path = f"/_matrix/federation/v1/get_missing_events/{quote(room_id, safe='')}"
    try:
        answer = await _request(
            resident, "POST", origin, path, body, max_bytes=MISSING_EVENTS_MAX_BYTES
        )
    except (_GapError, FederationRequestError) as exc:
        logger.info("get_missing_events for %s from %s: %s", event_id, origin, exc)
        return  # the /state_ids step may still fill it
    events = answer.get("events")
    if not isinstance(events, list):
        logger.info("%s answered get_missing_events without an events list", origin)
        return
    fetched = [e for e in events[:MISSING_EVENTS_LIMIT] if isinstance(e, dict)]
    fetched.sort(key=_depth_of)
    for missing in fetched:
        if missing.get("room_id") == room_id:
            await receive(missing)


async def _fill_state_at(
    resident: Resident, origin: str, room_id: str, room_version: RoomVersion, prev_id: str
) -> None:
    """Step 2: the state at ``prev_id`` from /state_ids, the events of it not stored here
    from /event, then the state after ``prev_id`` recorded."""
    store = resident.store
    path = (
        f"/_matrix/federation/v1/state_ids/{quote(room_id, safe='')}"
        f"?event_id={quote(prev_id, safe='')}"
    )
    answer = await _request(resident, "GET", origin, path, max_bytes=STATE_IDS_MAX_BYTES)
    pdu_ids = _get_id_list(answer, "pdu_ids")
    chain_ids = _get_id_list(answer, "auth_chain_ids")
    wanted = store.get_unknown_event_ids([prev_id, *chain_ids, *pdu_ids])
    if len(wanted) > MAX_FETCHED_EVENTS:
        raise _GapError(f"{len(wanted)} events missing at {prev_id} (at most {MAX_FETCHED_EVENTS})")
    fetched = await _fetch_events(resident, origin, wanted)
    await _accept_outliers(resident, room_id, room_version, fetched)
    prev = store.get_event(prev_id)
    if prev is None or store.get_unknown_event_ids(pdu_ids):
        raise _GapError(f"the state at {prev_id} could not be fetched whole")
    # The origin's state, less what this server rejected (a rejected event is never state) and
    # anything of another room it may name.
    state_before = {
        key: state_id for state_id, key in store.get_state_keys_of(room_id, pdu_ids).items()
    }
    with store.write_transaction(room_id):
        store.set_outlier_state(room_id, prev_id, prev, state_before)
    logger.info("Filled the state at %s from %s (%d events fetched)", prev_id, origin, len(fetched))


async def _fetch_auth_chain(
    resident: Resident, origin: str, room_id: str, room_version: RoomVersion, event_id: str
) -> None:
    """Step 3: /event_auth for the PDU; the chain's events not stored here become outliers."""
    path = f"/_matrix/federation/v1/event_auth/{quote(room_id, safe='')}/{quote(event_id, safe='')}"
    answer = await _request(resident, "GET", origin, path, max_bytes=EVENT_AUTH_MAX_BYTES)
    chain = answer.get("auth_chain")
    if not isinstance(chain, list):
        raise _GapError("event_auth answered without an auth_chain list")
    store = resident.store
    fetched: dict[str, JsonDict] = {}
    for event in chain:
        if isinstance(event, dict) and event.get("room_id", room_id) == room_id:
            try:
                fetched_id = compute_event_id(event, room_version)
            except (MatrixError, KeyError, TypeError, ValueError):
                continue
            fetched[fetched_id] = event
    fetched = {e: fetched[e] for e in store.get_unknown_event_ids(list(fetched))}
    if len(fetched) > MAX_FETCHED_EVENTS:
        raise _GapError(f"{len(fetched)} auth events missing (at most {MAX_FETCHED_EVENTS})")
    await _accept_outliers(resident, room_id, room_version, fetched)


async def _fetch_events(
    resident: Resident, origin: str, event_ids: Iterable[str]
) -> dict[str, JsonDict]:
    """GET /event for each id, a few at a time; an event the origin does not give is left out."""
    slots = asyncio.Semaphore(FETCHES_AT_ONCE)
    found: dict[str, JsonDict] = {}

    async def fetch(event_id: str) -> None:
        async with slots:
            path = f"/_matrix/federation/v1/event/{quote(event_id, safe='')}"
            try:
                answer = await _request(resident, "GET", origin, path, max_bytes=EVENT_MAX_BYTES)
            except (_GapError, FederationRequestError) as exc:
                logger.info("Could not fetch %s from %s: %s", event_id, origin, exc)
                return
            pdus = answer.get("pdus")
            if isinstance(pdus, list) and len(pdus) == 1 and isinstance(pdus[0], dict):
                found[event_id] = pdus[0]

    await asyncio.gather(*(fetch(event_id) for event_id in event_ids))
    return found


async def _accept_outliers(
    resident: Resident, room_id: str, room_version: RoomVersion, events: dict[str, JsonDict]
) -> None:
    """Store fetched events through the intake's outlier check, each once all its auth events
    are stored (the auth chain's order); those that never can be are left out."""
    store = resident.store
    waiting = dict(events)
    while waiting:
        ready = [
            event_id
            for event_id, event in waiting.items()
            if not isinstance(event.get("auth_events"), list)
            or all(
                store.get_event(a) is not None for a in event["auth_events"] if isinstance(a, str)
            )
        ]
        if not ready:
            break
        for event_id in sorted(ready, key=lambda e: _depth_of(waiting[e])):
            event = waiting.pop(event_id)
            try:
                await ingest.accept_outlier(
                    resident, room_id, room_version, event, event_id=event_id
                )
            except MatrixError as exc:
                logger.info("A fetched event %s was refused: %s", event_id, exc.message)


def _get_id_list(answer: JsonDict, name: str) -> list[str]:
    value = answer.get(name)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _GapError(f"state_ids answered without a {name} list of event ids")
    return value


def _depth_of(event: JsonDict) -> int:
    depth = event.get("depth")
    return depth if isinstance(depth, int) else 0
