"""X-Matrix: the Authorization header grammar (SS §Request Authentication) and request signing."""

import pytest
from signedjson.key import generate_signing_key, get_verify_key

from matrix.errors import MatrixError
from matrix.xmatrix import (
    MAX_AUTHORIZATION_HEADERS,
    XMatrixAuth,
    build_request_json,
    check_request_signature,
    decode_verify_key,
    parse_authorization_headers,
    sign_request,
)

KEY = "ed25519:a_1"
SIG = "c2lnbmF0dXJl+/x"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            f'X-Matrix origin="o.example",destination="d.example",key="{KEY}",sig="{SIG}"',
            XMatrixAuth("o.example", "d.example", ((KEY, SIG),)),
            id="compat-form",
        ),
        pytest.param(
            f'x-matrix origin="o.example",key="{KEY}",sig="{SIG}"',
            XMatrixAuth("o.example", None, ((KEY, SIG),)),
            id="scheme-lower-case-no-destination",
        ),
        pytest.param(
            f'X-MATRIX    origin="o.example",key="{KEY}",sig="{SIG}"',
            XMatrixAuth("o.example", None, ((KEY, SIG),)),
            id="scheme-upper-case-many-spaces",
        ),
        pytest.param(
            f'X-Matrix SIG="{SIG}", Key="{KEY}" ,\tORIGIN="o.example"',
            XMatrixAuth("o.example", None, ((KEY, SIG),)),
            id="names-any-case-any-order-whitespace-around-commas",
        ),
        pytest.param(
            f'X-Matrix origin=o.example,key="{KEY}",sig="{SIG}"',
            XMatrixAuth("o.example", None, ((KEY, SIG),)),
            id="unquoted-token",
        ),
        pytest.param(
            f"X-Matrix origin=o.example:8448,destination=d.example:443,key={KEY},sig=abc",
            XMatrixAuth("o.example:8448", "d.example:443", ((KEY, "abc"),)),
            id="unquoted-with-colons-lenient",
        ),
        pytest.param(
            f'X-Matrix origin="o\\.example",key="{KEY}",sig="a\\"b\\\\c"',
            XMatrixAuth("o.example", None, ((KEY, 'a"b\\c'),)),
            id="backslash-escapes-undone",
        ),
        pytest.param(
            f'X-Matrix origin="o.example",key="{KEY}",signature="{SIG}"',
            XMatrixAuth("o.example", None, ((KEY, SIG),)),
            id="signature-alias",
        ),
        pytest.param(
            f'X-Matrix origin="o.example",future="x y",key="{KEY}",sig="{SIG}",other=1',
            XMatrixAuth("o.example", None, ((KEY, SIG),)),
            id="unknown-params-ignored",
        ),
        pytest.param(
            f'X-Matrix origin = "o.example", key="{KEY}",sig="{SIG}",',
            XMatrixAuth("o.example", None, ((KEY, SIG),)),
            id="bws-around-equals-trailing-comma",
        ),
        pytest.param(
            f'X-Matrix origin="o.example",,key="{KEY}",sig="{SIG}"',
            XMatrixAuth("o.example", None, ((KEY, SIG),)),
            id="empty-list-element",
        ),
    ],
)
def test_xmatrix_parse_header_accepts(header, expected):
    assert parse_authorization_headers([header]) == expected


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([], id="no-header"),
        pytest.param(["Bearer abc"], id="other-scheme-only"),
        pytest.param(['X-Matrixorigin="o.example"'], id="no-space-after-scheme"),
        pytest.param(["X-Matrix"], id="scheme-alone"),
        pytest.param(["X-Matrix "], id="scheme-and-space"),
        pytest.param([f'X-Matrix key="{KEY}",sig="{SIG}"'], id="missing-origin"),
        pytest.param([f'X-Matrix origin="o.example",sig="{SIG}"'], id="missing-key"),
        pytest.param([f'X-Matrix origin="o.example",key="{KEY}"'], id="missing-sig"),
        pytest.param([f'X-Matrix origin="",key="{KEY}",sig="{SIG}"'], id="empty-origin"),
        pytest.param([f'X-Matrix origin="o.example,key="{KEY}",sig="{SIG}"'], id="unclosed-quote"),
        pytest.param([f'X-Matrix origin,key="{KEY}",sig="{SIG}"'], id="param-without-value"),
        pytest.param([f'X-Matrix origin=,key="{KEY}",sig="{SIG}"'], id="empty-unquoted-value"),
        pytest.param([f'X-Matrix origin=o example,key="{KEY}",sig="{SIG}"'], id="space-in-value"),
        pytest.param([f'X-Matrix origin="o.example" key="{KEY}",sig="{SIG}"'], id="missing-comma"),
        pytest.param([f'X-Matrix origin=o/x,key="{KEY}",sig="{SIG}"'], id="slash-unquoted"),
        pytest.param(
            [f'X-Matrix origin="a",origin="b",key="{KEY}",sig="{SIG}"'], id="repeated-param"
        ),
        pytest.param(
            [f'X-Matrix origin="a",key="{KEY}",sig="{SIG}",signature="{SIG}"'],
            id="sig-and-signature",
        ),
        pytest.param([f'X-Matrix ="a",key="{KEY}",sig="{SIG}"'], id="empty-name"),
        pytest.param(
            [f'X-Matrix origin="a\x01",key="{KEY}",sig="{SIG}"'], id="control-char-in-quotes"
        ),
        pytest.param(
            [
                f'X-Matrix origin="a.example",key="{KEY}",sig="{SIG}"',
                f'X-Matrix origin="b.example",key="{KEY}",sig="{SIG}"',
            ],
            id="two-headers-two-origins",
        ),
        pytest.param(
            [
                f'X-Matrix origin="a.example",destination="x",key="{KEY}",sig="{SIG}"',
                f'X-Matrix origin="a.example",destination="y",key="{KEY}",sig="{SIG}"',
            ],
            id="two-headers-two-destinations",
        ),
    ],
)
def test_xmatrix_parse_header_rejects_with_unauthorized(headers):
    with pytest.raises(MatrixError) as raised:
        parse_authorization_headers(headers)
    assert raised.value.errcode == "M_UNAUTHORIZED"
    assert raised.value.status == 401


def test_xmatrix_parse_several_headers_gathers_signatures():
    headers = [
        "Bearer unrelated",
        f'X-Matrix origin="o.example",key="{KEY}",sig="one"',
        'X-Matrix origin="o.example",destination="d",key="ed25519:b",sig="two"',
    ]
    assert parse_authorization_headers(headers) == XMatrixAuth(
        "o.example", "d", ((KEY, "one"), ("ed25519:b", "two"))
    )


def test_xmatrix_build_request_json_content_only_with_body():
    assert build_request_json("get", "/a?b=c", "o", "d") == {
        "method": "GET",
        "uri": "/a?b=c",
        "origin": "o",
        "destination": "d",
    }
    assert build_request_json("PUT", "/a", "o", "d", {})["content"] == {}


def test_xmatrix_sign_request_compat_form_round_trips():
    key = generate_signing_key("k1")
    header = sign_request("PUT", "/_matrix/x/%21r", "o.example:8448", "d.example", key, {"a": 1})
    assert header.startswith('X-Matrix origin="o.example:8448",destination="d.example",key=')
    assert ", " not in header
    auth = parse_authorization_headers([header])
    assert auth.origin == "o.example:8448"
    assert auth.signatures[0][0] == "ed25519:k1"
    request = build_request_json("PUT", "/_matrix/x/%21r", auth.origin, "d.example", {"a": 1})
    check_request_signature(request, auth, {"ed25519:k1": get_verify_key(key)})


def test_xmatrix_sign_request_quotes_escape_specials():
    key = generate_signing_key("k1")
    header = sign_request("GET", "/x", 'we"ird\\', "d", key)
    assert parse_authorization_headers([header]).origin == 'we"ird\\'


def _signed(method="GET", uri="/_matrix/federation/v1/x", content=None, key=None):
    key = key or generate_signing_key("k1")
    header = sign_request(method, uri, "o.example", "d.example", key, content)
    return key, parse_authorization_headers([header])


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param({"method": "PUT"}, id="method"),
        pytest.param({"uri": "/_matrix/federation/v1/y"}, id="uri"),
        pytest.param({"uri": "/_matrix/federation/v1/x?a=b"}, id="query-added"),
        pytest.param({"destination": "other.example"}, id="destination"),
        pytest.param({"content": {}}, id="content-added"),
    ],
)
def test_xmatrix_check_signature_rejects_tampered_request(tamper):
    key, auth = _signed()
    request = build_request_json("GET", "/_matrix/federation/v1/x", "o.example", "d.example")
    request.update(tamper)
    with pytest.raises(MatrixError) as raised:
        check_request_signature(request, auth, {"ed25519:k1": get_verify_key(key)})
    assert raised.value.errcode == "M_UNAUTHORIZED"


def test_xmatrix_check_signature_needs_a_known_key():
    _key, auth = _signed()
    request = build_request_json("GET", "/_matrix/federation/v1/x", "o.example", "d.example")
    with pytest.raises(MatrixError) as raised:
        check_request_signature(request, auth, {})
    assert raised.value.errcode == "M_UNAUTHORIZED"
    other = generate_signing_key("k1")
    with pytest.raises(MatrixError):
        check_request_signature(request, auth, {"ed25519:k1": get_verify_key(other)})


def test_xmatrix_check_signature_every_known_key_must_verify():
    key, auth = _signed()
    request = build_request_json("GET", "/_matrix/federation/v1/x", "o.example", "d.example")
    second = generate_signing_key("k2")
    forged = XMatrixAuth(auth.origin, auth.destination, (*auth.signatures, ("ed25519:k2", "AAAA")))
    keys = {"ed25519:k1": get_verify_key(key)}
    check_request_signature(request, forged, keys)  # unknown k2 is ignored
    with pytest.raises(MatrixError):
        check_request_signature(request, forged, {**keys, "ed25519:k2": get_verify_key(second)})


def test_xmatrix_check_signature_rejects_garbage_base64():
    key, auth = _signed()
    request = build_request_json("GET", "/_matrix/federation/v1/x", "o.example", "d.example")
    garbled = XMatrixAuth(auth.origin, None, (("ed25519:k1", "!!!not base64"),))
    with pytest.raises(MatrixError):
        check_request_signature(request, garbled, {"ed25519:k1": get_verify_key(key)})


def test_xmatrix_decode_verify_key_wants_32_bytes():
    key = generate_signing_key("k1")
    from unpaddedbase64 import encode_base64

    encoded = encode_base64(get_verify_key(key).encode())
    assert decode_verify_key("ed25519:k1", encoded).version == "k1"
    with pytest.raises(ValueError, match="32 bytes"):
        decode_verify_key("ed25519:k1", encode_base64(b"short"))


def test_xmatrix_parse_repeated_key_id_collapses_to_one_signature():
    # Issue 21 finding 7: each copy was verified; Synapse keeps one signature per key id.
    header = f'X-Matrix origin="o.example",key="{KEY}",sig="one"'
    last = f'X-Matrix origin="o.example",key="{KEY}",sig="last"'
    auth = parse_authorization_headers([header] * (MAX_AUTHORIZATION_HEADERS - 1) + [last])
    assert auth.signatures == ((KEY, "last"),)


def test_xmatrix_parse_too_many_headers_is_unauthorized():
    header = f'X-Matrix origin="o.example",key="{KEY}",sig="one"'
    with pytest.raises(MatrixError) as raised:
        parse_authorization_headers([header] * 350)
    assert raised.value.errcode == "M_UNAUTHORIZED"
    assert raised.value.status == 401
    # Other schemes do not count.
    assert parse_authorization_headers(["Bearer x"] * 50 + [header]).signatures == ((KEY, "one"),)


def test_xmatrix_check_signature_runs_after_first_before_the_second():
    key, auth = _signed()
    second = generate_signing_key("k2")
    signed_twice = XMatrixAuth(
        auth.origin, auth.destination, (*auth.signatures, ("ed25519:k2", "AAAA"))
    )
    request = build_request_json("GET", "/_matrix/federation/v1/x", "o.example", "d.example")
    keys = {"ed25519:k1": get_verify_key(key), "ed25519:k2": get_verify_key(second)}
    calls = []

    def limited():
        calls.append(1)
        raise MatrixError("M_LIMIT_EXCEEDED", "slow down")

    with pytest.raises(MatrixError) as raised:
        check_request_signature(request, signed_twice, keys, after_first=limited)
    # The limit answered, not the (bad) second signature: it was never verified.
    assert raised.value.errcode == "M_LIMIT_EXCEEDED"
    assert calls == [1]
    check_request_signature(request, auth, keys, after_first=lambda: calls.append(2))
    assert calls == [1, 2]
