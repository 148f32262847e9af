"""Wire types of openapi/admin.yaml, generated: edit the contract, then run `make generate`.

Generated from openapi/admin.yaml by `make generate` (scripts/generate_types.py,
datamodel-code-generator 0.97.0). Do not edit by hand: tests/test_wire_types.py fails
when this file differs from what the contract generates.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypeAlias

from typing_extensions import TypedDict


class CreateRoomResponse(TypedDict):
    """
    The room just created.
    """

    room_id: str


class EventSent(TypedDict):
    """
    The id of the event an action stored and sent.
    """

    event_id: str


class ServerAclResponse(TypedDict):
    """
    The room's server ACL.
    """

    server_acl: dict[str, Any] | None
    """
    The `m.room.server_acl` content, or null when the room has none.
    """


PrometheusMetrics: TypeAlias = str
"""
The Prometheus text format, every worker's counts together.
"""


class Destination(TypedDict):
    destination: str
    pending: int
    retry_at_ts: int
    backoff_ms: int
    last_success_ts: NotRequired[int | None]
    last_error: NotRequired[str | None]
    last_error_ts: NotRequired[int | None]
    txn_id: NotRequired[str | None]
    lease_owner: NotRequired[str | None]


class MatrixError(TypedDict):
    """
    A Matrix error (CS §Standard error response).
    """

    errcode: str
    """
    The error code (a remote's errcode is passed on as it came).
    """
    error: str
    """
    A human-readable message.
    """


class RoomSummary(TypedDict):
    room_id: str
    room_version: str
    created_ts: int
    join_rule: str | None
    name: str | None
    topic: str | None
    pending_knocks: int
    joined_members: int


class PendingKnock(TypedDict):
    user_id: str
    server_name: str
    """
    The knocker's server, which the invite goes to on accept.
    """
    reason: str | None
    origin_server_ts: int
    event_id: str


class Member(TypedDict):
    user_id: str
    membership: str
    reason: str | None
    origin_server_ts: int
    sender: str
    event_id: str


class TimelineEntry(TypedDict):
    event_id: str
    origin_server_ts: int
    sender: str
    type: str
    state_key: str | None
    summary: str


CreateRoomRequestAllowRoom: TypeAlias = str


class CreateRoomRequest(TypedDict, closed=True):
    room_version: NotRequired[str]
    """
    The room version (default the server's default, 12).
    """
    join_rule: str
    name: NotRequired[str]
    topic: NotRequired[str]
    creator: NotRequired[str]
    """
    Localpart of the creating user (default `admin`).
    """
    allow_rooms: NotRequired[list[CreateRoomRequestAllowRoom]]


class ReasonRequest(TypedDict, closed=True):
    reason: NotRequired[str]
    sender: NotRequired[str]
    """
    A local member with the power (default the room's creator).
    """


class TargetRequest(TypedDict, closed=True):
    user_id: str
    reason: NotRequired[str]
    sender: NotRequired[str]


class UnbanRequest(TypedDict, closed=True):
    user_id: str
    sender: NotRequired[str]


ServerAclRequestAllowItem: TypeAlias = str


ServerAclRequestDenyItem: TypeAlias = str


class ServerAclRequest(TypedDict, closed=True):
    allow: NotRequired[list[ServerAclRequestAllowItem]]
    """
    Server name globs allowed (default `["*"]`).
    """
    deny: NotRequired[list[ServerAclRequestDenyItem]]
    allow_ip_literals: NotRequired[bool]
    sender: NotRequired[str]


class RoomList(TypedDict):
    """
    The rooms hosted here, oldest first.
    """

    rooms: list[RoomSummary]


class PendingKnockList(TypedDict):
    """
    A room's pending knocks, longest waiting first.
    """

    knocks: list[PendingKnock]
    now_ts: int
    """
    This server's clock, to tell how long each knock has waited.
    """


class MemberList(TypedDict):
    """
    The memberships of the room's current state, by user id.
    """

    members: list[Member]


class Timeline(TypedDict):
    """
    The room's newest events, newest last.
    """

    events: list[TimelineEntry]


class DestinationList(TypedDict):
    destinations: list[Destination]
