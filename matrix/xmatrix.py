"""X-Matrix request signing: the Authorization header grammar and the signed request object."""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import CryptoError
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import sign_json
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import decode_base64

from matrix.canonical import encode_canonical_json
from matrix.errors import MatrixError
from matrix.types import JsonDict

# SS §Request Authentication says nothing about the status of a malformed header; Synapse answers
# 400 with errcode M_UNAUTHORIZED. We answer 401 M_UNAUTHORIZED for every authentication failure,
# so a caller only has to look at one status to know its credentials were refused.
_UNAUTHORIZED = "M_UNAUTHORIZED"

_SCHEME = "x-matrix"
# RFC 9110 §5.6.2 tchar.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
# SS §Request Authentication: "receivers should accept colons in unquoted values" (older senders
# wrote origin=example.org:8448 and key=ed25519:abc without quotes).
_UNQUOTED_VALUE_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:]+")
# RFC 9110 §5.6.4 quoted-string: qdtext / quoted-pair (obs-text allowed, control characters not).
_QUOTED_RE = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
_OWS = " \t"
_KNOWN_PARAMS = {"origin", "destination", "key", "sig"}
# SS §Request Authentication sets no number of Authorization headers. Synapse collapses them
# into one signature per key id (a dict) and so do we; a server has one or two keys at a time,
# so more X-Matrix headers than this are refused before any is verified (issue 21, finding 7).
MAX_AUTHORIZATION_HEADERS = 8


@dataclass(frozen=True)
class XMatrixAuth:
    """What the X-Matrix Authorization header(s) of one request claim."""

    origin: str
    destination: str | None
    # (key_id, unpadded base64 signature), in header order.
    signatures: tuple[tuple[str, str], ...]


def _malformed(why: str) -> MatrixError:
    return MatrixError(_UNAUTHORIZED, f"Malformed X-Matrix Authorization header: {why}")


# One whole parameter (leading OWS and empty list elements, name, value, OWS, then a comma or the
# end), so a well-formed header is parsed one regex match per parameter. Anything it does not
# match is malformed, and _diagnose says why.
_PARAM_RE = re.compile(
    rf"[ \t,]*({_TOKEN})[ \t]*=[ \t]*"
    rf"(?:{_QUOTED_RE.pattern}|({_UNQUOTED_VALUE_RE.pattern}))[ \t]*(?:,|\Z)"
)
_LIST_END_RE = re.compile(r"[ \t,]*\Z")


def _parse_params(text: str) -> dict[str, str]:
    """RFC 9110 §11.2 ``#auth-param``: name BWS "=" BWS (token / quoted-string), comma separated."""
    params: dict[str, str] = {}
    pos = 0
    while _LIST_END_RE.match(text, pos) is None:
        match = _PARAM_RE.match(text, pos)
        if match is None:
            raise _diagnose(text[pos:])
        name, quoted, unquoted = match.groups()
        # The receiver MUST undo backslash escapes (\x -> x).
        if quoted is None:
            value = unquoted
        elif "\\" in quoted:
            value = _QUOTED_PAIR_RE.sub(lambda m: m.group(1), quoted)
        else:
            value = quoted
        _add_param(params, name.lower(), value)
        pos = match.end()
    return params


def _add_param(params: dict[str, str], name: str, value: str) -> None:
    # The spec's parameter table says `signature`; its example and every server use `sig`.
    if name == "signature":
        name = "sig"
    if name in _KNOWN_PARAMS:
        # RFC 9110 §11.2: each parameter name MUST only occur once per challenge.
        if name in params:
            raise _malformed(f"parameter {name!r} is repeated")
        params[name] = value
    # SS §Request Authentication: unknown parameters are ignored.


def _diagnose(text: str) -> MatrixError:
    """Why ``text`` (from the first parameter _PARAM_RE did not match) is not a parameter."""
    rest = text.lstrip(_OWS + ",")
    name = _TOKEN_RE.match(rest)
    if name is None:
        return _malformed("expected a parameter name")
    after = rest[name.end() :].lstrip(_OWS)
    if not after.startswith("="):
        return _malformed(f"parameter {name.group().lower()!r} has no value")
    value = after[1:].lstrip(_OWS)
    if _QUOTED_RE.match(value) is None and _UNQUOTED_VALUE_RE.match(value) is None:
        return _malformed(f"parameter {name.group().lower()!r} has an invalid value")
    return _malformed(f"unexpected text after parameter {name.group().lower()!r}")


def _split_scheme(value: str) -> str | None:
    """The parameter text of an X-Matrix credential, or None for any other scheme."""
    scheme, separator, rest = value.partition(" ")
    # RFC 9110 §11.1: the scheme is case-insensitive; SS: one or more spaces follow it.
    if scheme.lower() != _SCHEME:
        return None
    if not separator:
        raise _malformed("no parameters")
    return rest.lstrip(" ")


def parse_authorization_headers(values: list[str]) -> XMatrixAuth:
    """Parse every ``Authorization`` header of a request; other schemes are skipped.

    Like Synapse, each X-Matrix header contributes one (key, sig) pair; all of them must name the
    same origin (and destination, when given).
    """
    origin: str | None = None
    destination: str | None = None
    # key id -> sig; a repeated key id keeps its last signature, as Synapse's dict does.
    signatures: dict[str, str] = {}
    count = 0
    for value in values:
        text = _split_scheme(value.strip(_OWS))
        if text is None:
            continue
        count += 1
        if count > MAX_AUTHORIZATION_HEADERS:
            raise _malformed(f"more than {MAX_AUTHORIZATION_HEADERS} X-Matrix headers")
        params = _parse_params(text)
        for required in ("origin", "key", "sig"):
            if not params.get(required):
                raise _malformed(f"missing {required!r}")
        if origin is not None and params["origin"] != origin:
            raise _malformed("headers name different origins")
        origin = params["origin"]
        header_destination = params.get("destination")
        if header_destination is not None:
            if destination is not None and header_destination != destination:
                raise _malformed("headers name different destinations")
            destination = header_destination
        signatures[params["key"]] = params["sig"]
    if origin is None:
        raise MatrixError(_UNAUTHORIZED, "Missing X-Matrix Authorization header")
    return XMatrixAuth(origin=origin, destination=destination, signatures=tuple(signatures.items()))


def build_request_json(
    method: str,
    uri: str,
    origin: str,
    destination: str,
    content: Any = None,
) -> JsonDict:
    """The object an X-Matrix signature covers (SS §Request Authentication).

    ``content`` is the parsed body; the key is present only when the request has a body.
    """
    request: JsonDict = {
        "method": method.upper(),
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        request["content"] = content
    return request


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sign_request(
    method: str,
    uri: str,
    origin: str,
    destination: str,
    signing_key: SigningKey,
    content: Any = None,
) -> str:
    """The ``Authorization`` header value for a request, in the spec's compatibility form:
    one space after the scheme, lower-case names, quoted values, no whitespace around commas."""
    signed = sign_json(
        build_request_json(method, uri, origin, destination, content), origin, signing_key
    )
    key_id = f"{signing_key.alg}:{signing_key.version}"
    sig = signed["signatures"][origin][key_id]
    params = (
        ("origin", origin),
        ("destination", destination),
        ("key", key_id),
        ("sig", sig),
    )
    return "X-Matrix " + ",".join(f"{name}={_quote(value)}" for name, value in params)


def decode_verify_key(key_id: str, key_base64: str) -> VerifyKey:
    """A VerifyKey from its id and unpadded base64 (raises ValueError when malformed)."""
    key_bytes = decode_base64(key_base64)
    if len(key_bytes) != 32:
        raise ValueError("an ed25519 key is 32 bytes")
    verify_key: VerifyKey = decode_verify_key_bytes(key_id, key_bytes)
    return verify_key


def check_request_signature(
    request_json: JsonDict,
    auth: XMatrixAuth,
    verify_keys: Mapping[str, VerifyKey],
    after_first: Callable[[], None] | None = None,
) -> None:
    """Check the header's signatures over ``request_json`` (built by build_request_json).

    ``verify_keys`` holds the origin's keys that may authenticate a request now. As in Synapse,
    every signature whose key we hold must verify and at least one must; signatures by keys we
    do not hold are ignored. ``after_first`` runs once the first signature has verified (the
    origin is then known), before any other is: the per-origin rate limit goes there, so an
    origin over its limit cannot make us verify more than one signature per request.
    """
    # APPX §Checking for a Signature: the signed bytes are the canonical JSON of the object
    # without "signatures" and "unsigned" (build_request_json has neither at its top level).
    # Encoded once for all signatures and checked by PyNaCl directly, as signedjson's
    # verify_signed_json would, without its copy and re-encoding per signature (issue 7).
    message: bytes | None = None
    checked = 0
    for key_id, sig in auth.signatures:
        verify_key = verify_keys.get(key_id)
        if verify_key is None:
            continue
        if message is None:
            message = encode_canonical_json(
                {k: v for k, v in request_json.items() if k not in ("signatures", "unsigned")}
            )
        try:
            verify_key.verify(message, decode_base64(sig))
        except (ValueError, TypeError, CryptoError) as exc:
            raise MatrixError(
                _UNAUTHORIZED, f"Invalid signature for {auth.origin} key {key_id}"
            ) from exc
        checked += 1
        if checked == 1 and after_first is not None:
            after_first()
    if not checked:
        raise MatrixError(_UNAUTHORIZED, f"No valid key of {auth.origin} for this request")
