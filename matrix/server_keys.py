"""Server key documents (SS §Publishing Keys, keys_server.yaml): building ours, checking theirs."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from signedjson.key import get_verify_key
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from signedjson.types import SigningKey, VerifyKey
from unpaddedbase64 import encode_base64

from api_types.federation import ServerKeys
from matrix.types import JsonDict
from matrix.xmatrix import decode_verify_key

# keys_server.yaml: origin servers should not publish responses expiring in under an hour;
# Synapse publishes a day ahead (key_refresh_interval default 1d).
KEY_VALIDITY_MS = 24 * 60 * 60 * 1000


def build_server_keys(
    server_name: str,
    signing_key: SigningKey,
    old_verify_keys: Mapping[str, JsonDict],
    now_ms: int,
) -> ServerKeys:
    """The self-signed key document for ``GET /_matrix/key/v2/server``."""
    key_id = f"{signing_key.alg}:{signing_key.version}"
    document: JsonDict = {
        "server_name": server_name,
        "verify_keys": {key_id: {"key": encode_base64(get_verify_key(signing_key).encode())}},
        # keys.yaml: each old key carries its key and when it stopped being used.
        "old_verify_keys": {
            old_id: {"key": old["key"], "expired_ts": old["expired_ts"]}
            for old_id, old in old_verify_keys.items()
            if old_id != key_id
        },
        "valid_until_ts": now_ms + KEY_VALIDITY_MS,
    }
    # sign_json returns the document it was given plus its `signatures`: the ServerKeys shape.
    return cast(ServerKeys, sign_json(document, server_name, signing_key))


# keys.yaml / rooms v5: use min(valid_until_ts, now + 7 days) so a remote cannot pin a key.
MAX_KEY_VALIDITY_MS = 7 * 24 * 60 * 60 * 1000
# APPX §Signing Keys: key id = algorithm ":" version, version of [a-zA-Z0-9_].
_KEY_ID_RE = re.compile(r"^ed25519:[a-zA-Z0-9_]+$")
# APPX §Unpadded Base64: an ed25519 public key (32 bytes) is 43 characters, no padding.
_BASE64_32_BYTES_RE = re.compile(r"^[A-Za-z0-9+/]{43}$")


class KeyResponseError(Exception):
    """A key document that fails our checks (wrong server, bad key, bad self-signature)."""


@dataclass(frozen=True)
class CachedKey:
    verify_key: VerifyKey
    # When to stop trusting a key from verify_keys (capped at fetch + 7 days); for an old key,
    # equal to expired_ts.
    valid_until_ts: int
    # Set for keys learned from old_verify_keys: they verify events, never requests.
    expired_ts: int | None

    def may_sign_request(self, now_ms: int) -> bool:
        return self.expired_ts is None and now_ms <= self.valid_until_ts

    def may_sign_event(self, origin_server_ts: int) -> bool:
        # SS §Validating hashes and signatures: an old key verifies events sent before it
        # expired; a current key verifies events up to its valid_until_ts (rooms v5+).
        if self.expired_ts is not None:
            return origin_server_ts < self.expired_ts
        return origin_server_ts <= self.valid_until_ts

    def is_stale(self, now_ms: int) -> bool:
        """A current key whose cached lifetime has run out: worth asking the origin again."""
        return self.expired_ts is None and now_ms > self.valid_until_ts


def _require(condition: bool, why: str) -> None:
    if not condition:
        raise KeyResponseError(why)


def _decode_key(key_id: str, entry: Any) -> VerifyKey:
    _require(isinstance(entry, dict), f"{key_id}: not an object")
    key_base64 = entry.get("key")
    _require(
        isinstance(key_base64, str) and _BASE64_32_BYTES_RE.match(key_base64) is not None,
        f"{key_id}: key is not unpadded base64 of 32 bytes",
    )
    verify_key = decode_verify_key(key_id, key_base64)
    # Non-canonical trailing bits would decode to the same key under another spelling.
    _require(encode_base64(verify_key.encode()) == key_base64, f"{key_id}: non-canonical base64")
    return verify_key


def _ed25519_entries(section: Any, name: str) -> dict[str, Any]:
    """The ed25519 entries of verify_keys / old_verify_keys; other algorithms are skipped
    (only ed25519 is defined, and a future algorithm must not break federation with us)."""
    _require(isinstance(section, dict), f"{name} is not an object")
    entries: dict[str, Any] = {}
    for key_id, entry in section.items():
        if not key_id.startswith("ed25519:"):
            continue
        _require(_KEY_ID_RE.match(key_id) is not None, f"{name}: bad key id {key_id!r}")
        entries[key_id] = entry
    return entries


def check_key_response(document: Any, server_name: str, now_ms: int) -> dict[str, CachedKey]:
    """The keys of a ``/_matrix/key/v2/server`` answer from ``server_name``, checked.

    Checks (SS §Retrieving server keys; Synapse's process_v2_response): a JSON object for the
    server we asked, well-formed ed25519 keys, an integer valid_until_ts, and at least one
    self-signature by a key from this response's verify_keys (every such signature must verify).
    """
    _require(isinstance(document, dict), "not a JSON object")
    _require(document.get("server_name") == server_name, "server_name is not the server asked")
    valid_until_ts = document.get("valid_until_ts")
    _require(
        isinstance(valid_until_ts, int) and not isinstance(valid_until_ts, bool),
        "valid_until_ts is not an integer",
    )
    assert isinstance(valid_until_ts, int)
    current = {
        key_id: _decode_key(key_id, entry)
        for key_id, entry in _ed25519_entries(document.get("verify_keys"), "verify_keys").items()
    }
    _require(bool(current), "no ed25519 verify_keys")

    signatures = document.get("signatures")
    _require(isinstance(signatures, dict), "signatures is not an object")
    own_signatures = signatures.get(server_name)
    _require(isinstance(own_signatures, dict), "not signed by the server")
    verified = 0
    for key_id in own_signatures:
        if key_id not in current:
            continue
        try:
            verify_signed_json(document, server_name, current[key_id])
        # ValueError: canonical JSON refuses what the document holds (e.g. out-of-range floats).
        except (SignatureVerifyException, ValueError) as exc:
            raise KeyResponseError(f"bad self-signature by {key_id}") from exc
        verified += 1
    _require(verified > 0, "no self-signature by a key in verify_keys")

    keys: dict[str, CachedKey] = {}
    old_section = document.get("old_verify_keys", {})
    for key_id, entry in _ed25519_entries(old_section, "old_verify_keys").items():
        verify_key = _decode_key(key_id, entry)
        expired_ts = entry.get("expired_ts")
        _require(
            isinstance(expired_ts, int) and not isinstance(expired_ts, bool),
            f"{key_id}: expired_ts is not an integer",
        )
        keys[key_id] = CachedKey(verify_key, expired_ts, expired_ts)
    capped_until = min(valid_until_ts, now_ms + MAX_KEY_VALIDITY_MS)
    for key_id, verify_key in current.items():
        # A key listed as both current and old is current: the server still signs with it.
        keys[key_id] = CachedKey(verify_key, capped_until, None)
    return keys
