"""Invites out: PUT /v2/invite to a real fake homeserver, stored only once countersigned."""

import asyncio
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from signedjson.key import get_verify_key

from app.config import Config
from app.federation.client import FederationClient
from app.federation.sender import CollectedDestinations
from app.rooms.admin import RoomAdmin
from app.rooms.invite import accept_knock, send_invite
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from matrix.errors import MatrixError
from matrix.events import check_event_signature, compute_event_id, compute_room_id_v12
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import SERVER_NAME
from tests.factories import (
    OutboxView,
    add_knock,
    add_member,
    create_room,
    make_remote_server,
)

ADMIN = f"@admin:{SERVER_NAME}"
VERSIONS = [pytest.param("10", id="v10"), pytest.param("12", id="v12")]


@dataclass
class InviteEnv:
    admin: RoomAdmin
    store: Store
    outbox: OutboxView
    config: Config
    remote: object

    @property
    def invitee(self) -> str:
        return f"@bob:{self.remote.server_name}"

    def run(self, call, **kwargs):
        """``call(admin, client, ...)`` (send_invite, accept_knock) with a real client."""

        async def main():
            client = FederationClient(SERVER_NAME, self.admin.signer.signing_key, self.config)
            try:
                return await call(self.admin, client, **kwargs)
            finally:
                await client.aclose()

        return asyncio.run(main())

    def our_keys(self):
        key = self.admin.signer.signing_key
        return {f"{key.alg}:{key.version}": get_verify_key(key)}

    def remote_keys(self):
        return {self.remote.key_id: get_verify_key(self.remote.signing_key)}


@pytest.fixture
def env(federation_config, remote, clock):
    store = Store.open(federation_config.database)
    key = load_or_generate_signing_key(federation_config.resolved_signing_key_path)
    admin = RoomAdmin(store, SERVER_NAME, key, clock, CollectedDestinations())
    yield InviteEnv(admin, store, OutboxView(store), federation_config, remote)
    store.close()


def count_events(store):
    return store.db.execute("SELECT count(*) FROM events").fetchone()[0]


def membership(store, room_id, user_id):
    member = store.get_current_state_event(room_id, "m.room.member", user_id)
    return None if member is None else member["content"]["membership"]


@pytest.mark.parametrize("version", VERSIONS)
def test_send_invite_request_body_and_countersigned_store(env, version):
    room_id = create_room(env.admin, version, "knock", name="Lobby")
    member_server = make_remote_server("member.test")
    add_member(env.admin, room_id, member_server.user("m"), remote=member_server)
    env.outbox.clear()
    event_id = env.run(send_invite, room_id=room_id, user_id=env.invitee, reason="welcome")

    ((target, authorization, body),) = env.remote.invites
    assert target == (
        f"/_matrix/federation/v2/invite/{quote(room_id, safe='')}/{quote(event_id, safe='')}"
    )
    assert authorization.startswith("X-Matrix ")
    assert f'destination="{env.remote.server_name}"' in authorization
    room_version = KNOWN_ROOM_VERSIONS[version]
    assert set(body) == {"room_version", "event", "invite_room_state"}
    assert body["room_version"] == version
    sent = body["event"]
    assert compute_event_id(sent, room_version) == event_id
    assert sent["content"] == {"membership": "invite", "reason": "welcome"}
    assert (sent["sender"], sent["state_key"]) == (ADMIN, env.invitee)
    assert set(sent["signatures"]) == {SERVER_NAME}
    # v12 (MSC4291): no create event among the auth events
    create_id = compute_event_id(
        env.store.get_current_state_event(room_id, "m.room.create", ""), room_version
    )
    assert (create_id in sent["auth_events"]) is (version != "12")

    # invite_room_state: full signed PDUs of this room's current state, create first
    state = body["invite_room_state"]
    assert [(e["type"], e["state_key"]) for e in state] == [
        ("m.room.create", ""),
        ("m.room.join_rules", ""),
        ("m.room.name", ""),
        ("m.room.member", ADMIN),
    ]
    current = {(e["type"], e["state_key"]): e for e in env.store.get_current_state(room_id)}
    for entry in state:
        assert entry == current[(entry["type"], entry["state_key"])]
        assert {"hashes", "signatures", "origin_server_ts", "depth", "auth_events"} <= set(entry)
        check_event_signature(entry, room_version, SERVER_NAME, env.our_keys())
        if version == "12" and entry["type"] == "m.room.create":
            assert compute_room_id_v12(entry) == room_id
        else:
            assert entry["room_id"] == room_id

    # stored only now, with both signatures, and fanned out to the joined servers
    stored = env.store.get_event(event_id)
    assert set(stored["signatures"]) == {SERVER_NAME, env.remote.server_name}
    check_event_signature(stored, room_version, env.remote.server_name, env.remote_keys())
    check_event_signature(stored, room_version, SERVER_NAME, env.our_keys())
    assert membership(env.store, room_id, env.invitee) == "invite"
    assert [(dests, compute_event_id(pdu, room_version)) for dests, pdu in env.outbox.pending] == [
        (["member.test"], event_id)
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_accept_knock_invites_the_remote_knocker(env, version):
    room_id = create_room(env.admin, version, "knock")
    knock_id = add_knock(env.admin, room_id, env.invitee, remote=env.remote)
    event_id = env.run(accept_knock, room_id=room_id, user_id=env.invitee)
    (_target, _auth, body) = env.remote.invites[0]
    # SS §Auth events selection: the target's current membership, the knock, is referenced
    assert knock_id in body["event"]["auth_events"]
    assert membership(env.store, room_id, env.invitee) == "invite"
    assert env.store.get_event(event_id) is not None


def refused(env, call, **kwargs):
    with pytest.raises(MatrixError) as raised:
        env.run(call, **kwargs)
    return raised.value


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("mode", "errcode", "status"),
    [
        pytest.param("forbidden", "M_FORBIDDEN", 403, id="remote-403"),
        pytest.param("different_event", "M_UNKNOWN", 502, id="tampered"),
        pytest.param("garbage", "M_UNKNOWN", 502, id="not-json"),
        pytest.param("hang", "M_UNKNOWN", 504, id="timeout"),
    ],
)
def test_remote_failure_stores_nothing(env, version, mode, errcode, status):
    room_id = create_room(env.admin, version, "knock")
    add_knock(env.admin, room_id, env.invitee, remote=env.remote)
    env.remote.invite_mode = mode
    env.remote.hang_s = 2.0
    before = (count_events(env.store), env.store.get_forward_extremities(room_id))
    env.outbox.clear()
    error = refused(env, accept_knock, room_id=room_id, user_id=env.invitee, timeout_s=0.5)
    assert (error.errcode, error.status) == (errcode, status)
    assert len(env.remote.invites) == 1
    assert (count_events(env.store), env.store.get_forward_extremities(room_id)) == before
    assert membership(env.store, room_id, env.invitee) == "knock"
    assert env.outbox.pending == []


def test_unreachable_invitee_server_stores_nothing(env):
    room_id = create_room(env.admin, "12", "invite")
    invitee = env.invitee
    env.remote.refuse()
    before = count_events(env.store)
    error = refused(env, send_invite, room_id=room_id, user_id=invitee)
    assert (error.errcode, error.status) == ("M_UNKNOWN", 502)
    assert count_events(env.store) == before


@pytest.mark.parametrize("version", VERSIONS)
def test_refused_before_asking_the_invitee_server(env, version):
    room_id = create_room(env.admin, version, "knock")
    bob = f"@bob:{SERVER_NAME}"
    add_member(env.admin, room_id, bob)
    before = count_events(env.store)
    cases = [
        # no pending knock: accept is for knocks (rooms invite otherwise)
        (accept_knock, {"user_id": env.invitee}, "M_FORBIDDEN", 403),
        # a user of this server: there are no local clients to accept it
        (send_invite, {"user_id": f"@carol:{SERVER_NAME}"}, "M_INVALID_PARAM", 400),
        # a remote sender: this server cannot sign for another server's user
        (send_invite, {"user_id": env.invitee, "sender": "@x:other.test"}, "M_INVALID_PARAM", 400),
        # a member without the invite power level (50)
        (send_invite, {"user_id": env.invitee, "sender": bob}, "M_FORBIDDEN", 403),
        # not a member at all
        (send_invite, {"user_id": env.invitee, "sender": f"@d:{SERVER_NAME}"}, "M_FORBIDDEN", 403),
    ]
    for call, kwargs, errcode, status in cases:
        error = refused(env, call, room_id=room_id, **kwargs)
        assert (error.errcode, error.status) == (errcode, status), kwargs
    assert env.remote.invites == []
    assert count_events(env.store) == before


def test_invite_refused_when_state_changed_before_the_answer(env):
    # the invitee's server answers, but meanwhile the invitee was banned: re-authorised, refused
    room_id = create_room(env.admin, "12", "invite")
    built = env.admin.build_invite(room_id, env.invitee)
    env.admin.ban(room_id, env.invitee)
    before = count_events(env.store)
    with pytest.raises(MatrixError) as raised:
        env.admin.persist_built_event(built)
    assert raised.value.errcode == "M_FORBIDDEN"
    assert count_events(env.store) == before


@pytest.mark.parametrize("version", VERSIONS)
def test_withdrawn_invite_is_sent_to_the_invitee_server_but_a_denied_knock_is_not(env, version):
    room_id = create_room(env.admin, version, "knock")
    member_server = make_remote_server("member.test")
    add_member(env.admin, room_id, member_server.user("m"), remote=member_server)
    env.run(send_invite, room_id=room_id, user_id=env.invitee)
    env.outbox.clear()
    rescind_id = env.admin.kick(room_id, env.invitee)
    room_version = KNOWN_ROOM_VERSIONS[version]
    ((destinations, pdu),) = env.outbox.pending
    assert compute_event_id(pdu, room_version) == rescind_id
    assert destinations == sorted(["member.test", env.remote.server_name])

    # a knock denial goes to the joined servers only (Synapse: the knocker's server drops it)
    knocker = f"@kay:{env.remote.server_name}"
    add_knock(env.admin, room_id, knocker, remote=env.remote)
    env.outbox.clear()
    env.admin.deny_knock(room_id, knocker)
    assert [dests for dests, _pdu in env.outbox.pending] == [["member.test"]]

    # a ban of an invitee is never sent to the invitee's server
    env.run(send_invite, room_id=room_id, user_id=knocker)
    env.outbox.clear()
    env.admin.ban(room_id, knocker)
    assert [dests for dests, _pdu in env.outbox.pending] == [["member.test"]]
