"""Hypothesis strategies for the auth-rule oracle: a room's state, a candidate, its auth events.

A case is JSON: {"room_version", "store": [every PDU the case knows], "event": the candidate}.
The store holds the room's state events (a create event that passes its own rules, power levels,
join rules, memberships, a third-party invite) plus decoys used to perturb the candidate's
auth_events: a second member event for the same user, an event from another room, one the
selection never picks. Each case is "realistic" (integer levels, known values) or "junk" (junk
levels, maps, join rules, m.federate), drawn first, so the two can be counted apart.
"""

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hypothesis import strategies as st
from nacl.signing import SigningKey
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from matrix.events import add_content_hash, compute_event_id, compute_room_id_v12
from matrix.room_versions import KNOWN_ROOM_VERSIONS, EventIdFormat, RoomVersion
from matrix.types import JsonDict

SERVERS = ("a.test", "b.test", "c.test")
# A small pool so that senders, targets, users entries and creators collide often. The last is
# a historical user id (APPX §Historical User IDs): a space in the localpart.
USERS = ("@alice:a.test", "@bob:b.test", "@carol:a.test", "@dave:c.test", "@e ve:b.test")
LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "kick", "redact", "invite")
TOKEN = "tok"

# Deterministic third-party-invite keys: the invite event publishes some of them.
_TPI_KEYS = [SigningKey(bytes([n]) * 32) for n in (1, 2)]
TPI_PUBLIC = [encode_base64(key.verify_key.encode()) for key in _TPI_KEYS]
TPI_PUBLIC_URLSAFE = [encode_base64(key.verify_key.encode(), urlsafe=True) for key in _TPI_KEYS]


@lru_cache(maxsize=256)
def _signed_block(mxid: str, token: str, key_index: int, key_name: str) -> str:
    signed: JsonDict = {"mxid": mxid, "token": token}
    key = SigningKey(_TPI_KEYS[key_index].encode())
    key.version = key_name.split(":", 1)[1]
    key.alg = key_name.split(":", 1)[0]
    sign_json(signed, "id.test", key)
    return json.dumps(signed)


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1]


@dataclass
class _Room:
    room_version: RoomVersion
    room_id: str
    junk: bool
    counter: int = 0
    create_ref: Any = None

    def ref(self, pdu: JsonDict) -> Any:
        """How prev_events / auth_events name ``pdu``: v1/v2 [id, hashes] pairs, else the id."""
        event_id = compute_event_id(pdu, self.room_version)
        if self.room_version.event_id_format is EventIdFormat.V1:
            return [event_id, {"sha256": pdu["hashes"]["sha256"]}]
        return event_id

    def pdu(
        self,
        event_type: str,
        sender: str,
        content: JsonDict,
        *,
        state_key: str | None = None,
        prev_events: list[Any] | None = None,
        auth_events: list[Any] | None = None,
        room_id: str | None = None,
        extra: JsonDict | None = None,
        signers: tuple[str, ...] = (),
        event_id_domain: str | None = None,
    ) -> JsonDict:
        self.counter += 1
        pdu: JsonDict = {
            "type": event_type,
            "sender": sender,
            "content": content,
            "room_id": room_id if room_id is not None else self.room_id,
            "origin_server_ts": 1_700_000_000_000 + self.counter,
            "depth": self.counter,
            "prev_events": prev_events if prev_events is not None else [self.create_ref],
            "auth_events": auth_events if auth_events is not None else [self.create_ref],
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        if extra:
            pdu.update(extra)
        domain = event_id_domain or _domain(sender)
        if self.room_version.event_id_format is EventIdFormat.V1:
            pdu["event_id"] = f"$e{self.counter}:{domain}"
        # Signature presence is all the auth rules look at (validity is checked before them)
        pdu["signatures"] = {s: {"ed25519:k": "c2ln"} for s in {_domain(sender), domain, *signers}}
        return add_content_hash(pdu)


# Levels: realistic cases draw integers around the interesting thresholds; junk cases also draw
# what v1-v9 read as integers ("50", " +50 "), what nobody should ("5e1", "x", true, null), and
# v1-v5 floats (v6+ canonical JSON rejects floats before the auth rules see the event).
_INTS = st.sampled_from([-1, 0, 1, 49, 50, 51, 99, 100, 101])
_STRINGY = st.sampled_from(["50", " +50 ", "-1", "0100", "5e1", "x", "", "\u0665\u0660", "5_0"])
_OTHER = st.sampled_from([True, False, None, [], {}])
_FLOATS = st.sampled_from([50.0, 50.7, -0.5, 1e3])


def _levels(rv: RoomVersion, junk: bool) -> st.SearchStrategy[Any]:
    if not junk:
        return _INTS
    options = [_INTS, _INTS, _STRINGY, _OTHER]
    if not rv.strict_canonical_json:
        options.append(_FLOATS)
    return st.one_of(*options)


@st.composite
def _level_map(draw: st.DrawFn, keys: tuple[str, ...], rv: RoomVersion, junk: bool) -> Any:
    if junk and draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from([None, [], "x", 5]))
    chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
    return {key: draw(_levels(rv, junk)) for key in chosen}


@st.composite
def power_levels_content(
    draw: st.DrawFn, rv: RoomVersion, junk: bool, creator: str | None = None
) -> JsonDict:
    content: JsonDict = {}
    for key in LEVEL_KEYS:
        if draw(st.booleans()):
            content[key] = draw(_levels(rv, junk))
    if draw(st.integers(0, 3)) > 0:
        user_keys = USERS + (("@nobody", "bob:b.test") if junk else ())
        content["users"] = draw(_level_map(user_keys, rv, junk))
        # Rooms usually give their creator 100 (v12 creators may not be listed: 10.4)
        if (
            creator is not None
            and isinstance(content["users"], dict)
            and draw(st.booleans())
            and not rv.additional_creators
        ):
            content["users"][creator] = 100
    if draw(st.booleans()):
        event_types = ("m.room.message", "m.room.power_levels", "m.room.name", "m.room.redaction")
        content["events"] = draw(_level_map(event_types, rv, junk))
    if draw(st.integers(0, 3)) == 0:
        content["notifications"] = draw(_level_map(("room",), rv, junk))
    return content


@st.composite
def _changed_power_levels(draw: st.DrawFn, old: JsonDict, rv: RoomVersion, junk: bool) -> JsonDict:
    """A new m.room.power_levels content close to ``old``: one to three keys changed."""
    new = {k: (dict(v) if isinstance(v, dict) else v) for k, v in old.items()}
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "users", "events", "drop"]))
        if where == "top":
            new[draw(st.sampled_from(LEVEL_KEYS))] = draw(_levels(rv, junk))
        elif where == "drop" and new:
            del new[draw(st.sampled_from(sorted(new)))]
        elif where in ("users", "events"):
            inner = new.get(where) if isinstance(new.get(where), dict) else {}
            key = draw(st.sampled_from(USERS if where == "users" else ("m.room.name", "x.y")))
            if draw(st.booleans()) or key not in inner:
                inner[key] = draw(_levels(rv, junk))
            else:
                del inner[key]
            new[where] = inner
    return new


def _join_rules(rv: RoomVersion, junk: bool) -> st.SearchStrategy[Any]:
    known = ["public", "invite", "private"]
    if rv.knock_join_rule:
        known.append("knock")
    if rv.restricted_join_rule:
        known.append("restricted")
    if rv.knock_restricted_join_rule:
        known.append("knock_restricted")
    rules: list[Any] = known if not junk else [*known, "knock", "restricted", 1, None, "PUBLIC"]
    return st.sampled_from(rules)


_MEMBERSHIPS_V1 = ("join", "join", "invite", "leave", "ban")


def _federate(junk: bool) -> st.SearchStrategy[Any]:
    values: list[Any] = ["absent"] * 4 + [True, False]
    if junk:
        values += ["false", 0, None, "true"]
    return st.sampled_from(values)


@st.composite
def oracle_case(draw: st.DrawFn) -> JsonDict:
    """One case: room version, state, candidate event, its (possibly perturbed) auth events."""
    rv = KNOWN_ROOM_VERSIONS[draw(st.sampled_from(list(KNOWN_ROOM_VERSIONS)))]
    junk = draw(st.integers(0, 3)) == 0
    creator = draw(st.sampled_from(USERS[:4]))
    room = _Room(rv, f"!room:{_domain(creator)}", junk)

    # The create event: valid under its own rules (an auth event was itself accepted)
    create_content: JsonDict = {}
    if not rv.implicit_room_creator:
        create_content["creator"] = creator
    if draw(st.booleans()):
        create_content["room_version"] = rv.identifier
    federate = draw(_federate(junk))
    if federate != "absent":
        create_content["m.federate"] = federate
    if rv.additional_creators and draw(st.booleans()):
        create_content["additional_creators"] = draw(
            st.lists(st.sampled_from(USERS), unique=True, max_size=2)
        )
    create = room.pdu("m.room.create", creator, create_content, state_key="", prev_events=[])
    create["auth_events"] = []
    if rv.room_id_from_create_event:
        del create["room_id"]
        create = add_content_hash(create)
        room.room_id = compute_room_id_v12(create)
    else:
        create = add_content_hash(create)
    room.create_ref = room.ref(create)

    state: dict[tuple[str, str], JsonDict] = {("m.room.create", ""): create}
    memberships = _MEMBERSHIPS_V1 + (("knock",) if rv.knock_join_rule else ())
    for user in USERS:
        membership = draw(st.sampled_from((None, "join", *memberships)))
        if user == creator and draw(st.booleans()):
            membership = "join"
        if membership is not None:
            content: JsonDict = {"membership": membership}
            state[("m.room.member", user)] = room.pdu(
                "m.room.member", user, content, state_key=user
            )
    if draw(st.integers(0, 4)) > 0:
        state[("m.room.power_levels", "")] = room.pdu(
            "m.room.power_levels",
            creator,
            draw(power_levels_content(rv, junk, creator)),
            state_key="",
        )
    if draw(st.integers(0, 4)) > 0:
        join_rules: JsonDict = {"join_rule": draw(_join_rules(rv, junk))}
        if junk and draw(st.integers(0, 5)) == 0:
            del join_rules["join_rule"]
        if join_rules.get("join_rule") in ("restricted", "knock_restricted"):
            join_rules["allow"] = [{"type": "m.room_membership", "room_id": "!other:a.test"}]
        state[("m.room.join_rules", "")] = room.pdu(
            "m.room.join_rules", creator, join_rules, state_key=""
        )
    if draw(st.integers(0, 2)) > 0:
        tpi: JsonDict = {"display_name": "x", "key_validity_url": "https://id.test/check"}
        keys = draw(st.sampled_from(["first", "second", "both", "urlsafe", "none"]))
        if keys in ("first", "both"):
            tpi["public_key"] = TPI_PUBLIC[0]
        if keys in ("second", "both"):
            tpi["public_keys"] = [{"public_key": TPI_PUBLIC[1]}]
        if keys == "urlsafe":
            tpi["public_key"] = TPI_PUBLIC_URLSAFE[0]
        state[("m.room.third_party_invite", TOKEN)] = room.pdu(
            "m.room.third_party_invite", draw(st.sampled_from(USERS)), tpi, state_key=TOKEN
        )

    event = draw(_candidate(room, state, creator))
    store = list(state.values())

    # auth_events: the selection (SS §Auth events selection) out of the state, then perturbed
    keys = _selection(event, rv)
    auth = [state[k] for k in keys if k in state]
    perturbation = draw(
        st.sampled_from(
            ["none"] * 6 + ["drop", "drop_create", "extra", "duplicate", "other_room", "create_v12"]
        )
    )
    if perturbation == "drop" and auth:
        auth.pop(draw(st.integers(0, len(auth) - 1)))
    elif perturbation == "drop_create":
        auth = [e for e in auth if e["type"] != "m.room.create"]
    elif perturbation == "extra":
        extra = room.pdu("m.room.name", creator, {"name": "x"}, state_key="")
        store.append(extra)
        auth.append(extra)
    elif perturbation == "duplicate" and auth:
        original = auth[draw(st.integers(0, len(auth) - 1))]
        if original["type"] != "m.room.create":
            dup = room.pdu(
                original["type"],
                original["sender"],
                dict(original["content"]),
                state_key=original["state_key"],
            )
            store.append(dup)
            auth.append(dup)
    elif perturbation == "other_room" and auth:
        original = auth[draw(st.integers(0, len(auth) - 1))]
        if original["type"] != "m.room.create":
            foreign = room.pdu(
                original["type"],
                original["sender"],
                dict(original["content"]),
                state_key=original["state_key"],
                room_id="!other:c.test",
            )
            store.append(foreign)
            auth = [foreign if e is original else e for e in auth]
    elif perturbation == "create_v12" and rv.room_id_from_create_event:
        auth.append(create)
    if event["type"] == "m.room.create":
        auth = []
    else:
        event["auth_events"] = [room.ref(e) for e in auth]
    event = add_content_hash(event)
    return {"room_version": rv.identifier, "junk": junk, "store": store, "event": event}


def _selection(event: JsonDict, rv: RoomVersion) -> list[tuple[str, str]]:
    """SS §Auth events selection, written apart from matrix.auth_rules on purpose."""
    if event["type"] == "m.room.create":
        return []
    keys = [("m.room.power_levels", ""), ("m.room.member", event["sender"])]
    if rv.create_event_in_auth_events:
        keys.insert(0, ("m.room.create", ""))
    if event["type"] == "m.room.member":
        content = event["content"]
        membership = content.get("membership")
        keys.append(("m.room.member", event["state_key"]))
        if membership in ("join", "invite", "knock"):
            keys.append(("m.room.join_rules", ""))
        tpi = content.get("third_party_invite")
        if membership == "invite" and isinstance(tpi, dict):
            signed = tpi.get("signed")
            if isinstance(signed, dict) and isinstance(signed.get("token"), str):
                keys.append(("m.room.third_party_invite", signed["token"]))
        authoriser = content.get("join_authorised_via_users_server")
        if membership == "join" and rv.restricted_join_rule and isinstance(authoriser, str):
            keys.append(("m.room.member", authoriser))
    return list(dict.fromkeys(keys))


@st.composite
def _candidate(
    draw: st.DrawFn, room: _Room, state: dict[tuple[str, str], JsonDict], creator: str
) -> JsonDict:
    rv, junk = room.room_version, room.junk
    kind = draw(
        st.sampled_from(
            ["member"] * 6
            + ["power_levels"] * 3
            + [
                "message",
                "redaction",
                "join_rules",
                "third_party_invite",
                "create",
                "name",
                "aliases",
                "user_state",
            ]
        )
    )
    joined = [
        u
        for u in USERS
        if state.get(("m.room.member", u), {}).get("content") == {"membership": "join"}
    ]
    sender = draw(st.sampled_from(USERS))
    if joined and draw(st.integers(0, 2)) > 0:
        sender = draw(st.sampled_from(joined))
    others = [room.ref(e) for e in state.values() if e["type"] != "m.room.create"]
    prev_choice = draw(st.sampled_from(["create", "other", "both"]))
    if prev_choice == "create" or not others:
        prev_events = [room.create_ref]
    elif prev_choice == "other":
        prev_events = [draw(st.sampled_from(others))]
    else:
        prev_events = [room.create_ref, draw(st.sampled_from(others))]
    signers: tuple[str, ...] = ()
    extra: JsonDict = {}
    event_id_domain = None
    state_key: str | None = None

    if kind == "member":
        target = draw(st.sampled_from((sender, *USERS)))
        memberships = ["join", "join", "invite", "invite", "leave", "leave", "ban", "knock"]
        if junk:
            memberships += ["foo", "JOIN"]
        content: JsonDict = {"membership": draw(st.sampled_from(memberships))}
        if rv.restricted_join_rule and draw(st.integers(0, 3)) == 0:
            authoriser = draw(st.sampled_from(USERS))
            content["join_authorised_via_users_server"] = authoriser
            if draw(st.booleans()):
                signers = (_domain(authoriser),)
        if content["membership"] == "invite" and draw(st.integers(0, 2)) == 0:
            content["third_party_invite"] = draw(_third_party_invite(target, junk))
            tpi_event = state.get(("m.room.third_party_invite", TOKEN))
            if tpi_event is not None and draw(st.booleans()):
                sender = tpi_event["sender"]  # 4.4.1.6: the invite's own sender
        event_type, state_key = "m.room.member", target
    elif kind == "power_levels":
        if draw(st.booleans()):
            sender = creator  # usually the one who can change levels
        old = state.get(("m.room.power_levels", ""))
        if old is not None and draw(st.booleans()):
            content = draw(_changed_power_levels(old["content"], rv, junk))
        else:
            content = draw(power_levels_content(rv, junk, creator))
        event_type, state_key = "m.room.power_levels", ""
    elif kind == "message":
        event_type, content = "m.room.message", {"msgtype": "m.text", "body": "hi"}
    elif kind == "redaction":
        event_type, content = "m.room.redaction", {}
        redacts = draw(st.sampled_from(["own", "other", "absent", "junk"]))
        value: Any = {
            "own": f"$x:{_domain(sender)}",
            "other": "$x:c.test",
            "junk": 5,
        }.get(redacts)
        if redacts != "absent":
            if rv.redacts_in_content:
                content["redacts"] = value
            else:
                extra["redacts"] = value
        if rv.event_id_format is EventIdFormat.V1 and draw(st.integers(0, 3)) == 0:
            event_id_domain = "c.test"
    elif kind == "join_rules":
        event_type, state_key = "m.room.join_rules", ""
        content = {"join_rule": draw(_join_rules(rv, junk))}
    elif kind == "third_party_invite":
        event_type, state_key = "m.room.third_party_invite", draw(st.sampled_from([TOKEN, "t2"]))
        content = {"display_name": "x", "public_key": TPI_PUBLIC[0]}
    elif kind == "name":
        event_type, state_key, content = "m.room.name", "", {"name": "x"}
    elif kind == "aliases":
        event_type, content = "m.room.aliases", {"aliases": ["#a:a.test"]}
        state_key = draw(st.sampled_from([_domain(sender), "c.test", ""]))
    elif kind == "user_state":
        event_type, content = "com.example.state", {}
        state_key = draw(st.sampled_from((sender, *USERS)))
    else:
        return draw(_candidate_create(room, sender))
    return room.pdu(
        event_type,
        sender,
        content,
        state_key=state_key,
        prev_events=prev_events,
        extra=extra,
        signers=signers,
        event_id_domain=event_id_domain,
    )


@st.composite
def _candidate_create(draw: st.DrawFn, room: _Room, sender: str) -> JsonDict:
    rv, junk = room.room_version, room.junk
    content: JsonDict = {}
    if rv.implicit_room_creator or draw(st.integers(0, 3)) > 0:
        content["creator"] = draw(st.sampled_from([sender, *USERS]))
    version = draw(st.sampled_from(["absent", rv.identifier, "1", "13", 12]))
    if version != "absent":
        content["room_version"] = version
    if rv.additional_creators and draw(st.booleans()):
        content["additional_creators"] = draw(
            st.sampled_from([[USERS[1]], [], ["@e ve:b.test"], ["not-a-user"], "x", [5]])
        )
    federate = draw(_federate(junk))
    if federate != "absent":
        content["m.federate"] = federate
    domain = draw(st.sampled_from([_domain(sender), "c.test"]))
    prev_events = [] if draw(st.integers(0, 3)) > 0 else [room.create_ref]
    pdu = room.pdu(
        "m.room.create",
        sender,
        content,
        state_key="",
        prev_events=prev_events,
        room_id=f"!new:{domain}",
    )
    pdu["auth_events"] = []
    if rv.room_id_from_create_event and draw(st.integers(0, 3)) > 0:
        del pdu["room_id"]
    return pdu


@st.composite
def _third_party_invite(draw: st.DrawFn, target: str, junk: bool) -> Any:
    shape = draw(
        st.sampled_from(
            ["valid", "valid", "other_key", "bad_sig", "mxid", "token", "unsigned", "no_signed"]
        )
    )
    if shape == "no_signed":
        return {"display_name": "x"} if not junk else draw(st.sampled_from([{}, "x", None]))
    mxid = target if shape != "mxid" else USERS[3] if target != USERS[3] else USERS[0]
    token = TOKEN if shape != "token" else "t2"
    signed = json.loads(_signed_block(mxid, token, 1 if shape == "other_key" else 0, "ed25519:0"))
    if shape == "bad_sig":
        signed["signatures"]["id.test"]["ed25519:0"] = "A" * 86
    if shape == "unsigned":
        del signed["signatures"]
    return {"display_name": "x", "signed": signed}
