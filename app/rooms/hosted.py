"""Rooms hosted here: lookups that answer 404, residency, the server ACL gate, state reads."""

from dataclasses import dataclass, field

from app.federation.lru import LruCache
from db.store import Store
from matrix.acl import check_server_acl
from matrix.auth_rules import StateKey
from matrix.errors import MatrixError
from matrix.ids import parse_room_id
from matrix.membership import MAX_TEMPLATE_PREV_EVENTS
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


StateWithIds = dict[StateKey, tuple[str, JsonDict]]


@dataclass
class RoomHead:
    """What a make_knock / make_join / make_leave template is built on, as of one change_seq
    of the room (db migration 011): its version, its newest events, its current state (read
    once per change, never for one user's membership). Shared by requests: read only."""

    change_seq: int
    room_version: RoomVersion
    prev_events: list[tuple[str, int]]
    state: dict[StateKey, tuple[str, JsonDict] | None] = field(default_factory=dict)

    def get_state(self, store: Store, room_id: str, keys: list[StateKey]) -> StateWithIds:
        """(event id, event) of the current state events for ``keys`` that exist, in order."""
        missing = [key for key in keys if key not in self.state]
        found = store.get_current_state_events_with_ids(room_id, missing) if missing else {}
        for key in missing:
            # A user's membership is asked for once per user: not worth keeping.
            if key[0] != "m.room.member":
                self.state[key] = found.get(key)
        result: StateWithIds = {}
        for key in keys:
            entry = found.get(key) or self.state.get(key)
            if entry is not None:
                result[key] = entry
        return result

    def check_origin_acl(self, store: Store, room_id: str, origin: str) -> None:
        """SS §Server Access Control Lists: a denied origin's room requests are 403."""
        acl = self.get_state(store, room_id, [ACL_KEY]).get(ACL_KEY)
        check_server_acl(origin, acl[1]["content"] if acl else None)


# Per worker; an entry is a few events, so this is well under a megabyte.
MAX_CACHED_ROOM_HEADS = 1024


class RoomHeads:
    """The RoomHead of each room recently asked for, checked against the room's change_seq on
    every request (one primary-key read), so a change made by any process is seen at once."""

    def __init__(self, max_rooms: int = MAX_CACHED_ROOM_HEADS):
        self._heads: LruCache[str, RoomHead] = LruCache(max_rooms)

    def load_resident_room(self, store: Store, room_id: str, server_name: str) -> RoomHead:
        """load_resident_room's answer (the same 404s) with the room's head."""
        change = store.get_room_change(room_id)
        if change is None:
            raise MatrixError("M_NOT_FOUND", f"Unknown room {room_id}")
        _version, change_seq = change
        head = self._heads.get(room_id)
        if head is not None and head.change_seq == change_seq:
            return head
        room_version = load_resident_room(store, room_id, server_name)
        head = RoomHead(
            change_seq,
            room_version,
            store.get_forward_extremities(room_id, MAX_TEMPLATE_PREV_EVENTS),
        )
        self._heads.set(room_id, head)
        return head


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
