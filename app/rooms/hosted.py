"""Rooms hosted here: lookups that answer 404, residency, the server ACL gate, state reads."""

from db.store import Store
from matrix.acl import check_server_acl
from matrix.auth_rules import StateKey
from matrix.errors import MatrixError
from matrix.ids import parse_room_id
from matrix.room_events import parse_room_version
from matrix.room_versions import RoomVersion, get_room_version
from matrix.types import JsonDict

ACL_KEY: StateKey = ("m.room.server_acl", "")


def get_hosted_room_version(store: Store, room_id: str) -> RoomVersion:
    """The version of a room stored here (admin use); M_NOT_FOUND for an unknown room."""
    version = store.get_room_version(parse_room_id(room_id))
    if version is None:
        raise MatrixError("M_NOT_FOUND", f"unknown room {room_id}")
    return parse_room_version(version)


def load_resident_room(store: Store, room_id: str, server_name: str) -> RoomVersion:
    """The version of a room this server is in, for a federation request about it; 404 when the
    room is unknown here or no local user is joined (left rooms are not served)."""
    version_id = store.get_room_version(room_id)
    room_version = get_room_version(version_id) if version_id else None
    # knocks.yaml 404 "unknown room"; Synapse also answers 404 when it has no joined user in
    # the room (it cannot build an event there).
    if room_version is None or not store.has_local_joined_member(room_id, server_name):
        raise MatrixError("M_NOT_FOUND", f"Unknown room {room_id}")
    return room_version


def check_origin_acl(store: Store, room_id: str, origin: str) -> None:
    """SS §Server Access Control Lists: a denied origin's room requests are 403 M_FORBIDDEN."""
    acl = store.get_current_state_event(room_id, *ACL_KEY)
    check_server_acl(origin, acl["content"] if acl else None)


def get_state_in_order(store: Store, room_id: str, keys: list[StateKey]) -> list[JsonDict]:
    """The current state events for ``keys`` that exist, in the order of ``keys`` (stripped
    state lists such as knock_room_state)."""
    state = store.get_current_state_events(room_id, keys)
    return [state[key] for key in keys if key in state]


def get_auth_chain_ids(
    store: Store, room_id: str, room_version: RoomVersion, event_ids: list[str]
) -> list[str]:
    """Every event reachable from ``event_ids`` through auth_events, oldest first. In v12
    rooms the create event is an implicit auth event of every other event (rooms/v12,
    MSC4291: it is left out of auth_events on the wire), so it heads the chain, as Synapse's
    ``auth_event_ids()`` puts it there."""
    chain = store.get_auth_chain_ids(event_ids)
    if room_version.room_id_from_create_event:
        create_id = "$" + room_id[1:]
        if create_id not in chain and any(event_id != create_id for event_id in event_ids):
            chain.insert(0, create_id)
    return chain
