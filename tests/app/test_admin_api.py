"""The admin API (openapi/admin.yaml): every operation, every refusal, its headers and token."""

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from app.admin_api import admin_contract, create_admin_app
from app.admin_token import load_or_generate_admin_token, read_admin_token, rotate_admin_token
from app.config import Config
from app.main import create_app
from app.rooms.admin import RoomAdmin
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from tests.conftest import SERVER_NAME
from tests.factories import add_knock, add_member, create_room, make_room_admin

API = "/_antechamber/admin/v1"
METHODS = ("get", "put", "post", "delete", "patch")


@dataclass
class AdminEnv:
    client: TestClient
    admin: RoomAdmin
    store: Store
    remote: object
    config: Config
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str):
        return self.client.get(API + path, headers=self.headers)

    def post(self, path: str, body: object):
        return self.client.post(API + path, json=body, headers=self.headers)

    def knock(self, room_id: str, localpart: str = "alice") -> str:
        user_id = f"@{localpart}:{self.remote.server_name}"
        add_knock(self.admin, room_id, user_id, remote=self.remote)
        return user_id

    def membership(self, room_id: str, user_id: str) -> str | None:
        event = self.store.get_current_state_event(room_id, "m.room.member", user_id)
        return None if event is None else event["content"]["membership"]


@pytest.fixture
def admin_env(federation_config: Config, remote, clock) -> Iterator[AdminEnv]:
    key = load_or_generate_signing_key(federation_config.resolved_signing_key_path)
    store = Store.open(federation_config.database)
    admin = make_room_admin(store, SERVER_NAME, key, clock)
    app = create_admin_app(federation_config, clock=clock, invite_timeout_s=2)
    with TestClient(app, raise_server_exceptions=False) as client:
        token = read_admin_token(federation_config.admin_token_path)
        assert token is not None
        yield AdminEnv(client, admin, store, remote, federation_config, token)
    store.close()


def r(room_id: str) -> str:
    return "/rooms/" + quote(room_id, safe="")


def assert_error(response, status: int, errcode: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["errcode"] == errcode


def _operations() -> list[tuple[str, str]]:
    return [
        (method, path)
        for path, item in admin_contract()["paths"].items()
        for method in METHODS
        if method in item
    ]


OPERATIONS = [pytest.param(m, p, id=f"{m}-{p.rsplit('/v1', 1)[-1] or p}") for m, p in _operations()]


def _concrete(path: str) -> str:
    return path.replace("{roomId}", "%21r%3Ax.test").replace("{userId}", "%40u%3Ax.test")


# Token ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_admin_every_operation_without_token_is_missing_token(admin_env, method, path):
    response = admin_env.client.request(method, _concrete(path), json={})
    assert_error(response, 401, "M_MISSING_TOKEN")


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_admin_every_operation_with_wrong_token_is_unknown_token(admin_env, method, path):
    headers = {"Authorization": "Bearer " + "x" * len(admin_env.token)}
    response = admin_env.client.request(method, _concrete(path), json={}, headers=headers)
    assert_error(response, 401, "M_UNKNOWN_TOKEN")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Basic dXNlcjpwYXNz", id="basic"),
        pytest.param("Bearer", id="bearer-no-token"),
        pytest.param("Bearer ", id="bearer-empty"),
        pytest.param("X-Matrix origin=a,key=b,sig=c", id="x-matrix"),
    ],
)
def test_admin_token_not_a_bearer_token_is_missing_token(admin_env, header):
    response = admin_env.client.get(API + "/rooms", headers={"Authorization": header})
    assert_error(response, 401, "M_MISSING_TOKEN")


def test_admin_token_file_is_generated_owner_only(tmp_path):
    path = tmp_path / "data" / "admin.token"
    token = load_or_generate_admin_token(path)
    assert len(token) == 43
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_or_generate_admin_token(path) == token


def test_admin_token_rotated_refuses_the_old_one_at_once(admin_env):
    old = admin_env.token
    new = rotate_admin_token(admin_env.config.admin_token_path)
    assert new != old
    assert os.stat(admin_env.config.admin_token_path).st_mode & 0o777 == 0o600
    assert_error(admin_env.get("/rooms"), 401, "M_UNKNOWN_TOKEN")
    admin_env.token = new
    assert admin_env.get("/rooms").status_code == 200


def test_admin_token_never_in_the_log(admin_env, caplog):
    with caplog.at_level(logging.DEBUG):
        assert admin_env.get("/rooms").status_code == 200
        admin_env.client.get(API + "/rooms", headers={"Authorization": "Bearer wrong-token-xyz"})
    assert "GET /_antechamber/admin/v1/rooms 200" in caplog.text
    assert admin_env.token not in caplog.text
    assert "wrong-token-xyz" not in caplog.text


# Headers and routing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "authorised"),
    [
        pytest.param(API + "/rooms", True, id="api"),
        pytest.param(API + "/rooms", False, id="api-401"),
        pytest.param("/_antechamber/admin/", False, id="page"),
        pytest.param("/_antechamber/admin/admin.js", False, id="script"),
        pytest.param("/_antechamber/metrics", True, id="metrics"),
        pytest.param("/nope", False, id="404"),
    ],
)
def test_admin_every_response_carries_the_security_headers(admin_env, path, authorised):
    response = admin_env.client.get(path, headers=admin_env.headers if authorised else {})
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_admin_page_is_served_from_the_package(admin_env):
    page = admin_env.client.get("/_antechamber/admin/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="admin.js"' in page.text
    assert "<script>" not in page.text, "no inline script (the CSP would block it)"
    assert "https://" not in page.text, "no CDN"
    assert "http://" not in page.text, "no CDN"
    script = admin_env.client.get("/_antechamber/admin/admin.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert forbidden not in script.text
    assert admin_env.client.get("/_antechamber/admin/admin.css").status_code == 200
    redirect = admin_env.client.get("/_antechamber/admin", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/_antechamber/admin/")
    assert_error(admin_env.client.get("/_antechamber/admin/secret.txt"), 404, "M_UNRECOGNIZED")
    assert_error(admin_env.client.post("/_antechamber/admin/index.html"), 405, "M_UNRECOGNIZED")


def test_admin_listener_serves_no_federation_and_federation_serves_no_admin(admin_env):
    assert_error(admin_env.client.get("/_matrix/federation/v1/version"), 404, "M_UNRECOGNIZED")
    with TestClient(create_app(admin_env.config)) as federation:
        response = federation.get(API + "/rooms", headers=admin_env.headers)
        assert_error(response, 404, "M_UNRECOGNIZED")
        assert_error(federation.get("/_antechamber/admin/"), 404, "M_UNRECOGNIZED")
        assert_error(federation.get("/_antechamber/metrics"), 404, "M_UNRECOGNIZED")


def test_admin_unknown_path_and_wrong_method_are_unrecognized(admin_env):
    assert_error(admin_env.get("/nope"), 404, "M_UNRECOGNIZED")
    response = admin_env.client.delete(API + "/rooms", headers=admin_env.headers)
    assert_error(response, 405, "M_UNRECOGNIZED")


# Rooms ------------------------------------------------------------------------------------------


def test_admin_rooms_list_counts_pending_knocks(admin_env):
    assert admin_env.get("/rooms").json() == {"rooms": []}
    busy = create_room(admin_env.admin, "12", "knock", name="Busy")
    quiet = create_room(admin_env.admin, "10", "knock", name=None)
    admin_env.knock(busy, "alice")
    admin_env.knock(busy, "bob")
    response = admin_env.get("/rooms")
    assert response.status_code == 200
    rooms = {room["room_id"]: room for room in response.json()["rooms"]}
    assert rooms[busy]["pending_knocks"] == 2
    assert rooms[busy]["name"] == "Busy"
    assert rooms[busy]["joined_members"] == 1
    assert rooms[quiet]["pending_knocks"] == 0
    assert rooms[quiet]["name"] is None
    assert rooms[quiet]["room_version"] == "10"


def test_admin_create_room_then_get_its_summary(admin_env):
    body = {"room_version": "11", "join_rule": "knock", "name": "New", "topic": "T"}
    response = admin_env.post("/rooms", body)
    assert response.status_code == 200, response.text
    room_id = response.json()["room_id"]
    summary = admin_env.get(r(room_id)).json()
    assert summary["room_id"] == room_id
    assert (summary["room_version"], summary["join_rule"], summary["name"], summary["topic"]) == (
        "11",
        "knock",
        "New",
        "T",
    )


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        pytest.param({"join_rule": "knock", "room_version": "6"}, "M_BAD_JSON", id="no-knock-v6"),
        pytest.param({"join_rule": "knock", "room_version": "99"}, "M_UNSUPPORTED", id="version"),
        pytest.param({}, "M_BAD_JSON", id="no-join-rule"),
        pytest.param({"join_rule": "knock", "extra": 1}, "M_BAD_JSON", id="unknown-field"),
    ],
)
def test_admin_create_room_refused(admin_env, body, errcode):
    response = admin_env.post("/rooms", body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["errcode"].startswith("M_")


def test_admin_create_room_not_json_is_not_json(admin_env):
    response = admin_env.client.post(
        API + "/rooms",
        content=b"not json",
        headers={**admin_env.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "M_NOT_JSON")


@pytest.mark.parametrize(
    "suffix", ["", "/knocks", "/members", "/timeline", "/server_acl"], ids=lambda s: s or "summary"
)
def test_admin_room_reads_unknown_room_is_not_found(admin_env, suffix):
    assert_error(admin_env.get(r("!nope:antechamber.test") + suffix), 404, "M_NOT_FOUND")


@pytest.mark.parametrize("suffix", ["", "/knocks", "/members"], ids=lambda s: s or "summary")
def test_admin_room_reads_invalid_room_id_is_invalid_param(admin_env, suffix):
    assert_error(admin_env.get("/rooms/not-a-room-id" + suffix), 400, "M_INVALID_PARAM")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/knocks/%40a%3Ar.test/accept", {}, id="accept"),
        pytest.param("/knocks/%40a%3Ar.test/deny", {}, id="deny"),
        pytest.param("/invite", {"user_id": "@a:r.test"}, id="invite"),
        pytest.param("/kick", {"user_id": "@a:r.test"}, id="kick"),
        pytest.param("/ban", {"user_id": "@a:r.test"}, id="ban"),
        pytest.param("/unban", {"user_id": "@a:r.test"}, id="unban"),
    ],
)
def test_admin_room_actions_unknown_room_is_not_found(admin_env, path, body):
    response = admin_env.post(r("!nope:antechamber.test") + path, body)
    assert_error(response, 404, "M_NOT_FOUND")


def test_admin_set_server_acl_unknown_room_is_not_found(admin_env):
    response = admin_env.client.put(
        API + r("!nope:antechamber.test") + "/server_acl", json={}, headers=admin_env.headers
    )
    assert_error(response, 404, "M_NOT_FOUND")


# Knocks -----------------------------------------------------------------------------------------


def test_admin_knocks_lists_the_queue_longest_waiting_first(admin_env, clock):
    room_id = create_room(admin_env.admin)
    first = admin_env.knock(room_id, "zed")
    clock.now_ms += 60_000
    second = admin_env.knock(room_id, "amy")
    clock.now_ms += 1_000
    response = admin_env.get(r(room_id) + "/knocks")
    assert response.status_code == 200
    data = response.json()
    assert [k["user_id"] for k in data["knocks"]] == [first, second]
    assert data["knocks"][0]["server_name"] == admin_env.remote.server_name
    assert data["now_ts"] - data["knocks"][0]["origin_server_ts"] == 61_000


def test_admin_accept_sends_the_invite_over_federation(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = admin_env.knock(room_id)
    response = admin_env.post(r(room_id) + f"/knocks/{quote(user_id, safe='')}/accept", {})
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]
    ((target, _auth, body),) = admin_env.remote.invites
    assert target.endswith(quote(event_id, safe=""))
    assert body["event"]["state_key"] == user_id
    assert admin_env.membership(room_id, user_id) == "invite"
    assert admin_env.get(r(room_id) + "/knocks").json()["knocks"] == []


def test_admin_accept_without_a_knock_is_forbidden(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = f"@nobody:{admin_env.remote.server_name}"
    response = admin_env.post(r(room_id) + f"/knocks/{quote(user_id, safe='')}/accept", {})
    assert_error(response, 403, "M_FORBIDDEN")
    assert admin_env.remote.invites == []


@pytest.mark.parametrize(
    ("mode", "status", "errcode"),
    [
        pytest.param("forbidden", 403, "M_FORBIDDEN", id="refused"),
        pytest.param("garbage", 502, "M_UNKNOWN", id="garbage"),
        pytest.param("different_event", 502, "M_UNKNOWN", id="different-event"),
        pytest.param("hang", 504, "M_UNKNOWN", id="hang"),
    ],
)
def test_admin_accept_remote_invite_failure_stores_nothing(admin_env, mode, status, errcode):
    admin_env.remote.invite_mode = mode
    admin_env.remote.hang_s = 4
    room_id = create_room(admin_env.admin)
    user_id = admin_env.knock(room_id)
    response = admin_env.post(r(room_id) + f"/knocks/{quote(user_id, safe='')}/accept", {})
    assert_error(response, status, errcode)
    assert admin_env.membership(room_id, user_id) == "knock"


def test_admin_accept_remote_unreachable_is_bad_gateway(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = admin_env.knock(room_id)
    admin_env.remote.refuse()
    response = admin_env.post(r(room_id) + f"/knocks/{quote(user_id, safe='')}/accept", {})
    assert_error(response, 502, "M_UNKNOWN")
    assert admin_env.membership(room_id, user_id) == "knock"


def test_admin_deny_records_the_leave_with_its_reason(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = admin_env.knock(room_id)
    path = r(room_id) + f"/knocks/{quote(user_id, safe='')}/deny"
    response = admin_env.post(path, {"reason": "not today"})
    assert response.status_code == 200, response.text
    event = admin_env.store.get_current_state_event(room_id, "m.room.member", user_id)
    assert event["content"] == {"membership": "leave", "reason": "not today"}
    assert event["sender"] == f"@admin:{SERVER_NAME}"
    assert_error(admin_env.post(path, {}), 403, "M_FORBIDDEN")


def test_admin_knock_actions_bad_body_is_bad_json(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = admin_env.knock(room_id)
    path = r(room_id) + f"/knocks/{quote(user_id, safe='')}/deny"
    assert_error(admin_env.post(path, {"reason": 5}), 400, "M_BAD_JSON")
    assert_error(admin_env.post(path, {"sender": "@remote:elsewhere.test"}), 400, "M_INVALID_PARAM")
    assert_error(admin_env.post(r(room_id) + "/knocks/nobody/deny", {}), 400, "M_INVALID_PARAM")


# Membership -------------------------------------------------------------------------------------


def test_admin_members_lists_current_memberships(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = admin_env.knock(room_id)
    response = admin_env.get(r(room_id) + "/members")
    assert response.status_code == 200
    members = {m["user_id"]: m for m in response.json()["members"]}
    assert members[f"@admin:{SERVER_NAME}"]["membership"] == "join"
    assert members[user_id]["membership"] == "knock"


def test_admin_invite_is_countersigned_by_the_invitee_server(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = f"@carol:{admin_env.remote.server_name}"
    response = admin_env.post(r(room_id) + "/invite", {"user_id": user_id, "reason": "hi"})
    assert response.status_code == 200, response.text
    assert len(admin_env.remote.invites) == 1
    assert admin_env.membership(room_id, user_id) == "invite"


def test_admin_invite_refused_by_the_remote_passes_its_error_on(admin_env):
    admin_env.remote.invite_mode = "forbidden"
    room_id = create_room(admin_env.admin)
    response = admin_env.post(
        r(room_id) + "/invite", {"user_id": f"@carol:{admin_env.remote.server_name}"}
    )
    assert_error(response, 403, "M_FORBIDDEN")


def test_admin_invite_of_a_local_user_is_invalid(admin_env):
    room_id = create_room(admin_env.admin)
    response = admin_env.post(r(room_id) + "/invite", {"user_id": f"@bob:{SERVER_NAME}"})
    assert_error(response, 400, "M_INVALID_PARAM")


def test_admin_kick_a_member_then_kick_again_is_forbidden(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = f"@dave:{admin_env.remote.server_name}"
    add_member(admin_env.admin, room_id, user_id, remote=admin_env.remote)
    response = admin_env.post(r(room_id) + "/kick", {"user_id": user_id, "reason": "bye"})
    assert response.status_code == 200, response.text
    assert admin_env.membership(room_id, user_id) == "leave"
    assert_error(admin_env.post(r(room_id) + "/kick", {"user_id": user_id}), 403, "M_FORBIDDEN")


def test_admin_ban_then_unban_then_unban_again_is_forbidden(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = "@spam:spam.test"
    assert admin_env.post(r(room_id) + "/ban", {"user_id": user_id, "reason": "spam"}).is_success
    assert admin_env.membership(room_id, user_id) == "ban"
    assert admin_env.post(r(room_id) + "/unban", {"user_id": user_id}).is_success
    assert admin_env.membership(room_id, user_id) == "leave"
    assert_error(admin_env.post(r(room_id) + "/unban", {"user_id": user_id}), 403, "M_FORBIDDEN")


def test_admin_membership_actions_missing_user_id_is_bad_json(admin_env):
    room_id = create_room(admin_env.admin)
    for action in ("invite", "kick", "ban", "unban"):
        assert_error(admin_env.post(r(room_id) + f"/{action}", {}), 400, "M_BAD_JSON")
        response = admin_env.post(r(room_id) + f"/{action}", {"user_id": "nobody"})
        assert_error(response, 400, "M_INVALID_PARAM")


# Timeline and ACL -------------------------------------------------------------------------------


def test_admin_timeline_newest_last_with_limit(admin_env):
    room_id = create_room(admin_env.admin)
    user_id = admin_env.knock(room_id)
    response = admin_env.get(r(room_id) + "/timeline?limit=2")
    assert response.status_code == 200
    events = response.json()["events"]
    assert len(events) == 2
    assert events[-1]["sender"] == user_id
    assert events[-1]["summary"].startswith("knocked")
    assert len(admin_env.get(r(room_id) + "/timeline").json()["events"]) > 2


@pytest.mark.parametrize("limit", ["0", "201", "x"])
def test_admin_timeline_bad_limit_is_invalid_param(admin_env, limit):
    room_id = create_room(admin_env.admin)
    assert_error(admin_env.get(r(room_id) + f"/timeline?limit={limit}"), 400, "M_INVALID_PARAM")


def test_admin_server_acl_set_then_read(admin_env):
    room_id = create_room(admin_env.admin)
    assert admin_env.get(r(room_id) + "/server_acl").json() == {"server_acl": None}
    body = {"allow": ["*"], "deny": ["evil.test"], "allow_ip_literals": False}
    response = admin_env.client.put(
        API + r(room_id) + "/server_acl", json=body, headers=admin_env.headers
    )
    assert response.status_code == 200, response.text
    acl = admin_env.get(r(room_id) + "/server_acl").json()["server_acl"]
    assert acl == {"allow": ["*"], "deny": ["evil.test"], "allow_ip_literals": False}


def test_admin_server_acl_wrong_shape_is_bad_json(admin_env):
    room_id = create_room(admin_env.admin)
    response = admin_env.client.put(
        API + r(room_id) + "/server_acl", json={"deny": "evil.test"}, headers=admin_env.headers
    )
    assert_error(response, 400, "M_BAD_JSON")


# Metrics ----------------------------------------------------------------------------------------


def test_admin_metrics_count_knocks_accepted_and_denied(admin_env):
    from app import metrics

    def value(outcome: str) -> float:
        return metrics.KNOCKS.labels(outcome)._value.get()

    before = {outcome: value(outcome) for outcome in ("accepted", "denied")}
    room_id = create_room(admin_env.admin)
    alice = admin_env.knock(room_id, "alice")
    bob = admin_env.knock(room_id, "bob")
    admin_env.post(r(room_id) + f"/knocks/{quote(alice, safe='')}/accept", {})
    admin_env.post(r(room_id) + f"/knocks/{quote(bob, safe='')}/deny", {})
    assert value("accepted") == before["accepted"] + 1
    assert value("denied") == before["denied"] + 1
    response = admin_env.client.get("/_antechamber/metrics", headers=admin_env.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in (
        "antechamber_knocks_total",
        "antechamber_federation_requests_total",
        "antechamber_federation_request_duration_seconds",
        "antechamber_key_fetches_total",
        "antechamber_federation_deliveries_total",
        "antechamber_database_write_duration_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in response.text, name


def test_admin_federation_destinations_show_the_outbox(admin_env):
    """The durable outbox per destination, as `antechamber federation status` shows it."""
    assert admin_env.get("/federation/destinations").json() == {"destinations": []}
    room_id = admin_env.admin.create_room("12", "knock")
    store = admin_env.store
    (create_id,) = [row[0] for row in store.db.execute("SELECT event_id FROM events LIMIT 1")]
    with store.write_transaction():
        store.enqueue_delivery(["down.example"], create_id, room_id)
    store.fail_transaction("down.example", "HTTP 503", 1_000, start_ms=60_000, max_ms=86_400_000)
    response = admin_env.get("/federation/destinations")
    assert response.status_code == 200
    (row,) = response.json()["destinations"]
    assert (row["destination"], row["pending"], row["retry_at_ts"], row["last_error"]) == (
        "down.example",
        1,
        61_000,
        "HTTP 503",
    )
