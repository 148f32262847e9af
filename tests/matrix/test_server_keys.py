"""Checking other servers' key documents (SS §Retrieving server keys): pure, no network."""

import copy

import pytest
from signedjson.key import generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from matrix.server_keys import (
    MAX_KEY_VALIDITY_MS,
    KeyResponseError,
    build_server_keys,
    check_key_response,
)

NAME = "remote.example"
NOW = 1_790_000_000_000


def _document(key=None, old=None, now=NOW):
    key = key or generate_signing_key("k1")
    return key, build_server_keys(NAME, key, old or {}, now)


def _resign(document, key):
    unsigned = {k: v for k, v in document.items() if k != "signatures"}
    return sign_json(unsigned, NAME, key)


def test_check_key_response_accepts_a_good_document():
    key, document = _document()
    keys = check_key_response(document, NAME, NOW)
    assert set(keys) == {"ed25519:k1"}
    assert keys["ed25519:k1"].verify_key == get_verify_key(key)
    assert keys["ed25519:k1"].valid_until_ts == document["valid_until_ts"]
    assert keys["ed25519:k1"].expired_ts is None


def test_check_key_response_keeps_old_keys_with_expired_ts():
    old = generate_signing_key("k0")
    old_entry = {"key": encode_base64(get_verify_key(old).encode()), "expired_ts": NOW - 5}
    _key, document = _document(old={"ed25519:k0": old_entry})
    keys = check_key_response(document, NAME, NOW)
    assert keys["ed25519:k0"].expired_ts == NOW - 5
    assert not keys["ed25519:k0"].may_sign_request(NOW - 10)
    assert keys["ed25519:k0"].may_sign_event(NOW - 6)
    assert not keys["ed25519:k0"].may_sign_event(NOW - 5)


def test_check_key_response_caps_validity_at_seven_days():
    key = generate_signing_key("k1")
    document = build_server_keys(NAME, key, {}, NOW + 30 * MAX_KEY_VALIDITY_MS)
    keys = check_key_response(document, NAME, NOW)
    assert keys["ed25519:k1"].valid_until_ts == NOW + MAX_KEY_VALIDITY_MS


def test_check_key_response_skips_other_algorithms():
    key, document = _document()
    document["verify_keys"]["curve9:x"] = {"key": "whatever"}
    keys = check_key_response(_resign(document, key), NAME, NOW)
    assert set(keys) == {"ed25519:k1"}


def _mutations():
    def set_path(path, value, resign=True):
        def mutate(document, key):
            target = document
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
            return _resign(document, key) if resign else document

        return mutate

    def delete(name):
        def mutate(document, key):
            del document[name]
            return _resign(document, key) if name != "signatures" else document

        return mutate

    short_key = encode_base64(b"x" * 31)
    return [
        pytest.param(lambda d, k: [d], id="not-an-object"),
        pytest.param(set_path(["server_name"], "other.example"), id="wrong-server-name"),
        pytest.param(delete("server_name"), id="no-server-name"),
        pytest.param(set_path(["valid_until_ts"], "soon"), id="valid-until-not-int"),
        pytest.param(set_path(["valid_until_ts"], True), id="valid-until-bool"),
        pytest.param(delete("valid_until_ts"), id="no-valid-until"),
        pytest.param(set_path(["verify_keys"], {}), id="no-verify-keys"),
        pytest.param(set_path(["verify_keys"], []), id="verify-keys-not-object"),
        pytest.param(set_path(["verify_keys", "ed25519:k1", "key"], short_key), id="short-key"),
        pytest.param(set_path(["verify_keys", "ed25519:k1"], "abc"), id="key-entry-not-object"),
        pytest.param(set_path(["verify_keys", "ed25519:bad-id!"], {"key": "x"}), id="bad-key-id"),
        pytest.param(delete("signatures"), id="unsigned"),
        pytest.param(set_path(["signatures"], {"other.example": {}}, False), id="signed-by-other"),
        pytest.param(set_path(["valid_until_ts"], NOW + 1, resign=False), id="tampered"),
        pytest.param(
            set_path(["old_verify_keys", "ed25519:k0"], {"key": short_key, "expired_ts": 1}),
            id="bad-old-key",
        ),
        pytest.param(
            set_path(
                ["old_verify_keys", "ed25519:k0"],
                {"key": encode_base64(b"y" * 32)},
            ),
            id="old-key-without-expired-ts",
        ),
    ]


@pytest.mark.parametrize("mutate", _mutations())
def test_check_key_response_rejects(mutate):
    key, document = _document()
    bad = mutate(copy.deepcopy(document), key)
    with pytest.raises(KeyResponseError):
        check_key_response(bad, NAME, NOW)


def test_check_key_response_rejects_signature_by_a_foreign_key_only():
    _key, document = _document()
    impostor = generate_signing_key("k9")
    unsigned = {k: v for k, v in document.items() if k != "signatures"}
    with pytest.raises(KeyResponseError):
        check_key_response(sign_json(unsigned, NAME, impostor), NAME, NOW)


def test_check_key_response_rejects_non_canonical_base64():
    key, document = _document()
    encoded = document["verify_keys"]["ed25519:k1"]["key"]
    # 43 characters carry 258 bits; flipping the last, unused bits gives another spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(encoded[-1]) ^ 1]
    document["verify_keys"]["ed25519:k1"]["key"] = encoded[:-1] + last
    with pytest.raises(KeyResponseError):
        check_key_response(_resign(document, key), NAME, NOW)
