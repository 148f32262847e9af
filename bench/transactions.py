"""`python -m bench.transactions`: inbound /send transactions, Antechamber against Synapse.

A fake remote homeserver's user, joined (make_join + send_join) to a public room of 1,000
members on each server (bench/join_send.py), sends `PUT /_matrix/federation/v1/send/{txnId}`
transactions of 50 `m.room.message` PDUs, 20 of them (`--transactions`), one after the other:
each PDU signed and hashed, its prev_events the PDU before it, its auth_events the room's power
levels and the sender's join (room v12 does not cite the create event). The transactions are
built before the clock starts; both servers are measured in the same run. Counted as processed:

- Antechamber stores every PDU before it answers: PDUs over the time from the first request to
  the last 200, checked by counting the stored rows right after that answer. Each transaction
  goes as soon as the one before is answered.
- Synapse answers once the PDUs are staged (`federation_inbound_events_staging`) and processes
  them afterwards: a PDU counts when it appears in its `events` table (its SQLite database
  opened read-only, polled every 10 ms from the first request on); PDUs over the time from the
  first request to the poll that found the last of them. Each transaction goes once Synapse has
  at most MAX_STAGED PDUs left to process (see there: strictly back to back, it drops them).

Synapse's room has local members, whose push rules it evaluates for every message; a second
Synapse from the same rooms, with them in `exclude_rooms_from_sync` (which skips that), takes its
turn in the same runs (bench/join_send.py NO_PUSH): Antechamber has neither push nor local
members. Rejected events (and outliers, and Antechamber's soft-failed ones) are counted as
refused; a run with any is an error. Issue 15's goal: at least 10x Synapse's PDUs/s.
"""

import statistics
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bench.compare import format_ratio
from bench.join_send import (
    DISPLAY,
    ROOM_VERSION,
    Figure,
    Host,
    Join,
    Measured,
    compare_runs,
    count_messages,
    fixtures_line,
    join,
    main,
    open_read_only,
    over_runs,
    result_lines,
    targets,
    wall_clock_ms,
)
from matrix.auth_rules import get_auth_event_keys
from matrix.canonical import encode_canonical_json
from matrix.events import compute_event_id, sign_event
from matrix.room_events import build_event
from matrix.xmatrix import sign_request
from tests.remote import RemoteHomeserver

if TYPE_CHECKING:  # tests.factories imports pytest: not at run time
    from tests.factories import SigningServer

TRANSACTIONS = 20
PDUS_PER_TRANSACTION = 50  # SS §Transactions: at most 50 PDUs in one
WARMUP_TRANSACTIONS = 2
POLL_S = 0.01
# The poll gives up when the count stood still this long.
STALL_S = 60.0
# Synapse keeps what arrives in a staging area and, once a room has 100 events staged, drops all
# but the newest and asks the origin for the gap (prune_staged_events_in_room in its
# storage/databases/main/event_federation.py): back to back, 20 transactions lose most of their
# PDUs. So the next transaction goes to Synapse once at most this many of the last one's wait:
# always one transaction staged ahead of its processing, never 100 events.
MAX_STAGED = PDUS_PER_TRANSACTION - 5


@dataclass
class Chain:
    """Where the sender's next message goes: after ``prev_event``, at ``depth`` + 1."""

    room_id: str
    sender: str
    prev_event: str
    depth: int
    auth_events: list[str]


@dataclass(frozen=True)
class Transaction:
    path: str
    authorization: str
    body: bytes


def chain_after_join(joined: Join, room_id: str) -> Chain:
    """The sender's messages follow its join; they cite the state the join was sent into."""
    sender = joined.user_id
    state = {(event["type"], event.get("state_key")): event for event in joined.state}
    skeleton = {"type": "m.room.message", "sender": sender}
    auth_events = []
    for key in get_auth_event_keys(skeleton, ROOM_VERSION):
        if key == ("m.room.member", sender):
            auth_events.append(joined.event_id)
        else:
            auth_events.append(compute_event_id(state[key], ROOM_VERSION))
    depth = joined.event["depth"]
    assert isinstance(depth, int)
    return Chain(room_id, sender, joined.event_id, depth, auth_events)


def build_transactions(
    origin: "SigningServer", destination: str, chain: Chain, count: int, per: int, tag: str
) -> list[Transaction]:
    """``count`` signed /send requests of ``per`` messages each, every one built on the one
    before it (``chain`` moves on to the last)."""
    transactions = []
    for index in range(count):
        pdus = []
        for number in range(per):
            event = build_event(
                ROOM_VERSION,
                room_id=chain.room_id,
                sender=chain.sender,
                type="m.room.message",
                content={"msgtype": "m.text", "body": f"{tag} {index}.{number}"},
                prev_events=[chain.prev_event],
                auth_events=chain.auth_events,
                depth=chain.depth + 1,
                origin=origin.server_name,
                origin_server_ts=wall_clock_ms(),
            )
            signed = sign_event(event, ROOM_VERSION, origin.server_name, origin.signing_key)
            chain.prev_event = compute_event_id(signed, ROOM_VERSION)
            chain.depth += 1
            pdus.append(signed)
        body = {"origin": origin.server_name, "origin_server_ts": wall_clock_ms(), "pdus": pdus}
        path = f"/_matrix/federation/v1/send/{quote(f'{tag}-{index}', safe='')}"
        authorization = sign_request(
            "PUT", path, origin.server_name, destination, origin.signing_key, body
        )
        transactions.append(Transaction(path, authorization, encode_canonical_json(body)))
    return transactions


class ArrivalPoll(threading.Thread):
    """Counts the sender's messages in the server's database every POLL_S until ``target``:
    ``done_s``, seconds after ``started``, is when the count first reached it (None if the count
    stood still for STALL_S: the server lost some)."""

    def __init__(self, host: Host, chain: Chain, target: int, started: float):
        super().__init__(daemon=True)
        self.host, self.chain, self.target, self.started = host, chain, target, started
        self.stored = self.refused = 0
        self.done_s: float | None = None
        self._changed = threading.Condition()

    def run(self) -> None:
        conn = open_read_only(self.host.database)
        progress = time.perf_counter()
        try:
            while True:
                stored, refused = count_messages(
                    conn, self.host.messages_sql, self.chain.room_id, self.chain.sender
                )
                now = time.perf_counter()
                with self._changed:
                    if stored != self.stored:
                        progress = now
                    self.stored, self.refused = stored, refused
                    if stored >= self.target:
                        self.done_s = now - self.started
                    self._changed.notify_all()
                if stored >= self.target or now - progress > STALL_S:
                    return
                time.sleep(POLL_S)
        finally:
            conn.close()
            with self._changed:
                self._changed.notify_all()

    def wait_for(self, stored: int) -> None:
        """Until ``stored`` messages are in the database (or the poll gave up)."""
        with self._changed:
            self._changed.wait_for(lambda: self.stored >= stored or not self.is_alive())


def send_all(host: Host, chain: Chain, transactions: list[Transaction]) -> dict[str, Any]:
    """Send ``transactions`` back to back (paced for Synapse, see MAX_STAGED); the time until
    every PDU is processed."""
    pdus = len(transactions) * PDUS_PER_TRANSACTION
    before, _ = host.count_messages(chain.room_id, chain.sender)
    target = before + pdus
    pdu_errors = 0
    paced_s = 0.0
    with Measured(host) as measured:
        started = time.perf_counter()
        poll = ArrivalPoll(host, chain, target, started)
        if not host.stores_before_answering:
            poll.start()
        for index, transaction in enumerate(transactions):
            if not host.stores_before_answering:
                waited = time.perf_counter()
                poll.wait_for(before + index * PDUS_PER_TRANSACTION - MAX_STAGED)
                paced_s += time.perf_counter() - waited
            response = host.client.put(
                transaction.path,
                content=transaction.body,
                headers={
                    "Authorization": transaction.authorization,
                    "Content-Type": "application/json",
                },
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"{host.name}: /send answered {response.status_code}: {response.text[:300]!r}"
                )
            results = response.json().get("pdus", {})
            pdu_errors += sum(1 for result in results.values() if result)
        answered_s = time.perf_counter() - started
        if host.stores_before_answering:
            stored, refused = host.count_messages(chain.room_id, chain.sender)
            processed_when_answered = stored - before
            processed_s: float | None = answered_s if stored >= target else None
        else:
            processed_when_answered = poll.stored - before
            poll.join()
            stored, refused, processed_s = poll.stored, poll.refused, poll.done_s
    if processed_s is None:
        raise RuntimeError(f"{host.name}: {stored - before} of {pdus} PDUs stored")
    return {
        "pdus": pdus,
        "answered_s": round(answered_s, 4),
        "processed_s": round(processed_s, 4),
        "pdus_per_s": round(pdus / processed_s, 1),
        "processed_when_answered": processed_when_answered,
        # How long the sender waited for Synapse's staging area to drain (see MAX_STAGED).
        "paced_s": round(paced_s, 4),
        "refused": refused,
        # busy_reasons reads "errors": a PDU refused makes the run count for nothing
        "errors": pdu_errors + refused,
        **measured.figures,
        "server_cpu_ms_per_pdu": round(measured.figures["server_cpu_s"] * 1000 / pdus, 3),
    }


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return round(statistics.median(cell[key] for cell in cells), 3)

    return {
        "runs": len(cells),
        "pdus_per_s": med("pdus_per_s"),
        "paced_s": med("paced_s"),
        "processed_s": med("processed_s"),
        "answered_s": med("answered_s"),
        "processed_when_answered": med("processed_when_answered"),
        "server_cpu_ms_per_pdu": med("server_cpu_ms_per_pdu"),
        "errors": sum(cell["errors"] for cell in cells),
    }


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--transactions", type=int, default=TRANSACTIONS, help="transactions per run"
    )


# Logged run by run, and its ratio run by run reported.
RATE = Figure("processed", "PDUs/s", lambda cell: cell["pdus_per_s"])


def run(*, hosts: list[Host], remote: RemoteHomeserver, args: Any, log: Any) -> dict[str, Any]:
    chains: dict[tuple[str, int], Chain] = {}
    for host in hosts:
        for size in args.sizes:
            room_id = host.rooms[size]
            joined = join(host, remote, room_id, f"@sender-{size}:{remote.server_name}")
            chains[(host.name, size)] = chain = chain_after_join(joined, room_id)
            # Warm-up, not counted: the first transactions load the room into the caches.
            warmup = build_transactions(
                remote, host.destination, chain, WARMUP_TRANSACTIONS, PDUS_PER_TRANSACTION, "w"
            )
            send_all(host, chain, warmup)

    def measure_one(host: Host, size: int, run_index: int) -> dict[str, Any]:
        chain = chains[(host.name, size)]
        transactions = build_transactions(
            remote,
            host.destination,
            chain,
            args.transactions,
            PDUS_PER_TRANSACTION,
            f"r{run_index}",
        )
        return send_all(host, chain, transactions)

    section = compare_runs(
        hosts, args, measure_one, summarise, ("pdus_per_s", "server_cpu_ms_per_pdu"), RATE, log
    )
    section["transactions_per_run"] = args.transactions
    section["pdus_per_transaction"] = PDUS_PER_TRANSACTION
    section["targets"] = targets(
        section, "pdus_per_s", "inbound PDUs/s >= 10x Synapse's", 10, lower_is_better=False
    )
    return section


def markdown(section: dict[str, Any]) -> list[str]:
    medians = section["medians"]
    per_run = section["transactions_per_run"] * section["pdus_per_transaction"]
    lines = [
        f"## Inbound transactions, Antechamber against Synapse {section['synapse_version']}",
        "",
        f"`python -m bench.transactions`: a fake remote user joined to a public room (v12) sends "
        f"{section['transactions_per_run']} `/send` transactions of "
        f"{section['pdus_per_transaction']} `m.room.message` PDUs ({per_run:,} PDUs a run, each "
        f"citing the one before it); {over_runs(section, 'medians')}. Processed: "
        "Antechamber stores every PDU before it answers (counted in its database right after "
        "the last answer), so it gets the next transaction as soon as it answers and its time "
        "ends at the last 200. Synapse answers once the PDUs are staged and processes them "
        "afterwards: a PDU counts when it is in its `events` table (SQLite, read-only, polled "
        "every 10 ms) and the time ends when all are. Synapse gets the next transaction once at "
        f"most {MAX_STAGED} PDUs of the last one wait to be processed: with 100 staged in a "
        "room it drops all but the newest (`prune_staged_events_in_room`), so strictly back to "
        "back it loses most of them; this way it always has one transaction staged ahead. "
        "'Done at last 200': PDUs processed when the last answer came. CPU: the server's, per "
        "PDU, until all are processed.",
        "",
        "| room | against | PDUs/s A | PDUs/s S | ratio | done at last 200 A | S "
        "| CPU ms/PDU A | S | ratio | PDUs/s ratio by run | refused or errors A / S |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for room in section["rooms"]:
        for name, ratios in section["ratios"].items():
            a, s, r = medians["antechamber"][room], medians[name][room], ratios[room]
            by_run = [value for value in section["ratio_by_run"][name][room] if value]
            cells = [
                room,
                DISPLAY[name],
                f"{a['pdus_per_s']:,.0f}",
                f"{s['pdus_per_s']:,.0f}",
                format_ratio(r["pdus_per_s"]),
                f"{a['processed_when_answered']:,.0f}",
                f"{s['processed_when_answered']:,.0f}",
                f"{a['server_cpu_ms_per_pdu']:.3f}",
                f"{s['server_cpu_ms_per_pdu']:.3f}",
                format_ratio(r["server_cpu_ms_per_pdu"], lower_is_better=True),
                f"{min(by_run):.2f}-{max(by_run):.2f}x" if by_run else "n/a",
                f"{a['errors']} / {s['errors']}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *result_lines(section, RATE)]
    lines += [
        "",
        *fixtures_line(section["fixtures"]),
        "",
        "Synapse's members being local, it evaluates every local member's push rules for each "
        "message it processes (part of hosting this room on Synapse). Antechamber has no push "
        "and no local user but the creator: 'Synapse without push' is the same Synapse and "
        "room with the room in `exclude_rooms_from_sync`, which skips that evaluation, as for "
        "a room whose members are on other servers. Both run in the same runs, taking turns.",
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main("transactions", __doc__ or "", add_arguments, run, no_push=True))
