"""The server's signing key: generated once (0600), loaded after, never silently replaced."""

import stat

import pytest
from signedjson.key import get_verify_key

from app.signing_key import (
    SigningKeyError,
    key_id,
    load_old_verify_keys,
    load_or_generate_signing_key,
    load_signing_key,
    public_key_base64,
    rotate_signing_key,
)


def test_signing_key_generated_with_mode_0600_then_loaded(tmp_path):
    path = tmp_path / "keys" / "signing.key"
    first = load_or_generate_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    line = path.read_text().strip()
    algorithm, version, seed = line.split(" ")
    assert algorithm == "ed25519"
    assert version == first.version
    assert version.startswith("a_")
    assert len(seed) == 43
    second = load_or_generate_signing_key(path)
    assert key_id(second) == key_id(first)
    assert get_verify_key(second).encode() == get_verify_key(first).encode()


def test_signing_key_reads_synapse_format(tmp_path):
    # The spec's test-vector seed in Synapse's one-line format.
    path = tmp_path / "signing.key"
    path.write_text("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n")
    key = load_signing_key(path)
    assert key_id(key) == "ed25519:1"
    assert public_key_base64(key) == "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("garbage\n", id="one-word"),
        pytest.param("ed25519 a_x not-base64!!\n", id="bad-seed"),
        pytest.param("", id="empty"),
        pytest.param("ed25519 a 1\ned25519 b 2\n", id="two-lines"),
    ],
)
def test_signing_key_malformed_is_an_error_and_kept(tmp_path, content):
    path = tmp_path / "signing.key"
    path.write_text(content)
    with pytest.raises(SigningKeyError):
        load_or_generate_signing_key(path)
    assert path.read_text() == content


def test_signing_key_rotate_keeps_the_old_public_key(tmp_path):
    path = tmp_path / "signing.key"
    old_path = tmp_path / "old_verify_keys.json"
    old = load_or_generate_signing_key(path)
    new = rotate_signing_key(path, old_path, now_ms=1234)
    assert key_id(new) != key_id(old)
    assert key_id(load_signing_key(path)) == key_id(new)
    assert load_old_verify_keys(old_path) == {
        key_id(old): {"key": public_key_base64(old), "expired_ts": 1234}
    }


def test_old_verify_keys_malformed_is_an_error(tmp_path):
    path = tmp_path / "old.json"
    path.write_text('{"ed25519:x": {"key": 1}}')
    with pytest.raises(SigningKeyError):
        load_old_verify_keys(path)
    path.write_text("not json")
    with pytest.raises(SigningKeyError):
        load_old_verify_keys(path)
