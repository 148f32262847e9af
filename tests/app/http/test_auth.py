"""X-Matrix request authentication end to end: a real remote homeserver, real key fetches."""

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from app.config import Config
from app.main import create_app
from db.store import Store
from tests.conftest import KEY_FETCH_TIMEOUT_S, SERVER_NAME
from tests.fixtures import auth_handlers
from tests.live_server import serve_in_thread

AUTH_CONTRACT = Path(__file__).resolve().parents[2] / "fixtures" / "auth_contract.yaml"
QUERY_URI = "/_test/federation/v1/query/th%21ng?q=a%20b&q2=c"
SEND_URI = "/_test/federation/v1/send/txn1"
VERSION_URI = "/_matrix/federation/v1/version"
DAY_MS = 24 * 60 * 60 * 1000


@pytest.fixture
def app_client(federation_config: Config, clock, remote) -> Iterator[TestClient]:
    # Depends on remote so that the app (and its HTTP client) stops before the remote does.
    app = create_app(federation_config, clock=clock, spec_path=AUTH_CONTRACT)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def live_url(federation_config: Config, clock, remote) -> Iterator[str]:
    app = create_app(federation_config, clock=clock, spec_path=AUTH_CONTRACT)
    with serve_in_thread(app) as url:
        yield url


def assert_matrix_error(response: httpx.Response, status: int, errcode: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["errcode"] == errcode


def signed_get(client, remote, uri=QUERY_URI, destination=SERVER_NAME, **kwargs):
    header = remote.auth_header("GET", uri, destination, **kwargs)
    return client.get(uri, headers={"Authorization": header})


def signed_put(client, remote, content, uri=SEND_URI, destination=SERVER_NAME):
    header = remote.auth_header("PUT", uri, destination, content)
    return client.put(uri, json=content, headers={"Authorization": header})


def stored_keys(config: Config, server_name: str, key_id: str):
    store = Store.open(config.database)
    try:
        return store.get_server_key(server_name, key_id)
    finally:
        store.close()


# The happy paths -----------------------------------------------------------------------------


def test_auth_signed_get_with_query_reaches_handler_with_origin(app_client, remote):
    response = signed_get(app_client, remote)
    assert response.status_code == 200, response.text
    assert response.json() == {"origin": remote.server_name, "thing": "th!ng", "q": "a b"}
    assert remote.key_fetches == 1


def test_auth_signed_put_with_body_reaches_handler(app_client, remote):
    content = {"pdus": [{"a": "é"}], "n": 1}
    response = signed_put(app_client, remote, content)
    assert response.status_code == 200, response.text
    assert response.json() == {"origin": remote.server_name, "txn_id": "txn1", "body": content}


def test_auth_keys_are_cached_after_first_fetch(app_client, remote, federation_config):
    for _ in range(3):
        assert signed_get(app_client, remote).status_code == 200
    assert remote.key_fetches == 1
    stored = stored_keys(federation_config, remote.server_name, remote.key_id)
    assert stored is not None
    assert stored.verify_key == remote.verify_key_base64
    assert stored.expired_ts is None


def test_auth_request_without_destination_is_accepted(app_client, remote):
    # SS: receivers SHOULD accept requests from older servers that do not send destination.
    header = remote.auth_header("GET", QUERY_URI, SERVER_NAME)
    legacy = ",".join(p for p in header.split(",") if not p.startswith("destination="))
    response = app_client.get(QUERY_URI, headers={"Authorization": legacy})
    assert response.status_code == 200, response.text


def test_auth_access_log_names_the_origin(app_client, remote, caplog):
    caplog.set_level("INFO", logger="antechamber.access")
    assert signed_get(app_client, remote).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "antechamber.access"]
    assert any(f"origin={remote.server_name}" in line for line in lines), lines


def test_auth_unauthenticated_endpoints_need_no_header(app_client):
    assert app_client.get("/_test/open").json() == {"open": True}
    assert app_client.get(VERSION_URI).status_code == 200


# Refusals --------------------------------------------------------------------------------------


def test_auth_missing_header_is_401_matrix_json(app_client, remote):
    auth_handlers.CALLS.clear()
    response = app_client.get(QUERY_URI)
    assert_matrix_error(response, 401, "M_UNAUTHORIZED")
    assert "problem" not in response.headers["content-type"]
    assert auth_handlers.CALLS == []
    assert remote.key_fetches == 0


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Bearer abc", id="other-scheme"),
        pytest.param('X-Matrix origin="x.example"', id="no-key-no-sig"),
        pytest.param('X-Matrix origin="x.example,key="ed25519:a",sig="b"', id="unclosed-quote"),
        pytest.param('X-Matrix origin="bad name!",key="ed25519:a",sig="b"', id="bad-origin"),
    ],
)
def test_auth_malformed_header_is_401(app_client, header):
    response = app_client.get(QUERY_URI, headers={"Authorization": header})
    assert_matrix_error(response, 401, "M_UNAUTHORIZED")


def test_auth_destination_mismatch_is_401(app_client, remote):
    auth_handlers.CALLS.clear()
    response = signed_get(app_client, remote, destination="other.example")
    assert_matrix_error(response, 401, "M_UNAUTHORIZED")
    assert auth_handlers.CALLS == []


@pytest.mark.parametrize(
    ("signed_uri", "sent_uri"),
    [
        pytest.param("/_test/federation/v1/query/a", "/_test/federation/v1/query/b", id="path"),
        pytest.param(QUERY_URI, "/_test/federation/v1/query/th!ng?q=a%20b&q2=c", id="encoding"),
        pytest.param(QUERY_URI, "/_test/federation/v1/query/th%21ng?q=a%20b", id="query"),
        pytest.param("/_test/federation/v1/query/a", "/_test/federation/v1/query/a?q=x", id="q+"),
    ],
)
def test_auth_signature_for_another_uri_is_401(app_client, remote, signed_uri, sent_uri):
    auth_handlers.CALLS.clear()
    header = remote.auth_header("GET", signed_uri, SERVER_NAME)
    response = app_client.get(sent_uri, headers={"Authorization": header})
    assert_matrix_error(response, 401, "M_UNAUTHORIZED")
    assert auth_handlers.CALLS == []


def test_auth_signature_over_another_body_is_401(app_client, remote):
    header = remote.auth_header("PUT", SEND_URI, SERVER_NAME, {"a": 1})
    response = app_client.put(SEND_URI, json={"a": 2}, headers={"Authorization": header})
    assert_matrix_error(response, 401, "M_UNAUTHORIZED")


def test_auth_get_signature_replayed_as_put_is_401(app_client, remote):
    header = remote.auth_header("GET", SEND_URI, SERVER_NAME)
    response = app_client.put(SEND_URI, json={}, headers={"Authorization": header})
    assert_matrix_error(response, 401, "M_UNAUTHORIZED")


def test_auth_signature_by_another_key_is_401(app_client, remote):
    from signedjson.key import generate_signing_key

    impostor = generate_signing_key(remote.signing_key.version)
    response = signed_get(app_client, remote, signing_key=impostor)
    assert_matrix_error(response, 401, "M_UNAUTHORIZED")


def test_auth_unknown_key_id_is_401_and_not_refetched_at_once(app_client, remote):
    from signedjson.key import generate_signing_key

    unknown = generate_signing_key("not_published")
    for _ in range(3):
        response = signed_get(app_client, remote, signing_key=unknown)
        assert_matrix_error(response, 401, "M_UNAUTHORIZED")
    assert remote.key_fetches == 1


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        pytest.param(b"{not json", "M_NOT_JSON", id="not-json"),
        pytest.param(b"[1]", "M_BAD_JSON", id="not-an-object"),
    ],
)
def test_auth_unparseable_body_is_400(app_client, remote, body, errcode):
    header = remote.auth_header("PUT", SEND_URI, SERVER_NAME)
    response = app_client.put(
        SEND_URI,
        content=body,
        headers={"Authorization": header, "Content-Type": "application/json"},
    )
    assert_matrix_error(response, 400, errcode)


def test_auth_body_over_cap_is_413_before_authentication(app_client, remote, federation_config):
    content = {"x": "a" * federation_config.max_request_body_bytes}
    response = signed_put(app_client, remote, content)
    assert_matrix_error(response, 413, "M_TOO_LARGE")
    assert remote.key_fetches == 0


def test_auth_streamed_body_over_cap_is_413(app_client, federation_config):
    chunk = b"a" * 4096
    chunks = federation_config.max_request_body_bytes // len(chunk) + 2

    def stream():
        yield from (chunk for _ in range(chunks))

    response = app_client.put(SEND_URI, content=stream(), headers={"Authorization": "X-Matrix"})
    assert "content-length" not in response.request.headers
    assert_matrix_error(response, 413, "M_TOO_LARGE")


def test_auth_body_at_cap_is_accepted(app_client, remote, federation_config):
    padding = federation_config.max_request_body_bytes - len(b'{"x":""}')
    content = {"x": "a" * padding}
    response = signed_put(app_client, remote, content)
    assert response.status_code == 200, response.text


# Key fetch faults ------------------------------------------------------------------------------

FAULTS = ["hang", "garbage", "nan", "deep", "wrong_server_name", "bad_signature", "refuse"]


@pytest.mark.parametrize("fault", FAULTS)
def test_auth_key_fetch_fault_is_401_within_timeout(
    live_url, remote, fault, federation_config, clock
):
    if fault == "refuse":
        remote.refuse()
    else:
        remote.mode = fault
    result: dict[str, object] = {}

    def faulty_request() -> None:
        started = time.monotonic()
        header = remote.auth_header("GET", QUERY_URI, SERVER_NAME)
        result["response"] = httpx.get(
            live_url + QUERY_URI, headers={"Authorization": header}, timeout=30
        )
        result["elapsed"] = time.monotonic() - started

    worker = threading.Thread(target=faulty_request)
    worker.start()
    # Other requests keep being served while the key fetch is under way.
    while worker.is_alive():
        assert httpx.get(live_url + VERSION_URI, timeout=5).status_code == 200
        time.sleep(0.05)
    worker.join()
    assert_matrix_error(result["response"], 401, "M_UNAUTHORIZED")
    assert result["elapsed"] < KEY_FETCH_TIMEOUT_S + 1.5
    # Nothing was cached from the faulty answer.
    assert stored_keys(federation_config, remote.server_name, remote.key_id) is None

    # The failure is remembered: no new fetch until the backoff has passed.
    fetches = remote.key_fetches
    remote.mode = "ok"
    header = remote.auth_header("GET", QUERY_URI, SERVER_NAME)
    response = httpx.get(live_url + QUERY_URI, headers={"Authorization": header}, timeout=10)
    assert_matrix_error(response, 401, "M_UNAUTHORIZED")
    assert remote.key_fetches == fetches


def test_auth_after_backoff_the_origin_is_asked_again(app_client, remote, clock, federation_config):
    remote.mode = "garbage"
    assert_matrix_error(signed_get(app_client, remote), 401, "M_UNAUTHORIZED")
    remote.mode = "ok"
    assert_matrix_error(signed_get(app_client, remote), 401, "M_UNAUTHORIZED")
    assert remote.key_fetches == 1
    clock.now_ms += int(federation_config.key_fetch_failure_backoff_s * 1000) + 1
    assert signed_get(app_client, remote).status_code == 200
    assert remote.key_fetches == 2


# Expiry, rotation, restart ---------------------------------------------------------------------


def test_auth_expired_key_is_refetched(app_client, remote, clock):
    remote.valid_until_ts = clock.now_ms + 60 * 60 * 1000
    assert signed_get(app_client, remote).status_code == 200
    clock.now_ms += 2 * 60 * 60 * 1000
    remote.valid_until_ts = None
    assert signed_get(app_client, remote).status_code == 200
    assert remote.key_fetches == 2


def test_auth_expired_key_with_origin_down_is_401(app_client, remote, clock):
    remote.valid_until_ts = clock.now_ms + 60 * 60 * 1000
    assert signed_get(app_client, remote).status_code == 200
    clock.now_ms += 2 * 60 * 60 * 1000
    remote.mode = "garbage"
    assert_matrix_error(signed_get(app_client, remote), 401, "M_UNAUTHORIZED")


def test_auth_key_lifetime_is_capped_at_seven_days(app_client, remote, clock, federation_config):
    remote.valid_until_ts = clock.now_ms + 365 * DAY_MS
    assert signed_get(app_client, remote).status_code == 200
    stored = stored_keys(federation_config, remote.server_name, remote.key_id)
    assert stored.valid_until_ts == clock.now_ms + 7 * DAY_MS
    clock.now_ms += 6 * DAY_MS
    assert signed_get(app_client, remote).status_code == 200
    assert remote.key_fetches == 1
    clock.now_ms += 2 * DAY_MS
    assert signed_get(app_client, remote).status_code == 200
    assert remote.key_fetches == 2


def test_auth_rotated_key_no_longer_signs_requests(app_client, remote, federation_config):
    old_key = remote.signing_key
    old_key_id = remote.key_id
    assert signed_get(app_client, remote).status_code == 200
    remote.rotate_key("remote2")
    # The new key id is unknown: fetched, and the old one is now listed as old.
    assert signed_get(app_client, remote).status_code == 200
    assert remote.key_fetches == 2
    assert_matrix_error(signed_get(app_client, remote, signing_key=old_key), 401, "M_UNAUTHORIZED")
    stored = stored_keys(federation_config, remote.server_name, old_key_id)
    assert stored.expired_ts is not None  # kept for checking old events


def test_auth_old_key_never_signs_requests_even_when_first_seen(app_client, remote):
    old_key = remote.rotate_key("remote2")
    assert_matrix_error(signed_get(app_client, remote, signing_key=old_key), 401, "M_UNAUTHORIZED")
    assert remote.key_fetches == 1


def test_auth_restart_with_warm_key_cache_does_not_refetch(federation_config, clock, remote):
    for _ in range(2):
        app = create_app(federation_config, clock=clock, spec_path=AUTH_CONTRACT)
        with TestClient(app, raise_server_exceptions=False) as test_client:
            assert signed_get(test_client, remote).status_code == 200
    assert remote.key_fetches == 1


# Concurrency -----------------------------------------------------------------------------------


def test_auth_concurrent_requests_from_a_new_origin_fetch_once(live_url, remote):
    remote.hang_s = 0.5
    remote.mode = "hang"  # a slow (but successful within the timeout) key server

    def one(i: int) -> int:
        uri = f"/_test/federation/v1/query/n{i}"
        header = remote.auth_header("GET", uri, SERVER_NAME)
        return httpx.get(live_url + uri, headers={"Authorization": header}, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(50)))
    assert statuses == [200] * 50
    assert remote.key_fetches == 1
