"""knocks.yaml: the knock handshake, make_knock and send_knock."""

from functools import partial
from urllib.parse import unquote

from api_types.federation import KnockPdu, MakeKnockResponse, SendKnockResponse
from app.rooms import hosted, ingest
from handlers import _context
from handlers._json import as_json_dict
from matrix.acl import check_server_acl
from matrix.errors import MatrixError
from matrix.ids import parse_room_id, parse_user_id
from matrix.knock import (
    KNOCK_ROOM_STATE_KEYS,
    build_knock_template,
    check_make_knock_allowed,
    check_send_knock_event,
    get_knock_state_keys,
)


async def make_knock(roomId: str, userId: str, ver: list[str], user: str) -> MakeKnockResponse:
    """GET /_matrix/federation/v1/make_knock/{roomId}/{userId} (knocks.yaml)."""
    origin = user
    # Path ids arrive with %2F and %25 still encoded (app/http/paths.py); decode them here.
    room_id = parse_room_id(unquote(roomId))
    user_id = parse_user_id(unquote(userId))
    resident = _context.resident()
    store, server_name = resident.store, resident.server_name
    # The room's version, newest events and state, read once per change of the room.
    head = resident.heads.load_resident_room(store, room_id, server_name)
    room_version = head.room_version
    # The template's state and the ACL in one read; the checks keep their order.
    found = head.get_state(
        store, room_id, [*get_knock_state_keys(user_id, room_version), hosted.ACL_KEY]
    )
    acl = found.pop(hosted.ACL_KEY, None)
    # SS §Server Access Control Lists: make_knock is ACL-protected; 403.
    check_server_acl(origin, acl[1]["content"] if acl else None)
    check_make_knock_allowed(room_version, ver, user_id, origin)
    event = build_knock_template(
        room_version,
        room_id=room_id,
        user_id=user_id,
        state={key: event for key, (_, event) in found.items()},
        state_event_ids={key: event_id for key, (event_id, _) in found.items()},
        prev_events=head.prev_events,
        origin=server_name,
        origin_server_ts=resident.clock(),
    )
    return {"room_version": room_version.identifier, "event": event}


async def send_knock(roomId: str, eventId: str, body: KnockPdu, user: str) -> SendKnockResponse:
    """PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId} (knocks.yaml)."""
    origin = user
    room_id = parse_room_id(unquote(roomId))
    event_id = unquote(eventId)
    resident = _context.resident()
    room_version = hosted.load_resident_room(resident.store, room_id, resident.server_name)
    # knock-digest §1.3: a room version without knocking is 403, as Synapse and conduwuit do.
    if not room_version.knock_join_rule:
        raise MatrixError(
            "M_FORBIDDEN", f"Room version {room_version.identifier} does not support knocking"
        )
    hosted.check_origin_acl(resident.store, room_id, origin)
    # knocks.yaml: a rejected (or, stricter than the spec, soft-failed) knock is 403; the
    # intake stores it, then sends it on the knocker's behalf to the room's other servers.
    await ingest.accept_pdu(
        resident,
        room_id,
        room_version,
        as_json_dict(body),
        event_id=event_id,
        origin=origin,
        check_endpoint=partial(
            check_send_knock_event,
            room_version=room_version,
            room_id=room_id,
            event_id=event_id,
            origin=origin,
        ),
    )
    state = hosted.get_state_in_order(resident.store, room_id, KNOCK_ROOM_STATE_KEYS)
    return {"knock_room_state": state}
