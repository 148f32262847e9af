"""send_knock over HTTP: the knocks.yaml checks, auth against three states, and persistence."""

import copy
from urllib.parse import quote

import pytest

from matrix.events import compute_event_id, sign_event
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import FIXED_NOW_MS, SERVER_NAME
from tests.factories import add_member, create_room, make_signing_key, stored_events
from tests.handlers.knock_env import KnockEnv, assert_error

VERSIONS = [pytest.param(v, id=f"v{v}") for v in ("7", "10", "11", "12")]


def template(env: KnockEnv, room_id: str, user_id: str | None = None) -> dict:
    response = env.make_knock(room_id, user_id)
    assert response.status_code == 200, response.text
    return response.json()["event"]


def complete(env: KnockEnv, draft: dict, version: str, *, signing_key=None) -> tuple[dict, str]:
    """What the knocking server does: its origin and clock, a reason, hash, sign, id."""
    room_version = KNOWN_ROOM_VERSIONS[version]
    draft = {**draft, "origin": env.remote.server_name, "origin_server_ts": FIXED_NOW_MS + 10}
    signed = sign_event(
        draft, room_version, env.remote.server_name, signing_key or env.remote.signing_key
    )
    return signed, compute_event_id(signed, room_version)


def knock_draft(env: KnockEnv, room_id: str, user_id: str | None = None) -> dict:
    draft = template(env, room_id, user_id)
    draft["content"] = {"membership": "knock", "reason": "let me in"}
    return draft


def send_knock(env: KnockEnv, room_id: str, event_id: str, body, *, raw: bytes | None = None):
    uri = f"/_matrix/federation/v1/send_knock/{quote(room_id, safe='')}/{quote(event_id, safe='')}"
    content = body if raw is None else None
    headers = {"Authorization": env.remote.auth_header("PUT", uri, SERVER_NAME, content)}
    if raw is not None:
        # Sign as if the body were {} (the signature check never gets that far for raw bodies).
        headers = {"Authorization": env.remote.auth_header("PUT", uri, SERVER_NAME, {})}
        return env.client.put(uri, content=raw, headers=headers)
    return env.client.put(uri, json=body, headers=headers)


def knock(env: KnockEnv, room_id: str, version: str, user_id: str | None = None):
    event, event_id = complete(env, knock_draft(env, room_id, user_id), version)
    return event, event_id, send_knock(env, room_id, event_id, event)


# Accepted knocks -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_send_knock_accepts_and_stores_the_knock(env, version):
    room_id = create_room(env.admin, version, "knock", topic="Knock first")
    before = len(stored_events(env.store, room_id))
    event, event_id, response = knock(env, room_id, version)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"knock_room_state"}
    state_ids = env.store.get_current_state_ids(room_id)
    expected_keys = [
        ("m.room.create", ""),
        ("m.room.join_rules", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
    ]
    # knocks.yaml (v1.16): full PDUs as stored, always with the create event; no members.
    assert body["knock_room_state"] == [env.store.get_event(state_ids[k]) for k in expected_keys]
    assert all(e["type"] != "m.room.member" for e in body["knock_room_state"])
    assert len(stored_events(env.store, room_id)) == before + 1
    assert state_ids[("m.room.member", env.user)] == event_id
    assert env.store.get_event(event_id) == event
    assert env.store.get_forward_extremities(room_id) == [(event_id, event["depth"])]


def test_send_knock_resend_is_idempotent(env):
    room_id = create_room(env.admin, "12", "knock")
    event, event_id, first = knock(env, room_id, "12")
    count = len(stored_events(env.store, room_id))
    again = send_knock(env, room_id, event_id, event)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(stored_events(env.store, room_id)) == count


def test_send_knock_later_knock_replaces_the_earlier(env):
    room_id = create_room(env.admin, "11", "knock")
    _, first_id, _ = knock(env, room_id, "11")
    _, second_id, response = knock(env, room_id, "11")
    assert response.status_code == 200
    assert second_id != first_id
    assert env.store.get_current_state_ids(room_id)[("m.room.member", env.user)] == second_id


def test_send_knock_from_an_older_template_is_fine(env):
    room_id = create_room(env.admin, "12", "knock")
    old = knock_draft(env, room_id)
    env.admin.set_join_rule(room_id, "knock")  # the room moves on
    event, event_id = complete(env, old, "12")
    assert send_knock(env, room_id, event_id, event).status_code == 200


def test_send_knock_knock_restricted_v10(env):
    room_id = create_room(env.admin, "10", "knock_restricted", allow_rooms=["!other:x.test"])
    assert knock(env, room_id, "10")[2].status_code == 200


def test_send_knock_hash_mismatch_stores_the_redacted_event(env):
    # SS §Validating hashes and signatures: a content-hash mismatch means "redact and go on".
    room_id = create_room(env.admin, "11", "knock")
    event, event_id = complete(env, knock_draft(env, room_id), "11")
    tampered = copy.deepcopy(event)
    tampered["content"]["reason"] = "changed after signing"
    response = send_knock(env, room_id, event_id, tampered)
    assert response.status_code == 200, response.text
    assert env.store.get_event(event_id)["content"] == {"membership": "knock"}


# Rejections that store nothing -------------------------------------------------------------


def assert_nothing_stored(env: KnockEnv, room_id: str, count: int) -> None:
    assert len(stored_events(env.store, room_id)) == count


def test_send_knock_body_not_json(env):
    room_id = create_room(env.admin, "12", "knock")
    assert_error(send_knock(env, room_id, "$x", None, raw=b"{nope"), 400, "M_NOT_JSON")
    assert_error(send_knock(env, room_id, "$x", None, raw=b"[]"), 400, "M_BAD_JSON")


def test_send_knock_unknown_room(env):
    event, event_id = complete(env, knock_draft(env, create_room(env.admin, "12", "knock")), "12")
    assert_error(send_knock(env, "!unknown:antechamber.test", event_id, event), 404, "M_NOT_FOUND")


def test_send_knock_acl_denied(env):
    room_id = create_room(env.admin, "12", "knock")
    event, event_id = complete(env, knock_draft(env, room_id), "12")
    env.admin.set_server_acl(room_id, allow=["*"], deny=["127.0.0.1"], allow_ip_literals=True)
    count = len(stored_events(env.store, room_id))
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")
    assert_nothing_stored(env, room_id, count)


def test_send_knock_version_without_knocking(env):
    v12_room = create_room(env.admin, "12", "knock")
    event, event_id = complete(env, knock_draft(env, v12_room), "12")
    v6_room = create_room(env.admin, "6", "invite")
    assert_error(send_knock(env, v6_room, event_id, event), 403, "M_FORBIDDEN")


def mutate(env, room_id, version, change):
    """A knock with one property changed, then correctly re-signed by the remote."""
    draft = knock_draft(env, room_id)
    change(draft)
    return complete(env, draft, version)


@pytest.mark.parametrize(
    ("change", "status", "errcode"),
    [
        pytest.param(
            lambda d: d.update(room_id="!other:antechamber.test"),
            400,
            "M_INVALID_PARAM",
            id="room-id-mismatch",
        ),
        pytest.param(lambda d: d.update(type="m.room.message"), 400, "M_INVALID_PARAM", id="type"),
        pytest.param(lambda d: d.pop("state_key"), 400, "M_INVALID_PARAM", id="no-state-key"),
        pytest.param(
            lambda d: d["content"].update(membership="join"), 400, "M_INVALID_PARAM", id="join"
        ),
        pytest.param(
            lambda d: d.update(sender="@alice:elsewhere.test", state_key="@alice:elsewhere.test"),
            400,
            "M_INVALID_PARAM",
            id="sender-not-on-origin",
        ),
        pytest.param(
            lambda d: d.update(state_key="@bob:127.0.0.1"),
            400,
            "M_INVALID_PARAM",
            id="state-key-not-sender",
        ),
        pytest.param(lambda d: d.update(depth=1.5), 400, "M_BAD_JSON", id="float"),
        pytest.param(lambda d: d.update(depth=2**53), 400, "M_BAD_JSON", id="depth-too-big"),
        pytest.param(lambda d: d.update(event_id="$x"), 400, "M_BAD_JSON", id="event-id-key"),
        pytest.param(lambda d: d.update(prev_events="x"), 400, "M_BAD_JSON", id="prev-not-list"),
        pytest.param(
            lambda d: d["content"].update(reason="x" * 70000), 413, "M_TOO_LARGE", id="too-large"
        ),
    ],
)
def test_send_knock_invalid_event(env, change, status, errcode):
    room_id = create_room(env.admin, "12", "knock")
    event, event_id = mutate(env, room_id, "12", change)
    count = len(stored_events(env.store, room_id))
    assert_error(send_knock(env, room_id, event_id, event), status, errcode)
    assert_nothing_stored(env, room_id, count)


def test_send_knock_path_event_id_must_match(env):
    room_id = create_room(env.admin, "12", "knock")
    event, _ = complete(env, knock_draft(env, room_id), "12")
    other = "$" + "A" * 43
    assert_error(send_knock(env, room_id, other, event), 400, "M_INVALID_PARAM")


def test_send_knock_signature_by_another_key_is_invalid(env):
    room_id = create_room(env.admin, "12", "knock")
    forged_key = make_signing_key(version=env.remote.signing_key.version)
    event, event_id = complete(env, knock_draft(env, room_id), "12", signing_key=forged_key)
    count = len(stored_events(env.store, room_id))
    assert_error(send_knock(env, room_id, event_id, event), 400, "M_INVALID_PARAM")
    assert_nothing_stored(env, room_id, count)


def test_send_knock_unsigned_event_is_invalid(env):
    room_id = create_room(env.admin, "12", "knock")
    event, event_id = complete(env, knock_draft(env, room_id), "12")
    event["signatures"] = {}
    assert_error(send_knock(env, room_id, event_id, event), 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("version", VERSIONS)
def test_send_knock_extra_auth_event_is_forbidden(env, version):
    room_id = create_room(env.admin, version, "knock")
    history = env.store.get_current_state_ids(room_id)[("m.room.history_visibility", "")]
    event, event_id = mutate(env, room_id, version, lambda d: d["auth_events"].append(history))
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")


def test_send_knock_v12_create_in_auth_events_is_forbidden(env):
    room_id = create_room(env.admin, "12", "knock")
    create = env.store.get_current_state_ids(room_id)[("m.room.create", "")]
    event, event_id = mutate(env, room_id, "12", lambda d: d["auth_events"].append(create))
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")


def test_send_knock_v11_missing_create_is_forbidden(env):
    room_id = create_room(env.admin, "11", "knock")
    create = env.store.get_current_state_ids(room_id)[("m.room.create", "")]
    event, event_id = mutate(env, room_id, "11", lambda d: d["auth_events"].remove(create))
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")


def test_send_knock_unknown_auth_event_is_forbidden(env):
    room_id = create_room(env.admin, "12", "knock")
    event, event_id = mutate(env, room_id, "12", lambda d: d["auth_events"].append("$" + "B" * 43))
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")


def test_send_knock_unknown_prev_event_is_forbidden(env):
    room_id = create_room(env.admin, "12", "knock")
    event, event_id = mutate(env, room_id, "12", lambda d: d.update(prev_events=["$" + "C" * 43]))
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")


def test_send_knock_banned_after_template_is_forbidden(env):
    room_id = create_room(env.admin, "12", "knock")
    draft = knock_draft(env, room_id)
    env.admin.ban(room_id, env.user)
    event, event_id = complete(env, draft, "12")
    count = len(stored_events(env.store, room_id))
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")
    assert_nothing_stored(env, room_id, count)


def test_send_knock_join_rule_changed_after_template_is_forbidden(env):
    # Passes against its auth_events and the state before it, fails the current state.
    room_id = create_room(env.admin, "10", "knock")
    draft = knock_draft(env, room_id)
    env.admin.set_join_rule(room_id, "invite")
    event, event_id = complete(env, draft, "10")
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")


def test_send_knock_joined_user_is_forbidden(env):
    room_id = create_room(env.admin, "12", "knock")
    draft = knock_draft(env, room_id)
    add_member(env.admin, room_id, env.user, remote=env.remote)
    event, event_id = complete(env, draft, "12")
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")


def test_send_knock_unsigned_request_is_401(env):
    room_id = create_room(env.admin, "12", "knock")
    event, event_id = complete(env, knock_draft(env, room_id), "12")
    uri = f"/_matrix/federation/v1/send_knock/{quote(room_id, safe='')}/{quote(event_id, safe='')}"
    assert_error(env.client.put(uri, json=event), 401, "M_UNAUTHORIZED")


def test_send_knock_is_sent_to_the_other_servers_in_the_room(env, test_ca, clock):
    """SS §Joining Rooms / §Knocking: the resident sends the knock to the other residents."""
    import time

    from signedjson.key import get_verify_key

    from app.signing_key import load_signing_key
    from matrix.xmatrix import (
        build_request_json,
        check_request_signature,
        parse_authorization_headers,
    )
    from tests.remote import RemoteHomeserver

    with RemoteHomeserver(test_ca, clock, key_version="other1") as other:
        room_id = create_room(env.admin, "12", "knock")
        add_member(env.admin, room_id, f"@bob:{other.server_name}", remote=other)
        _, event_id, response = knock(env, room_id, "12")
        assert response.status_code == 200
        deadline = time.monotonic() + 10
        while not other.transactions and time.monotonic() < deadline:
            time.sleep(0.05)
        ((target, authorization, body),) = other.transactions
    assert target.startswith("/_matrix/federation/v1/send/")
    assert body["origin"] == SERVER_NAME
    assert body["pdus"] == [env.store.get_event(event_id)]
    auth = parse_authorization_headers([authorization])
    assert (auth.origin, auth.destination) == (SERVER_NAME, other.server_name)
    key = load_signing_key(env.config.resolved_signing_key_path)
    request = build_request_json("PUT", target, SERVER_NAME, other.server_name, body)
    check_request_signature(request, auth, {f"ed25519:{key.version}": get_verify_key(key)})
    # The knocking server sent the event itself: it gets no copy.
    assert env.remote.transactions == []


def test_send_knock_ban_during_key_fetch_wins(env, monkeypatch):
    """The knock is judged on the state after every wait: a ban that lands while keys are
    being fetched (the slowest step, and one a knocker can stretch) is seen, not overwritten."""
    import app.rooms.ingest

    room_id = create_room(env.admin, "12", "knock")
    event, event_id = complete(env, knock_draft(env, room_id), "12")
    real_check = app.rooms.ingest._get_authoriser_check

    async def ban_while_fetching(resident, knock_event, room_version):
        env.admin.ban(room_id, env.user)
        return await real_check(resident, knock_event, room_version)

    monkeypatch.setattr(app.rooms.ingest, "_get_authoriser_check", ban_while_fetching)
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")
    membership = env.store.get_current_state_event(room_id, "m.room.member", env.user)
    assert membership["content"]["membership"] == "ban"


def test_send_knock_rejected_knock_resent_is_forbidden(env):
    room_id = create_room(env.admin, "12", "knock")
    event, event_id = complete(env, knock_draft(env, room_id), "12")
    env.store.persist_event(event, event_id, "12", rejected=True)
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")
    assert ("m.room.member", env.user) not in env.store.get_current_state_ids(room_id)


def test_send_knock_rejected_auth_event_is_forbidden(env):
    room_id = create_room(env.admin, "12", "knock")
    draft = knock_draft(env, room_id)
    # A rejected event standing where the knock's power-levels auth event should be.
    power_levels = env.store.get_current_state_event(room_id, "m.room.power_levels", "")
    forged = {**power_levels, "content": {**power_levels["content"], "ban": 1}, "depth": 99}
    forged_id = "$" + "F" * 43
    env.store.persist_event(forged, forged_id, "12", rejected=True)
    draft["auth_events"] = [
        forged_id
        if event_id == env.store.get_current_state_ids(room_id)[("m.room.power_levels", "")]
        else event_id
        for event_id in draft["auth_events"]
    ]
    event, event_id = complete(env, draft, "12")
    assert_error(send_knock(env, room_id, event_id, event), 403, "M_FORBIDDEN")
