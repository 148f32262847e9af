"""The membership handshakes a resident answers (make_/send_ join, leave, knock): pure rules."""

from collections.abc import Iterable, Mapping, Sequence

from matrix.auth_rules import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    StateKey,
    StateMap,
    check_auth_rules,
    get_auth_event_keys,
    get_power_level,
    get_required_power_level,
)
from matrix.errors import MatrixError
from matrix.events import compute_event_id
from matrix.ids import get_domain, parse_user_id
from matrix.room_events import RESTRICTED_JOIN_RULES, build_event
from matrix.room_versions import RoomVersion
from matrix.types import JsonDict

# The specs bound prev_events at 20 (pdu_v*); ten keeps templates small, as Synapse does (it
# takes at most 10 forward extremities).
MAX_TEMPLATE_PREV_EVENTS = 10

# SS §Joining Rooms / §Leaving Rooms / §Knocking: the memberships a template can be asked for.
HANDSHAKE_MEMBERSHIPS = ("join", "leave", "knock")


def build_membership_skeleton(
    user_id: str, membership: str, content: Mapping[str, object] | None = None
) -> JsonDict:
    """The user's own m.room.member with ``membership`` (every handshake's event)."""
    return {
        "type": "m.room.member",
        "sender": user_id,
        "state_key": user_id,
        "content": {**(content or {}), "membership": membership},
    }


def get_membership_state_keys(
    user_id: str,
    membership: str,
    room_version: RoomVersion,
    authoriser: str | None = None,
) -> list[StateKey]:
    """The state a ``membership`` event of ``user_id`` is judged on: its auth-events selection
    (SS §Auth events selection) plus the create event, which the rules need even in v12, where
    it is not an auth event. ``authoriser`` is a restricted join's join_authorised_via_users_server.
    """
    content = {} if authoriser is None else {"join_authorised_via_users_server": authoriser}
    skeleton = build_membership_skeleton(user_id, membership, content)
    keys = get_auth_event_keys(skeleton, room_version)
    return list(dict.fromkeys([*keys, CREATE_KEY]))


def check_room_version_supported(
    room_version: RoomVersion, supported_versions: Sequence[str]
) -> None:
    """joins-v1.yaml / knocks.yaml 400: the room's version is not one the requesting server
    supports. Versions are opaque strings: compare exactly (rooms/_index.md §grammar)."""
    if room_version.identifier not in supported_versions:
        raise MatrixError(
            "M_INCOMPATIBLE_ROOM_VERSION",
            f"Your homeserver does not support room version {room_version.identifier}, which "
            "this room uses",
            room_version=room_version.identifier,
        )


def check_user_on_origin(user_id: str, origin: str) -> None:
    """A template is only for a user of the requesting server: knocks.yaml (v1.18) MUST;
    joins/leaves do not say, and Synapse answers 403 "User not from origin" for every kind."""
    if get_domain(user_id) != origin:
        raise MatrixError(
            "M_FORBIDDEN", f"{user_id} is not a user of the requesting server {origin}"
        )


def build_membership_template(
    room_version: RoomVersion,
    membership: str,
    *,
    room_id: str,
    user_id: str,
    state: StateMap,
    state_event_ids: Mapping[StateKey, str],
    prev_events: Iterable[tuple[str, int]],
    origin: str,
    origin_server_ts: int,
    authoriser: str | None = None,
    event_hashes: Mapping[str, str] | None = None,
) -> JsonDict:
    """The unsigned membership event a resident returns from make_join / make_leave / make_knock.

    Synapse's get_templated_pdu_json: a whole, auth-checked event without hashes, signatures,
    unsigned and (v3+) event_id. ``prev_events`` are (event_id, depth) of the forward
    extremities, newest first; ``state`` holds the events of get_membership_state_keys that
    exist and ``state_event_ids`` their ids (v3+ PDUs do not carry their own id).
    ``authoriser`` (a restricted join, rooms/v8) goes into the content as
    join_authorised_via_users_server; this server signs for it at send_join. Rooms with v1
    event ids (v1, v2) also need ``event_hashes``, the reference hash of every prev and auth
    event (rooms/v1 §Event format: references are ``[event_id, {"sha256": hash}]`` pairs).
    """
    prev = list(prev_events)[:MAX_TEMPLATE_PREV_EVENTS]
    content = {} if authoriser is None else {"join_authorised_via_users_server": authoriser}
    skeleton = build_membership_skeleton(user_id, membership, content)
    # SS §Auth events selection (v1.16): v12 never selects the create event.
    keys = get_auth_event_keys(skeleton, room_version)
    event = build_event(
        room_version,
        room_id=room_id,
        **skeleton,
        prev_events=[event_id for event_id, _ in prev],
        auth_events=[state_event_ids[key] for key in keys if key in state_event_ids],
        # pdu_v*: depth = max depth of prev_events + 1 (build_event caps it per version).
        depth=max((d for _, d in prev), default=0) + 1,
        origin=origin,
        origin_server_ts=origin_server_ts,
        event_hashes=event_hashes,
    )
    # The would-be event must pass the version's auth rules against current state; failure is
    # 403 M_FORBIDDEN (joins-v1.yaml, leaving-v1.yaml, knocks.yaml). An authoriser is ours: the
    # rules may take its signature as given.
    check_auth_rules(
        event,
        state,
        room_version,
        create_event=state.get(CREATE_KEY),
        is_signed_by=lambda server_name: (
            authoriser is not None and server_name == get_domain(authoriser)
        ),
    )
    return event


def _invalid(message: str) -> MatrixError:
    return MatrixError("M_INVALID_PARAM", message)


def check_membership_pdu(
    event: JsonDict,
    room_version: RoomVersion,
    membership: str,
    *,
    room_id: str,
    event_id: str,
    origin: str,
) -> None:
    """The SHOULD-be-400-M_INVALID_PARAM checks on a send_join / send_leave / send_knock body
    (joins-v2.yaml, leaving-v2.yaml, knocks.yaml v1.18): an m.room.member event, membership
    ``membership``, the sender on the origin, state_key = sender. The signature check, fifth
    on those lists, needs keys and is the intake's (app/rooms/ingest.py).

    Runs after check_pdu_format. The room id and event id comparisons with the path are ours and
    Synapse's ("Room ID in body does not match that in request path"), with the SHOULD code.
    """
    if event["room_id"] != room_id:
        raise _invalid("The event's room_id does not match the room in the path")
    if event["type"] != "m.room.member" or "state_key" not in event:
        raise _invalid("Not a membership event")
    if event["content"].get("membership") != membership:
        raise _invalid(f"Not a {membership} event")
    sender = event["sender"]
    try:
        parse_user_id(sender)
    except MatrixError:
        raise _invalid("The sender is not a valid user id") from None
    if get_domain(sender) != origin:
        raise _invalid(f"The sender is not a user of the requesting server {origin}")
    if event["state_key"] != sender:
        raise _invalid(f"A {membership}'s state_key must be its sender")
    if compute_event_id(event, room_version) != event_id:
        raise _invalid("The event id in the path is not the id of this event")


# Restricted joins (rooms/v8 and v10; CS §Restricted rooms; SS §Joining Rooms) ---------------


def get_restricted_allow_room_ids(
    room_version: RoomVersion, state: StateMap, membership: str | None
) -> list[str] | None:
    """The rooms whose members may join, when a join by a user with current ``membership``
    needs a restricted-join authorisation; None when it does not (not a restricted join rule
    of this version, or the user is invited or joined: v8 rule 4.3.5.1)."""
    join_rules = state.get(JOIN_RULES_KEY)
    content = join_rules["content"] if join_rules is not None else {}
    join_rule = content.get("join_rule")
    if join_rule not in RESTRICTED_JOIN_RULES or not room_version.supports_join_rule(join_rule):
        return None
    if membership in ("invite", "join"):
        return None
    allow = content.get("allow")
    entries = allow if isinstance(allow, list) else []
    # CS §Restricted rooms: only m.room_membership conditions exist; others are ignored.
    return [
        entry["room_id"]
        for entry in entries
        if isinstance(entry, dict)
        and entry.get("type") == "m.room_membership"
        and isinstance(entry.get("room_id"), str)
    ]


def check_restricted_join_allowed(
    allowed_rooms: Sequence[str], joined_rooms: Sequence[str]
) -> None:
    """joins-v1.yaml 400: M_UNABLE_TO_AUTHORISE_JOIN when this server knows none of the allowed
    rooms (it cannot tell); 403 M_FORBIDDEN when it knows them and the user is in none."""
    if not allowed_rooms:
        raise MatrixError("M_UNABLE_TO_AUTHORISE_JOIN", "No room in the join rule is known here")
    if not joined_rooms:
        raise MatrixError("M_FORBIDDEN", "The user is not joined to any room the join rule allows")


def get_join_authoriser(
    room_version: RoomVersion, state: StateMap, candidates: Sequence[str]
) -> str | None:
    """A joined user among ``candidates`` (this server's) able to invite, to name as
    join_authorised_via_users_server (v8 rule 4.3.5.2), the most powerful first (Synapse picks
    the first joined local user with invite power); None when there is none."""
    invite = get_required_power_level(state, "invite", room_version)
    ranked = sorted(
        candidates,
        key=lambda user: (-get_power_level(user, state, room_version), user),
    )
    if ranked and get_power_level(ranked[0], state, room_version) >= invite:
        return ranked[0]
    return None
