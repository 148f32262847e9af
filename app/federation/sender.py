"""Sends accepted events to the other servers in a room (SS §Transactions), in the background."""

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from urllib.parse import quote

from app.federation.client import FederationClient
from app.metrics import DELIVERIES
from matrix.types import JsonDict

logger = logging.getLogger(__name__)

# Bounds one delivery (discovery, TLS, the request); a server that is down costs this, once.
SEND_TIMEOUT_S = 30.0
# SS §Transactions: a transaction carries at most 50 PDUs.
MAX_PDUS_PER_TRANSACTION = 50
# Events queued for one destination while a transaction to it is in flight; past this the
# oldest are dropped (the destination can still fetch them through the room's DAG).
MAX_QUEUED_PER_DESTINATION = 1000
# After a failed delivery, a destination is skipped for this long, doubling up to the cap
# (Synapse's destination retry backoff starts at 10 minutes; a knock resident is quieter).
BACKOFF_START_MS = 60_000
BACKOFF_MAX_MS = 3_600_000


class FederationSender:
    """Per worker: one transaction in flight per destination, the rest queued behind it.

    SS §Joining Rooms (which §Knocking follows): the resident sends the event to the other
    servers in the room on the knocker's behalf. Delivery is best effort: a destination that
    failed is left alone for a while (its queue dropped), and it catches up through the room's
    DAG (backfill / get_missing_events) as any server that was offline does.
    """

    def __init__(self, client: FederationClient, clock: Callable[[], int]):
        self._client = client
        self._clock = clock
        self._queues: dict[str, list[JsonDict]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        # destination -> (retry not before this clock time in ms, current backoff in ms)
        self._backoff: dict[str, tuple[int, int]] = {}

    def send_pdu(self, destinations: Iterable[str], pdu: JsonDict) -> None:
        now = self._clock()
        for destination in destinations:
            if self._backoff.get(destination, (0, 0))[0] > now:
                continue
            queue = self._queues.setdefault(destination, [])
            queue.append(pdu)
            del queue[:-MAX_QUEUED_PER_DESTINATION]
            if destination not in self._workers:
                self._workers[destination] = asyncio.create_task(self._drain(destination))

    async def _drain(self, destination: str) -> None:
        try:
            queue = self._queues[destination]
            while queue:
                batch = queue[:MAX_PDUS_PER_TRANSACTION]
                del queue[:MAX_PDUS_PER_TRANSACTION]
                if not await self._send(destination, batch):
                    queue.clear()
        finally:
            self._queues.pop(destination, None)
            self._workers.pop(destination, None)

    async def _send(self, destination: str, pdus: list[JsonDict]) -> bool:
        txn_id = f"{self._clock()}-{secrets.token_hex(4)}"
        body = {
            "origin": self._client.server_name,
            "origin_server_ts": self._clock(),
            "pdus": pdus,
        }
        path = f"/_matrix/federation/v1/send/{quote(txn_id, safe='')}"
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                status, _ = await self._client.request("PUT", destination, path, body)
        except Exception as exc:  # a background delivery's failure is logged and backed off
            status, why = 0, repr(exc)
        else:
            why = f"HTTP {status}"
        DELIVERIES.labels(destination, "sent" if status == 200 else "failed").inc()
        if status == 200:
            self._backoff.pop(destination, None)
            logger.info("Sent transaction %s (%d PDUs) to %s", txn_id, len(pdus), destination)
            return True
        backoff = min(
            self._backoff.get(destination, (0, BACKOFF_START_MS // 2))[1] * 2, BACKOFF_MAX_MS
        )
        self._backoff[destination] = (self._clock() + backoff, backoff)
        logger.warning(
            "Could not send transaction %s to %s (%s); skipping it for %d s",
            txn_id,
            destination,
            why,
            backoff // 1000,
        )
        return False

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Wait up to ``timeout_s`` for deliveries in flight, then cancel the rest."""
        if self._workers:
            _, pending = await asyncio.wait(set(self._workers.values()), timeout=timeout_s)
            for task in pending:
                task.cancel()


class CollectedPdus:
    """An outbox that only collects, for a process without a running sender (the CLI): its
    events are delivered by ``deliver`` before the process exits."""

    def __init__(self) -> None:
        self.pending: list[tuple[list[str], JsonDict]] = []

    def send_pdu(self, destinations: Iterable[str], pdu: JsonDict) -> None:
        self.pending.append((list(destinations), pdu))

    async def deliver(self, client: FederationClient, clock: Callable[[], int]) -> None:
        """Send what was collected, each destination's events in order, as the server would;
        bounded by one delivery's timeout."""
        sender = FederationSender(client, clock)
        for destinations, pdu in self.pending:
            sender.send_pdu(destinations, pdu)
        self.pending = []
        await sender.aclose(timeout_s=SEND_TIMEOUT_S)
