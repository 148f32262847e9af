"""joins-v1.yaml, joins-v2.yaml, leaving-v1.yaml, leaving-v2.yaml: joining and leaving rooms."""

from urllib.parse import unquote

from api_types.federation import (
    MakeMembershipResponse,
    MembershipPdu,
    SendJoinResponse,
    SendLeaveResponse,
)
from app.rooms import membership
from handlers import _context
from handlers._json import as_json_dict
from matrix.ids import parse_room_id, parse_user_id


async def make_join(
    roomId: str, userId: str, user: str, ver: list[str] | None = None
) -> MakeMembershipResponse:
    """GET /_matrix/federation/v1/make_join/{roomId}/{userId} (joins-v1.yaml)."""
    room_id = parse_room_id(unquote(roomId))
    user_id = parse_user_id(unquote(userId))
    # joins-v1.yaml: `ver` defaults to ["1"] (Synapse's FederationMakeJoinServlet too).
    return membership.build_make_membership_response(
        _context.resident(), room_id, user_id, "join", user, supported_versions=ver or ["1"]
    )


async def send_join(
    roomId: str, eventId: str, body: MembershipPdu, user: str, omit_members: bool = False
) -> SendJoinResponse:
    """PUT /_matrix/federation/v2/send_join/{roomId}/{eventId} (joins-v2.yaml)."""
    resident = _context.resident()
    room_id = parse_room_id(unquote(roomId))
    _, accepted = await membership.accept_membership_pdu(
        resident, room_id, unquote(eventId), as_json_dict(body), "join", user
    )
    return membership.build_send_join_response(resident, room_id, accepted)


async def make_leave(roomId: str, userId: str, user: str) -> MakeMembershipResponse:
    """GET /_matrix/federation/v1/make_leave/{roomId}/{userId} (leaving-v1.yaml)."""
    room_id = parse_room_id(unquote(roomId))
    user_id = parse_user_id(unquote(userId))
    return membership.build_make_membership_response(
        _context.resident(), room_id, user_id, "leave", user
    )


async def send_leave(
    roomId: str, eventId: str, body: MembershipPdu, user: str
) -> SendLeaveResponse:
    """PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId} (leaving-v2.yaml)."""
    room_id = parse_room_id(unquote(roomId))
    await membership.accept_membership_pdu(
        _context.resident(), room_id, unquote(eventId), as_json_dict(body), "leave", user
    )
    return {}
