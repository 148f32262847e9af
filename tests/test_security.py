"""Security properties of the knock endpoints that the handler and auth tests do not already pin.

Already covered elsewhere (not repeated here): another server's user on make_knock
(tests/handlers/test_make_knock.py::test_make_knock_for_another_servers_user_is_403) and on
send_knock (test_send_knock.py::test_send_knock_invalid_event[sender-not-on-origin]); ACL
denial on both (test_make_knock_acl_denied_origin_is_403, test_send_knock_acl_denied); a
destination mismatch and a signature replayed on another path, method or body on a test
contract (tests/app/test_auth.py). Here: the same on the real knock endpoints, and what
knock_room_state may reveal.
"""

from urllib.parse import quote

import pytest

from tests.conftest import SERVER_NAME
from tests.factories import add_knock, add_member, create_room, make_remote_server, stored_events
from tests.handlers import knock_env, test_send_knock
from tests.handlers.knock_env import assert_error

env = knock_env.env  # the fixture

# What stripped state may carry (knock-digest §8): never members, never non-state events.
ALLOWED_KNOCK_STATE = {
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.encryption",
}


@pytest.mark.parametrize("version", ["7", "10", "11", "12"], ids=lambda v: f"v{v}")
def test_security_knock_room_state_reveals_no_members_or_history(env, version):
    room_id = create_room(env.admin, version, "knock", topic="secret plans?")
    other = make_remote_server("other.test")
    add_member(env.admin, room_id, "@bob:antechamber.test")
    add_member(env.admin, room_id, other.user("carol"), remote=other)
    add_knock(env.admin, room_id, other.user("dave"), remote=other)
    env.admin.invite_user(room_id, "@erin:elsewhere.test")
    env.admin.ban(room_id, "@mallory:elsewhere.test")
    env.admin.send_state_event(
        room_id, "m.room.history_visibility", "", {"history_visibility": "joined"}
    )
    env.admin.send_state_event(room_id, "m.room.power_levels.private", "", {"x": 1})
    env.admin.send_state_event(
        room_id, "m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"}
    )
    _, _, response = test_send_knock.knock(env, room_id, version)
    assert response.status_code == 200, response.text
    state = response.json()["knock_room_state"]
    assert {event["type"] for event in state} <= ALLOWED_KNOCK_STATE
    assert "m.room.encryption" in {event["type"] for event in state}
    assert all("state_key" in event for event in state)
    leaked = {
        "@bob:antechamber.test",
        other.user("carol"),
        other.user("dave"),
        "@erin:elsewhere.test",
    }
    assert not any(user in str(state) for user in leaked)


def _make_knock_uri(room_id: str, user_id: str) -> str:
    return (
        f"/_matrix/federation/v1/make_knock/{quote(room_id, safe='')}/"
        f"{quote(user_id, safe='')}?ver=12"
    )


def test_security_make_knock_signed_for_another_destination_is_401(env):
    room_id = create_room(env.admin, "12", "knock")
    uri = _make_knock_uri(room_id, env.user)
    header = env.remote.auth_header("GET", uri, "other.example")
    assert_error(env.client.get(uri, headers={"Authorization": header}), 401, "M_UNAUTHORIZED")


def test_security_send_knock_signed_for_another_destination_is_401(env):
    room_id = create_room(env.admin, "12", "knock")
    event, event_id = test_send_knock.complete(env, test_send_knock.knock_draft(env, room_id), "12")
    uri = f"/_matrix/federation/v1/send_knock/{quote(room_id, safe='')}/{quote(event_id, safe='')}"
    header = env.remote.auth_header("PUT", uri, "other.example", event)
    count = len(stored_events(env.store, room_id))
    response = env.client.put(uri, json=event, headers={"Authorization": header})
    assert_error(response, 401, "M_UNAUTHORIZED")
    assert len(stored_events(env.store, room_id)) == count


def test_security_captured_make_knock_replayed_on_other_paths_is_401(env):
    room_id = create_room(env.admin, "12", "knock")
    other_room = create_room(env.admin, "12", "knock")
    captured_uri = _make_knock_uri(room_id, env.user)
    captured = {"Authorization": env.remote.auth_header("GET", captured_uri, SERVER_NAME)}
    assert env.client.get(captured_uri, headers=captured).status_code == 200
    replays = [
        _make_knock_uri(other_room, env.user),
        _make_knock_uri(room_id, f"@other:{env.remote.server_name}"),
        captured_uri.replace("ver=12", "ver=11&ver=12"),
        captured_uri.replace("%21", "!"),  # the same path, encoded differently
    ]
    for uri in replays:
        assert_error(env.client.get(uri, headers=captured), 401, "M_UNAUTHORIZED")


def test_security_captured_send_knock_replayed_elsewhere_is_401(env):
    room_id = create_room(env.admin, "12", "knock")
    other_room = create_room(env.admin, "12", "knock")
    event, event_id = test_send_knock.complete(env, test_send_knock.knock_draft(env, room_id), "12")
    uri = f"/_matrix/federation/v1/send_knock/{quote(room_id, safe='')}/{quote(event_id, safe='')}"
    captured = {"Authorization": env.remote.auth_header("PUT", uri, SERVER_NAME, event)}
    other_uri = uri.replace(quote(room_id, safe=""), quote(other_room, safe=""))
    before = len(stored_events(env.store, other_room))
    assert_error(env.client.put(other_uri, json=event, headers=captured), 401, "M_UNAUTHORIZED")
    assert len(stored_events(env.store, other_room)) == before
    # The GET signature of make_knock cannot be used for send_knock either.
    get_header = env.remote.auth_header("GET", uri, SERVER_NAME)
    response = env.client.put(uri, json=event, headers={"Authorization": get_header})
    assert_error(response, 401, "M_UNAUTHORIZED")
    # And the captured request itself still works exactly once in effect (idempotent).
    assert env.client.put(uri, json=event, headers=captured).status_code == 200
    count = len(stored_events(env.store, room_id))
    assert env.client.put(uri, json=event, headers=captured).status_code == 200
    assert len(stored_events(env.store, room_id)) == count


# Received PDUs (issue 21) ----------------------------------------------------------------------


def test_security_send_knock_prev_events_of_another_room_is_403(env):
    # Finding 8: the knock became a forward extremity of its room built on another room's event.
    room_id = create_room(env.admin, "12", "knock")
    other_room = create_room(env.admin, "12", "knock")
    other_tip = env.store.get_forward_extremities(other_room)[0][0]
    event, event_id = test_send_knock.mutate(
        env, room_id, "12", lambda d: d.update(prev_events=[other_tip])
    )
    count = len(stored_events(env.store, room_id))
    extremities = env.store.get_forward_extremities(room_id)
    assert_error(test_send_knock.send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")
    assert len(stored_events(env.store, room_id)) == count
    assert env.store.get_forward_extremities(room_id) == extremities


def test_security_send_knock_auth_events_of_another_room_is_403(env):
    room_id = create_room(env.admin, "11", "knock")
    other_room = create_room(env.admin, "11", "knock")
    other_state = env.store.get_current_state_ids(other_room)

    def swap(draft):
        own = env.store.get_current_state_ids(room_id)
        by_id = {event_id: key for key, event_id in own.items()}
        draft["auth_events"] = [other_state[by_id[a]] for a in draft["auth_events"]]

    event, event_id = test_send_knock.mutate(env, room_id, "11", swap)
    count = len(stored_events(env.store, room_id))
    assert_error(test_send_knock.send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")
    assert len(stored_events(env.store, room_id)) == count


def test_security_send_knock_unsigned_keeps_only_what_the_spec_allows(env):
    # Finding 9: unsigned (covered by no signature) was stored verbatim and would be relayed.
    room_id = create_room(env.admin, "12", "knock")
    event, event_id = test_send_knock.complete(env, test_send_knock.knock_draft(env, room_id), "12")
    stripped = [
        {"type": "m.room.name", "state_key": "", "content": {"name": "x"}, "sender": "@a:b"}
    ]
    event["unsigned"] = {
        "age": 5,
        "knock_room_state": stripped,
        "m.relations": {"spoofed": True},
        "redacted_because": {"type": "m.room.redaction"},
        "transaction_id": "leak",
    }
    response = test_send_knock.send_knock(env, room_id, event_id, event)
    assert response.status_code == 200, response.text
    stored = dict(stored_events(env.store, room_id))[event_id]
    assert stored["unsigned"] == {"age": 5, "knock_room_state": stripped}
