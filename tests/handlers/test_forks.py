"""Forks: two remote servers send conflicting state at once; either arrival order ends the same."""

# Each case mirrors a public state-resolution case (Synapse tests/state/test_v2.py), here played
# by two real remote servers over /send: both events are built on the same prev event, then
# delivered in one order and in the other, each in a fresh room. The resolved current state must
# be the same either way and equal the public case's expected state (SS §Room State Resolution).

import pytest

from tests.factories import add_member, create_room
from tests.handlers.remote_pdus import remote_event, send_txn
from tests.remote import RemoteHomeserver

VERSIONS = ["10", "12"]  # state resolution v2, and v2.1 (MSC4297)
ORDERS = ["first-then-second", "second-then-first"]


@pytest.fixture
def other(test_ca, clock):
    """A second remote homeserver, with its own key served over HTTPS."""
    with RemoteHomeserver(test_ca, clock) as server:
        yield server


def _deliver(env, other, first, second, order):
    """Send ``first`` (from env.remote) and ``second`` (from ``other``) in ``order``; each is
    accepted (possibly soft-failed) in its own transaction's entry."""
    sends = [(first, env.remote), (second, other)]
    if order == "second-then-first":
        sends.reverse()
    for (event, event_id), remote in sends:
        assert send_txn(env, [event], remote=remote).json() == {"pdus": {event_id: {}}}


def _state_ids(env, room_id, *keys):
    current = env.store.get_current_state_ids(room_id)
    return {key: current.get(key) for key in keys}


def _room_with_two_servers(env, other, version, join_rule="knock"):
    room_id = create_room(env.admin, version, join_rule)
    alice, bob = env.user, f"@bob:{other.server_name}"
    add_member(env.admin, room_id, alice, remote=env.remote)
    add_member(env.admin, room_id, bob, remote=other)
    return room_id, alice, bob


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("version", VERSIONS)
def test_fork_synapse_v2_test_ban_vs_pl(env, other, version, order):
    # Synapse test_ban_vs_pl: a moderator bans a user while that user changes the power levels;
    # expected state PA, MA, MB: the ban stands and the banned user's power levels do not.
    room_id, alice, bob = _room_with_two_servers(env, other, version)
    levels = env.store.get_current_state_event(room_id, "m.room.power_levels", "")["content"]
    levels = {
        **levels,
        "users": {**levels["users"], alice: 100, bob: 50},
        "events": {**levels.get("events", {}), "m.room.power_levels": 50},
    }
    pa = env.admin.send_state_event(room_id, "m.room.power_levels", "", levels)
    ban = remote_event(
        env, room_id, "m.room.member", {"membership": "ban"}, state_key=bob, version=version
    )
    changed = {**levels, "kick": 40}
    pb = remote_event(
        env,
        room_id,
        "m.room.power_levels",
        changed,
        state_key="",
        sender=bob,
        remote=other,
        version=version,
    )
    _deliver(env, other, ban, pb, order)
    assert _state_ids(env, room_id, ("m.room.power_levels", ""), ("m.room.member", bob)) == {
        ("m.room.power_levels", ""): pa,
        ("m.room.member", bob): ban[1],
    }
    assert env.store.has_local_joined_member(room_id, other.server_name) is False


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("version", VERSIONS)
def test_fork_synapse_v2_test_topic_basic(env, other, version, order):
    # Synapse test_topic_basic's core: two topics on one power-levels mainline position are
    # ordered by origin_server_ts, so the later one is the room's topic, whatever arrives first.
    room_id, alice, bob = _room_with_two_servers(env, other, version)
    env.admin.set_power_level(room_id, alice, 50)
    env.admin.set_power_level(room_id, bob, 50)
    earlier = remote_event(
        env, room_id, "m.room.topic", {"topic": "A"}, state_key="", version=version
    )
    later = remote_event(
        env,
        room_id,
        "m.room.topic",
        {"topic": "B"},
        state_key="",
        sender=bob,
        remote=other,
        version=version,
        origin_server_ts=earlier[0]["origin_server_ts"] + 5,
    )
    _deliver(env, other, earlier, later, order)
    assert _state_ids(env, room_id, ("m.room.topic", "")) == {("m.room.topic", ""): later[1]}
    # Both are kept (and served): the fork merged, neither was refused.
    assert env.store.get_event(earlier[1]) == earlier[0]
    assert {e for e, _depth in env.store.get_forward_extremities(room_id)} >= {later[1]}


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("version", VERSIONS)
def test_fork_synapse_v2_test_join_rule_evasion(env, other, version, order):
    # Synapse test_join_rule_evasion: a join racing a change of the join rule to private
    # loses; expected state JR, and the joiner is not a member.
    room_id, alice, _bob = _room_with_two_servers(env, other, version, join_rule="public")
    env.admin.set_power_level(room_id, alice, 100)
    evelyn = f"@evelyn:{other.server_name}"
    jr = remote_event(
        env, room_id, "m.room.join_rules", {"join_rule": "invite"}, state_key="", version=version
    )
    me = remote_event(
        env,
        room_id,
        "m.room.member",
        {"membership": "join"},
        state_key=evelyn,
        sender=evelyn,
        remote=other,
        version=version,
    )
    _deliver(env, other, jr, me, order)
    assert _state_ids(env, room_id, ("m.room.join_rules", ""), ("m.room.member", evelyn)) == {
        ("m.room.join_rules", ""): jr[1],
        ("m.room.member", evelyn): None,
    }
    assert evelyn not in [member.user_id for member in _members(env, room_id)]


def _members(env, room_id):
    from app.rooms.admin import get_members

    return [member for member in get_members(env.store, room_id) if member.membership == "join"]


def test_fork_many_extremities_are_collapsed_by_a_dummy_event(env):
    # Synapse's _send_dummy_events_to_fill_extremities: past 10 forward extremities, the
    # resident sends an org.matrix.dummy_event citing them (spec silent; Synapse's threshold).
    from tests.handlers.remote_pdus import joined_room, message

    room_id = joined_room(env)
    (base,) = [e for e, _depth in env.store.get_forward_extremities(room_id)]
    forks = [message(env, room_id, f"fork {n}", prev_events=[base]) for n in range(11)]
    for event, event_id in forks[:10]:
        assert send_txn(env, [event]).json() == {"pdus": {event_id: {}}}
    assert len(env.store.get_forward_extremities(room_id)) == 10
    event, event_id = forks[10]
    assert send_txn(env, [event]).json() == {"pdus": {event_id: {}}}
    ((dummy_id, _depth),) = env.store.get_forward_extremities(room_id)
    dummy = env.store.get_event(dummy_id)
    assert dummy["type"] == "org.matrix.dummy_event"
    creator = env.store.get_current_state_event(room_id, "m.room.create", "")["sender"]
    assert dummy["sender"] == creator
    assert sorted(dummy["prev_events"]) == sorted(event_id for _event, event_id in forks)
