"""The knock handshake's decisions (knocks.yaml; knock-digest §1, §5): pure functions, no I/O."""

from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from api_types.federation import KnockTemplate
from matrix.auth_rules import CREATE_KEY, StateKey, StateMap
from matrix.errors import MatrixError
from matrix.membership import (
    MAX_TEMPLATE_PREV_EVENTS,
    build_membership_template,
    check_membership_pdu,
    check_room_version_supported,
    check_user_on_origin,
    get_membership_state_keys,
)
from matrix.room_versions import RoomVersion
from matrix.types import JsonDict

__all__ = ["MAX_TEMPLATE_PREV_EVENTS"]


def get_knock_state_keys(user_id: str, room_version: RoomVersion) -> list[StateKey]:
    """The state a knock by ``user_id`` is judged on (matrix/membership.py)."""
    return get_membership_state_keys(user_id, "knock", room_version)


def check_make_knock_allowed(
    room_version: RoomVersion, supported_versions: Sequence[str], user_id: str, origin: str
) -> None:
    """Rows 6-8 of make_knock, in Synapse's order (knock-digest §1.1)."""
    # knocks.yaml 400: the room's version is not one the knocking server supports.
    check_room_version_supported(room_version, supported_versions)
    # knocks.yaml 403 "room not set up for receiving knocks": knocking exists from v7 (rooms/v7).
    if not room_version.knock_join_rule:
        raise MatrixError(
            "M_FORBIDDEN",
            f"Room version {room_version.identifier} does not support knocking; the room must "
            "be upgraded to version 7 or later",
        )
    # knocks.yaml (v1.18): the user MUST be on the origin server. Synapse: 403 "User not from
    # origin".
    check_user_on_origin(user_id, origin)


def build_knock_template(
    room_version: RoomVersion,
    *,
    room_id: str,
    user_id: str,
    state: StateMap,
    state_event_ids: Mapping[StateKey, str],
    prev_events: Iterable[tuple[str, int]],
    origin: str,
    origin_server_ts: int,
) -> KnockTemplate:
    """The unsigned knock event a resident returns from make_knock (knock-digest §1.1); rule 9:
    it must pass the auth rules against current state (join rule, membership, m.federate)."""
    # The membership template's fields with membership "knock": the KnockTemplate shape.
    template = build_membership_template(
        room_version,
        "knock",
        room_id=room_id,
        user_id=user_id,
        state=state,
        state_event_ids=state_event_ids,
        prev_events=prev_events,
        origin=origin,
        origin_server_ts=origin_server_ts,
    )
    return cast(KnockTemplate, template)


# knocks.yaml / CS §Stripped state: the state that helps a knocker identify the room. The create
# event MUST be included (v1.16, MSC4311); the others SHOULD be when set.
KNOCK_ROOM_STATE_KEYS: list[StateKey] = [
    CREATE_KEY,
    ("m.room.join_rules", ""),
    ("m.room.name", ""),
    ("m.room.avatar", ""),
    ("m.room.topic", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.encryption", ""),
]


def check_send_knock_event(
    event: JsonDict, room_version: RoomVersion, *, room_id: str, event_id: str, origin: str
) -> None:
    """The knocks.yaml checks on a send_knock body (SHOULD be 400 M_INVALID_PARAM, v1.18):
    matrix/membership.py's, for membership knock."""
    check_membership_pdu(
        event, room_version, "knock", room_id=room_id, event_id=event_id, origin=origin
    )
