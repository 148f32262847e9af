"""Durable delivery against a real fake remote (own key, HTTPS): outbox, retries, leases."""

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

import app.federation.sender as sender_module
from app.federation.client import FederationClient, FederationHttp
from app.federation.sender import BACKOFF_START_MS, FederationSender
from app.rooms.admin import RoomAdmin
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from matrix.events import compute_event_id
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from tests.conftest import SERVER_NAME
from tests.factories import add_member, create_room

V12 = KNOWN_ROOM_VERSIONS["12"]


async def wait_for(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    end = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def received_ids(remote) -> list[str]:
    return [compute_event_id(pdu, V12) for pdu in remote.accepted_pdus]


def run_with_sender(
    config, clock, body: Callable[..., Awaitable[None]], *, owners: int = 1
) -> None:
    """Run ``body(admin, senders, store)`` with real senders (one per owner, each its own
    database connection, as workers have) polling every 20 ms."""

    async def main() -> None:
        key = load_or_generate_signing_key(config.resolved_signing_key_path)
        stores = [Store.open(config.database) for _ in range(owners)]
        http = FederationHttp(config)
        client = FederationClient(SERVER_NAME, key, config, http=http)
        senders = [
            FederationSender(store, client, clock, owner=f"w{n}", poll_interval_s=0.02)
            for n, store in enumerate(stores)
        ]
        for sender in senders:
            sender.start()
        admin = RoomAdmin(stores[0], SERVER_NAME, key, clock, senders[0])
        try:
            await body(admin, senders, stores[0])
        finally:
            for sender in senders:
                await sender.aclose()
            await http.aclose()
            for store in stores:
                store.close()

    asyncio.run(main())


def shared_room(admin: RoomAdmin, remote) -> str:
    room_id = create_room(admin, "12", "knock")
    add_member(admin, room_id, f"@bob:{remote.server_name}", remote=remote)
    return room_id


def test_sender_down_destination_gets_all_200_events_in_order_once_back(
    federation_config, remote, clock
):
    """Issue 14 "done means": a destination that is down while 200 events are accepted
    receives all of them, in order, each once, when it is back."""

    async def body(admin, senders, store):
        remote.send_status = 503
        room_id = shared_room(admin, remote)
        sent = [admin.send_message(room_id, f"message {n}") for n in range(200)]
        await wait_for(lambda: remote.transactions)
        await wait_for(lambda: store.get_retry_at(remote.server_name) > clock())
        assert remote.accepted_pdus == []
        remote.send_status = 200
        clock.now_ms += BACKOFF_START_MS
        await wait_for(lambda: len(remote.accepted_pdus) >= 200)
        ids = received_ids(remote)
        assert [i for i in ids if i in set(sent)] == sent
        assert len(ids) == len(set(ids))
        # the last 200 answer is recorded just after the remote saw the transaction
        await wait_for(lambda: store.count_pending(remote.server_name) == 0)

    run_with_sender(federation_config, clock, body)


def test_sender_retry_keeps_the_transaction_id(federation_config, remote, clock):
    async def body(admin, senders, store):
        remote.send_status = 500
        room_id = shared_room(admin, remote)
        admin.send_message(room_id, "hello")
        await wait_for(lambda: len(remote.transactions) == 1)
        # The failure is recorded (its backoff set) before the clock moves on.
        await wait_for(lambda: store.get_retry_at(remote.server_name) > clock())
        remote.send_status = 200
        clock.now_ms += BACKOFF_START_MS
        await wait_for(lambda: len(remote.transactions) == 2)
        first, second = (target for target, _auth, _body in remote.transactions)
        assert first == second
        assert first.startswith("/_matrix/federation/v1/send/")
        assert remote.transactions[0][2]["pdus"] == remote.transactions[1][2]["pdus"]

    run_with_sender(federation_config, clock, body)


def test_sender_backoff_doubles_and_an_inbound_request_resets_it(federation_config, remote, clock):
    async def body(admin, senders, store):
        remote.send_status = 503
        room_id = shared_room(admin, remote)
        admin.send_message(room_id, "one")
        await wait_for(lambda: store.get_retry_at(remote.server_name) > clock())
        assert store.get_retry_at(remote.server_name) == clock() + BACKOFF_START_MS
        clock.now_ms += BACKOFF_START_MS
        await wait_for(lambda: len(remote.transactions) == 2)
        await wait_for(lambda: store.get_retry_at(remote.server_name) > clock())
        assert store.get_retry_at(remote.server_name) == clock() + 2 * BACKOFF_START_MS
        # The remote is up again and says so by calling us: retried at once.
        remote.send_status = 200
        senders[0].notify_inbound(remote.server_name)
        await wait_for(lambda: len(remote.accepted_pdus) == 1)
        assert store.get_retry_at(remote.server_name) == 0

    run_with_sender(federation_config, clock, body)


def test_sender_inbound_request_during_a_failing_send_retries_at_once(
    federation_config, remote, clock
):
    # The remote comes back (and calls us) while a transaction to it is in flight and then
    # fails: it is retried at once, not after a backoff the remote has already outlived.
    async def body(admin, senders, store):
        remote.send_status, remote.send_delay_s = 503, 0.5
        room_id = shared_room(admin, remote)
        admin.send_message(room_id, "one")
        await wait_for(lambda: len(remote.transactions) == 1)
        remote.send_status, remote.send_delay_s = 200, 0.0
        senders[0].notify_inbound(remote.server_name)
        # the fake clock does not move: only the wake can bring the retry
        await wait_for(lambda: len(remote.accepted_pdus) == 1)
        assert store.get_retry_at(remote.server_name) == 0

    run_with_sender(federation_config, clock, body)


def test_sender_after_a_restart_delivers_what_was_pending(federation_config, remote, clock):
    """What was stored before the process stopped is in the outbox and goes out from the next."""
    key = load_or_generate_signing_key(federation_config.resolved_signing_key_path)
    store = Store.open(federation_config.database)
    # No sender at all: the events and their deliveries are stored, nothing is sent.
    admin = RoomAdmin(store, SERVER_NAME, key, clock, outbox=None)
    room_id = shared_room(admin, remote)

    class Nobody:
        def notify(self, destinations):
            pass

    admin.outbox = Nobody()
    sent = [admin.send_message(room_id, f"before restart {n}") for n in range(3)]
    store.close()
    assert remote.transactions == []

    async def body(admin, senders, store):
        await wait_for(lambda: len(remote.accepted_pdus) >= 3)
        assert [i for i in received_ids(remote) if i in sent] == sent

    run_with_sender(federation_config, clock, body)


def test_sender_two_workers_send_each_event_once(federation_config, remote, clock, test_ca):
    from tests.remote import RemoteHomeserver

    # Started and stopped outside the senders' event loop, like the `remote` fixture.
    with RemoteHomeserver(test_ca, clock, key_version="other1") as other:

        async def body(admin, senders, store):
            room_id = shared_room(admin, remote)
            add_member(admin, room_id, f"@carol:{other.server_name}", remote=other)
            sent = []
            for n in range(60):
                sent.append(admin.send_message(room_id, f"m{n}"))
                # the other worker is told too, as if it had stored them
                senders[1].notify([remote.server_name, other.server_name])
            for server in (remote, other):
                await wait_for(lambda s=server: set(sent) <= set(received_ids(s)))
                ids = [i for i in received_ids(server) if i in set(sent)]
                assert ids == sent

        run_with_sender(federation_config, clock, body, owners=2)


def test_sender_leased_destination_is_left_to_its_owner(federation_config, remote, clock):
    async def body(admin, senders, store):
        room_id = shared_room(admin, remote)
        admin.send_message(room_id, "first")
        await wait_for(lambda: len(remote.accepted_pdus) == 1)
        # Another worker takes the lease once ours is released.
        await wait_for(
            lambda: store.claim_destination(remote.server_name, "someone-else", clock(), 60_000)
        )
        admin.send_message(room_id, "waits for the lease")
        await asyncio.sleep(0.2)
        assert store.count_pending(remote.server_name) == 1
        # The other worker died: its lease runs out, and ours takes over.
        clock.now_ms += 60_001
        await wait_for(lambda: store.count_pending(remote.server_name) == 0)

    run_with_sender(federation_config, clock, body)


def test_sender_drops_deliveries_of_rooms_this_server_left(federation_config, remote, clock):
    async def body(admin, senders, store):
        remote.send_status = 503
        room_id = shared_room(admin, remote)
        admin.send_message(room_id, "before leaving")
        await wait_for(lambda: store.get_retry_at(remote.server_name) > clock())
        # Our last user leaves: nothing of this room is retried for the remote any more.
        admin.leave_user(room_id, f"@admin:{SERVER_NAME}")
        clock.now_ms += BACKOFF_START_MS
        await wait_for(lambda: len(remote.transactions) >= 2)
        await wait_for(lambda: store.count_pending(remote.server_name) == 0)

    run_with_sender(federation_config, clock, body)


def test_sender_too_many_pending_falls_back_to_catch_up(
    federation_config, remote, clock, monkeypatch
):
    monkeypatch.setattr(sender_module, "MAX_PENDING_PER_DESTINATION", 5)

    async def body(admin, senders, store):
        remote.send_status = 503
        room_id = shared_room(admin, remote)
        sent = [admin.send_message(room_id, f"m{n}") for n in range(10)]
        await wait_for(lambda: store.get_retry_at(remote.server_name) > clock())
        remote.send_status = 200
        clock.now_ms += BACKOFF_START_MS
        await wait_for(lambda: store.count_pending(remote.server_name) == 0)
        # Only the newest event of the room went: the remote fetches the gap itself.
        assert received_ids(remote) == [sent[-1]]

    run_with_sender(federation_config, clock, body)


@pytest.mark.parametrize("status", [pytest.param(0, id="unreachable"), pytest.param(404, id="404")])
def test_sender_failure_is_recorded_for_the_operator(federation_config, remote, clock, status):
    from tests.factories import make_remote_server
    from tests.live_server import free_port

    # Unreachable: a member server on a loopback port nothing listens on (stopping the running
    # fake remote mid-test leaves its thread's sockets to the GC).
    member = make_remote_server(f"127.0.0.1:{free_port()}") if status == 0 else remote

    async def body(admin, senders, store):
        remote.send_status = status or 200
        room_id = shared_room(admin, member)
        admin.send_message(room_id, "hello")
        await wait_for(lambda: store.get_retry_at(member.server_name) > clock())
        (row,) = [
            r for r in store.get_destination_status() if r["destination"] == member.server_name
        ]
        assert row["pending"] >= 1
        assert row["last_error"]
        assert row["txn_id"]

    run_with_sender(federation_config, clock, body)


def test_sender_server_start_retries_backed_off_destinations_at_once(
    federation_config, remote, clock
):
    """A restart moves the queue: pending deliveries of a backed-off destination go out."""

    async def body(admin, senders, store):
        remote.send_status = 503
        room_id = shared_room(admin, remote)
        admin.send_message(room_id, "queued")
        await wait_for(lambda: store.get_retry_at(remote.server_name) > clock())
        remote.send_status = 200
        # What the server's lifespan does at start (the clock has not moved: no backoff ran out)
        senders[0].start(retry_now=True)
        await wait_for(lambda: len(remote.accepted_pdus) == 1)

    run_with_sender(federation_config, clock, body)
