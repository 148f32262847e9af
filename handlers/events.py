"""events.yaml and event_auth.yaml: single events, the state at an event, its auth chain."""

from urllib.parse import unquote

from api_types.federation import (
    EventAuthResponse,
    SinglePduTransaction,
    StateIdsResponse,
    StateResponse,
)
from app.rooms import history
from handlers import _context
from matrix.ids import parse_room_id


async def get_event(eventId: str, user: str) -> SinglePduTransaction:
    """GET /_matrix/federation/v1/event/{eventId} (events.yaml)."""
    return history.get_event(_context.resident(), user, unquote(eventId))


async def get_state(roomId: str, event_id: str, user: str) -> StateResponse:
    """GET /_matrix/federation/v1/state/{roomId} (events.yaml)."""
    room_id = parse_room_id(unquote(roomId))
    return history.get_state(_context.resident(), user, room_id, event_id, ids_only=False)


async def get_state_ids(roomId: str, event_id: str, user: str) -> StateIdsResponse:
    """GET /_matrix/federation/v1/state_ids/{roomId} (events.yaml)."""
    room_id = parse_room_id(unquote(roomId))
    return history.get_state(_context.resident(), user, room_id, event_id, ids_only=True)


async def get_event_auth(roomId: str, eventId: str, user: str) -> EventAuthResponse:
    """GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} (event_auth.yaml)."""
    room_id = parse_room_id(unquote(roomId))
    return history.get_event_auth(_context.resident(), user, room_id, unquote(eventId))
