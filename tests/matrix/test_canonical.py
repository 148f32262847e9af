"""Tests for matrix.canonical: encoding, v6+ value checks and strict body parsing."""

from typing import Any

import pytest

from matrix.canonical import check_canonical_json, encode_canonical_json, parse_json_object
from matrix.errors import MatrixError

MAX_INT = 2**53 - 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # APPX §Canonical JSON examples.
        pytest.param({}, b"{}", id="empty"),
        pytest.param({"one": 1, "two": "Two"}, b'{"one":1,"two":"Two"}', id="sorted"),
        pytest.param({"b": "2", "a": "1"}, b'{"a":"1","b":"2"}', id="reordered"),
        pytest.param({"本": 2, "日": 1}, '{"日":1,"本":2}'.encode(), id="code-point-order"),
        pytest.param({"a": "日"}, '{"a":"日"}'.encode(), id="no-needless-escape"),
        pytest.param({"a": "\u0000\x1f"}, b'{"a":"\\u0000\\u001f"}', id="lower-hex-controls"),
        pytest.param(
            {"auth": {"success": True, "mxid": "@john.doe:example.com", "profile": {}}},
            b'{"auth":{"mxid":"@john.doe:example.com","profile":{},"success":true}}',
            id="nested",
        ),
        pytest.param({"a": None, "b": [1, False]}, b'{"a":null,"b":[1,false]}', id="literals"),
    ],
)
def test_encode_canonical_json_matches_appendix_when_given_value(
    value: Any, expected: bytes
) -> None:
    assert encode_canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({}, id="empty"),
        pytest.param({"a": [MAX_INT, -MAX_INT, 0]}, id="int-bounds"),
        pytest.param({"a": True, "b": False}, id="bools"),
        pytest.param({"a": {"b": [{"c": None, "d": "x"}]}}, id="nested"),
        pytest.param([1, "two"], id="top-level-list"),
    ],
)
def test_check_canonical_json_accepts_value_when_within_constraints(value: Any) -> None:
    check_canonical_json(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"a": 1.5}, id="float"),
        pytest.param({"a": 1.0}, id="integral-float"),
        pytest.param({"a": float("nan")}, id="nan"),
        pytest.param({"a": float("inf")}, id="infinity"),
        pytest.param({"a": MAX_INT + 1}, id="int-too-big"),
        pytest.param({"a": -MAX_INT - 1}, id="int-too-small"),
        pytest.param({"a": {"b": [0, [2**60]]}}, id="nested-int"),
        pytest.param([{"x": 0.1}], id="float-in-list"),
    ],
)
def test_check_canonical_json_raises_bad_json_when_value_violates_constraints(value: Any) -> None:
    with pytest.raises(MatrixError) as exc_info:
        check_canonical_json(value)
    assert exc_info.value.errcode == "M_BAD_JSON"


def test_check_canonical_json_accepts_value_when_nested_deeper_than_recursion_limit() -> None:
    value: Any = 1
    for _ in range(5000):
        value = [value]
    check_canonical_json(value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"{}", {}, id="empty"),
        pytest.param(b' {"a": [1, "x", null, true]} ', {"a": [1, "x", None, True]}, id="spaces"),
        pytest.param('{"日":"本"}'.encode(), {"日": "本"}, id="utf-8"),
        pytest.param(b'{"a":"\\ud83d\\ude00"}', {"a": "\U0001f600"}, id="surrogate-pair"),
        pytest.param(b'{"a":{"a":1},"b":{"a":2}}', {"a": {"a": 1}, "b": {"a": 2}}, id="same-key"),
    ],
)
def test_parse_json_object_returns_dict_when_valid(raw: bytes, expected: Any) -> None:
    assert parse_json_object(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b"{'a': 1}", id="single-quotes"),
        pytest.param(b'{"a":NaN}', id="nan"),
        pytest.param(b'{"a":Infinity}', id="infinity"),
        pytest.param(b'{"a":-Infinity}', id="minus-infinity"),
        pytest.param(b'{"a":"\xff"}', id="invalid-utf-8"),
        pytest.param(b'\xef\xbb\xbf{"a":1}', id="utf-8-bom"),
        pytest.param(b'{"a":"\\ud800"}', id="lone-surrogate-value"),
        pytest.param(b'{"\\udc00":1}', id="lone-surrogate-key"),
    ],
)
def test_parse_json_object_raises_not_json_when_not_valid_json(raw: bytes) -> None:
    with pytest.raises(MatrixError) as exc_info:
        parse_json_object(raw)
    assert exc_info.value.errcode == "M_NOT_JSON"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[]", id="list"),
        pytest.param(b'"a"', id="string"),
        pytest.param(b"1", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"a":1,"a":2}', id="duplicate-key"),
        pytest.param(b'{"a":{"b":1,"b":1}}', id="nested-duplicate-key"),
        pytest.param(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep-nesting"),
        pytest.param(b'{"a":' + b"9" * 5000 + b"}", id="huge-integer"),
    ],
)
def test_parse_json_object_raises_bad_json_when_not_an_acceptable_object(raw: bytes) -> None:
    with pytest.raises(MatrixError) as exc_info:
        parse_json_object(raw)
    assert exc_info.value.errcode == "M_BAD_JSON"


def test_parse_json_object_leaves_canonical_check_to_caller_when_number_is_float() -> None:
    # v1-v5 rooms must tolerate floats, so parsing accepts them; v6+ callers run the check.
    value = parse_json_object(b'{"a":1.5,"b":2.5e300}')
    with pytest.raises(MatrixError) as exc_info:
        check_canonical_json(value)
    assert exc_info.value.errcode == "M_BAD_JSON"


def test_parse_json_object_refuses_a_float_that_overflows_to_infinity() -> None:
    # Infinity cannot be encoded back (signature checks would fail with a 500).
    for raw in (b'{"b":1e400}', b'{"b":-1e400}'):
        with pytest.raises(MatrixError) as exc_info:
            parse_json_object(raw)
        assert exc_info.value.errcode == "M_BAD_JSON"
