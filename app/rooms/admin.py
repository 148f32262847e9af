"""Local events: create rooms and send events as this server, each authorised, signed, stored
and handed to the fan-out."""

import copy
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from signedjson.types import SigningKey

from app.rooms.hosted import get_hosted_room_version, get_state_in_order
from app.rooms.persist import PduQueue, persist_and_fan_out
from db.store import Store
from matrix.auth_rules import (
    CREATE_KEY,
    POWER_LEVELS_KEY,
    StateKey,
    check_auth_events_selection,
    check_auth_rules,
    get_auth_event_keys,
)
from matrix.errors import MatrixError
from matrix.events import compute_event_id, compute_room_id_v12, sign_event
from matrix.ids import get_domain, parse_user_id
from matrix.invite import get_invite_room_state_keys
from matrix.room_events import (
    MAX_PREV_EVENTS,
    build_create_content,
    build_event,
    build_history_visibility_content,
    build_join_rules_content,
    build_member_content,
    build_power_levels_content,
    build_reference_hash,
    build_server_acl_content,
    check_join_rule_supported,
    parse_room_version,
)
from matrix.room_versions import EventIdFormat, RoomVersion
from matrix.types import JsonDict

logger = logging.getLogger(__name__)

Clock = Callable[[], int]

# v6+ canonical JSON (APPX §Canonical JSON): integers in [-(2**53)+1, 2**53-1]
MAX_SAFE_INTEGER = 2**53 - 1
# A state event's content in a timeline summary is cut at this many characters
SUMMARY_MAX_CHARS = 120


@dataclass(frozen=True)
class BuiltEvent:
    """An event built and signed here but not stored yet (an invite awaiting its countersign)."""

    room_id: str
    room_version: RoomVersion
    event: JsonDict
    event_id: str


@dataclass(frozen=True)
class Member:
    """One m.room.member event of current state (``rooms members``)."""

    user_id: str
    membership: str
    reason: str | None
    origin_server_ts: int
    sender: str
    event_id: str


@dataclass(frozen=True)
class TimelineEntry:
    """One stored event of a room (``rooms timeline``); ``summary`` is one line of its text."""

    event_id: str
    origin_server_ts: int
    sender: str
    type: str
    state_key: str | None
    summary: str


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _optional_string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def summarise_event(event: JsonDict, previous_membership: str | None) -> str:
    """One line about ``event``: a message's body, a membership change named as the
    m.room.member schema's transition table names it, else the type and content.

    The text comes from other servers: callers that print it must escape it.
    """
    content = event.get("content")
    content = content if isinstance(content, dict) else {}
    if event.get("type") == "m.room.message":
        body = content.get("body")
        return body if isinstance(body, str) else f"({_string(content.get('msgtype'))} message)"
    if event.get("type") == "m.room.member":
        return _summarise_membership(event, content, previous_membership)
    if "state_key" in event:
        text = json.dumps(content, sort_keys=True, ensure_ascii=False)
        if len(text) > SUMMARY_MAX_CHARS:
            text = text[: SUMMARY_MAX_CHARS - 1] + "…"
        return text
    return f"({_string(event.get('type'))})"


def _summarise_membership(event: JsonDict, content: JsonDict, previous: str | None) -> str:
    target = _string(event.get("state_key"))
    membership = _string(content.get("membership"))
    own = event.get("sender") == target
    # m.room.member schema: the meaning of each (previous -> new membership) transition
    if membership == "join":
        what = "updated their profile" if previous == "join" else "joined"
    elif membership == "invite":
        what = f"invited {target}"
    elif membership == "knock":
        what = "knocked"
    elif membership == "ban":
        what = f"banned {target}"
    elif membership == "leave" and own:
        what = {"invite": "rejected the invite", "knock": "retracted the knock"}.get(
            previous or "", "left"
        )
    elif membership == "leave":
        what = {
            "ban": f"unbanned {target}",
            "invite": f"withdrew the invite of {target}",
            "knock": f"denied the knock of {target}",
        }.get(previous or "", f"kicked {target}")
    else:
        what = f"set the membership of {target} to {membership!r}"
    line = f"{what} ({previous or 'none'} -> {membership})"
    reason = content.get("reason")
    return f"{line}, reason: {reason}" if isinstance(reason, str) and reason else line


@dataclass(frozen=True)
class Signer:
    """A server that signs events: this one, or (in test fixtures) a remote one."""

    server_name: str
    signing_key: SigningKey


@dataclass
class _Draft:
    """Room state being built in memory, so a whole room is checked before anything is stored."""

    room_version: RoomVersion
    room_id: str | None
    state: dict[StateKey, tuple[str, JsonDict]]
    extremities: list[tuple[str, int]]
    hashes: dict[str, str]
    create_event: JsonDict | None
    # False while a room is being created: nothing of it is stored yet
    stored: bool
    # origin_server_ts is at least this (see create_room)
    not_before_ts: int = 0


class RoomAdmin:
    """Builds real events, runs the room version's auth rules on them, signs and stores them.

    Every method raises MatrixError (and writes nothing) when the change is not allowed.
    """

    def __init__(
        self,
        store: Store,
        server_name: str,
        signing_key: SigningKey,
        clock: Clock,
        outbox: PduQueue | None = None,
    ):
        self.store = store
        self.server_name = server_name
        self.signer = Signer(server_name, signing_key)
        self.clock = clock
        # Where stored events go to reach the room's other servers (None: nowhere, fixtures)
        self.outbox = outbox

    # Rooms ----------------------------------------------------------------------------------

    def create_room(
        self,
        version: str,
        join_rule: str,
        name: str | None = None,
        topic: str | None = None,
        creator_localpart: str = "admin",
        allow_rooms: Iterable[str] = (),
        additional_creators: Iterable[str] = (),
        federate: bool = True,
    ) -> str:
        """Create a room with the usual initial state; return its room id."""
        room_version = parse_room_version(version)
        check_join_rule_supported(room_version, join_rule)
        creator = parse_user_id(f"@{creator_localpart}:{self.server_name}")
        if get_domain(creator) != self.server_name:  # a localpart with ":" in it
            raise MatrixError("M_INVALID_PARAM", f"invalid creator localpart {creator_localpart!r}")
        join_rules = build_join_rules_content(join_rule, allow_rooms)
        create_content = build_create_content(
            room_version, creator, additional_creators, federate=federate
        )
        initial: list[tuple[str, str, JsonDict]] = [
            ("m.room.create", "", create_content),
            ("m.room.member", creator, build_member_content("join")),
            ("m.room.power_levels", "", build_power_levels_content(room_version, creator)),
            ("m.room.join_rules", "", join_rules),
            ("m.room.history_visibility", "", build_history_visibility_content("shared")),
        ]
        if name is not None:
            initial.append(("m.room.name", "", {"name": name}))
        if topic is not None:
            initial.append(("m.room.topic", "", {"topic": topic}))
        not_before_ts = 0
        while True:
            room_id = None
            if not room_version.room_id_from_create_event:
                # APPX §Room IDs (v1-v11): "!opaque:domain", the domain being the creator's
                room_id = f"!{secrets.token_urlsafe(18)}:{self.server_name}"
            draft = _Draft(room_version, room_id, {}, [], {}, None, stored=False)
            draft.not_before_ts = not_before_ts
            events = [
                self._add_to_draft(draft, event_type, state_key, content, creator, self.signer)
                for event_type, state_key, content in initial
            ]
            create_event, create_id = events[0]
            if self.store.get_event(create_id) is None:
                break
            # rooms/v12: the room id is the create event's hash, so the same creator and content
            # in the same millisecond name an existing room: create this one a millisecond later
            not_before_ts = create_event["origin_server_ts"] + 1
        assert draft.room_id is not None  # set by the create event at the latest
        self._persist(events, draft)
        logger.info("Created room %s (version %s, %s)", draft.room_id, version, join_rule)
        return draft.room_id

    def send_state_event(
        self,
        room_id: str,
        type: str,
        state_key: str,
        content: JsonDict,
        sender: str | None = None,
        *,
        signer: Signer | None = None,
        prev_events: Sequence[str] | None = None,
    ) -> str:
        """Send one state event into ``room_id`` (by default as its creator); return its id.

        ``signer`` signs for a remote sender (test fixtures holding that server's key).
        ``prev_events`` replaces the forward extremities (test fixtures building forks).
        """
        # Read, authorise and write under the write lock: a knock accepted by the server in
        # between cannot slip under a ban decided on older state.
        with self.store.write_transaction(room_id):
            draft = self._load_draft(room_id, prev_events)
            assert draft.create_event is not None
            sender = parse_user_id(sender if sender is not None else draft.create_event["sender"])
            event = self._add_to_draft(
                draft, type, state_key, content, sender, signer or self.signer
            )
            self._persist([event], draft)
        return event[1]

    def send_state_events(
        self, room_id: str, events: Iterable[tuple[str, str, JsonDict, str, Signer | None]]
    ) -> list[str]:
        """Send (type, state_key, content, sender, signer) events in order in ONE transaction.

        For bulk imports (the benchmark's 100,000-member rooms): each event builds on the one
        before and is authorised, signed and identified exactly as by send_state_event;
        nothing is stored when any of them is refused. Returns their event ids.
        """
        with self.store.write_transaction(room_id):
            draft = self._load_draft(room_id)
            built = [
                self._add_to_draft(
                    draft, type, state_key, content, parse_user_id(sender), signer or self.signer
                )
                for type, state_key, content, sender, signer in events
            ]
            self._persist(built, draft)
        return [event_id for _event, event_id in built]

    def set_join_rule(
        self,
        room_id: str,
        join_rule: str,
        allow_rooms: Iterable[str] = (),
        sender: str | None = None,
    ) -> str:
        check_join_rule_supported(self._room_version(room_id), join_rule)
        content = build_join_rules_content(join_rule, allow_rooms)
        return self.send_state_event(room_id, "m.room.join_rules", "", content, sender)

    def set_server_acl(
        self,
        room_id: str,
        allow: Sequence[str],
        deny: Sequence[str],
        allow_ip_literals: bool = True,
        sender: str | None = None,
    ) -> str:
        content = build_server_acl_content(allow, deny, allow_ip_literals)
        return self.send_state_event(room_id, "m.room.server_acl", "", content, sender)

    # Membership -----------------------------------------------------------------------------

    def ban(
        self, room_id: str, user_id: str, reason: str | None = None, sender: str | None = None
    ) -> str:
        content = build_member_content("ban", reason)
        return self.send_state_event(
            room_id, "m.room.member", parse_user_id(user_id), content, sender
        )

    def unban(self, room_id: str, user_id: str, sender: str | None = None) -> str:
        # CS §Unbanning: an unban is a leave sent by someone else over a ban
        target = parse_user_id(user_id)
        if self._membership(room_id, target) != "ban":
            raise MatrixError("M_FORBIDDEN", f"{target} is not banned")
        content = build_member_content("leave")
        return self.send_state_event(room_id, "m.room.member", target, content, sender)

    def join_user(
        self,
        room_id: str,
        user_id: str,
        *,
        signer: Signer | None = None,
        prev_events: Sequence[str] | None = None,
    ) -> str:
        """Join ``user_id`` itself; a remote user's join needs ``signer`` for its server."""
        return self._own_membership(room_id, user_id, "join", signer, prev_events)

    def leave_user(
        self,
        room_id: str,
        user_id: str,
        *,
        signer: Signer | None = None,
        prev_events: Sequence[str] | None = None,
    ) -> str:
        return self._own_membership(room_id, user_id, "leave", signer, prev_events)

    def knock_user(
        self,
        room_id: str,
        user_id: str,
        *,
        signer: Signer | None = None,
        prev_events: Sequence[str] | None = None,
    ) -> str:
        return self._own_membership(room_id, user_id, "knock", signer, prev_events)

    def _own_membership(
        self,
        room_id: str,
        user_id: str,
        membership: str,
        signer: Signer | None,
        prev_events: Sequence[str] | None,
    ) -> str:
        user_id = parse_user_id(user_id)
        signer = signer or self.signer
        if get_domain(user_id) != signer.server_name:
            # SS §Validating hashes and signatures: the sender's own server must sign
            raise MatrixError("M_INVALID_PARAM", f"{user_id} is not a user of {signer.server_name}")
        content = build_member_content(membership)
        return self.send_state_event(
            room_id,
            "m.room.member",
            user_id,
            content,
            user_id,
            signer=signer,
            prev_events=prev_events,
        )

    def invite_user(self, room_id: str, user_id: str, sender: str | None = None) -> str:
        """Store an invite directly, without asking the invitee's server (fixtures, imports);
        operators invite remote users through app/rooms/invite.py (send_invite)."""
        content = build_member_content("invite")
        return self.send_state_event(
            room_id, "m.room.member", parse_user_id(user_id), content, sender
        )

    def check_pending_knock(self, room_id: str, user_id: str) -> str:
        """``user_id`` parsed; M_NOT_FOUND for a room not hosted here, M_FORBIDDEN unless the
        user's current membership is knock."""
        target = parse_user_id(user_id)
        if self._membership(room_id, target) != "knock":
            raise MatrixError("M_FORBIDDEN", f"{target} has no pending knock")
        return target

    def deny_knock(
        self, room_id: str, user_id: str, reason: str | None = None, sender: str | None = None
    ) -> str:
        """m.room.member schema, knock -> leave by another user: "the knock was denied"."""
        with self.store.write_transaction(room_id):
            target = self.check_pending_knock(room_id, user_id)
            content = build_member_content("leave", reason)
            return self.send_state_event(room_id, "m.room.member", target, content, sender)

    def kick(
        self, room_id: str, user_id: str, reason: str | None = None, sender: str | None = None
    ) -> str:
        """A leave over someone else's join, invite or knock (CS §Kicking: kick a member,
        withdraw an invite, deny a knock); refused for any other membership."""
        with self.store.write_transaction(room_id):
            target = parse_user_id(user_id)
            membership = self._membership(room_id, target)
            if membership not in ("join", "invite", "knock"):
                raise MatrixError(
                    "M_FORBIDDEN", f"{target} is not joined, invited or knocking ({membership})"
                )
            if target == self._sender(room_id, sender):
                # a leave of one's own is leaving, not kicking
                raise MatrixError("M_INVALID_PARAM", "a user cannot kick itself")
            content = build_member_content("leave", reason)
            return self.send_state_event(room_id, "m.room.member", target, content, sender)

    def set_power_level(
        self, room_id: str, user_id: str, level: int, sender: str | None = None
    ) -> str:
        """m.room.power_levels with ``users[user_id] = level``, the rest of the content kept."""
        target = parse_user_id(user_id)
        if isinstance(level, bool) or not isinstance(level, int) or abs(level) > MAX_SAFE_INTEGER:
            # v6+ canonical JSON: integers in [-(2**53)+1, 2**53-1]
            raise MatrixError("M_INVALID_PARAM", f"invalid power level {level!r}")
        with self.store.write_transaction(room_id):
            current = self.store.get_current_state_event(room_id, *POWER_LEVELS_KEY)
            content = copy.deepcopy(current["content"]) if current is not None else {}
            users = content.get("users")
            content["users"] = {**(users if isinstance(users, dict) else {}), target: level}
            return self.send_state_event(room_id, *POWER_LEVELS_KEY, content, sender)

    def send_message(self, room_id: str, body: str, sender: str | None = None) -> str:
        """An m.room.message with msgtype m.text (CS §m.text)."""
        return self.send_event(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body}, sender
        )

    def send_event(
        self, room_id: str, type: str, content: JsonDict, sender: str | None = None
    ) -> str:
        """Send one message (non-state) event, by default as the room's creator; return its id."""
        with self.store.write_transaction(room_id):
            draft = self._load_draft(room_id)
            event = self._add_to_draft(
                draft, type, None, content, self._sender(room_id, sender), self.signer
            )
            self._persist([event], draft)
        return event[1]

    # Invites to other servers (app/rooms/invite.py drives them) ------------------------------

    def build_invite(
        self, room_id: str, user_id: str, reason: str | None = None, sender: str | None = None
    ) -> BuiltEvent:
        """An invite built, authorised against current state and signed; NOT stored.

        SS §Inviting to a room: the invitee's server countersigns it before it is stored
        (persist_built_event). Refused for users of this server: nobody could accept it here.
        """
        target = parse_user_id(user_id)
        if get_domain(target) == self.server_name:
            raise MatrixError("M_INVALID_PARAM", f"{target} is a user of this server")
        draft = self._load_draft(room_id)
        event, event_id = self._add_to_draft(
            draft,
            "m.room.member",
            target,
            build_member_content("invite", reason),
            self._sender(room_id, sender),
            self.signer,
        )
        return BuiltEvent(room_id, draft.room_version, event, event_id)

    def get_invite_room_state(self, room_id: str, inviter: str) -> list[JsonDict]:
        """invite_room_state: the current state for get_invite_room_state_keys, full PDUs."""
        return get_state_in_order(self.store, room_id, get_invite_room_state_keys(inviter))

    def persist_built_event(self, built: BuiltEvent) -> str:
        """Store an event built here earlier (and maybe countersigned since), authorised again
        against the current state under the write lock, then fanned out as any local event."""
        event, room_version = built.event, built.room_version
        with self.store.write_transaction(built.room_id):
            auth_keys = get_auth_event_keys(event, room_version)
            state = self.store.get_current_state_events(built.room_id, [*auth_keys, CREATE_KEY])
            # The state may have moved on since it was built (a ban, a retracted knock)
            check_auth_rules(
                event,
                {key: state[key] for key in auth_keys if key in state},
                room_version,
                create_event=state.get(CREATE_KEY),
                is_signed_by=lambda server_name: server_name == self.server_name,
            )
            self._persist_in(built.room_id, room_version, [(event, built.event_id)])
        return built.event_id

    # Reads ----------------------------------------------------------------------------------

    def members(self, room_id: str) -> list[Member]:
        """Every m.room.member event in current state, by user id."""
        return get_members(self.store, room_id)

    def timeline(self, room_id: str, limit: int = 20) -> list[TimelineEntry]:
        """The newest ``limit`` events of the room in stream order, newest last."""
        return get_timeline(self.store, room_id, limit)

    # Internals ------------------------------------------------------------------------------

    def _persist(self, events: list[tuple[JsonDict, str]], draft: _Draft) -> None:
        assert draft.room_id is not None
        self._persist_in(draft.room_id, draft.room_version, events)

    def _persist_in(
        self, room_id: str, room_version: RoomVersion, events: list[tuple[JsonDict, str]]
    ) -> None:
        # The write step received events take too (app/rooms/persist.py): stored, then sent to
        # the room's other servers once committed.
        persist_and_fan_out(
            self.store,
            self.outbox,
            events,
            room_id,
            room_version.identifier,
            server_name=self.server_name,
        )

    def _room_version(self, room_id: str) -> RoomVersion:
        return get_hosted_room_version(self.store, room_id)

    def _membership(self, room_id: str, user_id: str) -> str | None:
        self._room_version(room_id)  # M_NOT_FOUND for a room not hosted here, before anything
        member = self.store.get_current_state_event(room_id, "m.room.member", user_id)
        membership = None if member is None else member.get("content", {}).get("membership")
        return membership if isinstance(membership, str) else None

    def _sender(self, room_id: str, sender: str | None) -> str:
        """``sender``, or the room's creator; a user of this server either way."""
        if sender is None:
            create = self.store.get_current_state_event(room_id, *CREATE_KEY)
            if create is None:
                raise MatrixError("M_NOT_FOUND", f"unknown room {room_id}")
            sender = str(create["sender"])
        sender = parse_user_id(sender)
        if get_domain(sender) != self.server_name:
            raise MatrixError("M_INVALID_PARAM", f"{sender} is not a user of this server")
        return sender

    def _load_draft(self, room_id: str, prev_events: Sequence[str] | None = None) -> _Draft:
        """The stored room as a draft: the state and extremities a new event builds on."""
        room_version = self._room_version(room_id)
        create_event = self.store.get_current_state_event(room_id, *CREATE_KEY)
        if create_event is None:  # pragma: no cover - a stored room always has its create
            raise MatrixError("M_NOT_FOUND", f"room {room_id} has no create event")
        if prev_events is None:
            extremities = self.store.get_forward_extremities(room_id, MAX_PREV_EVENTS)
        else:
            extremities = [(event_id, self._depth_of(event_id)) for event_id in prev_events]
        return _Draft(room_version, room_id, {}, extremities, {}, create_event, stored=True)

    def _state_for(
        self, draft: _Draft, keys: list[StateKey]
    ) -> dict[StateKey, tuple[str, JsonDict]]:
        """Current state for ``keys``: from the draft being built, else from the store."""
        found = {key: draft.state[key] for key in keys if key in draft.state}
        missing = [key for key in keys if key not in found]
        if missing and draft.stored and draft.room_id is not None:
            found.update(self.store.get_current_state_events_with_ids(draft.room_id, missing))
        return {key: found[key] for key in keys if key in found}

    def _add_to_draft(
        self,
        draft: _Draft,
        event_type: str,
        state_key: str | None,
        content: JsonDict,
        sender: str,
        signer: Signer,
    ) -> tuple[JsonDict, str]:
        """Build, authorise, sign and identify one event on top of ``draft``; update the draft.

        ``state_key`` None builds a message event: no state_key, and the draft's state is
        unchanged (only state events are state).
        """
        room_version = draft.room_version
        if get_domain(sender) != signer.server_name:
            # SS §Validating hashes and signatures: only the sender's own server signs its events
            raise MatrixError("M_INVALID_PARAM", f"{sender} is not a user of {signer.server_name}")
        skeleton: JsonDict = {"type": event_type, "sender": sender, "content": content}
        if state_key is not None:
            skeleton["state_key"] = state_key
        # SS §Auth events selection, from the current state
        auth = self._state_for(draft, get_auth_event_keys(skeleton, room_version))
        prev_ids = [event_id for event_id, _depth in draft.extremities]
        depth = max((d for _id, d in draft.extremities), default=0) + 1
        hashes = dict(draft.hashes)
        if room_version.event_id_format is EventIdFormat.V1:
            # v1/v2 references carry the referenced event's reference hash
            for event_id in prev_ids + [event_id for event_id, _event in auth.values()]:
                if event_id not in hashes:
                    hashes[event_id] = self._reference_hash(event_id, room_version)
        event = build_event(
            room_version,
            room_id=draft.room_id,
            sender=sender,
            type=event_type,
            content=content,
            state_key=state_key,
            prev_events=prev_ids,
            auth_events=[event_id for event_id, _event in auth.values()],
            depth=depth,
            origin=signer.server_name,
            origin_server_ts=max(self.clock(), draft.not_before_ts),
            event_hashes=hashes,
        )
        auth_state = {key: auth_event for key, (_id, auth_event) in auth.items()}
        check_auth_events_selection(event, list(auth_state.values()), room_version)
        check_auth_rules(
            event,
            auth_state,
            room_version,
            create_event=draft.create_event,
            # the event is signed below by the signer, and by nobody else
            is_signed_by=lambda server_name: server_name == signer.server_name,
        )
        signed = sign_event(event, room_version, signer.server_name, signer.signing_key)
        event_id = compute_event_id(signed, room_version)
        if event_type == "m.room.create":
            draft.create_event = signed
            if draft.room_id is None:
                # rooms/v12: the room id is "!" + the create event's reference hash
                draft.room_id = compute_room_id_v12(signed)
        if state_key is not None:
            draft.state[(event_type, state_key)] = (event_id, signed)
        draft.extremities = [(event_id, signed["depth"])]
        if room_version.event_id_format is EventIdFormat.V1:
            draft.hashes[event_id] = build_reference_hash(signed, room_version)
        return signed, event_id

    def _depth_of(self, event_id: str) -> int:
        event = self.store.get_event(event_id)
        if event is None:
            raise MatrixError("M_NOT_FOUND", f"unknown event {event_id}")
        depth: int = event["depth"]
        return depth

    def _reference_hash(self, event_id: str, room_version: RoomVersion) -> str:
        event = self.store.get_event(event_id)
        if event is None:  # pragma: no cover - extremities and state point at stored events
            raise MatrixError("M_NOT_FOUND", f"unknown event {event_id}")
        return build_reference_hash(event, room_version)


def get_members(store: Store, room_id: str) -> list[Member]:
    """Every m.room.member event in current state, by user id (no signing key needed)."""
    get_hosted_room_version(store, room_id)
    return [
        Member(
            user_id=event["state_key"],
            membership=_string(event["content"].get("membership")),
            reason=_optional_string(event["content"].get("reason")),
            origin_server_ts=event["origin_server_ts"],
            sender=event["sender"],
            event_id=event_id,
        )
        for event_id, event in store.get_current_members(room_id)
    ]


def get_timeline(store: Store, room_id: str, limit: int = 20) -> list[TimelineEntry]:
    """The newest ``limit`` accepted events of the room in stream order, newest last, each
    summarised (a membership change against the member's state before it)."""
    get_hosted_room_version(store, room_id)
    entries = []
    for stored in store.get_recent_events(room_id, limit):
        event = stored.event
        previous = None
        if event["type"] == "m.room.member":
            key = ("m.room.member", event["state_key"])
            before = store.get_state_events_at(stored.event_id, [key]).get(key)
            previous = None if before is None else before["content"].get("membership")
        entries.append(
            TimelineEntry(
                event_id=stored.event_id,
                origin_server_ts=event["origin_server_ts"],
                sender=event["sender"],
                type=event["type"],
                state_key=event.get("state_key"),
                summary=summarise_event(event, _optional_string(previous)),
            )
        )
    return entries
