"""The compiled make_knock route answers exactly as the full Connexion stack does."""

from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from app.http.fast_path import (
    MAX_CACHED_QUERIES,
    MAX_CACHED_QUERY_BYTES,
    FastPathMiddleware,
    _predicate,
)
from app.main import create_app
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from tests.conftest import SERVER_NAME
from tests.factories import add_member, create_room, make_room_admin

VER = "ver=7&ver=10&ver=11&ver=12"


@pytest.fixture
def both(federation_config, remote, clock):
    """(fast client, full-stack client, admin) over one database."""
    key = load_or_generate_signing_key(federation_config.resolved_signing_key_path)
    store = Store.open(federation_config.database)
    admin = make_room_admin(store, SERVER_NAME, key, clock)
    fast_app = create_app(federation_config, clock=clock)
    full_app = create_app(federation_config, clock=clock, fast_path=False)
    with (
        TestClient(fast_app, raise_server_exceptions=False) as fast,
        TestClient(full_app, raise_server_exceptions=False) as full,
    ):
        yield fast, full, admin
    store.close()


def _uri(room_id: str, user_id: str, query: str | None = VER) -> str:
    uri = f"/_matrix/federation/v1/make_knock/{quote(room_id, safe='')}/{quote(user_id, safe='')}"
    return uri + ("?" + query if query is not None else "")


def _same(fast, full, method, uri, headers=None, **kwargs):
    a = fast.request(method, uri, headers=headers, **kwargs)
    b = full.request(method, uri, headers=headers, **kwargs)
    assert (a.status_code, a.headers.get("content-type")) == (
        b.status_code,
        b.headers.get("content-type"),
    ), (a.text, b.text)
    assert a.headers.get("retry-after") == b.headers.get("retry-after")
    if a.status_code == 200:
        # Byte for byte: Connexion's serialisation is reproduced.
        assert a.content == b.content
    elif a.content:
        assert a.json() == b.json()
    return a


def test_fast_path_is_in_front_of_connexion(federation_config, clock):
    app = create_app(federation_config, clock=clock)
    layer = app
    while not isinstance(layer, FastPathMiddleware):
        layer = layer.app
    assert [op.operation_id for op in layer.operations] == ["handlers.knock.make_knock"]


def test_fast_path_query_memory_is_bounded(federation_config, clock):
    app = create_app(federation_config, clock=clock)
    layer = app
    while not isinstance(layer, FastPathMiddleware):
        layer = layer.app
    (operation,) = layer.operations
    path = "/_matrix/federation/v1/make_knock/!r:a.example/@u:b.example"
    match = operation.path_regex.match(path)
    for index in range(MAX_CACHED_QUERIES * 2):
        arguments = operation.parse(match, f"ver={index}".encode())
        assert arguments["ver"] == [str(index)]
        assert len(operation.query_cache) <= MAX_CACHED_QUERIES
    # A long query is checked but not remembered; one that is not for this layer stays so.
    long_query = ("ver=12&" * (MAX_CACHED_QUERY_BYTES // 7 + 1)).encode()
    assert operation.parse(match, long_query) is not None
    assert long_query not in operation.query_cache
    assert operation.parse(match, b"ver=12&extra=1") is None
    assert operation.parse(match, b"ver=12&extra=1") is None
    # The handler gets its own list each time.
    first = operation.parse(match, b"ver=12")
    first["ver"].append("mutated")
    assert operation.parse(match, b"ver=12")["ver"] == ["12"]


def test_fast_path_answers_like_the_full_stack(both, remote):
    fast, full, admin = both
    room_id = create_room(admin, "12", "knock")
    slash_room = create_room(admin, "10", "knock")
    acl_room = create_room(admin, "12", "knock")
    admin.set_server_acl(acl_room, ["*"], [], allow_ip_literals=False)
    user = f"@alice:{remote.server_name}"
    joined = f"@bob:{remote.server_name}"
    add_member(admin, room_id, joined, remote=remote)

    def signed(uri, method="GET", destination=SERVER_NAME, content=None):
        return {"Authorization": remote.auth_header(method, uri, destination, content)}

    cases = [
        _uri(room_id, user),
        _uri(room_id, user, "ver=12"),
        _uri(room_id, user, "ver=7,12"),  # Connexion's comma quirk
        _uri(room_id, user, "ver=12&ver="),
        _uri(room_id, user, "ver=1&ver=2"),  # incompatible version
        _uri(room_id, user, None),  # missing ver
        _uri(room_id, user, ""),
        _uri(room_id, user, VER + "&extra=1"),
        _uri(room_id, user, "ver=%2C12"),
        _uri(room_id, joined),  # already joined: 403
        _uri(room_id, "@mallory:elsewhere.example"),  # user of another server
        _uri(room_id, "not-a-user"),
        _uri("not-a-room", user),
        _uri(f"!unknown:{SERVER_NAME}", user),
        _uri(acl_room, user),  # ACL denies IP literals
        _uri(slash_room, user),
        _uri(room_id, user).replace("%21", "!"),
        _uri(room_id, user).replace("%3A", "%3a"),
        _uri(room_id, user) + "&ver=12",
        _uri(room_id, user).replace("/make_knock/", "/make_knock//"),
        _uri(room_id, user).replace("?", "/?"),
    ]
    for uri in cases:
        _same(fast, full, "GET", uri, signed(uri))
        # Unsigned, wrongly signed, for another destination.
        _same(fast, full, "GET", uri)
        _same(fast, full, "GET", uri, signed(uri, destination="other.example"))
        _same(fast, full, "GET", uri, signed(uri + "x"))
    uri = _uri(room_id, user)
    # Other methods, and a GET with a body (its signature covers the body).
    _same(fast, full, "HEAD", uri, signed(uri, "HEAD"))
    _same(fast, full, "POST", uri, signed(uri, "POST"))
    body_headers = {**signed(uri, content={"a": 1}), "Content-Type": "application/json"}
    _same(fast, full, "GET", uri, body_headers, content=b'{"a":1}')
    _same(fast, full, "GET", uri, signed(uri), content=b'{"a":1}')


def test_fast_path_rate_limits_like_the_full_stack(federation_config, remote, clock, tmp_path):
    """The per-origin limit is applied by the shared security function on both paths."""
    from dataclasses import fields, replace

    if "rc_federation_per_second" not in {field.name for field in fields(federation_config)}:
        pytest.skip("no per-origin rate limiter in this tree")

    config = replace(federation_config, rc_federation_per_second=1.0, rc_federation_burst_count=2)
    store = Store.open(config.database)
    key = load_or_generate_signing_key(config.resolved_signing_key_path)
    room_id = create_room(make_room_admin(store, SERVER_NAME, key, clock), "12", "knock")
    store.close()
    uri = _uri(room_id, f"@alice:{remote.server_name}")
    headers = {"Authorization": remote.auth_header("GET", uri, SERVER_NAME)}
    for fast_path in (True, False):
        with TestClient(
            create_app(config, clock=clock, fast_path=fast_path), raise_server_exceptions=False
        ) as client:
            statuses = [client.get(uri, headers=headers).status_code for _ in range(3)]
        assert statuses == [200, 200, 429], fast_path


def test_fast_path_unexpected_error_is_a_matrix_500(both, remote, monkeypatch):
    fast, full, admin = both
    room_id = create_room(admin, "12", "knock")
    uri = _uri(room_id, f"@alice:{remote.server_name}")
    headers = {"Authorization": remote.auth_header("GET", uri, SERVER_NAME)}

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(Store, "get_forward_extremities", boom)
    for client in (fast, full):
        response = client.get(uri, headers=headers)
        assert response.status_code == 500
        assert response.json()["errcode"] == "M_UNKNOWN"
        assert "request" in response.json()["error"]


def test_fast_path_checks_responses_against_the_contract_when_asked(both, remote, monkeypatch):
    fast, _full, admin = both
    room_id = create_room(admin, "12", "knock")
    uri = _uri(room_id, f"@alice:{remote.server_name}")
    headers = {"Authorization": remote.auth_header("GET", uri, SERVER_NAME)}
    import handlers.knock

    async def wrong(**kwargs):
        return {"room_version": 12}

    monkeypatch.setattr(handlers.knock, "make_knock", wrong)
    # The fast path resolved the handler at startup; patch what it calls.
    layer = fast.app
    while not isinstance(layer, FastPathMiddleware):
        layer = layer.app
    from dataclasses import replace

    layer.operations = [replace(op, handler=wrong) for op in layer.operations]
    response = fast.get(uri, headers=headers)
    assert response.status_code == 500
    assert response.json() == {"errcode": "M_UNKNOWN", "error": "Internal server error"}


@pytest.mark.parametrize(
    ("schema", "value", "valid"),
    [
        pytest.param({"type": "string"}, "x", True, id="string"),
        pytest.param({"type": "string", "pattern": "^[^,]+$"}, "a,b", False, id="pattern"),
        pytest.param({"type": "string", "pattern": "b"}, "abc", True, id="pattern-unanchored"),
        pytest.param({"type": "string", "minLength": 2}, "é", False, id="min-length"),
        pytest.param({"type": "string", "maxLength": 1}, "é", True, id="max-length-code-points"),
        pytest.param({"type": "string", "enum": ["a"]}, "b", False, id="enum"),
        pytest.param(
            {"type": "array", "minItems": 1, "items": {"type": "string"}}, [], False, id="min-items"
        ),
        pytest.param(
            {"type": "array", "maxItems": 1, "items": {"type": "string"}},
            ["a", "b"],
            False,
            id="max-items",
        ),
        pytest.param({"type": "string", "format": "uri"}, "x", True, id="other-keyword"),
    ],
)
def test_predicate_agrees_with_jsonschema(schema, value, valid):
    from jsonschema import Draft4Validator

    assert Draft4Validator(schema).is_valid(value) is valid
    assert _predicate(schema)(value) is valid


@pytest.mark.parametrize(
    "query",
    [b"ver=1&ver=2", b"a", b"a=", b"&&a=1&", b"=x", b"a==b", b"a=1;b=2", b"ver=%2C1", b"x+y=1"],
)
def test_query_parsing_agrees_with_starlette(query):
    from urllib.parse import parse_qsl

    from app.http.fast_path import _parse_query

    assert _parse_query(query) == parse_qsl(query.decode("latin-1"), keep_blank_values=True)
