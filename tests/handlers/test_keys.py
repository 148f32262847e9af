"""GET /_matrix/key/v2/server: our published, self-signed key document (SS §Publishing Keys)."""

from importlib.metadata import version

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from app.signing_key import load_signing_key, public_key_base64, rotate_signing_key
from tests.conftest import FIXED_NOW_MS, SERVER_NAME


def test_keys_document_verifies_with_its_own_key(client, config):
    response = client.get("/_matrix/key/v2/server")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    key = load_signing_key(config.resolved_signing_key_path)
    key_id = f"ed25519:{key.version}"
    assert document["server_name"] == SERVER_NAME
    assert document["verify_keys"] == {key_id: {"key": public_key_base64(key)}}
    assert document["old_verify_keys"] == {}
    # keys_server.yaml: valid_until_ts ahead by about a day (never under an hour).
    assert document["valid_until_ts"] == FIXED_NOW_MS + 24 * 3600 * 1000
    verify_key = decode_verify_key_bytes(
        key_id, decode_base64(document["verify_keys"][key_id]["key"])
    )
    verify_signed_json(document, SERVER_NAME, verify_key)
    assert list(document["signatures"]) == [SERVER_NAME]


def test_keys_document_lists_retired_keys(tmp_path, config, clock):
    from starlette.testclient import TestClient

    from app.main import create_app
    from app.signing_key import load_or_generate_signing_key

    old = load_or_generate_signing_key(config.resolved_signing_key_path)
    rotate_signing_key(config.resolved_signing_key_path, config.old_verify_keys_path, 42)
    with TestClient(create_app(config, clock=clock)) as client:
        document = client.get("/_matrix/key/v2/server").json()
    assert document["old_verify_keys"] == {
        f"ed25519:{old.version}": {"key": public_key_base64(old), "expired_ts": 42}
    }
    assert f"ed25519:{old.version}" not in document["verify_keys"]


def test_version_endpoint(client):
    response = client.get("/_matrix/federation/v1/version")
    assert response.status_code == 200
    assert response.json() == {"server": {"name": "Antechamber", "version": version("antechamber")}}
