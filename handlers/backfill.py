"""backfill.yaml: history before what a server has, and the events it is missing."""

from urllib.parse import unquote

from api_types.federation import MissingEventsRequest, MissingEventsResponse, PduTransaction
from app.rooms import history
from handlers import _context
from matrix.ids import parse_room_id


async def backfill(roomId: str, v: list[str], limit: int, user: str) -> PduTransaction:
    """GET /_matrix/federation/v1/backfill/{roomId} (backfill.yaml)."""
    room_id = parse_room_id(unquote(roomId))
    return history.get_backfill(_context.resident(), user, room_id, v, limit)


async def get_missing_events(
    roomId: str, body: MissingEventsRequest, user: str
) -> MissingEventsResponse:
    """POST /_matrix/federation/v1/get_missing_events/{roomId} (backfill.yaml)."""
    room_id = parse_room_id(unquote(roomId))
    return history.get_missing_events(
        _context.resident(),
        user,
        room_id,
        earliest_events=body["earliest_events"],
        latest_events=body["latest_events"],
        limit=body.get("limit", 10),
        min_depth=body.get("min_depth", 0),
    )
