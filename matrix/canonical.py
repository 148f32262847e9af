"""Canonical JSON: encoding, the v6+ value constraints, and strict parsing of request bodies."""

import json
import math
from collections.abc import Iterator
from typing import Any, NoReturn

import canonicaljson

from matrix.errors import MatrixError
from matrix.types import JsonDict

# APPX §Canonical JSON: integers must lie in [-(2**53)+1, 2**53-1].
CANONICALJSON_MAX_INT = 2**53 - 1
CANONICALJSON_MIN_INT = -CANONICALJSON_MAX_INT


class _DuplicateKeyError(Exception):
    pass


class _NonStandardConstantError(Exception):
    pass


def encode_canonical_json(value: object) -> bytes:
    """The canonical JSON bytes of ``value`` (APPX §Canonical JSON)."""
    # APPX §Canonical JSON: sorted keys, no whitespace, UTF-8, minimal escaping.
    return canonicaljson.encode_canonical_json(value)


def _walk(value: object) -> Iterator[object]:
    """Every value nested in ``value`` (keys included), iteratively so depth cannot overflow."""
    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_canonical_json(value: object) -> None:
    """Raise M_BAD_JSON if ``value`` holds a float or an out-of-range integer (v6+ rooms)."""
    for item in _walk(value):
        # APPX §Canonical JSON: numbers are integers; floats (and NaN/Infinity) are not allowed.
        if isinstance(item, float):
            raise MatrixError("M_BAD_JSON", "Floats are not allowed in canonical JSON")
        # APPX §Canonical JSON: integers in [-(2**53)+1, 2**53-1]. bool is an int but is fine.
        if (
            isinstance(item, int)
            and not isinstance(item, bool)
            and not CANONICALJSON_MIN_INT <= item <= CANONICALJSON_MAX_INT
        ):
            raise MatrixError("M_BAD_JSON", "Integer out of the canonical JSON range")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> JsonDict:
    result: JsonDict = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> NoReturn:
    # RFC 8259 §6: NaN and Infinity are not JSON; Python's json accepts them by default.
    raise _NonStandardConstantError(name)


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        # 1e400 is JSON (RFC 8259 §6 leaves the range to implementations) but overflows to
        # Infinity, which no JSON encoder can write back (it was a 500 at the signature check).
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def parse_json_object(raw: bytes) -> JsonDict:
    """Parse a request body that must be a JSON object (CS §API standards, SS §API standards).

    Raises M_NOT_JSON when ``raw`` is not JSON and M_BAD_JSON when it is JSON but not a
    usable object.
    """
    try:
        # RFC 8259 §8.1: JSON text exchanged between systems is UTF-8.
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, _NonStandardConstantError) as e:
        raise MatrixError("M_NOT_JSON", "Content is not valid JSON") from e
    except _DuplicateKeyError as e:
        # RFC 8259 §4: names SHOULD be unique; a repeated key makes the signed bytes ambiguous.
        raise MatrixError("M_BAD_JSON", "Duplicate key in JSON object") from e
    except RecursionError as e:
        raise MatrixError("M_BAD_JSON", "JSON is nested too deeply") from e
    except ValueError as e:
        # Python refuses integers with more than sys.get_int_max_str_digits() digits.
        raise MatrixError("M_BAD_JSON", "JSON number is too large") from e
    if not isinstance(value, dict):
        # SS §API standards: request bodies are JSON objects.
        raise MatrixError("M_BAD_JSON", "Content must be a JSON object")
    for item in _walk(value):
        # RFC 8259 §8.2: escaped lone surrogates are not Unicode and cannot be re-encoded.
        if isinstance(item, str) and _has_lone_surrogate(item):
            raise MatrixError("M_NOT_JSON", "JSON string has an unpaired surrogate")
    return value
