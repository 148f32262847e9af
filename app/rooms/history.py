"""The read endpoints other servers use to catch up (SS §Retrieving events, §Backfilling)."""

from collections.abc import Sequence
from typing import Literal, overload

from api_types.federation import (
    EventAuthResponse,
    MissingEventsResponse,
    PduTransaction,
    SinglePduTransaction,
    StateIdsResponse,
    StateResponse,
)
from app.rooms import Resident, hosted
from db.store import Store
from matrix.errors import MatrixError
from matrix.events import get_event_reference_ids, redact_event
from matrix.room_versions import RoomVersion, get_room_version
from matrix.types import JsonDict
from matrix.visibility import get_history_visibility, is_event_visible_to_server

# backfill.yaml gives no bound; Synapse caps get_missing_events at 20 and backfill at 100.
MAX_MISSING_EVENTS = 20
MAX_BACKFILL_EVENTS = 100


def check_server_in_room(store: Store, room_id: str, origin: str) -> RoomVersion:
    """Every read endpoint serves only servers with a user joined to the room now (Synapse's
    ``assert_host_in_room``: 403 "Host not in room"); 404 for a room unknown here."""
    version_id = store.get_room_version(room_id)
    room_version = get_room_version(version_id) if version_id else None
    if room_version is None:
        raise MatrixError("M_NOT_FOUND", f"Unknown room {room_id}")
    if not store.has_local_joined_member(room_id, origin):
        raise MatrixError("M_FORBIDDEN", f"{origin} has no user joined to {room_id}")
    # SS §Server Access Control Lists: the room's read endpoints are ACL-protected too.
    hosted.check_origin_acl(store, room_id, origin)
    return room_version


def _load_event(store: Store, event_id: str, room_id: str | None) -> tuple[str, int, JsonDict]:
    found = store.get_accepted_event_with_position(event_id)
    # A rejected event is not served (SS §Rejection); an event of another room is not there.
    if found is None or (room_id is not None and found[0] != room_id):
        raise MatrixError("M_NOT_FOUND", f"Unknown event {event_id}")
    return found


def _for_server(
    store: Store, origin: str, room_id: str, room_version: RoomVersion, event_id: str
) -> JsonDict:
    """The event as ``origin`` may see it: whole, or redacted where the room's history
    visibility at the event hides it from that server (matrix/visibility.py)."""
    _room, _position, event = _load_event(store, event_id, room_id)
    # The state after the event, as Synapse's filter_events_for_server reads it.
    key = ("m.room.history_visibility", "")
    visibility = store.get_state_events_at(event_id, [key], after=True).get(key)
    memberships = store.get_server_memberships_after(event_id, origin)
    if is_event_visible_to_server(get_history_visibility(visibility), memberships):
        return event
    return redact_event(event, room_version)


def get_event(resident: Resident, origin: str, event_id: str) -> SinglePduTransaction:
    """events.yaml GET /event/{eventId}: a transaction holding the one PDU
    (single_pdu_transaction.yaml)."""
    store = resident.store
    room_id, _position, _event = _load_event(store, event_id, None)
    room_version = check_server_in_room(store, room_id, origin)
    pdu = _for_server(store, origin, room_id, room_version, event_id)
    return {"origin": resident.server_name, "origin_server_ts": resident.clock(), "pdus": [pdu]}


@overload
def get_state(
    resident: Resident, origin: str, room_id: str, event_id: str, *, ids_only: Literal[False]
) -> StateResponse: ...


@overload
def get_state(
    resident: Resident, origin: str, room_id: str, event_id: str, *, ids_only: Literal[True]
) -> StateIdsResponse: ...


def get_state(
    resident: Resident, origin: str, room_id: str, event_id: str, *, ids_only: bool
) -> StateResponse | StateIdsResponse:
    """events.yaml /state and /state_ids: the room's state before ``event_id`` (not including
    it: Synapse's get_state_ids_for_pdu) and the auth chain of that state."""
    store = resident.store
    room_version = check_server_in_room(store, room_id, origin)
    _load_event(store, event_id, room_id)
    state_ids = store.get_state_ids_at(event_id) or {}
    pdu_ids = [state_ids[key] for key in sorted(state_ids)]
    chain_ids = hosted.get_auth_chain_ids(store, room_id, room_version, pdu_ids)
    if ids_only:
        return {"pdu_ids": pdu_ids, "auth_chain_ids": chain_ids}
    return {
        "pdus": store.get_events_in_order(pdu_ids),
        "auth_chain": store.get_events_in_order(chain_ids),
    }


def get_event_auth(
    resident: Resident, origin: str, room_id: str, event_id: str
) -> EventAuthResponse:
    """event_auth.yaml: the full auth chain of the event."""
    store = resident.store
    room_version = check_server_in_room(store, room_id, origin)
    _load_event(store, event_id, room_id)
    chain_ids = hosted.get_auth_chain_ids(store, room_id, room_version, [event_id])
    return {"auth_chain": store.get_events_in_order(chain_ids)}


def get_missing_events(
    resident: Resident,
    origin: str,
    room_id: str,
    *,
    earliest_events: Sequence[str],
    latest_events: Sequence[str],
    limit: int,
    min_depth: int,
) -> MissingEventsResponse:
    """backfill.yaml POST /get_missing_events: a breadth-first walk of the prev_events of
    ``latest_events`` that skips ``earliest_events`` and stops at ``limit`` (at most 20, as
    Synapse), oldest first; events below ``min_depth`` are left out."""
    store = resident.store
    room_version = check_server_in_room(store, room_id, origin)
    limit = max(0, min(limit, MAX_MISSING_EVENTS))
    seen = set(earliest_events)
    latest = [event_id for event_id in dict.fromkeys(latest_events) if event_id not in seen]
    seen.update(latest)
    front = _accepted_in_room(store, room_id, latest)
    found: list[str] = []
    while front and len(found) < limit:
        next_front: list[JsonDict] = []
        for event in front:
            for prev in get_event_reference_ids(event.get("prev_events")):
                if prev in seen or len(found) >= limit:
                    continue
                seen.add(prev)
                loaded = store.get_accepted_event_with_position(prev)
                if loaded is not None and loaded[0] == room_id:
                    found.append(prev)
                    next_front.append(loaded[2])
        front = next_front
    # Walked backwards from latest_events; reversed, roughly oldest first (as Synapse).
    events = [
        _for_server(store, origin, room_id, room_version, event_id) for event_id in reversed(found)
    ]
    return {"events": [event for event in events if event["depth"] >= min_depth]}


def get_backfill(
    resident: Resident, origin: str, room_id: str, from_events: Sequence[str], limit: int
) -> PduTransaction:
    """backfill.yaml GET /backfill: the events ``from_events`` and before them, newest first,
    at most ``limit`` (capped at 100, as Synapse), in a transaction."""
    store = resident.store
    room_version = check_server_in_room(store, room_id, origin)
    limit = max(0, min(limit, MAX_BACKFILL_EVENTS))
    seen: set[str] = set()
    front = list(dict.fromkeys(from_events))
    found: list[str] = []
    while front and len(found) < limit:
        next_front: list[str] = []
        for event_id in front:
            if event_id in seen or len(found) >= limit:
                continue
            seen.add(event_id)
            loaded = store.get_accepted_event_with_position(event_id)
            if loaded is None or loaded[0] != room_id:
                continue
            found.append(event_id)
            next_front.extend(get_event_reference_ids(loaded[2].get("prev_events")))
        front = next_front
    return _transaction(
        resident, [_for_server(store, origin, room_id, room_version, e) for e in found]
    )


def _accepted_in_room(store: Store, room_id: str, event_ids: Sequence[str]) -> list[JsonDict]:
    events = store.get_accepted_events(event_ids)
    return [
        events[event_id]
        for event_id in event_ids
        if event_id in events and events[event_id].get("room_id", room_id) == room_id
    ]


def _transaction(resident: Resident, pdus: list[JsonDict]) -> PduTransaction:
    """events.yaml / backfill.yaml answer PDUs as a transaction from this server."""
    return {
        "origin": resident.server_name,
        "origin_server_ts": resident.clock(),
        "pdus": pdus,
    }
