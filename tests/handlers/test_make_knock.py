"""make_knock over HTTP: every row of the behaviour table, and the knocking server's round trip."""

import pytest

from matrix.auth_rules import check_auth_events_selection, check_auth_rules
from matrix.events import check_event_signature, compute_event_id, sign_event
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from matrix.xmatrix import decode_verify_key
from tests.conftest import FIXED_NOW_MS, SERVER_NAME
from tests.factories import add_knock, add_member, create_room
from tests.handlers.knock_env import KnockEnv, assert_error

TEMPLATE_KEYS = {
    "room_id",
    "type",
    "state_key",
    "sender",
    "content",
    "origin",
    "origin_server_ts",
    "depth",
    "prev_events",
    "auth_events",
}


VERSIONS = [pytest.param(v, id=f"v{v}") for v in ("7", "10", "11", "12")]


# Row 1: authentication ------------------------------------------------------------------------


def test_make_knock_unsigned_is_401(env):
    room_id = create_room(env.admin, "12", "knock")
    assert_error(env.make_knock(room_id, signed=False), 401, "M_UNAUTHORIZED")


# Row 2: ver ------------------------------------------------------------------------------------


def test_make_knock_without_ver_is_missing_param(env):
    room_id = create_room(env.admin, "12", "knock")
    assert_error(env.make_knock(room_id, query=""), 400, "M_MISSING_PARAM")
    assert_error(env.make_knock(room_id, query="other=1"), 400, "M_MISSING_PARAM")


# Row 3: malformed ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("room_id", "user_id"),
    [
        pytest.param("not-a-room", None, id="room-no-sigil"),
        pytest.param("!nodomain", None, id="room-no-domain-short"),
        pytest.param("!a:bad domain", None, id="room-bad-server"),
        pytest.param("!x" + "a" * 300 + ":remote.test", None, id="room-too-long"),
        pytest.param("!ok:antechamber.test", "alice", id="user-no-sigil"),
        pytest.param("!ok:antechamber.test", "@a\x00b:x.test", id="user-nul"),
    ],
)
def test_make_knock_malformed_ids_are_invalid_param(env, room_id, user_id):
    assert_error(env.make_knock(room_id, user_id), 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("localpart", ["", "al ice", "ålice"], ids=["empty", "space", "non-ascii"])
def test_make_knock_historical_user_id_is_templated(env, localpart):
    # APPX §Historical User IDs (v1.14): servers MUST accept localparts of any non-surrogate code
    # points except ':' and NUL, the empty string included (this test once pinned "@:x" as 400)
    room_id = create_room(env.admin, "12", "knock")
    user_id = f"@{localpart}:{env.remote.server_name}"
    response = env.make_knock(room_id, user_id)
    assert response.status_code == 200, response.text
    assert response.json()["event"]["state_key"] == user_id


# Row 4: unknown room ---------------------------------------------------------------------------


def test_make_knock_unknown_room_is_404(env):
    assert_error(env.make_knock("!unknown:antechamber.test"), 404, "M_NOT_FOUND")


def test_make_knock_room_with_a_slash_in_its_id_is_routed(env):
    # APPX §Room IDs: the opaque part may hold '/'; %2F must not become a router 404.
    response = env.make_knock("!a/b:antechamber.test")
    assert_error(response, 404, "M_NOT_FOUND")


def test_make_knock_room_we_left_is_404(env):
    room_id = create_room(env.admin, "10", "knock")
    env.admin.leave_user(room_id, f"@admin:{SERVER_NAME}")
    assert_error(env.make_knock(room_id), 404, "M_NOT_FOUND")


# Row 5: ACL ----------------------------------------------------------------------------------


def test_make_knock_acl_denied_origin_is_403(env):
    room_id = create_room(env.admin, "11", "knock")
    env.admin.set_server_acl(room_id, allow=["*"], deny=["127.0.0.1"], allow_ip_literals=True)
    assert_error(env.make_knock(room_id), 403, "M_FORBIDDEN")


def test_make_knock_acl_without_ip_literals_is_403(env):
    room_id = create_room(env.admin, "11", "knock")
    env.admin.set_server_acl(room_id, allow=["*"], deny=[], allow_ip_literals=False)
    assert_error(env.make_knock(room_id), 403, "M_FORBIDDEN")


def test_make_knock_acl_allowing_origin_passes(env):
    room_id = create_room(env.admin, "11", "knock")
    env.admin.set_server_acl(room_id, allow=["127.0.0.*"], deny=["evil.*"], allow_ip_literals=True)
    assert env.make_knock(room_id).status_code == 200


# Row 6: incompatible version --------------------------------------------------------------------


@pytest.mark.parametrize("version", ["7", "12"])
def test_make_knock_version_not_in_ver_is_incompatible(env, version):
    room_id = create_room(env.admin, version, "knock")
    body = assert_error(
        env.make_knock(room_id, query="ver=1&ver=2&ver=7.0&ver=120"),
        400,
        "M_INCOMPATIBLE_ROOM_VERSION",
    )
    assert body["room_version"] == version


def test_make_knock_acl_is_checked_before_version(env):
    room_id = create_room(env.admin, "12", "knock")
    env.admin.set_server_acl(room_id, allow=["elsewhere.test"], deny=[], allow_ip_literals=True)
    assert_error(env.make_knock(room_id, query="ver=1"), 403, "M_FORBIDDEN")


# Row 7: versions without knocking ---------------------------------------------------------------


def test_make_knock_v6_room_is_403(env):
    room_id = create_room(env.admin, "6", "invite")
    assert_error(env.make_knock(room_id, query="ver=6&ver=12"), 403, "M_FORBIDDEN")


# Row 8: user not on the origin -----------------------------------------------------------------


def test_make_knock_for_another_servers_user_is_403(env):
    room_id = create_room(env.admin, "12", "knock")
    assert_error(env.make_knock(room_id, "@mallory:elsewhere.test"), 403, "M_FORBIDDEN")


# Row 9: auth rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "join_rule"),
    [
        pytest.param(version, join_rule, id=f"v{version}-{join_rule}")
        for version in ("7", "10", "11", "12")
        for join_rule in ("public", "invite", "restricted")
        # restricted joins exist from v8 (rooms/v8).
        if (version, join_rule) != ("7", "restricted")
    ],
)
def test_make_knock_join_rule_without_knocking_is_403(env, version, join_rule):
    room_id = create_room(env.admin, version, join_rule)
    assert_error(env.make_knock(room_id), 403, "M_FORBIDDEN")


def test_make_knock_knock_restricted_needs_v10(env):
    # rooms/v10: knock_restricted does not exist before v10, so no such v7 room can be made.
    from matrix.errors import MatrixError

    with pytest.raises(MatrixError) as refused:
        create_room(env.admin, "7", "knock_restricted")
    assert refused.value.errcode == "M_FORBIDDEN"


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_make_knock_knock_restricted(env, version):
    room_id = create_room(env.admin, version, "knock_restricted", allow_rooms=["!other:x.test"])
    assert env.make_knock(room_id).status_code == 200


@pytest.mark.parametrize("version", VERSIONS)
def test_make_knock_joined_invited_or_banned_user_is_403(env, version):
    room_id = create_room(env.admin, version, "knock")
    add_member(env.admin, room_id, env.user, remote=env.remote)
    assert_error(env.make_knock(room_id), 403, "M_FORBIDDEN")
    invited = f"@bob:{env.remote.server_name}"
    env.admin.invite_user(room_id, invited)
    assert_error(env.make_knock(room_id, invited), 403, "M_FORBIDDEN")
    banned = f"@carol:{env.remote.server_name}"
    env.admin.ban(room_id, banned)
    assert_error(env.make_knock(room_id, banned), 403, "M_FORBIDDEN")


def test_make_knock_unfederated_room_is_403(env):
    room_id = env.admin.create_room("11", "knock", federate=False)
    assert_error(env.make_knock(room_id), 403, "M_FORBIDDEN")


# OK rows: the template -------------------------------------------------------------------------


def expected_auth_events(env: KnockEnv, room_id: str, version: str, user_id: str) -> list[str]:
    ids = env.store.get_current_state_ids(room_id)
    keys = [("m.room.power_levels", ""), ("m.room.member", user_id), ("m.room.join_rules", "")]
    if KNOWN_ROOM_VERSIONS[version].create_event_in_auth_events:
        keys.insert(0, ("m.room.create", ""))
    return [ids[key] for key in keys if key in ids]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("prior", ["none", "leave", "knock"])
def test_make_knock_template_is_exact(env, version, prior):
    room_id = create_room(env.admin, version, "knock")
    if prior == "leave":
        add_member(env.admin, room_id, env.user, remote=env.remote)
        env.admin.leave_user(room_id, env.user, signer=env.remote_signer)
    elif prior == "knock":
        add_knock(env.admin, room_id, env.user, remote=env.remote)
    extremities = env.store.get_forward_extremities(room_id)

    response = env.make_knock(room_id)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"room_version", "event"}
    assert body["room_version"] == version
    event = body["event"]
    assert set(event) == TEMPLATE_KEYS
    assert event["room_id"] == room_id
    assert event["type"] == "m.room.member"
    assert event["state_key"] == event["sender"] == env.user
    assert event["content"] == {"membership": "knock"}
    assert event["origin"] == SERVER_NAME
    assert event["origin_server_ts"] == FIXED_NOW_MS
    assert event["prev_events"] == [event_id for event_id, _ in extremities][:10]
    assert event["depth"] == max(depth for _, depth in extremities) + 1
    assert event["auth_events"] == expected_auth_events(env, room_id, version, env.user)
    if version == "12":
        assert (
            env.store.get_current_state_ids(room_id)[("m.room.create", "")]
            not in (event["auth_events"])
        )


@pytest.mark.parametrize("version", VERSIONS)
def test_make_knock_round_trip_signs_verifies_and_authorises(env, version):
    """What a knocking server does with the template (knock-digest §1.2)."""
    room_id = create_room(env.admin, version, "knock")
    template = env.make_knock(room_id).json()["event"]
    room_version = KNOWN_ROOM_VERSIONS[version]
    # SS §Joining Rooms: replace origin and origin_server_ts, add content, hash, sign.
    draft = {
        **template,
        "origin": env.remote.server_name,
        "origin_server_ts": FIXED_NOW_MS + 5,
        "content": {"membership": "knock", "reason": "let me in"},
    }
    signed = sign_event(draft, room_version, env.remote.server_name, env.remote.signing_key)
    event_id = compute_event_id(signed, room_version)
    assert event_id.startswith("$")
    verify_key = decode_verify_key(env.remote.key_id, env.remote.verify_key_base64)
    check_event_signature(
        signed, room_version, env.remote.server_name, {env.remote.key_id: verify_key}
    )
    auth_events = [env.store.get_event(event_id) for event_id in signed["auth_events"]]
    check_auth_events_selection(signed, auth_events, room_version)
    state = {(e["type"], e["state_key"]): e for e in auth_events}
    create = env.store.get_current_state_event(room_id, "m.room.create", "")
    check_auth_rules(signed, state, room_version, create_event=create)


def test_make_knock_prev_events_capped_at_ten(env):
    room_id = create_room(env.admin, "12", "knock")
    # Twelve extremities: knocks by twelve users of the remote, each built on the same parent.
    ((parent, parent_depth),) = env.store.get_forward_extremities(room_id)
    knocks = [
        env.admin.knock_user(
            room_id,
            f"@u{index}:{env.remote.server_name}",
            signer=env.remote_signer,
            prev_events=[parent],
        )
        for index in range(12)
    ]
    assert len(env.store.get_forward_extremities(room_id)) == 12
    event = env.make_knock(room_id).json()["event"]
    # All at the same depth: newest first, the ten most recent knocks.
    assert event["prev_events"] == knocks[::-1][:10]
    assert event["depth"] == parent_depth + 2


# What a worker keeps of a room between requests (app/rooms/hosted.py RoomHeads) -------------
# env.admin writes through its own connection, as the CLI and other workers do.


def test_make_knock_sees_a_new_event_written_by_another_connection(env):
    room_id = create_room(env.admin, "12", "knock")
    first = env.make_knock(room_id).json()["event"]
    assert env.make_knock(room_id).json()["event"]["prev_events"] == first["prev_events"]
    message_id = env.admin.send_message(room_id, "hello")
    second = env.make_knock(room_id).json()["event"]
    assert second["prev_events"] == [message_id]
    assert second["depth"] == first["depth"] + 1


def test_make_knock_sees_a_state_change_written_by_another_connection(env):
    room_id = create_room(env.admin, "11", "knock")
    assert env.make_knock(room_id).status_code == 200
    env.admin.set_server_acl(room_id, allow=["*"], deny=["127.0.0.1"], allow_ip_literals=True)
    assert_error(env.make_knock(room_id), 403, "M_FORBIDDEN")
    env.admin.set_join_rule(room_id, "invite")
    env.admin.set_server_acl(room_id, allow=["*"], deny=[], allow_ip_literals=True)
    assert_error(env.make_knock(room_id), 403, "M_FORBIDDEN")  # join rule invite
    env.admin.set_join_rule(room_id, "knock")
    event = env.make_knock(room_id).json()["event"]
    join_rules = env.store.get_current_state_events_with_ids(room_id, [("m.room.join_rules", "")])
    assert join_rules[("m.room.join_rules", "")][0] in event["auth_events"]


def test_make_knock_room_left_after_a_cached_answer_is_404(env):
    room_id = create_room(env.admin, "10", "knock")
    assert env.make_knock(room_id).status_code == 200
    env.admin.leave_user(room_id, f"@admin:{SERVER_NAME}")
    assert_error(env.make_knock(room_id), 404, "M_NOT_FOUND")


def test_make_knock_user_membership_is_read_per_request(env):
    # The knocker's own membership is never kept: a ban after a good answer is a 403 at once.
    room_id = create_room(env.admin, "12", "knock")
    assert env.make_knock(room_id).status_code == 200
    env.admin.ban(room_id, env.user)
    assert_error(env.make_knock(room_id), 403, "M_FORBIDDEN")
    # Another user of the same server is unaffected.
    assert env.make_knock(room_id, f"@bob:{env.remote.server_name}").status_code == 200


def test_make_knock_cached_state_is_not_changed_by_serving(env):
    room_id = create_room(env.admin, "12", "knock")
    before = env.store.get_current_state(room_id)
    answers = [env.make_knock(room_id).json()["event"] for _ in range(3)]
    assert env.store.get_current_state(room_id) == before
    assert all(
        {k: v for k, v in a.items() if k != "origin_server_ts"}
        == {k: v for k, v in answers[0].items() if k != "origin_server_ts"}
        for a in answers
    )
