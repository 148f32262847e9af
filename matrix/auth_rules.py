"""Event authorisation rules for room versions 1-12 and the auth events selection algorithm."""

# Clause numbers below follow rooms/v11 (the layout the knock digest uses, §5.2). Room versions
# 1-5 insert the m.room.aliases rule as 4, so their member rule is 5; v1-v2 add a redaction rule at
# the end; v12 inserts a rule 2, so its m.federate rule is 4 and its member rule is 5.

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import NoReturn, TypeGuard

from nacl.exceptions import CryptoError

from matrix.errors import MatrixError
from matrix.events import compute_event_id, is_signed_by_any
from matrix.ids import get_domain
from matrix.room_versions import KNOWN_ROOM_VERSIONS, EventIdFormat, RoomVersion
from matrix.types import JsonDict
from matrix.xmatrix import decode_verify_key

StateKey = tuple[str, str]
StateMap = Mapping[tuple[str, str], JsonDict]

CREATE_KEY: StateKey = ("m.room.create", "")
POWER_LEVELS_KEY: StateKey = ("m.room.power_levels", "")
JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")

# m.room.power_levels schema: defaults when a key (or the whole event) is missing.
_LEVEL_DEFAULTS: dict[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "redact": 50,
    "kick": 50,
    "invite": 0,
}

# frag/v1-stringy-power-levels: optional whitespace, one optional sign, base-10 digits.
_STRINGY_LEVEL = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
# APPX §Historical User IDs (v1.14): localparts of any non-surrogate code points except ':' and
# NUL, control characters and the empty string included, are accepted over federation.
_USER_LOCALPART = re.compile("[^:\x00\ud800-\udfff]*")
# APPX §Server Name: IPv4 / DNS name or bracketed IPv6, with an optional port.
_SERVER_NAME = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def _forbid(reason: str) -> NoReturn:
    raise MatrixError("M_FORBIDDEN", reason)


def _content(event: JsonDict) -> JsonDict:
    content = event.get("content")
    return content if isinstance(content, dict) else {}


def _domain(identifier: object) -> str | None:
    if isinstance(identifier, str) and ":" in identifier:
        return get_domain(identifier)
    return None


def _is_user_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a user id by the (historical) grammar, at most 255 bytes."""
    if not isinstance(value, str) or not value.startswith("@") or ":" not in value:
        return False
    localpart, server_name = value[1:].split(":", 1)
    return (
        _USER_LOCALPART.fullmatch(localpart) is not None
        and _SERVER_NAME.fullmatch(server_name) is not None
        # APPX §User Identifiers: at most 255 bytes (checked once no surrogate is left)
        and len(value.encode("utf-8")) <= 255
    )


def _membership(state: StateMap, user_id: str) -> str | None:
    member = state.get(("m.room.member", user_id))
    if member is None:
        return None
    membership = _content(member).get("membership")
    return membership if isinstance(membership, str) else None


def get_join_rule(state: StateMap) -> str | None:
    """The room's join rule from ``m.room.join_rules``, or None when there is none."""
    event = state.get(JOIN_RULES_KEY)
    if event is None:
        return None
    join_rule = _content(event).get("join_rule")
    return join_rule if isinstance(join_rule, str) else None


def _join_rule_for_join(state: StateMap) -> object:
    """The join rule the join rules weigh: any JSON value, so that unknown ones are rejected."""
    event = state.get(JOIN_RULES_KEY)
    content = _content(event) if event is not None else {}
    # No join_rules event (or one without join_rule): the spec names no rule; Synapse and Ruma
    # both treat it as "invite"
    if "join_rule" not in content:
        return "invite"
    # 4.3.7 v1+: any other value, 1 and null included, is an unknown rule: "Otherwise, reject"
    return content["join_rule"]


def _parse_level(value: object, room_version: RoomVersion) -> int | None:
    """A power level as an int, or None when this room version does not accept the value."""
    if isinstance(value, bool):
        return None  # JSON true/false are not numbers, whatever Python thinks
    if isinstance(value, int):
        return value
    if room_version.integer_only_power_levels:
        return None  # v10+: power levels must be integers
    if isinstance(value, str):
        # v1-v9 frag/v1-stringy-power-levels: "  +0100 " is 100
        return int(value) if _STRINGY_LEVEL.fullmatch(value) else None
    if isinstance(value, float) and not room_version.strict_canonical_json:
        # v1-v5 frag/v1-floaty-power-levels: truncate; infinities and NaN are rejected.
        # v6+ canonical JSON drops floats before the auth rules ever see them.
        return int(value) if math.isfinite(value) else None
    return None


def _named_level(power_levels: JsonDict | None, key: str, room_version: RoomVersion) -> int:
    """``ban``, ``kick``, ``invite``... with the schema's default when missing or unusable."""
    if power_levels is not None:
        level = _parse_level(power_levels.get(key), room_version)
        if level is not None:
            return level
    return _LEVEL_DEFAULTS[key]


def get_required_power_level(state: StateMap, key: str, room_version: RoomVersion) -> int:
    """The level ``key`` (``invite``, ``kick``, ``ban``, ...) needs in ``state``'s power levels,
    with the m.room.power_levels schema's default."""
    return _named_level(_power_levels_content(state), key, room_version)


def _power_levels_content(state: StateMap) -> JsonDict | None:
    event = state.get(POWER_LEVELS_KEY)
    return None if event is None else _content(event)


def _creator(create_event: JsonDict, room_version: RoomVersion) -> object:
    # v11+: the creator is the create event's sender; v1-v10: content.creator
    if room_version.implicit_room_creator:
        return create_event.get("sender")
    return _content(create_event).get("creator")


def _creators(create_event: JsonDict) -> set[str]:
    """v12 room creators: the create event's sender plus content.additional_creators."""
    creators = {create_event.get("sender")}
    additional = _content(create_event).get("additional_creators")
    if isinstance(additional, list):
        creators.update(additional)
    return {creator for creator in creators if isinstance(creator, str)}


def get_power_level(
    user_id: str,
    state: StateMap,
    room_version: RoomVersion,
    create_event: JsonDict | None = None,
) -> int | float:
    """``user_id``'s power level in ``state``; ``math.inf`` for v12 room creators."""
    create = create_event if create_event is not None else state.get(CREATE_KEY)
    # v12: creators have infinite power, with or without m.room.power_levels
    if room_version.additional_creators and create is not None and user_id in _creators(create):
        return math.inf
    power_levels = _power_levels_content(state)
    if power_levels is None:
        # v1-v11 m.room.power_levels schema: without the event the creator has 100, others 0
        if (
            not room_version.additional_creators
            and create is not None
            and user_id == _creator(create, room_version)
        ):
            return 100
        return 0
    users = power_levels.get("users")
    if isinstance(users, dict):
        level = _parse_level(users.get(user_id), room_version)
        if level is not None:
            return level
    return _named_level(power_levels, "users_default", room_version)


def get_auth_event_keys(event: JsonDict, room_version: RoomVersion) -> list[StateKey]:
    """The (type, state_key) pairs SS §Auth events selection picks for ``event``, in order."""
    if event.get("type") == "m.room.create":
        return []  # the create event has no auth events
    keys: list[StateKey] = []

    def add(key: StateKey) -> None:
        if key not in keys:  # sender and target member events are often the same pair
            keys.append(key)

    # changed in v1.16: only room versions that select it (v1-v11; never v12)
    if room_version.create_event_in_auth_events:
        add(CREATE_KEY)
    add(POWER_LEVELS_KEY)
    sender = event.get("sender")
    if isinstance(sender, str):
        add(("m.room.member", sender))
    if event.get("type") == "m.room.member":
        content = _content(event)
        membership = content.get("membership")
        target = event.get("state_key")
        if isinstance(target, str):
            add(("m.room.member", target))
        if membership in ("join", "invite", "knock"):
            add(JOIN_RULES_KEY)
        if membership == "invite":
            third_party_invite = content.get("third_party_invite")
            signed = (
                third_party_invite.get("signed") if isinstance(third_party_invite, dict) else None
            )
            token = signed.get("token") if isinstance(signed, dict) else None
            if isinstance(token, str):
                add(("m.room.third_party_invite", token))
        # only in room versions that support restricted rooms (v8+)
        if membership == "join" and room_version.restricted_join_rule:
            authoriser = content.get("join_authorised_via_users_server")
            if isinstance(authoriser, str):
                add(("m.room.member", authoriser))
    return keys


def check_auth_events_selection(
    event: JsonDict, auth_events: list[JsonDict], room_version: RoomVersion
) -> None:
    """Rule 2 (v1-v11) / rule 3 (v12): the event's auth_events themselves must be well chosen."""
    selectable = set(get_auth_event_keys(event, room_version))
    seen: set[StateKey] = set()
    for auth_event in auth_events:
        event_type = auth_event.get("type")
        state_key = auth_event.get("state_key")
        if not isinstance(event_type, str) or not isinstance(state_key, str):
            _forbid("auth events must be state events")
        key = (event_type, state_key)
        # 2.1 v1+ (v12 3.1): no duplicate (type, state_key) pairs
        if key in seen:
            _forbid(f"duplicate auth event {key}")
        seen.add(key)
        # 2.2 v1+ (v12 3.2): only what auth events selection picks; v12 never picks the create
        if key not in selectable:
            _forbid(f"auth event {key} is not one the selection algorithm picks")
        # 2.5 v1+ (v12 3.5): every auth event belongs to the same room
        if auth_event.get("room_id") != event.get("room_id"):
            _forbid(f"auth event {key} is from another room")
    # 2.4 v1-v11: the create event must be among them (v12 implies it by the room id instead)
    if (
        room_version.create_event_in_auth_events
        and event.get("type") != "m.room.create"
        and CREATE_KEY not in seen
    ):
        _forbid("auth events lack the m.room.create event")


def check_auth_rules(
    event: JsonDict,
    auth_state: StateMap,
    room_version: RoomVersion,
    *,
    create_event: JsonDict | None = None,
    is_signed_by: Callable[[str], bool] | None = None,
    create_event_id: str | None = None,
) -> None:
    """Raise M_FORBIDDEN unless ``event`` passes the room version's auth rules on ``auth_state``.

    ``create_event_id`` is the create event's id when the caller knows it from where it stored
    the event (state resolution); otherwise the first-join rule computes it.

    ``auth_state`` is the event's auth events or a room state, keyed by (type, state_key). The
    create event comes from ``create_event`` or else from ``auth_state``. ``is_signed_by`` says
    whether the event carries a valid signature of a server; without it, nothing counts as signed.
    """
    sender = event.get("sender")
    if not _is_user_id(sender):
        _forbid("event sender is not a user id")
    event_type = event.get("type")
    if event_type == "m.room.create":
        _check_create(event, sender, room_version)
        return
    create = create_event if create_event is not None else auth_state.get(CREATE_KEY)
    if create is None:
        # 2.4 v1-v11: no create event among the auth events; v12 rule 2: the room id names it
        _forbid("no m.room.create event for this room")
    # 3 v1+ (v12 4): m.federate false keeps senders from other servers out
    if _content(create).get("m.federate") is False and _domain(sender) != _domain(
        create.get("sender")
    ):
        _forbid("room is not federated and the sender is from another server")
    if room_version.special_case_aliases_auth and event_type == "m.room.aliases":
        _check_aliases(event, sender)
        return
    if event_type == "m.room.member":
        _check_member(
            event, sender, auth_state, room_version, create, is_signed_by, create_event_id
        )
        return
    sender_level = get_power_level(sender, auth_state, room_version, create)
    power_levels = _power_levels_content(auth_state)
    # 5 v1+ (v1-v5 6, v12 6): everything else needs the sender to be joined
    if _membership(auth_state, sender) != "join":
        _forbid("sender is not joined to the room")
    # 6 v1+: third-party invites need the invite level
    if event_type == "m.room.third_party_invite":
        if sender_level >= _named_level(power_levels, "invite", room_version):
            return
        _forbid("sender may not invite")
    # 7 v1+: the event type's required power level
    if _required_level(event, power_levels, room_version) > sender_level:
        _forbid("sender's power level is too low for this event type")
    # 8 v1+: a state key that looks like a user id is reserved for that user
    state_key = event.get("state_key")
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        _forbid("state key names another user")
    if event_type == "m.room.power_levels":
        _check_power_levels(event, sender, sender_level, auth_state, room_version, create)
        return
    # v1-v2 rule 11 (the rooms whose event ids name a server): redactions by level or domain
    if room_version.event_id_format is EventIdFormat.V1 and event_type == "m.room.redaction":
        _check_redaction_v1(event, sender_level, power_levels, room_version)


def _check_create(event: JsonDict, sender: str, room_version: RoomVersion) -> None:
    # 1.1 v1+: the create event starts the room, so it has no prev_events
    if event.get("prev_events"):
        _forbid("m.room.create has prev_events")
    if room_version.room_id_from_create_event:
        # 1.2 v12: the room id is derived from the create event, which carries none
        if "room_id" in event:
            _forbid("m.room.create carries a room_id")
    elif _domain(event.get("room_id")) != _domain(sender):
        # 1.2 v1-v11: the room id's domain is the creator's server
        _forbid("room id and sender are on different servers")
    content = _content(event)
    # 1.3 v1+: a stated room version must be one we know
    if "room_version" in content:
        version = content["room_version"]
        if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
            _forbid("unknown room version in m.room.create")
    # 1.4 v12: additional_creators must be an array of valid user ids
    if room_version.additional_creators and "additional_creators" in content:
        additional = content["additional_creators"]
        if not isinstance(additional, list) or not all(_is_user_id(u) for u in additional):
            _forbid("additional_creators is not an array of user ids")
    # 1.4 v1-v10: content.creator is required (v11 takes the sender instead)
    if not room_version.implicit_room_creator and "creator" not in content:
        _forbid("m.room.create has no creator")


def _check_aliases(event: JsonDict, sender: str) -> None:
    # v1-v5 rule 4 (removed in v6): a server may only set aliases under its own name
    state_key = event.get("state_key")
    if not isinstance(state_key, str):
        _forbid("m.room.aliases has no state key")
    if _domain(sender) != state_key:
        _forbid("m.room.aliases state key is not the sender's server")


def _check_member(
    event: JsonDict,
    sender: str,
    state: StateMap,
    room_version: RoomVersion,
    create: JsonDict,
    is_signed_by: Callable[[str], bool] | None,
    create_event_id: str | None,
) -> None:
    content = _content(event)
    target = event.get("state_key")
    membership = content.get("membership")
    # 4.1 v1+: a member event names its target and its membership
    if not isinstance(target, str) or not isinstance(membership, str):
        _forbid("member event lacks a state key or a membership")
    # 4.2 v8+: join_authorised_via_users_server must be signed by that user's server (any
    # membership, knocks included)
    if room_version.restricted_join_rule and "join_authorised_via_users_server" in content:
        authoriser_server = _domain(content["join_authorised_via_users_server"])
        if authoriser_server is None or is_signed_by is None or not is_signed_by(authoriser_server):
            _forbid("event is not signed by the join authoriser's server")

    def level(user_id: str) -> int | float:
        return get_power_level(user_id, state, room_version, create)

    def named_level(key: str) -> int:
        return _named_level(_power_levels_content(state), key, room_version)

    sender_membership = _membership(state, sender)
    target_membership = _membership(state, target)
    if membership == "join":
        _check_join(event, sender, target, content, state, room_version, create, create_event_id)
    elif membership == "invite":
        # 4.4.1 v1+ (v1-v5 5.3.1, v12 5.4.1): a third-party invite is decided by its own rules
        if "third_party_invite" in content:
            _check_third_party_invite(event, sender, target, content, target_membership, state)
            return
        # 4.4.2 v1+
        if sender_membership != "join":
            _forbid("inviter is not joined")
        # 4.4.3 v1+
        if target_membership in ("join", "ban"):
            _forbid("invitee is joined or banned")
        # 4.4.4 v1+
        if level(sender) < named_level("invite"):
            _forbid("inviter's power level is below the invite level")
    elif membership == "leave":
        if sender == target:
            # 4.5.1 v1+: leave or reject an invite; v7+ also retract a knock
            leavable = (
                ("invite", "join", "knock") if room_version.knock_join_rule else ("invite", "join")
            )
            if sender_membership in leavable:
                return
            _forbid("user cannot leave from their current membership")
        # 4.5.2 v1+
        if sender_membership != "join":
            _forbid("kicker is not joined")
        # 4.5.3 v1+: unbanning takes the ban level
        if target_membership == "ban" and level(sender) < named_level("ban"):
            _forbid("sender's power level is below the ban level")
        # 4.5.4 v1+
        if level(sender) < named_level("kick") or level(target) >= level(sender):
            _forbid("sender may not kick this user")
    elif membership == "ban":
        # 4.6.1 v1+
        if sender_membership != "join":
            _forbid("banner is not joined")
        # 4.6.2 v1+
        if level(sender) < named_level("ban") or level(target) >= level(sender):
            _forbid("sender may not ban this user")
    elif membership == "knock" and room_version.knock_join_rule:
        _check_knock(sender, target, sender_membership, state, room_version)
    else:
        # 4.8 v1+ (v1-v6 also land here for knock): unknown membership
        _forbid(f"unknown membership {membership!r}")


def _check_third_party_invite(
    event: JsonDict,
    sender: str,
    target: str,
    content: JsonDict,
    target_membership: str | None,
    state: StateMap,
) -> None:
    # 4.4.1.1 v1+
    if target_membership == "ban":
        _forbid("invitee is banned")
    third_party_invite = content["third_party_invite"]
    signed = third_party_invite.get("signed") if isinstance(third_party_invite, dict) else None
    # 4.4.1.2 v1+: content.third_party_invite has a signed property
    if not isinstance(signed, dict):
        _forbid("third_party_invite has no signed object")
    # 4.4.1.3 v1+: signed has mxid and token
    if "mxid" not in signed or "token" not in signed:
        _forbid("third_party_invite.signed lacks mxid or token")
    # 4.4.1.4 v1+
    if signed["mxid"] != target:
        _forbid("third_party_invite.signed.mxid is not the state key")
    token = signed["token"]
    invite_event = (
        state.get(("m.room.third_party_invite", token)) if isinstance(token, str) else None
    )
    # 4.4.1.5 v1+: an m.room.third_party_invite with the token as state key
    if invite_event is None:
        _forbid("no m.room.third_party_invite for this token")
    # 4.4.1.6 v1+: only the user who issued the third-party invite may turn it into an invite
    if invite_event.get("sender") != sender:
        _forbid("sender did not send the m.room.third_party_invite")
    # 4.4.1.7 v1+: any signature in signed by any public key of the m.room.third_party_invite
    if any(_is_signed_with(signed, key) for key in _third_party_public_keys(invite_event)):
        return
    # 4.4.1.8 v1+
    _forbid("third_party_invite.signed is not signed by the invite's public keys")


def _third_party_public_keys(invite_event: JsonDict) -> list[str]:
    """4.4.1.7: the keys in ``public_key`` and in each ``public_keys[].public_key``."""
    content = _content(invite_event)
    keys = [content.get("public_key")]
    public_keys = content.get("public_keys")
    if isinstance(public_keys, list):
        keys.extend(entry.get("public_key") for entry in public_keys if isinstance(entry, dict))
    return [key for key in keys if isinstance(key, str)]


def _is_signed_with(signed: JsonDict, public_key: str) -> bool:
    """Whether any ed25519 signature in ``signed``, by any server and key id, verifies with
    ``public_key`` (4.4.1.7 names no server or key id)."""
    try:
        # CS m.room.third_party_invite: an Ed25519 key in unpadded base64, standard or URL-safe
        verify_key = decode_verify_key("ed25519:third_party_invite", public_key)
    except (ValueError, CryptoError):
        return False
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    return any(
        is_signed_by_any(signed, by_server, dict.fromkeys(by_server, verify_key))
        for by_server in signatures.values()
        if isinstance(by_server, dict)
    )


def _check_join(
    event: JsonDict,
    sender: str,
    target: str,
    content: JsonDict,
    state: StateMap,
    room_version: RoomVersion,
    create: JsonDict,
    create_event_id: str | None,
) -> None:
    # 4.3.1 v1+: the creator's own first join, right after the create event
    if _is_creator_first_join(event, target, room_version, create, create_event_id):
        return
    # 4.3.2 v1+
    if sender != target:
        _forbid("cannot join on behalf of another user")
    membership = _membership(state, sender)
    # 4.3.3 v1+
    if membership == "ban":
        _forbid("user is banned")
    join_rule = _join_rule_for_join(state)
    # 4.3.4 v1+ invite, v7+ also knock: only invited (or already joined) users
    if join_rule == "invite" or (join_rule == "knock" and room_version.knock_join_rule):
        if membership in ("invite", "join"):
            return
        _forbid("room is invite-only and the user is not invited")
    # 4.3.5 v8+ restricted, v10+ also knock_restricted
    if (join_rule == "restricted" and room_version.restricted_join_rule) or (
        join_rule == "knock_restricted" and room_version.knock_restricted_join_rule
    ):
        # 4.3.5.1
        if membership in ("invite", "join"):
            return
        # 4.3.5.2: a joined member able to invite must authorise the join
        authoriser = content.get("join_authorised_via_users_server")
        if (
            not isinstance(authoriser, str)
            or _membership(state, authoriser) != "join"
            or get_power_level(authoriser, state, room_version, create)
            < _named_level(_power_levels_content(state), "invite", room_version)
        ):
            _forbid("restricted join lacks a joined authoriser with invite power")
        return
    # 4.3.6 v1+
    if join_rule == "public":
        return
    # 4.3.7 v1+
    _forbid(f"join rule {join_rule!r} does not allow this join")


def _is_creator_first_join(
    event: JsonDict,
    target: str,
    room_version: RoomVersion,
    create: JsonDict,
    create_event_id: str | None,
) -> bool:
    """4.3.1: "the only previous event is an m.room.create and the state_key is the creator".

    The rule looks at the event's prev_events, not at the auth state: exactly one prev_event,
    and it is the create event's id.
    """
    prev_events = event.get("prev_events")
    if not isinstance(prev_events, list) or len(prev_events) != 1:
        return False
    prev_event = prev_events[0]
    if room_version.event_id_format is EventIdFormat.V1:
        # rooms/v1 §Event format: v1/v2 prev_events are [event_id, hashes] pairs
        if not isinstance(prev_event, list) or len(prev_event) != 2:
            return False
        prev_event = prev_event[0]
    known_id = create_event_id or _create_event_id(event, room_version, create)
    if prev_event != known_id:
        return False
    return target == _creator(create, room_version)


def _create_event_id(event: JsonDict, room_version: RoomVersion, create: JsonDict) -> str | None:
    """The create event's id: v12 from the room id, v3-v11 computed, v1-v2 its event_id field."""
    if room_version.room_id_from_create_event:
        # rooms/v12: the room id is the create event's id with the "!" sigil instead of "$"
        room_id = event.get("room_id")
        return "$" + room_id[1:] if isinstance(room_id, str) else None
    try:
        # rooms/v1: the PDU's event_id; rooms/v3, frag/v4-event-ids: its reference hash
        return compute_event_id(create, room_version)
    except MatrixError:
        return None  # a v1/v2 create event without an event_id has no id to compare with


def _check_knock(
    sender: str,
    target: str,
    sender_membership: str | None,
    state: StateMap,
    room_version: RoomVersion,
) -> None:
    join_rule = get_join_rule(state)
    # 4.7.1 v7+: the room must take knocks ("knock"; v10+ also "knock_restricted")
    if not (
        join_rule == "knock"
        or (join_rule == "knock_restricted" and room_version.knock_restricted_join_rule)
    ):
        _forbid("room does not accept knocks")
    # 4.7.2 v7+
    if sender != target:
        _forbid("cannot knock on behalf of another user")
    # 4.7.3 / 4.7.4 v7+: no membership, leave and knock (a re-knock) may knock; others not
    if sender_membership in ("ban", "invite", "join"):
        _forbid(f"user with membership {sender_membership!r} cannot knock")


def _required_level(
    event: JsonDict, power_levels: JsonDict | None, room_version: RoomVersion
) -> int:
    events = power_levels.get("events") if power_levels is not None else None
    if isinstance(events, dict):
        level = _parse_level(events.get(event.get("type")), room_version)
        if level is not None:
            return level
    if "state_key" in event:
        return _named_level(power_levels, "state_default", room_version)
    return _named_level(power_levels, "events_default", room_version)


def _parse_level_map(
    value: object, room_version: RoomVersion, *, user_ids: bool = False
) -> dict[str, int]:
    """A new power_levels map (events, notifications, users) that is present, or M_FORBIDDEN.

    Only a missing key means an empty map; a present null is "not an object" like any other
    non-object, and is rejected.
    """
    if not isinstance(value, dict):
        _forbid("power level map is not an object")
    levels: dict[str, int] = {}
    for key, raw in value.items():
        level = _parse_level(raw, room_version)
        if level is None:
            _forbid(f"power level for {key!r} is not an integer")
        if user_ids and not _is_user_id(key):
            _forbid(f"{key!r} in users is not a user id")
        levels[key] = level
    return levels


def _same_json(old: object, new: object) -> bool:
    """Whether two JSON scalars are the same value (``true`` is not ``1``, ``1.0`` is not ``1``)."""
    return type(old) is type(new) and old == new


def _changed_level(
    old_container: JsonDict, new_container: JsonDict, key: str, room_version: RoomVersion
) -> tuple[int | None, int | None] | None:
    """(old, new) levels when ``key`` is added, changed or removed; None when it is not.

    An old value this room version cannot read counts as no level. A new value it cannot read
    is rejected: no rule could weigh it against the sender's level (v10+ rejected it before).
    """
    old_raw, new_raw = old_container.get(key), new_container.get(key)
    if (key in old_container) == (key in new_container) and _same_json(old_raw, new_raw):
        return None
    old = _parse_level(old_raw, room_version)
    new = None
    if key in new_container:
        new = _parse_level(new_raw, room_version)
        if new is None:
            _forbid(f"power level {key!r} is not a power level")
    # v1-v9: "50" and 50 are the same level, so no alteration
    return None if old == new else (old, new)


def _check_power_levels(
    event: JsonDict,
    sender: str,
    sender_level: int | float,
    state: StateMap,
    room_version: RoomVersion,
    create: JsonDict,
) -> None:
    content = _content(event)
    # v6+ also guards "notifications" (rooms/v6); v1-v5 ignore it
    map_keys = ["events"] if room_version.special_case_aliases_auth else ["events", "notifications"]
    if room_version.integer_only_power_levels:
        # 9.1 v10+: users_default, events_default, state_default, ban, redact, kick and invite,
        # when present, are integers
        for key in _LEVEL_DEFAULTS:
            if key in content and _parse_level(content[key], room_version) is None:
                _forbid(f"power level {key!r} is not an integer")
        # 9.2 v10+: events and notifications, when present, are objects of integers
        for key in map_keys:
            if key in content:
                _parse_level_map(content[key], room_version)
    # 9.3 v10+ (v1-v9 10.1): users is an object of valid user ids to integers (v1-v9: or integer
    # strings); only a missing users key means no users
    new_users = (
        _parse_level_map(content["users"], room_version, user_ids=True)
        if "users" in content
        else {}
    )
    # 10.4 v12: creators have infinite power and cannot be listed
    if room_version.additional_creators and _creators(create) & new_users.keys():
        _forbid("room creators cannot appear in users")
    old_content = _power_levels_content(state)
    # 9.4 v10+ (v1-v9 10.2, v12 10.5): "If there is no previous m.room.power_levels event in the
    # room, allow"; v1-v9 check nothing but users before this point
    if old_content is None:
        return
    # 9.5 v1+ (v1-v9 10.3): top-level levels the sender changes must be within reach, before and
    # after
    for key in _LEVEL_DEFAULTS:
        change = _changed_level(old_content, content, key, room_version)
        if change is not None and _exceeds(change, sender_level):
            _forbid(f"sender cannot change {key!r}")
    # 9.6 / 9.7 v1+ (v1-v9 10.4 / 10.5, notifications v6+): the same for each events /
    # notifications entry
    for key in map_keys:
        old_map = old_content.get(key)
        old_map = old_map if isinstance(old_map, dict) else {}
        if key not in content:
            new_map: JsonDict = {}
        elif isinstance(content[key], dict):
            new_map = content[key]
        else:
            # v1-v9 (v10+ rejected it at 9.2): a map that is no object has no entries to weigh
            _forbid(f"power level map {key!r} is not an object")
        for entry in sorted(old_map.keys() | new_map.keys()):
            change = _changed_level(old_map, new_map, entry, room_version)
            if change is not None and _exceeds(change, sender_level):
                _forbid(f"sender cannot change {key}[{entry!r}]")
    old_users = old_content.get("users")
    old_users = old_users if isinstance(old_users, dict) else {}
    for user_id in sorted(old_users.keys() | new_users.keys()):
        change = _changed_level(old_users, new_users, user_id, room_version)
        if change is None:
            continue
        old, new = change
        # 9.8 v1+: another user's level can only be changed or removed if below the sender's
        if user_id != sender and old is not None and old >= sender_level:
            _forbid(f"sender cannot change the level of {user_id}")
        # 9.9 v1+: nobody can be raised above the sender
        if new is not None and new > sender_level:
            _forbid(f"sender cannot raise {user_id} above their own level")


def _exceeds(levels: Iterable[int | None], sender_level: int | float) -> bool:
    return any(level is not None and level > sender_level for level in levels)


def _check_redaction_v1(
    event: JsonDict,
    sender_level: int | float,
    power_levels: JsonDict | None,
    room_version: RoomVersion,
) -> None:
    # v1-v2 rule 11.1: the redact level lets anyone redact
    if sender_level >= _named_level(power_levels, "redact", room_version):
        return
    # v1-v2 rule 11.2: a server may redact events whose ids it minted
    redacted_domain = _domain(event.get("redacts"))
    if redacted_domain is not None and redacted_domain == _domain(event.get("event_id")):
        return
    _forbid("sender may not redact this event")
