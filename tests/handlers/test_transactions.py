"""PUT /send/{txnId}: inbound transactions from a real remote, one result per PDU."""

import threading
import time
from urllib.parse import quote

import pytest

from tests.conftest import KEY_FETCH_TIMEOUT_S
from tests.factories import add_member, create_room
from tests.handlers.knock_env import assert_error
from tests.handlers.remote_pdus import joined_room, message, remote_event, send_txn


@pytest.mark.parametrize("version", [pytest.param(v, id=f"v{v}") for v in ("10", "12")])
def test_send_message_from_a_joined_user_is_stored(env, version):
    room_id = joined_room(env, version)
    event, event_id = message(env, room_id, version=version)
    response = send_txn(env, [event])
    assert response.status_code == 200, response.text
    assert response.json() == {"pdus": {event_id: {}}}
    assert env.store.get_event(event_id) == event
    assert env.store.get_forward_extremities(room_id)[0][0] == event_id


def test_send_events_of_one_transaction_build_on_each_other(env):
    room_id = joined_room(env)
    first, first_id = message(env, room_id, "one")
    second, second_id = message(env, room_id, "two", prev_events=[first_id])
    response = send_txn(env, [first, second])
    assert response.json() == {"pdus": {first_id: {}, second_id: {}}}
    assert [e for e, _ in env.store.get_forward_extremities(room_id)] == [second_id]


def test_send_leave_by_a_joined_user_leaves(env):
    """Synapse sends its user's /leave through /send (lifecycle-digest §4)."""
    room_id = joined_room(env)
    event, event_id = remote_event(
        env, room_id, "m.room.member", {"membership": "leave"}, state_key=env.user
    )
    assert send_txn(env, [event]).json() == {"pdus": {event_id: {}}}
    member = env.store.get_current_state_event(room_id, "m.room.member", env.user)
    assert member["content"]["membership"] == "leave"


def test_send_message_from_a_non_member_is_refused_in_its_entry(env):
    room_id = create_room(env.admin, "12", "knock")
    add_member(env.admin, room_id, f"@bob:{env.remote.server_name}", remote=env.remote)
    event, event_id = message(env, room_id)  # @alice is not joined
    extremities = env.store.get_forward_extremities(room_id)
    response = send_txn(env, [event])
    assert response.status_code == 200
    assert response.json()["pdus"][event_id]["error"].startswith("M_FORBIDDEN")
    # SS §Rejection: kept as rejected, part of nothing
    assert env.store.is_event_rejected(event_id) is True
    assert env.store.get_forward_extremities(room_id) == extremities


def test_send_state_change_without_power_is_refused(env):
    room_id = joined_room(env)
    event, event_id = remote_event(env, room_id, "m.room.name", {"name": "mine"}, state_key="")
    assert "error" in send_txn(env, [event]).json()["pdus"][event_id]
    assert env.store.get_current_state_event(room_id, "m.room.name", "")["content"] == {
        "name": "Knock knock"
    }


def test_send_state_change_with_power_is_applied(env):
    room_id = joined_room(env)
    env.admin.send_state_event(
        room_id,
        "m.room.power_levels",
        "",
        {
            **env.store.get_current_state_event(room_id, "m.room.power_levels", "")["content"],
            "users": {env.user: 100},
        },
    )
    event, event_id = remote_event(env, room_id, "m.room.name", {"name": "renamed"}, state_key="")
    assert send_txn(env, [event]).json() == {"pdus": {event_id: {}}}
    assert env.store.get_current_state_event(room_id, "m.room.name", "")["content"] == {
        "name": "renamed"
    }


def test_send_unknown_prev_events_are_refused_in_the_entry(env):
    room_id = joined_room(env)
    event, event_id = message(env, room_id, prev_events=["$" + "A" * 43])
    result = send_txn(env, [event]).json()["pdus"][event_id]
    assert result["error"].startswith("M_FORBIDDEN")
    assert env.store.get_event(event_id) is None


def test_send_forged_signature_is_refused_in_the_entry(env):
    from signedjson.key import generate_signing_key

    room_id = joined_room(env)
    event, event_id = message(env, room_id, signing_key=generate_signing_key("remote1"))
    assert send_txn(env, [event]).json()["pdus"][event_id]["error"].startswith("M_INVALID_PARAM")
    assert env.store.get_event(event_id) is None


def test_send_acl_denied_origin_is_refused_per_pdu(env):
    room_id = joined_room(env)
    env.admin.set_server_acl(room_id, ["*"], ["127.0.0.1"])
    event, event_id = message(env, room_id)
    assert send_txn(env, [event]).json()["pdus"][event_id]["error"].startswith("M_FORBIDDEN")


def test_send_pdus_of_rooms_not_resident_here_get_no_entry(env):
    room_id = joined_room(env)
    event, _ = message(env, room_id)
    elsewhere = {**event, "room_id": "!elsewhere:other.example"}
    response = send_txn(env, [elsewhere, {"room_id": 5}, {}])
    assert response.status_code == 200
    assert response.json() == {"pdus": {}}


def test_send_malformed_pdu_gets_no_entry(env):
    room_id = joined_room(env)
    event, _ = message(env, room_id)
    del event["depth"]
    assert send_txn(env, [event]).json() == {"pdus": {}}


def test_send_edus_are_accepted_and_ignored(env):
    edus = [{"edu_type": "m.typing", "content": {"room_id": "!r:x", "typing": True}}]
    response = send_txn(env, [], edus)
    assert response.status_code == 200
    assert response.json() == {"pdus": {}}


@pytest.mark.parametrize(
    "edu",
    [
        pytest.param({"content": {}}, id="no-edu-type"),
        pytest.param({"edu_type": "m.typing"}, id="no-content"),
        pytest.param({"edu_type": "m.typing", "content": []}, id="content-not-object"),
    ],
)
def test_send_malformed_edu_is_bad_json_and_applies_nothing(env, edu):
    """edu.yaml requires edu_type and content (Synapse fails such a transaction, with a 500)."""
    room_id = joined_room(env)
    event, event_id = message(env, room_id)
    assert_error(send_txn(env, [event], [edu]), 400, "M_BAD_JSON")
    assert env.store.get_event(event_id) is None


def test_send_replayed_transaction_is_answered_as_the_first_time(env):
    """transactions.yaml: the txnId de-duplicates; a retry changes nothing."""
    room_id = joined_room(env)
    event, event_id = message(env, room_id)
    first = send_txn(env, [event], txn_id="same")
    env.admin.ban(room_id, env.user)
    later, later_id = message(env, room_id, "after the ban")
    replay = send_txn(env, [later], txn_id="same")
    assert replay.json() == first.json() == {"pdus": {event_id: {}}}
    assert env.store.get_event(later_id) is None


def test_send_is_not_relayed_to_the_other_servers(env, test_ca, clock):
    """Each server sends its own events to every other (SS §Transactions)."""
    from tests.remote import RemoteHomeserver

    with RemoteHomeserver(test_ca, clock, key_version="other1") as other:
        room_id = joined_room(env)
        add_member(env.admin, room_id, f"@bob:{other.server_name}", remote=other)
        event, event_id = message(env, room_id)
        assert send_txn(env, [event]).json() == {"pdus": {event_id: {}}}
        time.sleep(0.3)
        assert other.transactions == []


@pytest.mark.parametrize(
    ("pdus", "edus"), [pytest.param(51, 0, id="51-pdus"), pytest.param(0, 101, id="101-edus")]
)
def test_send_too_many_pdus_or_edus_is_bad_json(env, pdus, edus):
    """SS §Transactions: at most 50 PDUs and 100 EDUs (Synapse: 400)."""
    room_id = joined_room(env)
    event, _ = message(env, room_id)
    edu = {"edu_type": "m.typing", "content": {}}
    assert_error(send_txn(env, [event] * pdus, [edu] * edus), 400, "M_BAD_JSON")


def test_send_unsigned_request_is_401(env):
    response = env.client.put(
        "/_matrix/federation/v1/send/t1",
        json={"origin": env.remote.server_name, "origin_server_ts": 1, "pdus": []},
    )
    assert_error(response, 401, "M_UNAUTHORIZED")


def test_send_gap_is_filled_from_the_origin_with_get_missing_events(env):
    """SS §Backfilling and retrieving missing events: an event built on one we have not seen
    makes us ask its origin for the gap; both are stored, oldest first."""
    room_id = joined_room(env)
    extremities = [e for e, _ in env.store.get_forward_extremities(room_id)]
    first, first_id = message(env, room_id, "missed")
    second, second_id = message(env, room_id, "pushed", prev_events=[first_id])
    env.remote.missing_events = [first]
    response = send_txn(env, [second])
    assert response.json() == {"pdus": {second_id: {}}}
    (asked,) = env.remote.missing_event_requests
    assert asked == {
        "earliest_events": extremities,
        "latest_events": [second_id],
        "limit": 10,
        "min_depth": 0,
    }
    assert env.store.get_event(first_id) == first
    assert [e for e, _ in env.store.get_forward_extremities(room_id)] == [second_id]


def test_send_gap_the_origin_cannot_fill_is_refused_in_the_entry(env):
    room_id = joined_room(env)
    _first, first_id = message(env, room_id, "missed")
    second, second_id = message(env, room_id, "pushed", prev_events=[first_id])
    env.remote.missing_events = None  # 404
    result = send_txn(env, [second]).json()["pdus"][second_id]
    assert result["error"].startswith("M_FORBIDDEN")
    assert env.store.get_event(second_id) is None


@pytest.mark.parametrize("mode", ["hang", "garbage", "bloated", "not_a_list"])
def test_send_gap_a_lying_or_stalling_origin_costs_one_bounded_refusal(env, mode):
    # Issue 13: an origin whose /get_missing_events hangs, answers garbage or 10 MB costs the
    # PDU a clear per-PDU error within missing_events_timeout_s (2 s in tests), and the rest
    # of the server keeps answering meanwhile.
    room_id = joined_room(env)
    _first, first_id = message(env, room_id, "missed")
    second, second_id = message(env, room_id, "pushed", prev_events=[first_id])
    env.remote.missing_events_mode = mode
    answered: dict = {}

    def other_request() -> None:
        time.sleep(0.3)  # while the transaction waits for the origin
        started = time.monotonic()
        answered["status"] = env.client.get("/_matrix/federation/v1/version").status_code
        answered["seconds"] = time.monotonic() - started

    other = threading.Thread(target=other_request)
    started = time.monotonic()
    other.start()
    result = send_txn(env, [second]).json()["pdus"][second_id]
    elapsed = time.monotonic() - started
    other.join()
    assert result["error"].startswith("M_FORBIDDEN")
    assert env.store.get_event(second_id) is None
    assert elapsed < KEY_FETCH_TIMEOUT_S + 2.0
    assert answered["status"] == 200
    assert answered["seconds"] < 1.0


def test_send_fetched_event_that_fails_auth_is_stored_rejected_and_changes_nothing(env):
    # SS §Rejection: the rejected event is kept (not fetched again, not served), changes no
    # state, and an event citing it as a prev_event is judged on the state before it.
    room_id = joined_room(env)
    forged, forged_id = remote_event(
        env, room_id, "m.room.name", {"name": "not allowed"}, state_key=""
    )
    second, second_id = message(env, room_id, "pushed", prev_events=[forged_id])
    env.remote.missing_events = [forged]
    assert send_txn(env, [second]).json() == {"pdus": {second_id: {}}}
    assert env.store.is_event_rejected(forged_id) is True
    name = env.store.get_current_state_event(room_id, "m.room.name", "")
    assert name["content"] == {"name": "Knock knock"}
    served = env.get(f"/_matrix/federation/v1/event/{quote(forged_id, safe='')}")
    assert (served.status_code, served.json()["errcode"]) == (404, "M_NOT_FOUND")
    # Sent again, it is refused in its entry without being judged again.
    again = send_txn(env, [forged]).json()["pdus"][forged_id]
    assert again["error"].startswith("M_FORBIDDEN")


def test_send_event_that_fails_auth_is_stored_rejected(env):
    room_id = joined_room(env)
    event, event_id = remote_event(env, room_id, "m.room.name", {"name": "no power"}, state_key="")
    assert send_txn(env, [event]).json()["pdus"][event_id]["error"].startswith("M_FORBIDDEN")
    assert env.store.is_event_rejected(event_id) is True
    assert event_id not in {e for e, _depth in env.store.get_forward_extremities(room_id)}


def test_send_event_that_fails_only_the_current_state_is_soft_failed(env):
    """SS §Soft failure: a message built before its sender was banned passes its auth events
    and the state before it, but not the current state: kept (and served on /event), but not
    part of the room (not an extremity, not in the timeline)."""
    from app.rooms.admin import get_timeline

    room_id = joined_room(env)
    # Another user of the remote stays joined, so the remote may read the room (/event).
    add_member(env.admin, room_id, f"@bob:{env.remote.server_name}", remote=env.remote)
    event, event_id = message(env, room_id, "sent just before the ban")
    env.admin.ban(room_id, env.user)
    extremities = env.store.get_forward_extremities(room_id)
    assert send_txn(env, [event]).json() == {"pdus": {event_id: {}}}
    assert env.store.get_event(event_id) == event
    assert env.store.is_event_soft_failed(event_id) is True
    assert env.store.get_forward_extremities(room_id) == extremities
    assert event_id not in [entry.event_id for entry in get_timeline(env.store, room_id, 50)]
    served = env.get(f"/_matrix/federation/v1/event/{quote(event_id, safe='')}")
    assert served.json()["pdus"] == [event]


def test_send_soft_failed_state_event_does_not_change_the_state(env):
    room_id = joined_room(env)
    env.admin.set_power_level(room_id, env.user, 100)
    event, event_id = remote_event(env, room_id, "m.room.name", {"name": "mine"}, state_key="")
    env.admin.set_power_level(room_id, env.user, 0)
    assert send_txn(env, [event]).json() == {"pdus": {event_id: {}}}
    assert env.store.is_event_soft_failed(event_id) is True
    name = env.store.get_current_state_event(room_id, "m.room.name", "")
    assert name["content"] == {"name": "Knock knock"}
