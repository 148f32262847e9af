"""admin.yaml: the moderators' API (rooms, knocks, membership, timeline, ACL, metrics)."""

from typing import cast
from urllib.parse import unquote

from connexion.context import scope

from api_types.admin import (
    CreateRoomRequest,
    CreateRoomResponse,
    Destination,
    DestinationList,
    EventSent,
    Member,
    MemberList,
    PendingKnock,
    PendingKnockList,
    PrometheusMetrics,
    ReasonRequest,
    RoomList,
    RoomSummary,
    ServerAclRequest,
    ServerAclResponse,
    TargetRequest,
    Timeline,
    TimelineEntry,
    UnbanRequest,
)
from app import metrics
from app.rooms import admin as room_admin
from app.rooms import moderation
from app.rooms.invite import send_invite
from matrix.ids import parse_room_id
from matrix.room_versions import DEFAULT_ROOM_VERSION


def _service() -> moderation.Moderation:
    service: moderation.Moderation = scope["state"]["moderation"]
    return service


def _room_id(roomId: str) -> str:
    # Path ids arrive with %2F and %25 still encoded (app/http/paths.py); decode them here.
    return parse_room_id(unquote(roomId))


def _sent(event_id: str) -> EventSent:
    return {"event_id": event_id}


# The service's frozen dataclasses as the contract's objects, field by field (not
# dataclasses.asdict, which is a dict[str, Any]): mypy checks each field's type against
# the schema, so a service field the contract does not allow (an int that may be None) is
# a lint error here.
def _room_summary(room: moderation.RoomSummary) -> RoomSummary:
    return {
        "room_id": room.room_id,
        "room_version": room.room_version,
        "created_ts": room.created_ts,
        "join_rule": room.join_rule,
        "name": room.name,
        "topic": room.topic,
        "pending_knocks": room.pending_knocks,
        "joined_members": room.joined_members,
    }


def _pending_knock(knock: moderation.PendingKnock) -> PendingKnock:
    return {
        "user_id": knock.user_id,
        "server_name": knock.server_name,
        "reason": knock.reason,
        "origin_server_ts": knock.origin_server_ts,
        "event_id": knock.event_id,
    }


def _member(member: room_admin.Member) -> Member:
    return {
        "user_id": member.user_id,
        "membership": member.membership,
        "reason": member.reason,
        "origin_server_ts": member.origin_server_ts,
        "sender": member.sender,
        "event_id": member.event_id,
    }


def _timeline_entry(entry: room_admin.TimelineEntry) -> TimelineEntry:
    return {
        "event_id": entry.event_id,
        "origin_server_ts": entry.origin_server_ts,
        "sender": entry.sender,
        "type": entry.type,
        "state_key": entry.state_key,
        "summary": entry.summary,
    }


async def list_rooms(user: str) -> RoomList:
    """GET /_antechamber/admin/v1/rooms (admin.yaml)."""
    rooms = moderation.list_rooms(_service().store)
    return {"rooms": [_room_summary(room) for room in rooms]}


async def create_room(body: CreateRoomRequest, user: str) -> CreateRoomResponse:
    """POST /_antechamber/admin/v1/rooms (admin.yaml)."""
    room_id = _service().admin.create_room(
        body.get("room_version", DEFAULT_ROOM_VERSION.identifier),
        body["join_rule"],
        name=body.get("name"),
        topic=body.get("topic"),
        creator_localpart=body.get("creator", "admin"),
        allow_rooms=body.get("allow_rooms", []),
    )
    return {"room_id": room_id}


async def get_room(roomId: str, user: str) -> RoomSummary:
    """GET /_antechamber/admin/v1/rooms/{roomId} (admin.yaml)."""
    return _room_summary(moderation.get_room_summary(_service().store, _room_id(roomId)))


async def list_knocks(roomId: str, user: str) -> PendingKnockList:
    """GET /_antechamber/admin/v1/rooms/{roomId}/knocks (admin.yaml)."""
    service = _service()
    knocks = moderation.get_pending_knocks(service.store, _room_id(roomId))
    return {"knocks": [_pending_knock(knock) for knock in knocks], "now_ts": service.clock()}


async def accept_knock(roomId: str, userId: str, body: ReasonRequest, user: str) -> EventSent:
    """POST /_antechamber/admin/v1/rooms/{roomId}/knocks/{userId}/accept (admin.yaml)."""
    service = _service()
    event_id = await moderation.accept(
        service.admin,
        service.client,
        _room_id(roomId),
        unquote(userId),
        reason=body.get("reason"),
        sender=body.get("sender"),
        timeout_s=service.invite_timeout_s,
    )
    return _sent(event_id)


async def deny_knock(roomId: str, userId: str, body: ReasonRequest, user: str) -> EventSent:
    """POST /_antechamber/admin/v1/rooms/{roomId}/knocks/{userId}/deny (admin.yaml)."""
    event_id = moderation.deny(
        _service().admin,
        _room_id(roomId),
        unquote(userId),
        reason=body.get("reason"),
        sender=body.get("sender"),
    )
    return _sent(event_id)


async def list_members(roomId: str, user: str) -> MemberList:
    """GET /_antechamber/admin/v1/rooms/{roomId}/members (admin.yaml)."""
    members = room_admin.get_members(_service().store, _room_id(roomId))
    return {"members": [_member(member) for member in members]}


async def invite(roomId: str, body: TargetRequest, user: str) -> EventSent:
    """POST /_antechamber/admin/v1/rooms/{roomId}/invite (admin.yaml)."""
    service = _service()
    event_id = await send_invite(
        service.admin,
        service.client,
        _room_id(roomId),
        body["user_id"],
        reason=body.get("reason"),
        sender=body.get("sender"),
        timeout_s=service.invite_timeout_s,
    )
    return _sent(event_id)


async def kick(roomId: str, body: TargetRequest, user: str) -> EventSent:
    """POST /_antechamber/admin/v1/rooms/{roomId}/kick (admin.yaml)."""
    admin = _service().admin
    return _sent(
        admin.kick(_room_id(roomId), body["user_id"], body.get("reason"), body.get("sender"))
    )


async def ban(roomId: str, body: TargetRequest, user: str) -> EventSent:
    """POST /_antechamber/admin/v1/rooms/{roomId}/ban (admin.yaml)."""
    admin = _service().admin
    return _sent(
        admin.ban(_room_id(roomId), body["user_id"], body.get("reason"), body.get("sender"))
    )


async def unban(roomId: str, body: UnbanRequest, user: str) -> EventSent:
    """POST /_antechamber/admin/v1/rooms/{roomId}/unban (admin.yaml)."""
    admin = _service().admin
    return _sent(admin.unban(_room_id(roomId), body["user_id"], body.get("sender")))


async def get_timeline(roomId: str, user: str, limit: int = 20) -> Timeline:
    """GET /_antechamber/admin/v1/rooms/{roomId}/timeline (admin.yaml)."""
    entries = room_admin.get_timeline(_service().store, _room_id(roomId), limit)
    return {"events": [_timeline_entry(entry) for entry in entries]}


async def get_server_acl(roomId: str, user: str) -> ServerAclResponse:
    """GET /_antechamber/admin/v1/rooms/{roomId}/server_acl (admin.yaml)."""
    return {"server_acl": moderation.get_server_acl(_service().store, _room_id(roomId))}


async def set_server_acl(roomId: str, body: ServerAclRequest, user: str) -> EventSent:
    """PUT /_antechamber/admin/v1/rooms/{roomId}/server_acl (admin.yaml)."""
    event_id = _service().admin.set_server_acl(
        _room_id(roomId),
        body.get("allow", ["*"]),
        body.get("deny", []),
        allow_ip_literals=body.get("allow_ip_literals", True),
        sender=body.get("sender"),
    )
    return _sent(event_id)


async def list_destinations(user: str) -> DestinationList:
    """GET /_antechamber/admin/v1/federation/destinations (admin.yaml)."""
    # The store's rows (db/store.py get_destination_status): the Destination columns.
    rows = _service().store.get_destination_status()
    return {"destinations": cast(list[Destination], rows)}


async def get_metrics(user: str) -> PrometheusMetrics:
    """GET /_antechamber/metrics (admin.yaml)."""
    # A str: Connexion answers it as the contract's text/plain (Prometheus' text format)
    return metrics.render().decode("utf-8")
