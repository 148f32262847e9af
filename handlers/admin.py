"""admin.yaml: the moderators' API (rooms, knocks, membership, timeline, ACL, metrics)."""

import dataclasses
from urllib.parse import unquote

from connexion.context import scope

from app import metrics
from app.rooms import moderation
from app.rooms.admin import get_members
from app.rooms.admin import get_timeline as get_room_timeline
from app.rooms.invite import send_invite
from matrix.ids import parse_room_id
from matrix.room_versions import DEFAULT_ROOM_VERSION
from matrix.types import JsonDict


def _service() -> moderation.Moderation:
    service: moderation.Moderation = scope["state"]["moderation"]
    return service


def _room_id(roomId: str) -> str:
    # Path ids arrive with %2F and %25 still encoded (app/http/paths.py); decode them here.
    return parse_room_id(unquote(roomId))


def _sent(event_id: str) -> JsonDict:
    return {"event_id": event_id}


async def list_rooms(user: str) -> JsonDict:
    """GET /_antechamber/admin/v1/rooms (admin.yaml)."""
    rooms = moderation.list_rooms(_service().store)
    return {"rooms": [dataclasses.asdict(room) for room in rooms]}


async def create_room(body: JsonDict, user: str) -> JsonDict:
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


async def get_room(roomId: str, user: str) -> JsonDict:
    """GET /_antechamber/admin/v1/rooms/{roomId} (admin.yaml)."""
    return dataclasses.asdict(moderation.get_room_summary(_service().store, _room_id(roomId)))


async def list_knocks(roomId: str, user: str) -> JsonDict:
    """GET /_antechamber/admin/v1/rooms/{roomId}/knocks (admin.yaml)."""
    service = _service()
    knocks = moderation.get_pending_knocks(service.store, _room_id(roomId))
    return {"knocks": [dataclasses.asdict(knock) for knock in knocks], "now_ts": service.clock()}


async def accept_knock(roomId: str, userId: str, body: JsonDict, user: str) -> JsonDict:
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


async def deny_knock(roomId: str, userId: str, body: JsonDict, user: str) -> JsonDict:
    """POST /_antechamber/admin/v1/rooms/{roomId}/knocks/{userId}/deny (admin.yaml)."""
    event_id = moderation.deny(
        _service().admin,
        _room_id(roomId),
        unquote(userId),
        reason=body.get("reason"),
        sender=body.get("sender"),
    )
    return _sent(event_id)


async def list_members(roomId: str, user: str) -> JsonDict:
    """GET /_antechamber/admin/v1/rooms/{roomId}/members (admin.yaml)."""
    members = get_members(_service().store, _room_id(roomId))
    return {"members": [dataclasses.asdict(member) for member in members]}


async def invite(roomId: str, body: JsonDict, user: str) -> JsonDict:
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


async def kick(roomId: str, body: JsonDict, user: str) -> JsonDict:
    """POST /_antechamber/admin/v1/rooms/{roomId}/kick (admin.yaml)."""
    admin = _service().admin
    return _sent(
        admin.kick(_room_id(roomId), body["user_id"], body.get("reason"), body.get("sender"))
    )


async def ban(roomId: str, body: JsonDict, user: str) -> JsonDict:
    """POST /_antechamber/admin/v1/rooms/{roomId}/ban (admin.yaml)."""
    admin = _service().admin
    return _sent(
        admin.ban(_room_id(roomId), body["user_id"], body.get("reason"), body.get("sender"))
    )


async def unban(roomId: str, body: JsonDict, user: str) -> JsonDict:
    """POST /_antechamber/admin/v1/rooms/{roomId}/unban (admin.yaml)."""
    admin = _service().admin
    return _sent(admin.unban(_room_id(roomId), body["user_id"], body.get("sender")))


async def get_timeline(roomId: str, user: str, limit: int = 20) -> JsonDict:
    """GET /_antechamber/admin/v1/rooms/{roomId}/timeline (admin.yaml)."""
    entries = get_room_timeline(_service().store, _room_id(roomId), limit)
    return {"events": [dataclasses.asdict(entry) for entry in entries]}


async def get_server_acl(roomId: str, user: str) -> JsonDict:
    """GET /_antechamber/admin/v1/rooms/{roomId}/server_acl (admin.yaml)."""
    return {"server_acl": moderation.get_server_acl(_service().store, _room_id(roomId))}


async def set_server_acl(roomId: str, body: JsonDict, user: str) -> JsonDict:
    """PUT /_antechamber/admin/v1/rooms/{roomId}/server_acl (admin.yaml)."""
    event_id = _service().admin.set_server_acl(
        _room_id(roomId),
        body.get("allow", ["*"]),
        body.get("deny", []),
        allow_ip_literals=body.get("allow_ip_literals", True),
        sender=body.get("sender"),
    )
    return _sent(event_id)


async def list_destinations(user: str) -> JsonDict:
    """GET /_antechamber/admin/v1/federation/destinations (admin.yaml)."""
    return {"destinations": _service().store.get_destination_status()}


async def get_metrics(user: str) -> str:
    """GET /_antechamber/metrics (admin.yaml)."""
    # A str: Connexion answers it as the contract's text/plain (Prometheus' text format)
    return metrics.render().decode("utf-8")
