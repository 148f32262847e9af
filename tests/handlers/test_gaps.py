"""Gaps a transaction's PDU leaves: the state at a missing prev event and missing auth events,
fetched from the origin (/state_ids, /event, /event_auth), bounded against a lying origin."""

import time

import pytest

from app.rooms import hosted
from app.rooms.admin import get_timeline
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import KEY_FETCH_TIMEOUT_S
from tests.factories import add_member, create_room
from tests.handlers.remote_pdus import joined_room, message, remote_event, send_txn

V12 = KNOWN_ROOM_VERSIONS["12"]


def _state_ids_answer(env, room_id: str, extra: tuple[str, ...] = ()) -> dict:
    """What the origin answers for /state_ids at an event built on our current state."""
    state = list(env.store.get_current_state_ids(room_id).values())
    chain = hosted.get_auth_chain_ids(env.store, room_id, V12, state)
    return {"pdu_ids": [*state, *extra], "auth_chain_ids": chain}


def _topic_gap(env, room_id: str, prev_events=None):
    """A topic change by the remote's user (with power) that we never received, and a message
    built on it that we do receive."""
    env.admin.set_power_level(room_id, env.user, 50)
    topic, topic_id = remote_event(
        env, room_id, "m.room.topic", {"topic": "fetched"}, state_key="", prev_events=prev_events
    )
    pushed, pushed_id = message(env, room_id, "after the topic", prev_events=[topic_id])
    return (topic, topic_id), (pushed, pushed_id)


def test_gap_state_at_a_missing_prev_event_is_fetched_with_state_ids_and_event(env):
    # SS §Backfilling and retrieving missing events, Synapse's procedure: get_missing_events
    # cannot fill the gap (404), so the state at the missing prev comes from /state_ids and
    # the prev itself from /event; the pushed event is then judged and accepted.
    room_id = joined_room(env)
    (topic, topic_id), (pushed, pushed_id) = _topic_gap(env, room_id)
    env.remote.missing_events = None
    env.remote.state_ids[topic_id] = _state_ids_answer(env, room_id)
    env.remote.events[topic_id] = topic
    assert send_txn(env, [pushed]).json() == {"pdus": {pushed_id: {}}}
    assert env.remote.event_requests == [topic_id]  # only what we lacked
    assert env.store.get_event(topic_id) == topic
    # the fetched event is an outlier: not in the timeline, but its state counts
    assert topic_id not in [entry.event_id for entry in get_timeline(env.store, room_id, 50)]
    assert env.store.get_state_ids_at(pushed_id)[("m.room.topic", "")] == topic_id
    assert env.store.get_current_state_ids(room_id)[("m.room.topic", "")] == topic_id


def test_gap_state_events_we_lack_are_fetched_and_checked_too(env):
    room_id = create_room(env.admin, "12", "public")
    add_member(env.admin, room_id, env.user, remote=env.remote)
    carol = f"@carol:{env.remote.server_name}"
    join, join_id = remote_event(
        env, room_id, "m.room.member", {"membership": "join"}, state_key=carol, sender=carol
    )
    (topic, topic_id), (pushed, pushed_id) = _topic_gap(env, room_id, prev_events=[join_id])
    env.remote.missing_events = None
    env.remote.state_ids[topic_id] = _state_ids_answer(env, room_id, extra=(join_id,))
    env.remote.events.update({topic_id: topic, join_id: join})
    assert send_txn(env, [pushed]).json() == {"pdus": {pushed_id: {}}}
    assert sorted(env.remote.event_requests) == sorted([topic_id, join_id])
    current = env.store.get_current_state_ids(room_id)
    assert current[("m.room.member", carol)] == join_id
    assert env.store.is_event_rejected(join_id) is False


def test_gap_unknown_auth_events_are_fetched_with_event_auth(env):
    # An event citing an auth event we lack: /event_auth for it brings the chain; the missing
    # event is checked against its own auth events and stored, and the event is then judged
    # (here rejected, SS §Rejection: its sender's join is not in the state before it).
    room_id = create_room(env.admin, "12", "public")
    add_member(env.admin, room_id, env.user, remote=env.remote)
    carol = f"@carol:{env.remote.server_name}"
    join, join_id = remote_event(
        env, room_id, "m.room.member", {"membership": "join"}, state_key=carol, sender=carol
    )
    draft, _draft_id = message(env, room_id, "hi", sender=carol)
    spoken_auth = [*draft["auth_events"], join_id]
    spoken, spoken_id = remote_event(
        env,
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "hi"},
        sender=carol,
        auth_events=spoken_auth,
    )
    env.remote.event_auth[spoken_id] = [join]
    result = send_txn(env, [spoken]).json()["pdus"][spoken_id]
    assert result["error"].startswith("M_FORBIDDEN")
    assert env.store.get_event(join_id) == join
    assert env.store.is_event_rejected(join_id) is False
    assert env.store.is_event_rejected(spoken_id) is True


@pytest.mark.parametrize(
    "fault",
    ["state_ids hangs", "state_ids garbage", "too many missing", "event is another event"],
)
def test_gap_a_lying_origin_costs_one_bounded_refusal_and_stores_nothing(env, fault):
    room_id = joined_room(env)
    (topic, topic_id), (pushed, pushed_id) = _topic_gap(env, room_id)
    env.remote.missing_events = None
    answer = _state_ids_answer(env, room_id)
    env.remote.events[topic_id] = topic
    if fault == "state_ids hangs":
        env.remote.read_mode = "hang"
    elif fault == "state_ids garbage":
        answer = {"pdu_ids": "everything", "auth_chain_ids": [5]}
    elif fault == "too many missing":
        answer["pdu_ids"] += [f"${n:043d}" for n in range(200)]
    else:
        other, _other_id = message(env, room_id, "not the topic")
        env.remote.events[topic_id] = other
    env.remote.state_ids[topic_id] = answer
    started = time.monotonic()
    result = send_txn(env, [pushed]).json()["pdus"][pushed_id]
    assert time.monotonic() - started < KEY_FETCH_TIMEOUT_S + 2.0
    assert result["error"].startswith("M_FORBIDDEN")
    assert env.store.get_event(pushed_id) is None
    assert env.store.get_event(topic_id) is None
    if fault == "too many missing":
        assert env.remote.event_requests == []  # refused before fetching one by one


def test_gap_state_ids_naming_another_rooms_event_does_not_bring_it_in(env):
    room_id = joined_room(env)
    elsewhere = create_room(env.admin, "12", "knock", name="Elsewhere")
    foreign = env.store.get_current_state_ids(elsewhere)[("m.room.name", "")]
    (topic, topic_id), (pushed, pushed_id) = _topic_gap(env, room_id)
    env.remote.missing_events = None
    env.remote.state_ids[topic_id] = _state_ids_answer(env, room_id, extra=(foreign,))
    env.remote.events[topic_id] = topic
    assert send_txn(env, [pushed]).json() == {"pdus": {pushed_id: {}}}
    state = env.store.get_state_ids_at(pushed_id)
    assert foreign not in state.values()
    assert (
        state[("m.room.name", "")] == env.store.get_current_state_ids(room_id)[("m.room.name", "")]
    )
