"""The server's own ed25519 signing key: generated on first start, then loaded (Synapse format)."""

import json
import logging
import os
import secrets
import string
from pathlib import Path
from typing import Any

from signedjson.key import (
    generate_signing_key,
    get_verify_key,
    read_signing_keys,
    write_signing_keys,
)
from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

logger = logging.getLogger(__name__)


class SigningKeyError(Exception):
    """The signing key file exists but cannot be used; never silently replaced."""


def _new_key_version() -> str:
    # Synapse names generated keys "a_" + four random characters from [A-Za-z0-9].
    alphabet = string.ascii_letters + string.digits
    return "a_" + "".join(secrets.choice(alphabet) for _ in range(4))


def load_signing_key(path: Path) -> SigningKey:
    """Read the one-line ``ed25519 <version> <seed>`` key file at ``path``."""
    try:
        with path.open("r", encoding="utf-8") as handle:
            keys = read_signing_keys(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"signing key {str(path)!r}: cannot read ({exc})") from None
    except Exception as exc:  # signedjson raises bare ValueError/binascii errors on bad content
        raise SigningKeyError(
            f"signing key {str(path)!r}: malformed; expected 'ed25519 <key_id> <base64 seed>' "
            f"({exc})"
        ) from None
    if len(keys) != 1:
        raise SigningKeyError(
            f"signing key {str(path)!r}: expected exactly one key line, found {len(keys)}"
        )
    key: SigningKey = keys[0]
    return key


def load_or_generate_signing_key(path: Path) -> SigningKey:
    """Load the key at ``path``; if there is no file, generate one (mode 0600) and say so."""
    if path.exists():
        return load_signing_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key(_new_key_version())
    # O_EXCL: two workers starting at once must not both write a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_signing_key(path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        write_signing_keys(handle, [key])
    logger.info("Generated a new signing key ed25519:%s at %s", key.version, path)
    return key


def key_id(key: SigningKey) -> str:
    return f"{key.alg}:{key.version}"


def public_key_base64(key: SigningKey) -> str:
    return encode_base64(get_verify_key(key).encode())


def load_old_verify_keys(path: Path) -> dict[str, dict[str, Any]]:
    """Retired keys ``{key_id: {"key", "expired_ts"}}`` (written by ``antechamber keys rotate``)."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"old verify keys {str(path)!r}: unreadable ({exc})") from None
    if not isinstance(document, dict) or not all(
        isinstance(v, dict)
        and isinstance(v.get("key"), str)
        and isinstance(v.get("expired_ts"), int)
        for v in document.values()
    ):
        raise SigningKeyError(
            f"old verify keys {str(path)!r}: expected {{key_id: {{key, expired_ts}}}}"
        )
    return document


def rotate_signing_key(key_path: Path, old_keys_path: Path, now_ms: int) -> SigningKey:
    """Retire the current key into ``old_keys_path`` and write a new one in its place."""
    current = load_signing_key(key_path)
    old_keys = load_old_verify_keys(old_keys_path)
    old_keys[key_id(current)] = {"key": public_key_base64(current), "expired_ts": now_ms}
    old_keys_path.write_text(json.dumps(old_keys, indent=2) + "\n", encoding="utf-8")
    new_key = generate_signing_key(_new_key_version())
    tmp = key_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        write_signing_keys(handle, [new_key])
    os.replace(tmp, key_path)
    logger.info(
        "Rotated signing key: %s retired, ed25519:%s is current", key_id(current), new_key.version
    )
    return new_key
