"""Moderators' reads and actions, one set for the admin API and the CLI: rooms with their
waiting knocks, a room's summary, the knock queue, and accept / deny / invite counted."""

from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass

from app.federation.client import FederationClient
from app.metrics import KNOCKS
from app.rooms.admin import RoomAdmin
from app.rooms.hosted import ACL_KEY, get_hosted_room_version
from app.rooms.invite import INVITE_TIMEOUT_S, accept_knock
from db.store import Store
from matrix.events import compute_event_id
from matrix.ids import get_domain
from matrix.types import JsonDict


@dataclass(frozen=True)
class RoomSummary:
    """A hosted room as a moderator sees it in a list: what it is and who is waiting."""

    room_id: str
    room_version: str
    created_ts: int
    join_rule: str | None
    name: str | None
    topic: str | None
    pending_knocks: int
    joined_members: int


@dataclass(frozen=True)
class PendingKnock:
    """A user whose current membership is knock (CS §Knocking on rooms), and since when."""

    user_id: str
    server_name: str
    reason: str | None
    origin_server_ts: int
    event_id: str


@dataclass(frozen=True)
class Moderation:
    """What the admin API needs of its process: built once by its lifespan."""

    store: Store
    admin: RoomAdmin
    # Asks an invitee's server to countersign (PUT /v2/invite)
    client: FederationClient
    clock: Callable[[], int]
    invite_timeout_s: float = INVITE_TIMEOUT_S


def _content_string(store: Store, room_id: str, event_type: str, field: str) -> str | None:
    event = store.get_current_state_event(room_id, event_type, "")
    value = None if event is None else event.get("content", {}).get(field)
    return value if isinstance(value, str) else None


def _summary(store: Store, room_id: str, room_version: str, created_ts: int) -> RoomSummary:
    memberships = Tally(
        event["content"].get("membership") for _id, event in store.get_current_members(room_id)
    )
    return RoomSummary(
        room_id=room_id,
        room_version=room_version,
        created_ts=created_ts,
        join_rule=_content_string(store, room_id, "m.room.join_rules", "join_rule"),
        name=_content_string(store, room_id, "m.room.name", "name"),
        topic=_content_string(store, room_id, "m.room.topic", "topic"),
        pending_knocks=memberships["knock"],
        joined_members=memberships["join"],
    )


def list_rooms(store: Store) -> list[RoomSummary]:
    """Every room hosted here, oldest first, with its pending knocks counted."""
    return [
        _summary(store, room.room_id, room.room_version, room.created_ts)
        for room in store.list_rooms()
    ]


def get_room_summary(store: Store, room_id: str) -> RoomSummary:
    """One hosted room's summary; M_NOT_FOUND for a room not hosted here."""
    get_hosted_room_version(store, room_id)
    room = next(room for room in store.list_rooms() if room.room_id == room_id)
    return _summary(store, room.room_id, room.room_version, room.created_ts)


def get_pending_knocks(store: Store, room_id: str) -> list[PendingKnock]:
    """The room's knock queue, longest waiting first. Reasons come from other servers:
    whoever shows them must show them as text."""
    room_version = get_hosted_room_version(store, room_id)
    knocks = []
    for event in store.get_memberships(room_id, "knock"):
        reason = event["content"].get("reason")
        knocks.append(
            PendingKnock(
                user_id=event["state_key"],
                server_name=get_domain(event["state_key"]),
                reason=reason if isinstance(reason, str) else None,
                origin_server_ts=event["origin_server_ts"],
                event_id=compute_event_id(event, room_version),
            )
        )
    return sorted(knocks, key=lambda knock: (knock.origin_server_ts, knock.user_id))


def get_server_acl(store: Store, room_id: str) -> JsonDict | None:
    """The content of the room's m.room.server_acl, or None when it has none."""
    get_hosted_room_version(store, room_id)
    event = store.get_current_state_event(room_id, *ACL_KEY)
    return None if event is None else dict(event["content"])


async def accept(
    admin: RoomAdmin,
    client: FederationClient,
    room_id: str,
    user_id: str,
    *,
    reason: str | None = None,
    sender: str | None = None,
    timeout_s: float = INVITE_TIMEOUT_S,
) -> str:
    """Accept a pending knock (an invite countersigned by the knocker's server); counted."""
    event_id = await accept_knock(
        admin, client, room_id, user_id, reason=reason, sender=sender, timeout_s=timeout_s
    )
    KNOCKS.labels("accepted").inc()
    return event_id


def deny(
    admin: RoomAdmin,
    room_id: str,
    user_id: str,
    *,
    reason: str | None = None,
    sender: str | None = None,
) -> str:
    """Deny a pending knock (a leave sent by the moderator); counted."""
    event_id = admin.deny_knock(room_id, user_id, reason, sender)
    KNOCKS.labels("denied").inc()
    return event_id
