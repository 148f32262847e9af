"""The read endpoints (/event, /state, /state_ids, /event_auth, /backfill, /get_missing_events)."""

from urllib.parse import quote

import pytest

from matrix.events import compute_event_id, redact_event
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from tests.factories import add_member, create_room, stored_events
from tests.handlers.knock_env import KnockEnv, assert_error
from tests.handlers.remote_pdus import joined_room, message, send_txn

V12 = KNOWN_ROOM_VERSIONS["12"]


def q(value: str) -> str:
    return quote(value, safe="")


def post_message(env: KnockEnv, room_id: str, text: str) -> str:
    event, event_id = message(env, room_id, text)
    assert send_txn(env, [event]).json() == {"pdus": {event_id: {}}}
    return event_id


def test_get_event_returns_a_transaction_with_the_pdu(env):
    room_id = joined_room(env)
    event_id = post_message(env, room_id, "hello")
    response = env.get(f"/_matrix/federation/v1/event/{q(event_id)}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pdus"] == [env.store.get_event(event_id)]
    assert body["origin"] == "antechamber.test"


def test_get_event_unknown_is_not_found(env):
    joined_room(env)
    assert_error(env.get(f"/_matrix/federation/v1/event/{q('$' + 'B' * 43)}"), 404, "M_NOT_FOUND")


def test_get_event_server_not_in_room_is_forbidden(env):
    room_id = create_room(env.admin, "12", "knock")
    (create_id, _), *_ = stored_events(env.store, room_id)
    assert_error(env.get(f"/_matrix/federation/v1/event/{q(create_id)}"), 403, "M_FORBIDDEN")


def test_get_event_acl_denied_is_forbidden(env):
    room_id = joined_room(env)
    event_id = post_message(env, room_id, "hello")
    env.admin.set_server_acl(room_id, ["*"], ["127.0.0.1"])
    assert_error(env.get(f"/_matrix/federation/v1/event/{q(event_id)}"), 403, "M_FORBIDDEN")


def test_get_event_before_the_server_joined_is_redacted_under_joined_visibility(env):
    """History visibility `joined`: what happened before the server's user joined is served
    redacted (Synapse's filter_events_for_server)."""
    room_id = create_room(env.admin, "12", "knock")
    env.admin.send_state_event(
        room_id, "m.room.history_visibility", "", {"history_visibility": "joined"}
    )
    secret = env.admin.send_state_event(room_id, "m.room.topic", "", {"topic": "secret"})
    add_member(env.admin, room_id, env.user, remote=env.remote)
    after = env.admin.send_state_event(room_id, "m.room.topic", "", {"topic": "open"})
    hidden = env.get(f"/_matrix/federation/v1/event/{q(secret)}").json()["pdus"][0]
    assert hidden == redact_event(env.store.get_event(secret), V12)
    assert hidden["content"] == {}
    shown = env.get(f"/_matrix/federation/v1/event/{q(after)}").json()["pdus"][0]
    assert shown == env.store.get_event(after)


@pytest.mark.parametrize(
    "ids_only", [pytest.param(True, id="state_ids"), pytest.param(False, id="state")]
)
def test_state_is_the_state_before_the_event_with_its_auth_chain(env, ids_only):
    room_id = joined_room(env)
    before = env.store.get_current_state_ids(room_id)
    event_id = env.admin.send_state_event(room_id, "m.room.topic", "", {"topic": "new"})
    path = "state_ids" if ids_only else "state"
    response = env.get(f"/_matrix/federation/v1/{path}/{q(room_id)}?event_id={q(event_id)}")
    assert response.status_code == 200, response.text
    body = response.json()
    if ids_only:
        pdu_ids, chain_ids = body["pdu_ids"], body["auth_chain_ids"]
    else:
        pdu_ids = [compute_event_id(e, V12) for e in body["pdus"]]
        chain_ids = [compute_event_id(e, V12) for e in body["auth_chain"]]
    assert set(pdu_ids) == set(before.values())
    assert event_id not in pdu_ids
    for state_id in pdu_ids:
        assert set(env.store.get_event(state_id)["auth_events"]) <= set(chain_ids)


def test_state_ids_needs_event_id(env):
    room_id = joined_room(env)
    assert_error(env.get(f"/_matrix/federation/v1/state_ids/{q(room_id)}"), 400, "M_MISSING_PARAM")


def test_state_ids_event_of_another_room_is_not_found(env):
    room_id = joined_room(env)
    other = joined_room(env)
    event_id = post_message(env, other, "elsewhere")
    uri = f"/_matrix/federation/v1/state_ids/{q(room_id)}?event_id={q(event_id)}"
    assert_error(env.get(uri), 404, "M_NOT_FOUND")


def test_event_auth_is_the_full_auth_chain(env):
    room_id = joined_room(env)
    event_id = post_message(env, room_id, "hello")
    response = env.get(f"/_matrix/federation/v1/event_auth/{q(room_id)}/{q(event_id)}")
    assert response.status_code == 200, response.text
    chain = {compute_event_id(e, V12): e for e in response.json()["auth_chain"]}
    # Closed under auth_events, and it holds the create event (v12: reached via power levels).
    for event in [env.store.get_event(event_id), *chain.values()]:
        assert set(event["auth_events"]) <= set(chain)
    assert any(e["type"] == "m.room.create" for e in chain.values())
    assert event_id not in chain


def test_get_missing_events_walks_back_from_latest_to_earliest(env):
    room_id = joined_room(env)
    first = post_message(env, room_id, "one")
    second = post_message(env, room_id, "two")
    third = post_message(env, room_id, "three")
    fourth = post_message(env, room_id, "four")
    uri = f"/_matrix/federation/v1/get_missing_events/{q(room_id)}"
    body = {"earliest_events": [first], "latest_events": [fourth], "limit": 10}
    response = env.post(uri, body)
    assert response.status_code == 200, response.text
    ids = [compute_event_id(e, V12) for e in response.json()["events"]]
    assert ids == [second, third]
    limited = env.post(uri, {**body, "limit": 1}).json()["events"]
    assert [compute_event_id(e, V12) for e in limited] == [third]


def test_get_missing_events_server_not_in_room_is_forbidden(env):
    room_id = create_room(env.admin, "12", "knock")
    uri = f"/_matrix/federation/v1/get_missing_events/{q(room_id)}"
    body = {"earliest_events": [], "latest_events": []}
    assert_error(env.post(uri, body), 403, "M_FORBIDDEN")


def test_backfill_returns_the_events_and_those_before_newest_first(env):
    room_id = joined_room(env)
    post_message(env, room_id, "one")
    second = post_message(env, room_id, "two")
    third = post_message(env, room_id, "three")
    response = env.get(f"/_matrix/federation/v1/backfill/{q(room_id)}?v={q(third)}&limit=2")
    assert response.status_code == 200, response.text
    ids = [compute_event_id(e, V12) for e in response.json()["pdus"]]
    assert ids == [third, second]


def test_backfill_unknown_room_is_not_found(env):
    uri = f"/_matrix/federation/v1/backfill/{q('!nowhere:antechamber.test')}?v=%24x&limit=5"
    assert_error(env.get(uri), 404, "M_NOT_FOUND")
