"""knocks.yaml: the knock handshake, make_knock and send_knock."""

import logging
from collections.abc import Callable
from urllib.parse import unquote

from signedjson.types import VerifyKey

from db.store import Store
from handlers import _context
from matrix.acl import check_server_acl
from matrix.auth_rules import CREATE_KEY, StateKey, get_auth_event_keys
from matrix.errors import MatrixError
from matrix.events import check_event_signature
from matrix.ids import get_domain, parse_room_id, parse_user_id
from matrix.knock import (
    KNOCK_ROOM_STATE_KEYS,
    MAX_TEMPLATE_PREV_EVENTS,
    build_knock_template,
    check_make_knock_allowed,
    check_send_knock_auth,
    check_send_knock_event,
    get_knock_state_keys,
    get_redacted_if_hash_mismatch,
)
from matrix.room_versions import RoomVersion, get_room_version
from matrix.types import JsonDict

logger = logging.getLogger(__name__)


def _load_room(store: Store, room_id: str, server_name: str) -> RoomVersion:
    """The room's version, or 404 when the room is unknown here or we have left it."""
    version_id = store.get_room_version(room_id)
    room_version = get_room_version(version_id) if version_id else None
    # knocks.yaml 404 "unknown room"; Synapse also answers 404 when it has no joined user in
    # the room (it cannot build an event there).
    if room_version is None or not store.has_local_joined_member(room_id, server_name):
        raise MatrixError("M_NOT_FOUND", f"Unknown room {room_id}")
    return room_version


ACL_KEY: StateKey = ("m.room.server_acl", "")


def _check_acl(store: Store, room_id: str, origin: str) -> None:
    # SS §Server Access Control Lists: make_knock and send_knock are ACL-protected; 403.
    acl = store.get_current_state_event(room_id, *ACL_KEY)
    check_server_acl(origin, acl["content"] if acl else None)


async def make_knock(roomId: str, userId: str, ver: list[str], user: str) -> JsonDict:
    """GET /_matrix/federation/v1/make_knock/{roomId}/{userId} (knocks.yaml)."""
    origin = user
    # Path ids arrive with %2F and %25 still encoded (app/paths.py); decode them here.
    room_id = parse_room_id(unquote(roomId))
    user_id = parse_user_id(unquote(userId))
    store = _context.store()
    server_name = _context.server_name()
    room_version = _load_room(store, room_id, server_name)
    # The template's state and the ACL in one statement; the checks keep their order.
    found = store.get_current_state_events_with_ids(
        room_id, [*get_knock_state_keys(user_id, room_version), ACL_KEY]
    )
    acl = found.pop(ACL_KEY, None)
    # SS §Server Access Control Lists: make_knock is ACL-protected; 403.
    check_server_acl(origin, acl[1]["content"] if acl else None)
    check_make_knock_allowed(room_version, ver, user_id, origin)
    event = build_knock_template(
        room_version,
        room_id=room_id,
        user_id=user_id,
        state={key: event for key, (_, event) in found.items()},
        state_event_ids={key: event_id for key, (event_id, _) in found.items()},
        prev_events=store.get_forward_extremities(room_id, MAX_TEMPLATE_PREV_EVENTS),
        origin=server_name,
        origin_server_ts=_context.now_ms(),
    )
    return {"room_version": room_version.identifier, "event": event}


async def _get_event_verify_keys(server_name: str, event: JsonDict) -> dict[str, VerifyKey]:
    signatures = event["signatures"].get(server_name)
    key_ids = list(signatures) if isinstance(signatures, dict) else []
    if not key_ids:
        return {}
    return await _context.keyring().get_event_verify_keys(
        server_name, key_ids, event["origin_server_ts"]
    )


async def _get_authoriser_check(
    event: JsonDict, room_version: RoomVersion
) -> Callable[[str], bool]:
    """v8+ auth rule 4.2: join_authorised_via_users_server must be signed by that user's server;
    fetch its keys up front so the pure rules can ask synchronously."""
    authoriser = event["content"].get("join_authorised_via_users_server")
    keys: dict[str, dict[str, VerifyKey]] = {}
    if room_version.restricted_join_rule and isinstance(authoriser, str) and ":" in authoriser:
        server = get_domain(authoriser)
        keys[server] = await _get_event_verify_keys(server, event)

    def is_signed_by(server_name: str) -> bool:
        try:
            check_event_signature(event, room_version, server_name, keys.get(server_name, {}))
        except MatrixError:
            return False
        return True

    return is_signed_by


def _load_auth_events(store: Store, event: JsonDict) -> list[JsonDict]:
    """SS §Checks performed on receipt of a PDU, step 4: every auth event known and not
    rejected (we cannot fetch missing ones: this server only hosts rooms)."""
    found = store.get_accepted_events(event["auth_events"])
    missing = [event_id for event_id in event["auth_events"] if event_id not in found]
    if missing:
        raise MatrixError("M_FORBIDDEN", f"Unknown or rejected auth events {missing}")
    return [found[event_id] for event_id in event["auth_events"]]


def _load_state_before(
    store: Store, room_id: str, event: JsonDict, keys: list[StateKey]
) -> dict[StateKey, JsonDict]:
    """The state before the event: here, the state after its newest known prev_event.

    Rooms hosted here have one resident, so their history is linear but for concurrent remote
    events built on an older template; those only add membership events of their own senders,
    which the auth rules judge against the member's own key, so taking the newest prev_event
    stands in for state resolution.
    """
    newest = store.get_newest_stream_ordering(event["prev_events"])
    if newest is None:
        raise MatrixError("M_FORBIDDEN", "The knock's prev_events are not known to this server")
    state = {}
    for event_type, state_key in keys:
        found = store.get_state_event_before(room_id, event_type, state_key, newest + 1)
        if found is not None:
            state[(event_type, state_key)] = found
    return state


async def send_knock(roomId: str, eventId: str, body: JsonDict, user: str) -> JsonDict:
    """PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId} (knocks.yaml)."""
    origin = user
    room_id = parse_room_id(unquote(roomId))
    event_id = unquote(eventId)
    store = _context.store()
    room_version = _load_room(store, room_id, _context.server_name())
    # knock-digest §1.3: a room version without knocking is 403, as Synapse and conduwuit do.
    if not room_version.knock_join_rule:
        raise MatrixError(
            "M_FORBIDDEN", f"Room version {room_version.identifier} does not support knocking"
        )
    _check_acl(store, room_id, origin)
    check_send_knock_event(body, room_version, room_id=room_id, event_id=event_id, origin=origin)
    # knocks.yaml: the event must be signed by the sender's server (= origin); else 400.
    verify_keys = await _get_event_verify_keys(origin, body)
    check_event_signature(body, room_version, origin, verify_keys)
    event = get_redacted_if_hash_mismatch(body, room_version)
    # Every wait (key fetches) happens before the state is read: from here to the write
    # nothing yields, and the write lock is held, so no ban can land between check and store.
    is_signed_by = await _get_authoriser_check(event, room_version)
    with store.write_transaction():
        rejected = store.is_event_rejected(event_id)
        # knocks.yaml: a rejected knock is 403; an accepted one re-sent is answered again with
        # nothing stored (Synapse treats a known event the same way).
        if rejected:
            raise MatrixError("M_FORBIDDEN", f"The knock {event_id} was rejected")
        if rejected is None:
            _accept_knock(store, event, event_id, room_id, room_version, is_signed_by)
    if rejected is None:
        # SS §Joining Rooms / §Knocking: the resident sends the event to the other servers in
        # the room on the knocker's behalf (the knocking server has it already); after commit.
        others = set(store.get_joined_servers(room_id)) - {_context.server_name(), origin}
        _context.pdu_sender().send_pdu(sorted(others), event)
    state = store.get_current_state_events(room_id, KNOCK_ROOM_STATE_KEYS)
    return {"knock_room_state": [state[key] for key in KNOCK_ROOM_STATE_KEYS if key in state]}


def _accept_knock(
    store: Store,
    event: JsonDict,
    event_id: str,
    room_id: str,
    room_version: RoomVersion,
    is_signed_by: Callable[[str], bool],
) -> None:
    """Auth the knock against its auth_events, the state before it and the current state, then
    store it (event, current state, forward extremities: db/store.py)."""
    keys = list(dict.fromkeys([*get_auth_event_keys(event, room_version), CREATE_KEY]))
    current = store.get_current_state_events(room_id, keys)
    check_send_knock_auth(
        event,
        room_version,
        auth_events=_load_auth_events(store, event),
        state_before=_load_state_before(store, room_id, event, keys),
        current_state=current,
        create_event=current.get(CREATE_KEY),
        is_signed_by=is_signed_by,
    )
    store.persist_event(event, event_id, room_version.identifier)
    logger.info("Accepted knock %s by %s in %s", event_id, event["sender"], room_id)
