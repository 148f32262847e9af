"""Wire types of openapi/federation.yaml, generated: edit the contract, then run `make generate`.

Generated from openapi/federation.yaml by `make generate` (scripts/generate_types.py,
datamodel-code-generator 0.97.0). Do not edit by hand: tests/test_wire_types.py fails
when this file differs from what the contract generates.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypeAlias

from typing_extensions import TypedDict


class MatrixError1(TypedDict):
    """
    A Matrix error (CS §Standard error response). Every error response of this API uses
    this one schema; the `anyOf` says that `M_INCOMPATIBLE_ROOM_VERSION` (knocks.yaml,
    make_knock 400) always carries `room_version`, and other codes need not.

    """

    errcode: str
    """
    The error code.
    """
    error: str
    """
    A human-readable message.
    """
    room_version: NotRequired[str]
    """
    The room's version; required with `M_INCOMPATIBLE_ROOM_VERSION`.
    """
    retry_after_ms: NotRequired[int]
    """
    With `M_LIMIT_EXCEEDED`, milliseconds to wait before retrying. Deprecated since
    Matrix v1.10 in favour of the `Retry-After` header, which this server also sends;
    kept for older clients.

    """


class MatrixError2(TypedDict):
    """
    A Matrix error (CS §Standard error response). Every error response of this API uses
    this one schema; the `anyOf` says that `M_INCOMPATIBLE_ROOM_VERSION` (knocks.yaml,
    make_knock 400) always carries `room_version`, and other codes need not.

    """

    errcode: Literal["M_INCOMPATIBLE_ROOM_VERSION"]
    """
    The error code.
    """
    error: str
    """
    A human-readable message.
    """
    room_version: str
    """
    The room's version; required with `M_INCOMPATIBLE_ROOM_VERSION`.
    """
    retry_after_ms: NotRequired[int]
    """
    With `M_LIMIT_EXCEEDED`, milliseconds to wait before retrying. Deprecated since
    Matrix v1.10 in favour of the `Retry-After` header, which this server also sends;
    kept for older clients.

    """


MatrixError: TypeAlias = MatrixError1 | MatrixError2
"""
A Matrix error (CS §Standard error response). Every error response of this API uses
this one schema; the `anyOf` says that `M_INCOMPATIBLE_ROOM_VERSION` (knocks.yaml,
make_knock 400) always carries `room_version`, and other codes need not.

"""


class KnockTemplateContent(TypedDict):
    membership: Literal["knock"]


class KnockTemplate(TypedDict):
    """
    An unsigned knock event (knocks.yaml); more PDU fields per room version. knocks.yaml's
    template schema omits `room_id`, though its MUSTs (the event is for this room) use it and
    every PDU format but the v12 create event has it: this server always sends it, so it is
    required here. `depth`, `prev_events` and `auth_events` carry the pdu_v* bounds.

    """

    room_id: str
    type: Literal["m.room.member"]
    state_key: str
    sender: str
    content: KnockTemplateContent
    origin: str
    origin_server_ts: int
    depth: int
    prev_events: list[str]
    """
    The room's forward extremities, newest first; this server sends at most 10 (pdu_v*
    allows 20).

    """
    auth_events: list[str]


class KnockPduContent(TypedDict):
    membership: NotRequired[str]


class KnockPdu(TypedDict):
    """
    A knock event as a full PDU (`pdu_v*` for the room's version). The fields listed are
    those knocks.yaml documents; the room version adds `room_id`, `auth_events`,
    `prev_events`, `depth`, `hashes` and `signatures`. knocks.yaml also requires
    `state_key`; its absence is answered with the spec's SHOULD code `M_INVALID_PARAM`
    ("not a membership event") rather than a schema error, so it is checked in the handler.

    """

    room_id: NotRequired[str]
    sender: str
    origin: NotRequired[str]
    origin_server_ts: int
    type: str
    state_key: NotRequired[str]
    content: KnockPduContent
    depth: NotRequired[int]
    prev_events: NotRequired[list[Any]]
    auth_events: NotRequired[list[Any]]
    hashes: NotRequired[dict[str, Any]]
    signatures: NotRequired[dict[str, Any]]


class SendKnockResponse(TypedDict):
    knock_room_state: list[dict[str, Any]]
    """
    Full PDUs of the room's current state that help the knocker identify the room:
    always `m.room.create` (knocks.yaml: it MUST be included, so the list is never
    empty), and `m.room.join_rules`, `m.room.name`, `m.room.avatar`, `m.room.topic`,
    `m.room.canonical_alias`, `m.room.encryption` when set. Never members or history.
    Each is a PDU in the room version's format; note that the official pdu_v12 schema
    requires `room_id` on every event, though a v12 `m.room.create` has none (its event
    id names the room), so the create event here has no `room_id`.

    """


class MembershipTemplateContent(TypedDict):
    membership: Literal["join", "leave"]
    join_authorised_via_users_server: NotRequired[str]
    """
    A restricted join's authorising user, of this server (rooms/v8).
    """


EventReference: TypeAlias = str | list[Any]
"""
An event id; in room versions 1 and 2, an `[event_id, {"sha256": reference hash}]` pair.

"""


class MembershipPduContent(TypedDict):
    membership: NotRequired[str]


class MembershipPdu(TypedDict):
    """
    A join or leave event as a full PDU (`pdu_v*` for the room's version); the fields are
    those joins-v2.yaml / leaving-v2.yaml document. `state_key` is checked in the handler
    (400 `M_INVALID_PARAM`, the spec's SHOULD code), like send_knock's.

    """

    room_id: NotRequired[str]
    sender: str
    origin: NotRequired[str]
    origin_server_ts: int
    type: str
    state_key: NotRequired[str]
    content: MembershipPduContent
    depth: NotRequired[int]
    prev_events: NotRequired[list[Any]]
    auth_events: NotRequired[list[Any]]
    hashes: NotRequired[dict[str, Any]]
    signatures: NotRequired[dict[str, Any]]


class SendJoinResponse(TypedDict):
    state: list[dict[str, Any]]
    """
    The room's state before the join, as full PDUs; always with `m.room.create`.

    """
    auth_chain: list[dict[str, Any]]
    """
    Every event in the auth chain of the join and of each state event.
    """
    event: dict[str, Any]
    """
    The join as stored, with this server's signature when it authorised it.
    """
    members_omitted: Literal[False]
    """
    Always false; membership events are never left out.
    """
    servers_in_room: list[str]
    """
    The servers with a joined user before the join.
    """


class SendLeaveResponse(TypedDict, closed=True):
    """
    Always empty (leaving-v2.yaml).
    """


class Edu(TypedDict):
    """
    An ephemeral data unit (edu.yaml); accepted and ignored here.
    """

    edu_type: str
    content: dict[str, Any]


class TransactionResponsePdus(TypedDict):
    error: NotRequired[str]


class TransactionResponse(TypedDict):
    pdus: dict[str, TransactionResponsePdus]


class SinglePduTransaction(TypedDict):
    """
    A transaction holding exactly one PDU (single_pdu_transaction.yaml).
    """

    origin: str
    origin_server_ts: int
    pdus: list[dict[str, Any]]


class PduTransaction(TypedDict):
    """
    A transaction of any number of PDUs (unlimited_pdu_transaction.yaml, backfill). Their
    prev_events and auth_events are not bounded here: backfill.yaml says a backfill answer
    MUST NOT be validated on those limits.

    """

    origin: str
    origin_server_ts: int
    pdus: list[dict[str, Any]]


class StateResponse(TypedDict):
    pdus: list[dict[str, Any]]
    auth_chain: list[dict[str, Any]]


class StateIdsResponse(TypedDict):
    pdu_ids: list[str]
    auth_chain_ids: list[str]


class EventAuthResponse(TypedDict):
    auth_chain: list[dict[str, Any]]


class MissingEventsRequest(TypedDict):
    limit: NotRequired[int]
    min_depth: NotRequired[int]
    earliest_events: list[str]
    latest_events: list[str]


class MissingEventsResponse(TypedDict):
    events: list[dict[str, Any]]


class ServerVersionServer(TypedDict):
    name: str
    version: str


class ServerVersion(TypedDict):
    server: ServerVersionServer


class ServerKeysVerifyKeys(TypedDict):
    key: str


class ServerKeysOldVerifyKeys(TypedDict):
    key: str
    expired_ts: int


class ServerKeys(TypedDict):
    server_name: str
    verify_keys: dict[str, ServerKeysVerifyKeys]
    old_verify_keys: NotRequired[dict[str, ServerKeysOldVerifyKeys]]
    signatures: dict[str, dict[str, str]]
    valid_until_ts: int


class MakeKnockResponse(TypedDict):
    room_version: str
    """
    The room's version; the event follows its format.
    """
    event: KnockTemplate


class MembershipTemplate(TypedDict):
    """
    An unsigned join or leave event (joins-v1.yaml, leaving-v1.yaml), with the fields and
    bounds of the knock template. joins-v1.yaml and leaving-v1.yaml, like knocks.yaml, omit
    `room_id` from the template schema though their MUSTs use it; this server always sends
    it. In room versions 1 and 2, `prev_events` and `auth_events` hold
    `[event_id, {"sha256": reference hash}]` pairs (rooms/v1 §Event format).

    """

    room_id: str
    type: Literal["m.room.member"]
    state_key: str
    sender: str
    content: MembershipTemplateContent
    origin: str
    origin_server_ts: int
    depth: int
    prev_events: list[EventReference]
    auth_events: list[EventReference]
    event_id: NotRequired[str]
    """
    Room versions 1 and 2 only (their PDUs carry their id): an id this server made up,
    `$…:` this server, as Synapse's templates carry one; the joining server may keep it.

    """


class Transaction(TypedDict):
    origin: str
    origin_server_ts: int
    pdus: list[dict[str, Any]]
    edus: NotRequired[list[Edu]]


class MakeMembershipResponse(TypedDict):
    room_version: str
    """
    The room's version; the event follows its format.
    """
    event: MembershipTemplate
