"""The keyring: caching, single flight, backoff and event-key validity, against a real remote."""

import asyncio

from signedjson.key import generate_signing_key, get_verify_key

from app.federation.keyring import Keyring
from db.store import Store

# Against the remote homeserver -----------------------------------------------------------------


def _run(federation_config, clock, body, store=None):
    async def main():
        keyring = Keyring(
            store or Store.open(federation_config.database_path), federation_config, clock
        )
        try:
            return await body(keyring)
        finally:
            await keyring.aclose()

    return asyncio.run(main())


def test_keyring_single_flight_for_concurrent_callers(federation_config, clock, remote):
    remote.mode, remote.hang_s = "hang", 0.3

    async def body(keyring):
        return await asyncio.gather(
            *(
                keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())
                for _ in range(30)
            )
        )

    results = _run(federation_config, clock, body)
    assert all(set(r) == {remote.key_id} for r in results)
    assert remote.key_fetches == 1


def test_keyring_survives_restart_through_sqlite(federation_config, clock, remote):
    async def body(keyring):
        return await keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())

    assert set(_run(federation_config, clock, body)) == {remote.key_id}
    assert set(_run(federation_config, clock, body)) == {remote.key_id}
    assert remote.key_fetches == 1


def test_keyring_event_keys_include_old_keys_before_expiry(federation_config, clock, remote):
    old_key_id = remote.key_id
    sent_before_rotation = clock.now_ms - 1000
    remote.rotate_key("remote2")
    clock.now_ms += 10

    async def body(keyring):
        for_request = await keyring.get_verify_keys(
            remote.server_name, [old_key_id, remote.key_id], clock()
        )
        old_event = await keyring.get_event_verify_keys(
            remote.server_name, [old_key_id], sent_before_rotation
        )
        new_event = await keyring.get_event_verify_keys(
            remote.server_name, [old_key_id], clock.now_ms
        )
        return for_request, old_event, new_event

    for_request, old_event, new_event = _run(federation_config, clock, body)
    assert set(for_request) == {remote.key_id}
    assert set(old_event) == {old_key_id}
    assert new_event == {}
    assert remote.key_fetches == 1


def test_keyring_failure_is_remembered_then_retried(federation_config, clock, remote):
    remote.mode = "bad_signature"

    async def body(keyring):
        first = await keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())
        remote.mode = "ok"
        during_backoff = await keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())
        clock.now_ms += int(federation_config.key_fetch_failure_backoff_s * 1000) + 1
        after = await keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())
        return first, during_backoff, after

    first, during_backoff, after = _run(federation_config, clock, body)
    assert first == {}
    assert during_backoff == {}
    assert set(after) == {remote.key_id}
    assert remote.key_fetches == 2


def test_keyring_own_server_name_uses_local_keys_without_fetching(federation_config, clock):

    own = generate_signing_key("own1")
    own_id = f"ed25519:{own.version}"

    async def body(keyring):
        name = federation_config.server_name
        return (
            await keyring.get_verify_keys(name, [own_id, "ed25519:other"], clock()),
            await keyring.get_event_verify_keys(name, [own_id], clock()),
        )

    async def main():
        keyring = Keyring(
            Store.open(federation_config.database_path),
            federation_config,
            clock,
            local_keys={own_id: get_verify_key(own)},
        )
        try:
            return await body(keyring)
        finally:
            await keyring.aclose()

    request_keys, event_keys = asyncio.run(main())
    assert list(request_keys) == [own_id]
    assert list(event_keys) == [own_id]
    assert request_keys[own_id].encode() == get_verify_key(own).encode()


def test_keyring_unknown_key_id_costs_one_lookup_while_backing_off(
    federation_config, clock, remote
):
    store = Store.open(federation_config.database_path)
    statements: list[str] = []

    async def body(keyring):
        first = await keyring.get_verify_keys(remote.server_name, ["ed25519:madeup"], clock())
        store.conn.set_trace_callback(statements.append)
        second = await keyring.get_verify_keys(remote.server_name, ["ed25519:madeup"], clock())
        store.conn.set_trace_callback(None)
        return first, second

    assert _run(federation_config, clock, body, store) == ({}, {})
    assert remote.key_fetches == 1, "a key id the server did not list is not fetched again"
    assert len([s for s in statements if "server_keys" in s]) == 1
