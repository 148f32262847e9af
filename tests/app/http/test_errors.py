"""Every failure is Matrix JSON: the errcode/status mapping table, pinned."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.config import Config
from app.main import create_app
from matrix.errors import ERRCODE_STATUS, MatrixError

FIXTURE_CONTRACT = Path(__file__).resolve().parents[2] / "fixtures" / "error_contract.yaml"


@pytest.fixture
def fixture_client(config: Config) -> Iterator[TestClient]:
    app = create_app(config, spec_path=FIXTURE_CONTRACT)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_matrix_error(response, status: int, errcode: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["errcode"] == errcode
    assert isinstance(body["error"], str)
    assert body["error"]
    return body


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "errcode"),
    [
        pytest.param("GET", "/_test/params/abc", {}, 400, "M_MISSING_PARAM", id="missing-query"),
        pytest.param(
            "GET", "/_test/params/abc?count=x", {}, 400, "M_INVALID_PARAM", id="invalid-query"
        ),
        pytest.param(
            "GET", "/_test/params/ABC?count=1", {}, 400, "M_INVALID_PARAM", id="invalid-path"
        ),
        pytest.param(
            "PUT", "/_test/body", {"content": b"{not json"}, 400, "M_NOT_JSON", id="not-json"
        ),
        pytest.param(
            "PUT",
            "/_test/body",
            {"content": b'{"a": NaN}'},
            400,
            "M_NOT_JSON",
            id="nan-literal",
        ),
        pytest.param(
            "PUT", "/_test/body", {"content": b"[1, 2]"}, 400, "M_BAD_JSON", id="not-an-object"
        ),
        pytest.param(
            "PUT",
            "/_test/body",
            {"content": b'{"a": "x", "a": "y"}'},
            400,
            "M_BAD_JSON",
            id="duplicate-key",
        ),
        pytest.param("PUT", "/_test/body", {"json": {"a": 1}}, 400, "M_BAD_JSON", id="schema"),
        pytest.param(
            "PUT",
            "/_test/body",
            {"content": b"", "headers": {"content-type": "application/json"}},
            400,
            "M_NOT_JSON",
            id="empty-body",
        ),
        pytest.param(
            "PUT",
            "/_test/body",
            {"content": b"a=x", "headers": {"content-type": "text/plain"}},
            400,
            "M_NOT_JSON",
            id="not-json-declared-text",
        ),
        pytest.param("GET", "/_test/nope", {}, 404, "M_UNRECOGNIZED", id="unknown-path"),
        pytest.param("GET", "/", {}, 404, "M_UNRECOGNIZED", id="root"),
        pytest.param("POST", "/_test/boom", {}, 405, "M_UNRECOGNIZED", id="wrong-method"),
        pytest.param("GET", "/_test/boom", {}, 500, "M_UNKNOWN", id="unexpected-exception"),
        pytest.param(
            "GET", "/_test/nonconforming", {}, 500, "M_UNKNOWN", id="nonconforming-response"
        ),
    ],
)
def test_errors_render_as_matrix_json(fixture_client, method, path, kwargs, status, errcode):
    response = fixture_client.request(method, path, **kwargs)
    assert_matrix_error(response, status, errcode)


def test_errors_valid_request_reaches_handler(fixture_client):
    response = fixture_client.get("/_test/params/abc?count=3")
    assert response.status_code == 200
    assert response.json() == {"thing": "abc", "count": 3}
    response = fixture_client.put("/_test/body", json={"a": "x"})
    assert response.json() == {"a": "x"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "TEXT/X"])
def test_errors_json_body_is_read_whatever_its_declared_type(fixture_client, content_type):
    # Synapse parses a body as JSON whatever its Content-Type; so do we (app/limits.py).
    response = fixture_client.put(
        "/_test/body", content=b'{"a": "x"}', headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"a": "x"}


def test_errors_limit_exceeded_carries_retry_after(fixture_client):
    response = fixture_client.get("/_test/limited")
    body = assert_matrix_error(response, 429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] == 1500
    assert response.headers["retry-after"] == "2"


def test_errors_500_message_names_the_request_id(fixture_client, caplog):
    response = fixture_client.get("/_test/boom")
    assert_matrix_error(response, 500, "M_UNKNOWN")
    logged = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert logged, "the unexpected exception is logged with its traceback"
    request_ids = [r.args[0] for r in logged]
    assert any(rid in response.json()["error"] for rid in request_ids)


def test_errors_status_table_covers_the_spec_codes():
    assert ERRCODE_STATUS == {
        "M_BAD_JSON": 400,
        "M_NOT_JSON": 400,
        "M_MISSING_PARAM": 400,
        "M_INVALID_PARAM": 400,
        "M_INCOMPATIBLE_ROOM_VERSION": 400,
        "M_UNABLE_TO_AUTHORISE_JOIN": 400,
        "M_UNABLE_TO_GRANT_JOIN": 400,
        "M_UNAUTHORIZED": 401,
        "M_MISSING_TOKEN": 401,
        "M_UNKNOWN_TOKEN": 401,
        "M_FORBIDDEN": 403,
        "M_NOT_FOUND": 404,
        "M_UNRECOGNIZED": 404,
        "M_TOO_LARGE": 413,
        "M_LIMIT_EXCEEDED": 429,
        "M_UNKNOWN": 500,
    }


def test_matrix_error_extra_fields_are_rendered():
    error = MatrixError("M_INCOMPATIBLE_ROOM_VERSION", "no", room_version="12")
    assert error.status == 400
    assert error.to_json() == {
        "errcode": "M_INCOMPATIBLE_ROOM_VERSION",
        "error": "no",
        "room_version": "12",
    }


def test_errors_outer_layer_turns_a_crash_into_json():
    import asyncio

    from app.http.access_log import AccessLogMiddleware

    async def crashing_app(scope, receive, send):
        raise RuntimeError("inside the framework")

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "query_string": b""}
    asyncio.run(AccessLogMiddleware(crashing_app)(scope, None, send))
    assert sent[0]["status"] == 500
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert b'"errcode":"M_UNKNOWN"' in sent[1]["body"]


def test_errors_wrong_method_lists_allowed_methods(fixture_client):
    response = fixture_client.post("/_test/boom")
    assert_matrix_error(response, 405, "M_UNRECOGNIZED")
    assert "GET" in response.headers["allow"]


def test_errors_chunked_body_is_read_like_any_other(fixture_client):
    # No Content-Length: the body arrives chunked; it is still the request's JSON body.
    def chunks():
        yield b'{"a": '
        yield b'"x"}'

    response = fixture_client.put(
        "/_test/body", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"a": "x"}
    response = fixture_client.put(
        "/_test/body", content=iter([b"{no"]), headers={"content-type": "application/json"}
    )
    assert_matrix_error(response, 400, "M_NOT_JSON")
