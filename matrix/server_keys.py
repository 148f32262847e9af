"""Server key documents (SS §Publishing Keys, keys_server.yaml): building our own."""

from collections.abc import Mapping

from signedjson.key import get_verify_key
from signedjson.sign import sign_json
from signedjson.types import SigningKey
from unpaddedbase64 import encode_base64

from matrix.types import JsonDict

# keys_server.yaml: origin servers should not publish responses expiring in under an hour;
# Synapse publishes a day ahead (key_refresh_interval default 1d).
KEY_VALIDITY_MS = 24 * 60 * 60 * 1000


def build_server_keys(
    server_name: str,
    signing_key: SigningKey,
    old_verify_keys: Mapping[str, JsonDict],
    now_ms: int,
) -> JsonDict:
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
    signed: JsonDict = sign_json(document, server_name, signing_key)
    return signed
