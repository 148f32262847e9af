"""Durable delivery of stored events to other servers (SS §Transactions), from the outbox table.

An event and its deliveries are written in one transaction (app/rooms/persist.py); a delivery
leaves the ``outbox`` only once the destination answered 200 to the transaction that carried
it. A transaction keeps its id across retries, by any worker and after any crash, so the
receiver de-duplicates it (transactions.yaml). One worker at a time sends to a destination: it
holds that destination's lease row, which runs out if the worker dies. Every worker polls for
due destinations, so deliveries left by a dead worker, a restart or the CLI are picked up.
"""

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from urllib.parse import quote

from app.federation.client import FederationClient
from app.metrics import DELIVERIES
from db.store import Store

logger = logging.getLogger(__name__)

# Bounds one delivery (discovery, TLS, the request); a server that is down costs this, once.
SEND_TIMEOUT_S = 30.0
# SS §Transactions: a transaction carries at most 50 PDUs.
MAX_PDUS_PER_TRANSACTION = 50
# Past this many pending events for one destination, fall back to catch-up: keep the newest
# event per room and let the destination fetch the gap (/get_missing_events), as Synapse does.
MAX_PENDING_PER_DESTINATION = 10_000
# After a failure a destination waits 1 minute, doubling up to a day (Synapse's retry scheme
# starts at 10 minutes; a knock resident's rooms are small and quiet).
BACKOFF_START_MS = 60_000
BACKOFF_MAX_MS = 86_400_000
# The lease on a destination: renewed before each transaction; a dead worker's expires.
LEASE_MS = 2 * int(SEND_TIMEOUT_S * 1000)
# How often each worker looks for due destinations it was not told about.
POLL_INTERVAL_S = 5.0


class FederationSender:
    """Per process: drains the outbox of each due destination, one transaction at a time."""

    def __init__(
        self,
        store: Store,
        client: FederationClient,
        clock: Callable[[], int],
        *,
        owner: str | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
    ):
        self._store = store
        self._client = client
        self._clock = clock
        self._owner = owner or f"{os.getpid()}-{secrets.token_hex(4)}"
        self._poll_interval_s = poll_interval_s
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._poller: asyncio.Task[None] | None = None
        # Destinations this worker saw fail: an inbound request from one resets its backoff.
        self._backed_off: set[str] = set()
        # Destinations that sent us a request while a transaction to them was in flight
        self._woken: set[str] = set()

    def start(self, *, retry_now: bool = False) -> None:
        """Start polling (once the event loop runs). With ``retry_now`` (the server starting)
        every destination with pending deliveries is tried at once, backoff or not: an operator
        restarting the server expects the queue to move (the backoff builds up again from one
        minute if the destination is still down)."""
        if retry_now:
            reset = self._store.reset_backoff_of_pending()
            if reset:
                logger.info("Retrying %d backed-off destinations now (server start)", reset)
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll())

    def notify(self, destinations: Iterable[str]) -> None:
        """New deliveries were committed for ``destinations``: send them now (when due)."""
        for destination in destinations:
            if destination not in self._workers:
                self._workers[destination] = asyncio.create_task(self._drain(destination))

    def notify_inbound(self, origin: str) -> None:
        """``origin`` just reached us: if it was backed off, it is up again (Synapse resets a
        destination's backoff on any inbound request from it)."""
        if origin in self._workers and origin not in self._backed_off:
            # A transaction to it is in flight: should it fail, it failed before the origin
            # came back, so retry at once rather than back off (the crash test hit this).
            self._woken.add(origin)
        if origin in self._backed_off:
            self._backed_off.discard(origin)
            if self._store.reset_backoff(origin):
                logger.info("%s is reachable again (it sent us a request); retrying now", origin)
                self.notify([origin])

    async def _poll(self) -> None:
        while True:
            try:
                now = self._clock()
                # Backoffs recorded by any worker or before a restart: an inbound request
                # from one of these destinations resets it.
                self._backed_off = set(self._store.get_backed_off_destinations(now))
                self.notify(self._store.get_due_destinations(now))
            except Exception:  # a poll failing (database locked) must not stop the next ones
                logger.exception("Could not look for pending deliveries")
            await asyncio.sleep(self._poll_interval_s)

    async def _drain(self, destination: str) -> None:
        try:
            while await self._send_next(destination):
                pass
        except Exception:  # one destination's failure must not leak out of its task
            logger.exception("Delivery to %s stopped", destination)
        finally:
            self._workers.pop(destination, None)
            self._store.release_destination(destination, self._owner)

    async def _send_next(self, destination: str) -> bool:
        """Send one transaction to ``destination``; True when there may be more to send."""
        store, now = self._store, self._clock()
        if store.get_retry_at(destination) > now:
            return False  # backed off
        if not store.claim_destination(destination, self._owner, now, LEASE_MS):
            return False  # another worker is sending to it
        if store.count_pending(destination) > MAX_PENDING_PER_DESTINATION:
            dropped = store.prune_to_newest_per_room(destination)
            logger.warning(
                "%s has too many pending events; catching up with the newest event per room "
                "(%d dropped: it fetches them with /get_missing_events)",
                destination,
                dropped,
            )
        txn_id, batch = store.get_delivery_batch(destination, MAX_PDUS_PER_TRANSACTION)
        if not batch:
            return False
        orderings = [ordering for ordering, _event in batch]
        if txn_id is None:
            txn_id = f"{now}-{secrets.token_hex(6)}"
            store.start_transaction(destination, txn_id, orderings)
        body = {
            "origin": self._client.server_name,
            "origin_server_ts": now,
            "pdus": [event for _ordering, event in batch],
        }
        path = f"/_matrix/federation/v1/send/{quote(txn_id, safe='')}"
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                status, _ = await self._client.request("PUT", destination, path, body)
        except Exception as exc:  # every failure of a delivery is logged and backed off
            status, why = 0, f"{type(exc).__name__}: {exc}"
        else:
            why = f"HTTP {status}"
        DELIVERIES.labels(destination, "sent" if status == 200 else "failed").inc()
        if status == 200:
            store.complete_transaction(destination, orderings, self._clock())
            self._woken.discard(destination)
            self._backed_off.discard(destination)
            logger.info("Sent transaction %s (%d PDUs) to %s", txn_id, len(batch), destination)
            return True
        backoff = store.fail_transaction(
            destination,
            why,
            self._clock(),
            start_ms=BACKOFF_START_MS,
            max_ms=BACKOFF_MAX_MS,
        )
        self._backed_off.add(destination)
        dropped = store.drop_deliveries_for_left_rooms(destination, self._client.server_name)
        logger.warning(
            "Could not send transaction %s (%d PDUs) to %s (%s); retrying in %d s%s",
            txn_id,
            len(batch),
            destination,
            why,
            backoff // 1000,
            f"; {dropped} deliveries of rooms this server left dropped" if dropped else "",
        )
        if destination in self._woken:
            self._woken.discard(destination)
            store.reset_backoff(destination)
            self._backed_off.discard(destination)
            logger.info("%s sent us a request meanwhile; retrying now", destination)
            return True
        return False

    async def deliver_now(self, destinations: Iterable[str], timeout_s: float) -> None:
        """Send what is due for ``destinations`` and wait up to ``timeout_s`` (the CLI, before
        it exits); whatever is left stays in the outbox for the server."""
        self.notify(destinations)
        await self.aclose(timeout_s)

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Stop polling; wait up to ``timeout_s`` for transactions in flight, then cancel the
        rest (their deliveries stay in the outbox)."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._workers:
            _, pending = await asyncio.wait(set(self._workers.values()), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)


class CollectedDestinations:
    """An outbox notifier for a process without a running sender (the CLI): it remembers which
    destinations got new deliveries, for ``FederationSender.deliver_now`` before exit."""

    def __init__(self) -> None:
        self.pending: set[str] = set()

    def notify(self, destinations: Iterable[str]) -> None:
        self.pending.update(destinations)
