"""RoomAdmin: rooms created and changed as this server, each event authorised, signed, stored."""

import re

import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from app.rooms.admin import RoomAdmin, summarise_event
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from matrix.auth_rules import check_auth_rules, get_auth_event_keys
from matrix.errors import MatrixError
from matrix.events import (
    check_event_signature,
    compute_event_id,
    compute_room_id_v12,
    is_content_hash_valid,
    redact_event,
)
from matrix.room_versions import KNOWN_ROOM_VERSIONS, EventIdFormat
from tests.factories import (
    ALL_VERSIONS,
    KNOCK_VERSIONS,
    SERVER_NAME,
    add_knock,
    add_member,
    create_room,
    make_remote_server,
    signer_of,
    stored_events,
)

V12_ROOM_ID = re.compile(r"![A-Za-z0-9_-]{43}")
ADMIN = f"@admin:{SERVER_NAME}"


def join_rule_for(version: str) -> str:
    return "knock" if KNOWN_ROOM_VERSIONS[version].knock_join_rule else "invite"


@pytest.fixture
def store(config):
    store = Store.open(config.database)
    yield store
    store.close()


@pytest.fixture
def admin(config, store, clock):
    """The admin service with the server's own key (the one the running server publishes)."""
    signing_key = load_or_generate_signing_key(config.resolved_signing_key_path)
    return RoomAdmin(store, config.server_name, signing_key, clock)


@pytest.fixture
def published_verify_keys(admin, client):
    """The server's verify keys as GET /_matrix/key/v2/server publishes them."""
    document = client.get("/_matrix/key/v2/server").json()
    assert document["server_name"] == SERVER_NAME
    keys = {}
    for key_id, entry in document["verify_keys"].items():
        algorithm, version = key_id.split(":", 1)
        keys[key_id] = decode_verify_key_bytes(
            f"{algorithm}:{version}", decode_base64(entry["key"])
        )
    assert keys
    return keys


def ref_ids(refs, room_version):
    """Event ids out of prev_events/auth_events (v1/v2 write [id, {sha256}] pairs)."""
    if room_version.event_id_format is EventIdFormat.V1:
        return [ref[0] for ref in refs]
    return list(refs)


def assert_room_is_sound(store, room_id, verify_keys, signer_keys=None):
    """Replay the stored room: signatures, hashes, ids, auth events and auth rules all hold."""
    room_version = KNOWN_ROOM_VERSIONS[store.get_room_version(room_id)]
    state = {}
    state_ids = {}
    previous_id = None
    events = stored_events(store, room_id)
    assert events
    for index, (event_id, event) in enumerate(events):
        origin_keys = (signer_keys or {}).get(event["sender"].split(":", 1)[1], verify_keys)
        server_name = event["sender"].split(":", 1)[1]
        # the sender's server signed the redacted event with its published key
        check_event_signature(event, room_version, server_name, origin_keys)
        for key_id, verify_key in origin_keys.items():
            if key_id in event["signatures"][server_name]:
                verify_signed_json(redact_event(event, room_version), server_name, verify_key)
        assert is_content_hash_valid(event)
        assert compute_event_id(event, room_version) == event_id
        if room_version.event_id_format is EventIdFormat.V1:
            assert event["event_id"] == event_id
            assert event_id.endswith(":" + server_name)
        else:
            assert "event_id" not in event
        # auth_events are exactly what the selection algorithm picks from the state before
        keys = get_auth_event_keys(event, room_version)
        expected = [state_ids[key] for key in keys if key in state_ids]
        assert ref_ids(event["auth_events"], room_version) == expected
        assert ref_ids(event["prev_events"], room_version) == ([previous_id] if index else [])
        assert event["depth"] == index + 1
        check_auth_rules(
            event,
            {key: state[key] for key in keys if key in state},
            room_version,
            create_event=state.get(("m.room.create", "")),
            is_signed_by=lambda name, event=event: name in event["signatures"],
        )
        if "state_key" in event:
            state[(event["type"], event["state_key"])] = event
            state_ids[(event["type"], event["state_key"])] = event_id
        previous_id = event_id
    return state


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_room_initial_state_is_signed_and_authorised(
    version, admin, store, published_verify_keys
):
    room_id = create_room(admin, version, join_rule_for(version), topic="About")
    state = assert_room_is_sound(store, room_id, published_verify_keys)
    assert set(state) == {
        ("m.room.create", ""),
        ("m.room.member", ADMIN),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
    }
    create = state[("m.room.create", "")]
    assert create["content"]["room_version"] == version
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": join_rule_for(version)}
    assert state[("m.room.history_visibility", "")]["content"] == {"history_visibility": "shared"}
    assert state[("m.room.member", ADMIN)]["content"] == {"membership": "join"}
    assert store.get_room_version(room_id) == version
    assert store.has_local_joined_member(room_id, SERVER_NAME)
    room_version = KNOWN_ROOM_VERSIONS[version]
    if room_version.room_id_from_create_event:
        # rooms/v12: no room_id in the create event; the room id is its reference hash
        assert "room_id" not in create
        assert V12_ROOM_ID.fullmatch(room_id)
        assert room_id == compute_room_id_v12(create)
        assert room_id == "!" + compute_event_id(create, room_version)[1:]
        assert state[("m.room.power_levels", "")]["content"]["users"] == {}
    else:
        assert create["room_id"] == room_id
        assert room_id.endswith(":" + SERVER_NAME)
        assert state[("m.room.power_levels", "")]["content"]["users"] == {ADMIN: 100}


def test_create_room_without_name_or_topic(admin, store):
    room_id = admin.create_room("11", "public")
    types = {event["type"] for event in store.get_current_state(room_id)}
    assert "m.room.name" not in types
    assert "m.room.topic" not in types


@pytest.mark.parametrize(
    ("version", "join_rule"),
    [
        pytest.param("6", "knock", id="v6-no-knock"),
        pytest.param("7", "restricted", id="v7-no-restricted"),
        pytest.param("9", "knock_restricted", id="v9-no-knock_restricted"),
    ],
)
def test_create_room_refuses_a_join_rule_the_version_lacks(version, join_rule, admin, store):
    with pytest.raises(MatrixError) as raised:
        admin.create_room(version, join_rule)
    assert raised.value.errcode == "M_FORBIDDEN"
    assert store.list_rooms() == []


@pytest.mark.parametrize(
    ("kwargs", "errcode"),
    [
        pytest.param(
            {"version": "13", "join_rule": "knock"}, "M_UNSUPPORTED_ROOM_VERSION", id="v13"
        ),
        pytest.param({"version": "12", "join_rule": "open"}, "M_INVALID_PARAM", id="bad-rule"),
        pytest.param(
            {"version": "12", "join_rule": "knock", "creator_localpart": "a:b"},
            "M_INVALID_PARAM",
            id="bad-creator",
        ),
        pytest.param(
            {"version": "12", "join_rule": "knock", "allow_rooms": ["!a:x.test"]},
            "M_INVALID_PARAM",
            id="allow-without-restricted",
        ),
    ],
)
def test_create_room_bad_input_writes_nothing(kwargs, errcode, admin, store):
    with pytest.raises(MatrixError) as raised:
        admin.create_room(**kwargs)
    assert raised.value.errcode == errcode
    assert store.list_rooms() == []


def test_create_room_restricted_allow_list_and_additional_creators(admin, store):
    allowed = admin.create_room("12", "invite")
    room_id = admin.create_room(
        "12", "knock_restricted", allow_rooms=[allowed], additional_creators=["@co:other.test"]
    )
    join_rules = store.get_current_state_event(room_id, "m.room.join_rules", "")
    assert join_rules["content"]["allow"] == [{"type": "m.room_membership", "room_id": allowed}]
    create = store.get_current_state_event(room_id, "m.room.create", "")
    assert create["content"]["additional_creators"] == ["@co:other.test"]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_state_changes_are_signed_and_authorised(version, admin, store, published_verify_keys):
    room_id = create_room(admin, version, join_rule_for(version))
    remote = make_remote_server()
    mallory = remote.user("mallory")
    add_member(admin, room_id, mallory, remote=remote)
    assert store.has_local_joined_member(room_id, remote.server_name)
    admin.ban(room_id, mallory, "spam")
    assert not store.has_local_joined_member(room_id, remote.server_name)
    admin.unban(room_id, mallory)
    admin.set_server_acl(room_id, ["*"], ["evil.test"], allow_ip_literals=False)
    admin.set_join_rule(room_id, "public")
    signer_keys = {remote.server_name: {remote.key_id: remote.verify_key}}
    state = assert_room_is_sound(store, room_id, published_verify_keys, signer_keys)
    assert state[("m.room.member", mallory)]["content"] == {"membership": "leave"}
    assert state[("m.room.server_acl", "")]["content"] == {
        "allow": ["*"],
        "deny": ["evil.test"],
        "allow_ip_literals": False,
    }
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
    assert len(store.get_forward_extremities(room_id)) == 1


@pytest.mark.parametrize("version", KNOCK_VERSIONS)
def test_remote_knock_is_stored_as_current_membership(version, admin, store):
    room_id = create_room(admin, version, "knock")
    remote = make_remote_server()
    add_knock(admin, room_id, remote.user("knocker"), remote=remote)
    knocks = store.get_memberships(room_id, "knock")
    assert [event["state_key"] for event in knocks] == [remote.user("knocker")]
    assert not store.has_local_joined_member(room_id, remote.server_name)


def test_ban_reason_is_in_the_content(admin, store):
    room_id = create_room(admin, "12", "knock")
    admin.ban(room_id, "@x:remote.test", "spam")
    ban = store.get_current_state_event(room_id, "m.room.member", "@x:remote.test")
    assert ban["content"] == {"membership": "ban", "reason": "spam"}


def count_events(store):
    return store.db.execute("SELECT count(*) FROM events").fetchone()[0]


@pytest.mark.parametrize("version", ["6", "12"])
def test_change_by_a_member_without_power_is_refused_and_writes_nothing(version, admin, store):
    room_id = create_room(admin, version, "invite")
    bob = f"@bob:{SERVER_NAME}"
    add_member(admin, room_id, bob)
    before = (count_events(store), store.get_forward_extremities(room_id))
    for change in (
        lambda: admin.set_join_rule(room_id, "public", sender=bob),
        lambda: admin.ban(room_id, ADMIN, sender=bob),
        lambda: admin.set_server_acl(room_id, ["*"], [], sender=bob),
        lambda: admin.send_state_event(room_id, "m.room.name", "", {"name": "x"}, sender=bob),
    ):
        with pytest.raises(MatrixError) as raised:
            change()
        assert raised.value.errcode == "M_FORBIDDEN"
    assert (count_events(store), store.get_forward_extremities(room_id)) == before


def test_join_without_invite_in_a_knock_room_is_refused(admin, store):
    room_id = create_room(admin, "12", "knock")
    before = count_events(store)
    with pytest.raises(MatrixError) as raised:
        admin.join_user(room_id, f"@eve:{SERVER_NAME}")
    assert raised.value.errcode == "M_FORBIDDEN"
    assert count_events(store) == before


def test_set_join_rule_the_version_lacks_is_refused(admin, store):
    room_id = create_room(admin, "6", "invite")
    before = count_events(store)
    with pytest.raises(MatrixError) as raised:
        admin.set_join_rule(room_id, "knock")
    assert raised.value.errcode == "M_FORBIDDEN"
    assert count_events(store) == before


def test_unban_of_a_user_who_is_not_banned_is_refused(admin):
    room_id = create_room(admin, "12", "knock")
    with pytest.raises(MatrixError) as raised:
        admin.unban(room_id, "@x:remote.test")
    assert raised.value.errcode == "M_FORBIDDEN"


@pytest.mark.parametrize(
    ("change", "errcode"),
    [
        pytest.param(
            lambda a, r: a.ban("!nope:antechamber.test", "@x:y.test"),
            "M_NOT_FOUND",
            id="unknown-room",
        ),
        pytest.param(
            lambda a, r: a.ban("not-a-room", "@x:y.test"), "M_INVALID_PARAM", id="bad-room-id"
        ),
        pytest.param(lambda a, r: a.ban(r, "x@y.test"), "M_INVALID_PARAM", id="bad-user-id"),
        pytest.param(lambda a, r: a.unban(r, "@x"), "M_INVALID_PARAM", id="bad-unban-user"),
        pytest.param(
            lambda a, r: a.join_user(r, "@x:remote.test"),
            "M_INVALID_PARAM",
            id="remote-join-unsigned",
        ),
        pytest.param(
            lambda a, r: a.set_join_rule(r, "knock", ["!a:x.test"]),
            "M_INVALID_PARAM",
            id="allow-on-knock",
        ),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(change, errcode, admin, store):
    room_id = create_room(admin, "12", "knock")
    before = count_events(store)
    with pytest.raises(MatrixError) as raised:
        change(admin, room_id)
    assert raised.value.errcode == errcode
    assert count_events(store) == before


def test_changes_are_seen_by_another_connection_at_once(admin, config):
    # the server reads with its own connection and caches nothing: the next request sees it
    room_id = create_room(admin, "12", "knock")
    other = Store.open(config.database)
    try:
        admin.set_join_rule(room_id, "invite")
        join_rules = other.get_current_state_event(room_id, "m.room.join_rules", "")
        assert join_rules["content"]["join_rule"] == "invite"
    finally:
        other.close()


def test_prev_events_are_capped_at_twenty_extremities(admin, store):
    room_id = create_room(admin, "12", "knock")
    ((head, depth),) = store.get_forward_extremities(room_id)
    template = store.get_event(head)
    for index in range(25):
        # 25 fake siblings (stored directly) make 26 forward extremities
        store.persist_event(
            {**template, "depth": depth + 1, "prev_events": [head]}, f"$f{index}", "12"
        )
    assert len(store.get_forward_extremities(room_id)) == 25
    event_id = admin.send_state_event(room_id, "m.room.topic", "", {"topic": "t"})
    event = store.get_event(event_id)
    assert len(event["prev_events"]) == 20
    assert event["depth"] == depth + 2
    assert len(store.get_forward_extremities(room_id)) == 6


def test_members_leave_and_the_per_server_count_follows(admin, store):
    room_id = create_room(admin, "12", "public")
    remote = make_remote_server()
    add_member(admin, room_id, remote.user("a"), remote=remote)
    add_member(admin, room_id, remote.user("b"), remote=remote)
    admin.leave_user(room_id, remote.user("a"), signer=signer_of(remote))
    assert store.has_local_joined_member(room_id, remote.server_name)
    admin.leave_user(room_id, remote.user("b"), signer=signer_of(remote))
    assert not store.has_local_joined_member(room_id, remote.server_name)
    admin.leave_user(room_id, ADMIN)
    assert not store.has_local_joined_member(room_id, SERVER_NAME)


@pytest.mark.parametrize("version", ["11", "12"])
def test_create_room_twice_in_the_same_millisecond_makes_two_rooms(version, admin, store):
    # v12 room ids hash the create event: identical content and time would name the same room
    first = admin.create_room(version, "public")
    second = admin.create_room(version, "public")
    assert first != second
    assert len(store.list_rooms()) == 2
    assert len(store.get_current_state(second)) == 5


def test_create_room_unfederated_keeps_remote_users_out(admin, store):
    room_id = admin.create_room("11", "public", federate=False)
    create = store.get_current_state_event(room_id, "m.room.create", "")
    assert create["content"]["m.federate"] is False
    remote = make_remote_server()
    with pytest.raises(MatrixError) as raised:
        add_member(admin, room_id, remote.user("a"), remote=remote)
    assert raised.value.errcode == "M_FORBIDDEN"
    add_member(admin, room_id, f"@local:{SERVER_NAME}")


def test_prev_events_given_build_a_fork(admin, store):
    room_id = create_room(admin, "12", "knock")
    ((parent, depth),) = store.get_forward_extremities(room_id)
    remote = make_remote_server()
    for localpart in ("a", "b", "c"):
        admin.knock_user(
            room_id, remote.user(localpart), signer=signer_of(remote), prev_events=[parent]
        )
    extremities = store.get_forward_extremities(room_id)
    assert len(extremities) == 3
    assert {d for _id, d in extremities} == {depth + 1}
    with pytest.raises(MatrixError) as raised:
        admin.knock_user(
            room_id, remote.user("d"), signer=signer_of(remote), prev_events=["$unknown"]
        )
    assert raised.value.errcode == "M_NOT_FOUND"


def test_send_state_events_stores_a_batch_in_order_like_single_sends(admin, store):
    room_id = create_room(admin, "12", "public")
    remote = make_remote_server()
    members = [remote.user(f"m{i}") for i in range(3)]
    event_ids = admin.send_state_events(
        room_id,
        [("m.room.member", user, {"membership": "join"}, user, remote.signer) for user in members],
    )
    assert len(event_ids) == 3
    for user, event_id in zip(members, event_ids, strict=True):
        member = store.get_current_state_event(room_id, "m.room.member", user)
        assert member is not None
        assert compute_event_id(member, KNOWN_ROOM_VERSIONS["12"]) == event_id
        check_event_signature(
            member,
            KNOWN_ROOM_VERSIONS["12"],
            remote.server_name,
            {remote.key_id: remote.verify_key},
        )
    # Each event builds on the one before: one chain, one forward extremity.
    assert store.get_forward_extremities(room_id)[0][0] == event_ids[-1]
    assert len(store.get_forward_extremities(room_id)) == 1


def test_send_state_events_refused_event_writes_nothing_of_the_batch(admin, store):
    room_id = create_room(admin, "12", "knock")
    before = count_events(store)
    ok = f"@ok:{SERVER_NAME}"
    with pytest.raises(MatrixError) as raised:
        admin.send_state_events(
            room_id,
            [
                ("m.room.name", "", {"name": "fine"}, ADMIN, None),
                # A join without an invite in a knock room: refused, so the name is not stored.
                ("m.room.member", ok, {"membership": "join"}, ok, None),
            ],
        )
    assert raised.value.errcode == "M_FORBIDDEN"
    assert count_events(store) == before


# Operator actions: deny, kick, power, messages; reads ------------------------------------


@pytest.mark.parametrize("version", ["10", "12"], ids=lambda v: f"v{v}")
def test_deny_knock_is_a_leave_by_the_admin(version, admin, store):
    room_id = create_room(admin, version, "knock")
    remote = make_remote_server()
    knocker = remote.user("k")
    add_knock(admin, room_id, knocker, remote=remote)
    event_id = admin.deny_knock(room_id, knocker, reason="not now")
    leave = store.get_event(event_id)
    assert (leave["sender"], leave["state_key"]) == (ADMIN, knocker)
    assert leave["content"] == {"membership": "leave", "reason": "not now"}
    # knock -> leave -> knock: the user may knock again
    add_knock(admin, room_id, knocker, remote=remote)
    assert store.get_memberships(room_id, "knock")[0]["state_key"] == knocker


@pytest.mark.parametrize("version", ["10", "12"], ids=lambda v: f"v{v}")
def test_kick_a_member_an_invitee_and_a_knocker(version, admin, store):
    room_id = create_room(admin, version, "knock")
    remote = make_remote_server()
    add_member(admin, room_id, remote.user("j"), remote=remote)
    admin.invite_user(room_id, remote.user("i"))
    add_knock(admin, room_id, remote.user("k"), remote=remote)
    for localpart in ("j", "i", "k"):
        event_id = admin.kick(room_id, remote.user(localpart), reason="bye")
        assert store.get_event(event_id)["content"] == {"membership": "leave", "reason": "bye"}
    assert not store.has_local_joined_member(room_id, remote.server_name)


@pytest.mark.parametrize(
    ("change", "errcode"),
    [
        pytest.param(lambda a, r: a.deny_knock(r, "@nobody:remote.test"), "M_FORBIDDEN", id="deny"),
        pytest.param(lambda a, r: a.kick(r, "@nobody:remote.test"), "M_FORBIDDEN", id="kick-none"),
        pytest.param(lambda a, r: a.kick(r, "@left:remote.test"), "M_FORBIDDEN", id="kick-left"),
        pytest.param(lambda a, r: a.kick(r, ADMIN), "M_INVALID_PARAM", id="kick-self"),
        pytest.param(
            lambda a, r: a.kick(r, "@k:remote.test", sender="@x:remote.test"),
            "M_INVALID_PARAM",
            id="kick-remote-sender",
        ),
        pytest.param(
            lambda a, r: a.deny_knock(r, "@k:remote.test", sender=f"@bob:{SERVER_NAME}"),
            "M_FORBIDDEN",
            id="deny-without-power",
        ),
        pytest.param(
            lambda a, r: a.send_message(r, "hi", sender="@x:remote.test"),
            "M_INVALID_PARAM",
            id="message-remote-sender",
        ),
        pytest.param(
            lambda a, r: a.send_message(r, "hi", sender=f"@nobody:{SERVER_NAME}"),
            "M_FORBIDDEN",
            id="message-non-member",
        ),
        pytest.param(
            lambda a, r: a.set_power_level(r, "@k:remote.test", 2**53), "M_INVALID_PARAM", id="big"
        ),
        pytest.param(
            lambda a, r: a.set_power_level(r, "@k:remote.test", True), "M_INVALID_PARAM", id="bool"
        ),
        pytest.param(
            lambda a, r: a.set_power_level(r, ADMIN, 1, sender=f"@bob:{SERVER_NAME}"),
            "M_FORBIDDEN",
            id="power-without-power",
        ),
        pytest.param(
            lambda a, r: a.send_state_event(r, "m.room.name", "", {"name": "x"}, "@x:remote.test"),
            "M_INVALID_PARAM",
            id="state-remote-sender",
        ),
    ],
)
def test_operator_actions_refused_write_nothing(change, errcode, admin, store):
    room_id = create_room(admin, "12", "knock")
    remote = make_remote_server()
    add_member(admin, room_id, f"@bob:{SERVER_NAME}")
    add_knock(admin, room_id, remote.user("k"), remote=remote)
    add_knock(admin, room_id, remote.user("left"), remote=remote)
    admin.leave_user(room_id, remote.user("left"), signer=signer_of(remote))
    before = (count_events(store), store.get_forward_extremities(room_id))
    with pytest.raises(MatrixError) as raised:
        change(admin, room_id)
    assert (raised.value.errcode, raised.value.status) == (
        errcode,
        403 if errcode == "M_FORBIDDEN" else 400,
    )
    assert (count_events(store), store.get_forward_extremities(room_id)) == before


@pytest.mark.parametrize("version", ["10", "12"], ids=lambda v: f"v{v}")
def test_set_power_level_keeps_the_rest_of_the_content(version, admin, store):
    room_id = create_room(admin, version, "invite")
    bob = f"@bob:{SERVER_NAME}"
    add_member(admin, room_id, bob)
    before = store.get_current_state_event(room_id, "m.room.power_levels", "")["content"]
    admin.set_power_level(room_id, bob, 50)
    after = store.get_current_state_event(room_id, "m.room.power_levels", "")["content"]
    assert after == {**before, "users": {**before["users"], bob: 50}}
    # bob may now kick (kick: 50)
    add_member(admin, room_id, "@carol:remote.test", remote=make_remote_server())
    admin.kick(room_id, "@carol:remote.test", sender=bob)


def test_set_power_level_of_a_v12_creator_is_refused(admin, store):
    # rooms/v12 rule 10.4: creators are never listed in users
    room_id = create_room(admin, "12", "invite")
    with pytest.raises(MatrixError) as raised:
        admin.set_power_level(room_id, ADMIN, 100)
    assert raised.value.errcode == "M_FORBIDDEN"


@pytest.mark.parametrize("version", ["1", "10", "12"], ids=lambda v: f"v{v}")
def test_send_message_is_a_non_state_event_authorised_like_others(
    version, admin, store, published_verify_keys
):
    room_id = create_room(admin, version, "invite")
    state_before = store.get_current_state_ids(room_id)
    event_id = admin.send_message(room_id, "hello\nworld")
    message = store.get_event(event_id)
    assert "state_key" not in message
    assert message["content"] == {"msgtype": "m.text", "body": "hello\nworld"}
    assert store.get_current_state_ids(room_id) == state_before
    assert store.get_forward_extremities(room_id)[0][0] == event_id
    # auth events: create (not in v12), power levels, the sender's membership
    assert_room_is_sound(store, room_id, published_verify_keys)
    room_version = KNOWN_ROOM_VERSIONS[version]
    assert len(ref_ids(message["auth_events"], room_version)) == (2 if version == "12" else 3)


def test_members_lists_every_membership(admin, store):
    room_id = create_room(admin, "12", "knock")
    remote = make_remote_server()
    add_knock(admin, room_id, remote.user("k"), remote=remote)
    admin.ban(room_id, remote.user("b"), reason="spam")
    members = {member.user_id: member for member in admin.members(room_id)}
    assert {user: m.membership for user, m in members.items()} == {
        ADMIN: "join",
        remote.user("k"): "knock",
        remote.user("b"): "ban",
    }
    ban = members[remote.user("b")]
    assert (ban.reason, ban.sender) == ("spam", ADMIN)
    assert store.get_event(ban.event_id)["content"]["membership"] == "ban"
    assert isinstance(ban.origin_server_ts, int)


def test_timeline_newest_last_with_summaries(admin, store):
    room_id = create_room(admin, "12", "knock")
    remote = make_remote_server()
    knocker = remote.user("k")
    add_knock(admin, room_id, knocker, remote=remote)
    admin.deny_knock(room_id, knocker, reason="full")
    admin.send_message(room_id, "announcement")
    entries = admin.timeline(room_id, limit=3)
    assert [(e.type, e.sender, e.state_key) for e in entries] == [
        ("m.room.member", knocker, knocker),
        ("m.room.member", ADMIN, knocker),
        ("m.room.message", ADMIN, None),
    ]
    assert [e.summary for e in entries] == [
        "knocked (none -> knock)",
        f"denied the knock of {knocker} (knock -> leave), reason: full",
        "announcement",
    ]
    assert entries[-1].event_id == store.get_forward_extremities(room_id)[0][0]
    everything = admin.timeline(room_id)  # 6 initial events and 3 since, under the default 20
    assert len(everything) == 9
    assert everything[0].type == "m.room.create"
    assert admin.timeline(room_id, limit=0) == []


@pytest.mark.parametrize(
    ("event", "previous", "summary"),
    [
        pytest.param(
            {"type": "m.room.message", "content": {"msgtype": "m.image"}},
            None,
            "(m.image message)",
            id="no-body",
        ),
        pytest.param(
            {"type": "m.room.name", "state_key": "", "content": {"name": "N"}},
            None,
            '{"name": "N"}',
            id="state",
        ),
        pytest.param(
            {"type": "m.room.topic", "state_key": "", "content": {"topic": "x" * 200}},
            None,
            '{"topic": "' + "x" * 108 + "…",
            id="long-state",
        ),
        pytest.param({"type": "m.reaction", "content": []}, None, "(m.reaction)", id="other"),
    ],
)
def test_summarise_event_other_events(event, previous, summary):
    assert summarise_event(event, previous) == summary


@pytest.mark.parametrize(
    ("sender", "membership", "previous", "summary"),
    [
        ("@t:x.test", "join", None, "joined (none -> join)"),
        ("@t:x.test", "join", "join", "updated their profile (join -> join)"),
        ("@a:x.test", "invite", None, "invited @t:x.test (none -> invite)"),
        ("@a:x.test", "ban", "join", "banned @t:x.test (join -> ban)"),
        ("@t:x.test", "leave", "invite", "rejected the invite (invite -> leave)"),
        ("@t:x.test", "leave", "knock", "retracted the knock (knock -> leave)"),
        ("@t:x.test", "leave", "join", "left (join -> leave)"),
        ("@a:x.test", "leave", "ban", "unbanned @t:x.test (ban -> leave)"),
        ("@a:x.test", "leave", "invite", "withdrew the invite of @t:x.test (invite -> leave)"),
        ("@a:x.test", "leave", "join", "kicked @t:x.test (join -> leave)"),
        ("@a:x.test", "odd", None, "set the membership of @t:x.test to 'odd' (none -> odd)"),
    ],
)
def test_summarise_event_membership_transitions(sender, membership, previous, summary):
    event = {
        "type": "m.room.member",
        "state_key": "@t:x.test",
        "sender": sender,
        "content": {"membership": membership},
    }
    assert summarise_event(event, previous) == summary
