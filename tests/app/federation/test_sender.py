"""FederationSender: one transaction in flight per destination, batches of 50, backoff."""

import asyncio

from app.federation.sender import (
    BACKOFF_START_MS,
    MAX_PDUS_PER_TRANSACTION,
    MAX_QUEUED_PER_DESTINATION,
    FederationSender,
)


class RecordingClient:
    """Stands in for FederationClient's transport: records transactions, answers ``status``."""

    server_name = "antechamber.test"

    def __init__(self, status: int = 200, delay_s: float = 0.0):
        self.status = status
        self.delay_s = delay_s
        self.sent: list[tuple[str, str, dict]] = []

    async def request(self, method, destination, path, body):
        self.sent.append((destination, path, body))
        await asyncio.sleep(self.delay_s)
        if self.status < 0:
            raise ConnectionRefusedError("refused")
        return self.status, {}


class Clock:
    def __init__(self):
        self.now = 1_000_000

    def __call__(self):
        return self.now


def pdu(n: int) -> dict:
    return {"type": "m.room.member", "depth": n}


def run(sender: FederationSender, calls) -> None:
    async def main():
        calls()
        await asyncio.sleep(0)
        await sender.aclose()

    asyncio.run(main())


def test_sender_batches_queued_pdus_behind_the_one_in_flight():
    client, clock = RecordingClient(delay_s=0.01), Clock()
    sender = FederationSender(client, clock)

    def calls():
        for n in range(MAX_PDUS_PER_TRANSACTION + 11):
            sender.send_pdu(["a.test", "b.test"], pdu(n))

    run(sender, calls)
    for destination in ("a.test", "b.test"):
        sizes = [len(body["pdus"]) for dest, _, body in client.sent if dest == destination]
        # The first transaction leaves as soon as the first PDU is queued; the rest follow in
        # transactions of at most 50.
        assert sum(sizes) == MAX_PDUS_PER_TRANSACTION + 11
        assert max(sizes) <= MAX_PDUS_PER_TRANSACTION
    path = client.sent[0][1]
    assert path.startswith("/_matrix/federation/v1/send/")
    assert client.sent[0][2]["origin"] == "antechamber.test"


def test_sender_backs_off_a_failing_destination_then_retries():
    client, clock = RecordingClient(status=-1), Clock()
    sender = FederationSender(client, clock)
    run(sender, lambda: sender.send_pdu(["down.test"], pdu(1)))
    assert len(client.sent) == 1
    run(sender, lambda: sender.send_pdu(["down.test"], pdu(2)))
    assert len(client.sent) == 1, "skipped while backing off"
    clock.now += BACKOFF_START_MS + 1
    run(sender, lambda: sender.send_pdu(["down.test"], pdu(3)))
    assert len(client.sent) == 2
    # A second failure doubles the backoff.
    clock.now += BACKOFF_START_MS + 1
    run(sender, lambda: sender.send_pdu(["down.test"], pdu(4)))
    assert len(client.sent) == 2
    client.status = 200
    clock.now += 2 * BACKOFF_START_MS
    run(sender, lambda: sender.send_pdu(["down.test"], pdu(5)))
    run(sender, lambda: sender.send_pdu(["down.test"], pdu(6)))
    assert len(client.sent) == 4, "success clears the backoff"


def test_sender_non_200_counts_as_failure():
    client, clock = RecordingClient(status=500), Clock()
    sender = FederationSender(client, clock)
    run(sender, lambda: sender.send_pdu(["x.test"], pdu(1)))
    run(sender, lambda: sender.send_pdu(["x.test"], pdu(2)))
    assert len(client.sent) == 1


def test_sender_queue_is_capped():
    client, clock = RecordingClient(delay_s=0.01), Clock()
    sender = FederationSender(client, clock)

    def calls():
        for n in range(MAX_QUEUED_PER_DESTINATION + 500):
            sender.send_pdu(["a.test"], pdu(n))

    run(sender, calls)
    depths = [p["depth"] for _, _, body in client.sent for p in body["pdus"]]
    assert len(depths) <= MAX_QUEUED_PER_DESTINATION + 1
    assert depths[-1] == MAX_QUEUED_PER_DESTINATION + 499, "the newest are kept"
