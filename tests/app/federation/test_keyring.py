"""The keyring: caching, single flight, backoff and event-key validity, against a real remote."""

import asyncio
import dataclasses

import httpx
import pytest
from signedjson.key import generate_signing_key, get_verify_key

from app.federation.client import FederationHttp
from app.federation.keyring import (
    MAX_KEY_IDS_PER_LOOKUP,
    MAX_STORED_KEYS_PER_SERVER,
    STORED_KEY_RETENTION_MS,
    Keyring,
)
from db.store import Store, StoredServerKey
from matrix.server_keys import MAX_KEY_VALIDITY_MS
from tests.conftest import KEY_FETCH_TIMEOUT_S

# Against the remote homeserver -----------------------------------------------------------------


def _run(federation_config, clock, body, store=None):
    async def main():
        keyring = Keyring(store or Store.open(federation_config.database), federation_config, clock)
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


def test_keyring_fetch_keeps_the_keys_before_it_ends(federation_config, clock, remote):
    # A request arriving as a fetch ends (after the single-flight entry is gone, before the first
    # waiter resumes) must find the keys cached, not start a second fetch: the fetch itself
    # keeps what its waiters asked for. Seen as two fetches for one new origin under load.
    remote.mode, remote.hang_s = "hang", 0.2
    seen_at_end = []

    async def body(keyring):
        first = asyncio.create_task(
            keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())
        )
        while remote.server_name not in keyring._inflight:
            await asyncio.sleep(0)
        task, _asked = keyring._inflight[remote.server_name]
        task.add_done_callback(
            lambda _t: seen_at_end.append(
                (
                    remote.server_name in keyring._inflight,
                    keyring._cached(remote.server_name, remote.key_id),
                )
            )
        )
        await first
        return await keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())

    assert set(_run(federation_config, clock, body)) == {remote.key_id}
    [(still_in_flight, cached)] = seen_at_end
    assert not still_in_flight
    assert cached is not None
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
            Store.open(federation_config.database),
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


@pytest.mark.sqlite
def test_keyring_unknown_key_id_costs_one_lookup_while_backing_off(
    federation_config, clock, remote
):
    store = Store.open(federation_config.database)
    statements: list[str] = []

    async def body(keyring):
        first = await keyring.get_verify_keys(remote.server_name, ["ed25519:madeup"], clock())
        store.db.conn.set_trace_callback(statements.append)
        second = await keyring.get_verify_keys(remote.server_name, ["ed25519:madeup"], clock())
        store.db.conn.set_trace_callback(None)
        return first, second

    assert _run(federation_config, clock, body, store) == ({}, {})
    assert remote.key_fetches == 1, "a key id the server did not list is not fetched again"
    assert len([s for s in statements if "server_keys" in s]) == 1


# Hostile origins (issue 21) ---------------------------------------------------------------------


def _stored_rows(store, server_name):
    return store.db.execute(
        "SELECT COUNT(*) FROM server_keys WHERE server_name = ?", (server_name,)
    ).fetchone()[0]


def test_keyring_keeps_only_asked_keys_when_document_is_bloated(federation_config, clock, remote):
    # Finding 1: 2,400 fresh old_verify_keys per answer were all kept, in memory and on disk;
    # now answers are at most 64 KiB (about 600 keys), and only the asked key is kept.
    remote.mode, remote.bloat_keys = "bloated", 600
    store = Store.open(federation_config.database)

    async def body(keyring):
        found = []
        for round_ in range(3):
            made_up = f"ed25519:madeup{round_}"
            found.append(
                await keyring.get_verify_keys(remote.server_name, [remote.key_id, made_up], clock())
            )
            # Past the per-server backoff and the key's cached lifetime: fetched again.
            clock.now_ms += MAX_KEY_VALIDITY_MS + 1
        return found, len(keyring._keys)

    found, cached = _run(federation_config, clock, body, store)
    assert all(set(keys) == {remote.key_id} for keys in found)
    assert remote.key_fetches == 3
    assert cached == 1
    assert _stored_rows(store, remote.server_name) == 1


def test_keyring_refuses_an_oversized_key_document(federation_config, clock, remote):
    remote.mode = "bloated"  # 2,400 keys: about 230 KB

    async def body(keyring):
        return await keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())

    assert _run(federation_config, clock, body) == {}


def test_keyring_stored_rows_are_capped_per_server_and_expire(federation_config, clock, remote):
    store = Store.open(federation_config.database)
    stale = [
        StoredServerKey("old.example", f"ed25519:k{i}", remote.verify_key_base64, 0, None)
        for i in range(3)
    ]
    store.store_server_keys(stale, fetched_ts=clock() - STORED_KEY_RETENTION_MS - 1)
    many = [
        StoredServerKey(remote.server_name, f"ed25519:k{i}", remote.verify_key_base64, 0, None)
        for i in range(MAX_STORED_KEYS_PER_SERVER + 5)
    ]
    store.store_server_keys(many, fetched_ts=clock() - 1)

    async def body(keyring):
        return await keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())

    assert set(_run(federation_config, clock, body, store)) == {remote.key_id}
    assert _stored_rows(store, remote.server_name) == MAX_STORED_KEYS_PER_SERVER
    assert store.get_server_key(remote.server_name, remote.key_id) is not None
    assert _stored_rows(store, "old.example") == 0


def test_keyring_made_up_key_ids_back_off_per_server(federation_config, clock, remote):
    # Findings 2 and 3: a fresh key id per request made a fresh fetch, and a negative-cache entry
    # per id (rebuilt on every fetch).
    async def body(keyring):
        for i in range(50):
            assert (
                await keyring.get_verify_keys(remote.server_name, [f"ed25519:x{i}"], clock()) == {}
            )
        return len(keyring._server_backoff), len(keyring._keys)

    assert _run(federation_config, clock, body) == (1, 0)
    assert remote.key_fetches == 1


@pytest.mark.sqlite
def test_keyring_looks_up_at_most_a_few_key_ids_per_request(federation_config, clock, remote):
    store = Store.open(federation_config.database)
    statements: list[str] = []

    async def body(keyring):
        await keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())
        store.db.conn.set_trace_callback(statements.append)
        ids = [f"ed25519:x{i}" for i in range(600)]
        found = await keyring.get_verify_keys(remote.server_name, [remote.key_id, *ids], clock())
        store.db.conn.set_trace_callback(None)
        return found

    assert set(_run(federation_config, clock, body, store)) == {remote.key_id}
    lookups = [s for s in statements if s.startswith("SELECT verify_key")]
    assert len(lookups) == MAX_KEY_IDS_PER_LOOKUP - 1  # the first id is cached in memory


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("a..b", id="empty-label"),
        pytest.param("xn--zz", id="bad-a-label"),
        pytest.param("0177.0.0.7:8448", id="octal-ipv4"),
        pytest.param("a" * 64, id="long-label"),
    ],
)
def test_keyring_invalid_server_name_has_no_keys_and_no_fetch(federation_config, clock, name):
    # Finding 4: such names (origins, join_authorised_via_users_server) reached httpx: 500s.
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(500)

    async def main():
        http = FederationHttp(federation_config, transport=httpx.MockTransport(handler))
        keyring = Keyring(
            Store.open(federation_config.database), federation_config, clock, http=http
        )
        try:
            return (
                await keyring.get_verify_keys(name, ["ed25519:a"], clock()),
                await keyring.get_event_verify_keys(name, ["ed25519:a"], clock()),
            )
        finally:
            await http.aclose()

    assert asyncio.run(main()) == ({}, {})
    assert calls == []


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(UnicodeError("label empty or too long"), id="idna"),
        pytest.param(httpx.InvalidURL("Invalid IPv4 address"), id="invalid-url"),
        pytest.param(ValueError("bad"), id="value-error"),
        pytest.param(httpx.ConnectError("refused"), id="connect"),
    ],
)
def test_keyring_any_outbound_failure_is_backed_off(federation_config, clock, error):
    # Finding 4: IDNA errors and httpx.InvalidURL escaped the keyring as 500s, with no backoff.
    calls = []

    def handler(request):
        calls.append(request)
        raise error

    async def main():
        http = FederationHttp(federation_config, transport=httpx.MockTransport(handler))
        keyring = Keyring(
            Store.open(federation_config.database), federation_config, clock, http=http
        )
        try:
            first = await keyring.get_verify_keys("peer.example:8448", ["ed25519:a"], clock())
            second = await keyring.get_verify_keys("peer.example:8448", ["ed25519:b"], clock())
            return first, second
        finally:
            await http.aclose()

    assert asyncio.run(main()) == ({}, {})
    assert len(calls) == 1


async def _tarpit():
    """A TCP server that accepts connections and never answers (not even the TLS handshake)."""
    held = []

    async def hold(reader, writer):
        held.append(writer)
        await asyncio.sleep(3600)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    server.held = held
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_keyring_tarpit_origins_cannot_take_every_fetch_slot(federation_config, clock, remote):
    # Finding 5: fetches for made-up (tarpit) origins held the whole outbound pool; now they fill
    # only the pool for new servers, and one finding it full returns at once.
    config = dataclasses.replace(federation_config, key_fetch_max_concurrent=1)
    store = Store.open(config.database)
    # We hold an (expired) key of the remote: refreshing it uses the pool for known servers.
    store.store_server_keys(
        [StoredServerKey(remote.server_name, remote.key_id, remote.verify_key_base64, 0, None)],
        fetched_ts=clock() - 1,
    )

    async def body(keyring):
        first, first_name = await _tarpit()
        second, second_name = await _tarpit()
        try:
            hanging = asyncio.create_task(
                keyring.get_verify_keys(first_name, ["ed25519:a"], clock())
            )
            await asyncio.sleep(0.1)
            loop = asyncio.get_running_loop()
            started = loop.time()
            refused = await keyring.get_verify_keys(second_name, ["ed25519:a"], clock())
            refused_s = loop.time() - started
            refreshed = await keyring.get_verify_keys(remote.server_name, [remote.key_id], clock())
            refreshed_s = loop.time() - started
            return refused, refused_s, refreshed, refreshed_s
        finally:
            for server in (first, second):
                for writer in server.held:
                    writer.close()
                server.close()
            assert await hanging == {}

    refused, refused_s, refreshed, refreshed_s = _run(config, clock, body, store)
    assert refused == {}
    assert refused_s < 0.5
    assert set(refreshed) == {remote.key_id}
    assert refreshed_s < KEY_FETCH_TIMEOUT_S
