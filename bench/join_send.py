"""What bench/send_join.py and bench/transactions.py share: both servers host one public room.

Antechamber (`python -m app serve`, bench/run.py's Server) and the pinned Synapse
(bench/vs_synapse.py, its rooms cached under bench/.cache) each run as one process on core 0 and
host a public v12 room of the same size (1,000 members besides the creator by default). This
process is the other side, pinned to core 1 with every thread: the client, and the fake remote
homeserver (tests/remote.py's RemoteHomeserver, whose key both servers fetch over HTTPS from
127.0.0.1:<port>, trusting a throwaway CA). The servers take turns, the first one alternating
run by run; the one not measured is stopped (SIGSTOP), and the measured one is idle before its
turn starts. A run in which other work took more than 10% of either core is busy and repeated.
Both benchmarks write their own section of one results file,
bench/results/<date>-<commit>-join-send.json and .md.
"""

import contextlib
import datetime
import importlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench import fixtures
from bench import vs_synapse as synapse_bench
from bench.compare import (
    describe_run,
    format_ratio,
    intruder_pct,
    parse_cpu_busy,
    ratio,
    run_busy_reasons,
)
from bench.run import (
    CLOCK_TICKS,
    RESULTS,
    VER_QUERY,
    Server,
    _load_generator_cpu_s,
    free_port,
    git_commit,
    loadavg,
    machine,
    paused,
)
from interop.synapse_server import install_synapse
from matrix.canonical import encode_canonical_json
from matrix.events import compute_event_id, sign_event
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from matrix.types import JsonDict
from tests.remote import RemoteHomeserver, TestCA

SERVER_CORE, CLIENT_CORE = 0, 1
SIZES = (1_000,)
# The sections of the results file, each rendered by the bench module of that name, in order.
SECTIONS = ("send_join", "transactions")
ROOM_VERSION = KNOWN_ROOM_VERSIONS[fixtures.ROOM_VERSION]
# Idle: under 10% of a core in two windows of 0.25 s running (2 clock ticks of 10 ms).
IDLE_WINDOW_S, IDLE_PCT, IDLE_LIMIT_S = 0.25, 10.0, 60.0

# Messages of one sender in one room, and how many of them the server refused (stored as
# rejected, soft-failed or an outlier: never part of the room).
ANTECHAMBER_MESSAGES_SQL = """
SELECT count(*), coalesce(sum(rejected OR soft_failed OR outlier), 0) FROM events
WHERE room_id = ? AND sender = ? AND type = 'm.room.message'
"""
SYNAPSE_MESSAGES_SQL = """
SELECT count(*), count(r.event_id) + coalesce(sum(e.outlier), 0)
FROM events AS e LEFT JOIN rejections AS r ON r.event_id = e.event_id
WHERE e.room_id = ? AND e.sender = ? AND e.type = 'm.room.message'
"""


# Synapse runs the background updates a new database has left (about 30 after a fixture build)
# one batch a second; without the pause they are over before either server is measured.
SYNAPSE_OVERRIDES = {"background_updates": {"sleep_enabled": False}}


# The same Synapse and rooms, but the rooms in `exclude_rooms_from_sync`: Synapse then does not
# evaluate the push rules of the room's local members for each event (BulkPushRuleEvaluator
# skips excluded rooms), as for a room whose members are on other servers. Antechamber has no
# push and its rooms' members are remote; Synapse's bench rooms have 1,000 local members.
NO_PUSH = "synapse-no-push"
DISPLAY = {"antechamber": "Antechamber", "synapse": "Synapse", NO_PUSH: "Synapse without push"}


def wait_for_background_updates(synapse: Any, limit_s: float = 600) -> float:
    """Until Synapse's ``background_updates`` table is empty (then it is settled again)."""
    started = time.monotonic()
    database = synapse.config.base / "homeserver.db"
    while time.monotonic() - started < limit_s:
        with contextlib.closing(open_read_only(database)) as conn:
            if conn.execute("SELECT count(*) FROM background_updates").fetchone()[0] == 0:
                break
        time.sleep(0.5)
    synapse.settle_s += synapse.wait_until_idle()
    return time.monotonic() - started


def label(size: int) -> str:
    return f"{size:,}-members"


@dataclass
class Host:
    """One server hosting the benchmark rooms, as the fake remote sees it."""

    name: str
    process: Any  # bench.run.Server or bench.vs_synapse.SynapseProcess
    destination: str  # its server name
    rooms: dict[int, str]  # members besides the creator -> room id
    database: Path
    messages_sql: str
    # Antechamber stores the PDUs of a transaction before it answers; Synapse stages them and
    # answers, then processes them in the background.
    stores_before_answering: bool
    fixtures: list[dict[str, Any]]
    client: httpx.Client

    def count_messages(self, room_id: str, sender: str) -> tuple[int, int]:
        """(messages of ``sender`` stored in ``room_id``, how many of them were refused), read
        from the server's SQLite database opened read-only (WAL: the server's writes go on)."""
        with contextlib.closing(open_read_only(self.database)) as conn:
            return count_messages(conn, self.messages_sql, room_id, sender)


def open_read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{database}?mode=ro", uri=True)


def count_messages(
    conn: sqlite3.Connection, sql: str, room_id: str, sender: str
) -> tuple[int, int]:
    stored, refused = conn.execute(sql, (room_id, sender)).fetchone()
    return int(stored), int(refused)


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def pin_threads(core: int) -> None:
    """Pin every thread of this process (the client, the fake remote's server) to ``core``."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {core})


def settle(host: Host) -> float:
    """Wait until ``host`` is idle (what the last request left running is done); seconds."""
    return synapse_bench.wait_until_idle(
        host.process.cpu_seconds, IDLE_LIMIT_S, IDLE_WINDOW_S, IDLE_PCT
    )


def peak_rss_mb(host: Host) -> float | None:
    peaks = host.process.peak_rss_mb()
    return round(max(peaks), 1) if peaks else None


@contextlib.contextmanager
def start_hosts(
    work: Path,
    ca: TestCA,
    sizes: Sequence[int],
    synapse_python: str,
    log: Callable[[str], None],
    *,
    no_push: bool = False,
) -> Iterator[list[Host]]:
    """Antechamber and Synapse, each one process on SERVER_CORE, hosting public rooms of
    ``sizes`` members (with ``no_push``, a second Synapse from the same rooms with them in
    ``exclude_rooms_from_sync``: see NO_PUSH); stopped when the block ends."""
    data_dir = work / "data"
    built = fixtures.build_fixtures(
        data_dir, log=log, sizes=tuple(sizes), history=False, join_rule="public"
    )
    ours = {room.label: room for room in built}
    with contextlib.ExitStack() as stack:

        def client(base_url: str) -> httpx.Client:
            # identity: neither server compresses, and the answer's size is what was sent
            return stack.enter_context(
                httpx.Client(
                    base_url=base_url, timeout=600, headers={"Accept-Encoding": "identity"}
                )
            )

        server = Server(data_dir, ca.ca_file, 1, SERVER_CORE, work / "antechamber.log")
        stack.callback(server.stop)
        started = [
            Host(
                "antechamber",
                server,
                fixtures.SERVER_NAME,
                {size: ours[label(size)].room_id for size in sizes},
                data_dir / "antechamber.db",
                ANTECHAMBER_MESSAGES_SQL,
                True,
                [asdict(ours[label(size)]) for size in sizes],
                client(server.base_url),
            )
        ]
        variants: list[tuple[str, dict[str, Any]]] = [("synapse", SYNAPSE_OVERRIDES)]
        while variants:
            name, overrides = variants.pop(0)
            synapse, synapse_rooms = synapse_bench.start_with_fixtures(
                synapse_python,
                work / name,
                port=free_port(),
                ca_file=ca.ca_file,
                cpu=SERVER_CORE,
                sizes=tuple(sizes),
                join_rule="public",
                overrides=overrides,
                log=log,
            )
            stack.callback(synapse.stop)
            waited = wait_for_background_updates(synapse)
            log(f"{name}: background updates done {waited:.1f}s later")
            theirs = {room.label: room for room in synapse_rooms}
            started.append(
                Host(
                    name,
                    synapse,
                    synapse_bench.SERVER_NAME,
                    {size: theirs[label(size)].room_id for size in sizes},
                    synapse.config.base / "homeserver.db",
                    SYNAPSE_MESSAGES_SQL,
                    False,
                    [asdict(theirs[label(size)]) for size in sizes],
                    client(synapse.base_url),
                )
            )
            if no_push and name == "synapse":
                excluded = [room.room_id for room in synapse_rooms]
                variants.append(
                    (NO_PUSH, {**SYNAPSE_OVERRIDES, "exclude_rooms_from_sync": excluded})
                )
        yield started


# Joining -------------------------------------------------------------------------------------


@dataclass
class Join:
    user_id: str
    event: JsonDict  # the join event as signed and sent
    event_id: str
    make_join_ms: float
    send_join_ms: float
    response_bytes: int
    state: list[JsonDict]
    auth_chain: list[JsonDict]


def _answer(host: Host, what: str, response: httpx.Response) -> JsonDict:
    if response.status_code != 200:
        # Another server's text: shown escaped and cut short.
        raise RuntimeError(
            f"{host.name}: {what} answered {response.status_code}: {response.text[:300]!r}"
        )
    body = response.json()
    if not isinstance(body, dict):
        raise RuntimeError(f"{host.name}: {what} answered {type(body).__name__}, not an object")
    return body


def join(host: Host, remote: RemoteHomeserver, room_id: str, user_id: str) -> Join:
    """make_join, then send_join (v2) of the signed template, as the remote's server would; the
    send_join round trip is timed until its whole answer is read."""
    uri = (
        f"/_matrix/federation/v1/make_join/{quote(room_id, safe='')}/"
        f"{quote(user_id, safe='')}?{VER_QUERY}"
    )
    headers = {"Authorization": remote.auth_header("GET", uri, host.destination)}
    started = time.perf_counter()
    response = host.client.get(uri, headers=headers)
    make_join_ms = (time.perf_counter() - started) * 1000
    template = _answer(host, "make_join", response)
    if template.get("room_version") != ROOM_VERSION.identifier:
        raise RuntimeError(
            f"{host.name}: make_join for room version {template.get('room_version')!r}"
        )
    event = sign_event(
        {**template["event"], "origin": remote.server_name},
        ROOM_VERSION,
        remote.server_name,
        remote.signing_key,
    )
    event_id = compute_event_id(event, ROOM_VERSION)
    path = f"/_matrix/federation/v2/send_join/{quote(room_id, safe='')}/{quote(event_id, safe='')}"
    headers = {
        "Authorization": remote.auth_header("PUT", path, host.destination, content=event),
        "Content-Type": "application/json",
    }
    body = encode_canonical_json(event)
    started = time.perf_counter()
    response = host.client.put(path, content=body, headers=headers)
    send_join_ms = (time.perf_counter() - started) * 1000
    answer = _answer(host, "send_join", response)
    state, auth_chain = answer.get("state"), answer.get("auth_chain")
    if not isinstance(state, list) or not isinstance(auth_chain, list):
        raise RuntimeError(f"{host.name}: send_join answered no state or auth_chain list")
    if answer.get("members_omitted"):
        raise RuntimeError(f"{host.name}: send_join omitted the members (a partial join)")
    return Join(
        user_id,
        event,
        event_id,
        make_join_ms,
        send_join_ms,
        len(response.content),
        state,
        auth_chain,
    )


# Runs ----------------------------------------------------------------------------------------


class Measured:
    """One server's turn: wall time, its CPU, and the share of each core other work took."""

    def __init__(self, host: Host):
        self.host = host
        self.figures: dict[str, Any] = {}

    def __enter__(self) -> "Measured":
        self._stat = parse_cpu_busy(Path("/proc/stat").read_text())
        self._client_cpu = _load_generator_cpu_s()
        self._server_cpu = self.host.process.cpu_seconds()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        seconds = time.perf_counter() - self._started
        server_cpu = self.host.process.cpu_seconds() - self._server_cpu
        client_cpu = _load_generator_cpu_s() - self._client_cpu
        stat = parse_cpu_busy(Path("/proc/stat").read_text())
        self.figures = {
            "seconds": round(seconds, 4),
            "server_cpu_s": round(server_cpu, 3),
        }
        for name, core, own in (
            ("server_core", SERVER_CORE, server_cpu),
            ("load_core", CLIENT_CORE, client_cpu),
        ):
            jiffies = stat[core] - self._stat[core]
            self.figures[f"other_{name}_pct"] = intruder_pct(jiffies, own, seconds, CLOCK_TICKS)


@dataclass(frozen=True)
class Figure:
    """What a benchmark's runs are logged and compared by, read from one server's turn."""

    name: str
    unit: str
    of_cell: Callable[[dict[str, Any]], float]
    digits: int = 0

    def format(self, cell: dict[str, Any]) -> str:
        return f"{self.of_cell(cell):,.{self.digits}f}"


def alternate_runs(
    hosts: list[Host],
    sizes: Sequence[int],
    measure_one: Callable[[Host, int, int], dict[str, Any]],
    figure: Figure,
    *,
    runs: int,
    max_repeats: int,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Runs until ``runs`` of them are clean (at most ``runs + max_repeats``): in each, every
    room size on every server, ``measure_one(host, size, run_index)``, the first server
    alternating, the other stopped meanwhile and the measured one idle first."""
    made: list[dict[str, Any]] = []
    clean = 0
    while len(made) < runs + max_repeats and clean < runs:
        order = hosts if len(made) % 2 == 0 else hosts[::-1]
        cells: dict[str, dict[str, dict[str, Any]]] = {host.name: {} for host in hosts}
        for size in sizes:
            for host in order:
                with paused([other.process for other in hosts if other is not host]):
                    settle(host)
                    cells[host.name][label(size)] = measure_one(host, size, len(made))
        reasons = run_busy_reasons(cells)
        made.append({"cells": cells, "busy": reasons, "loadavg_after": loadavg()})
        clean += not reasons
        figures = ", ".join(
            f"{label(size)} {figure.name} "
            + " vs ".join(figure.format(cells[host.name][label(size)]) for host in hosts)
            + f" {figure.unit}"
            for size in sizes
        )
        log(f"run {len(made)} ({describe_run(reasons)}): {figures}")
    return made


def compare_runs(
    hosts: list[Host],
    args: Any,
    measure_one: Callable[[Host, int, int], dict[str, Any]],
    summarise: Callable[[list[dict[str, Any]]], dict[str, Any]],
    compared: Sequence[str],
    figure: Figure,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The runs (alternate_runs), each server's ``summarise`` of its turns in the clean ones
    (in all when none was clean: then marked busy), and the ``compared`` figures' ratios to
    Synapse's; ``figure``'s ratio run by run shows how steady the ratio is."""
    runs = alternate_runs(
        hosts,
        args.sizes,
        measure_one,
        figure,
        runs=args.runs,
        max_repeats=args.max_repeats,
        log=log,
    )
    used = [run for run in runs if not run["busy"]] or runs
    rooms = [label(size) for size in args.sizes]
    medians = {
        host.name: {
            room: summarise([run["cells"][host.name][room] for run in used]) for room in rooms
        }
        for host in hosts
    }
    ours = medians["antechamber"]
    others = [host.name for host in hosts if host.name != "antechamber"]
    return {
        "synapse_version": synapse_bench.SYNAPSE_VERSION,
        "hosts": [host.name for host in hosts],
        "rooms": rooms,
        "fixtures": {host.name: host.fixtures for host in hosts},
        "runs": runs,
        "clean_runs": sum(not run["busy"] for run in runs),
        "busy": all(run["busy"] for run in runs),
        "medians": medians,
        # Antechamber's figure over each Synapse's: {synapse: {room: {figure: ratio}}}
        "ratios": {
            name: {
                room: {key: ratio(ours[room][key], medians[name][room][key]) for key in compared}
                for room in rooms
            }
            for name in others
        },
        "ratio_by_run": {
            name: {
                room: [
                    ratio(
                        figure.of_cell(run["cells"]["antechamber"][room]),
                        figure.of_cell(run["cells"][name][room]),
                    )
                    for run in used
                ]
                for room in rooms
            }
            for name in others
        },
    }


def targets(
    section: dict[str, Any], key: str, goal: str, limit: float, *, lower_is_better: bool
) -> list[tuple[str, str, bool]]:
    """(target, where we are, met?) per Synapse and room: ``key``'s ratio against ``limit``."""
    out = []
    for name, per_room in section["ratios"].items():
        for room in section["rooms"]:
            value = per_room[room][key]
            met = value is not None and (value <= limit if lower_is_better else value >= limit)
            where = room if name == "synapse" else f"{room}, against {DISPLAY[name]}"
            shown = format_ratio(value, lower_is_better=lower_is_better)
            out.append((f"{goal} ({where})", shown, met))
    return out


def over_runs(section: dict[str, Any], what: str) -> str:
    """Which runs ``what`` (the figures, say) were taken over, and how many were made."""
    made = len(section["runs"])
    if section["busy"]:
        return f"**busy: no run was clean, {what} over all {made} runs**"
    return f"{what} over {section['clean_runs']} clean runs ({made} made)"


def result_lines(section: dict[str, Any], figure: Figure) -> list[str]:
    """The targets table, then every run: ``figure`` of every server per room, and its state."""
    lines = ["| target | measured | met |", "| --- | --- | --- |"]
    for target, value, met in section["targets"]:
        lines.append(f"| {target} | {value} | {'yes' if met else '**no**'} |")
    names = section["hosts"]
    who = " / ".join(DISPLAY[name] for name in names)
    lines += ["", f"Runs ({figure.name} {figure.unit}, {who}):", ""]
    for index, run in enumerate(section["runs"], 1):
        figures = ", ".join(
            f"{room} " + " / ".join(figure.format(run["cells"][name][room]) for name in names)
            for room in section["rooms"]
        )
        lines.append(f"- run {index}: {figures}; {describe_run(run['busy'])}")
    return lines


def fixtures_line(rooms: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Both servers' rooms, as built (both benchmarks' sections end with it)."""
    described = "; ".join(
        f"{DISPLAY[name]}: "
        + ", ".join(
            f"{room['label']} ({room['members']:,} members, {room['events']:,} events)"
            for room in built
        )
        for name, built in rooms.items()
        if name != NO_PUSH  # the same rooms as Synapse's
    )
    return [
        f"Rooms: {described}. Antechamber's members are users of 4 fake remote servers, its "
        "creator local; Synapse's are local users joined through its admin API (SQLite, "
        "plain-HTTP listener, federation rate limits out of reach, user directory off)."
    ]


# Entry point and results -----------------------------------------------------------------------


def main(
    section: str,
    description: str,
    add_arguments: Callable[[Any], None],
    run: Callable[..., dict[str, Any]],
    *,
    no_push: bool = False,
) -> int:
    """The command line of both benchmarks: the servers, the fake remote, then ``run(hosts=...,
    remote=..., args=..., log=...)``; its section written to the results file."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(SIZES), help="room sizes (members)"
    )
    parser.add_argument("--runs", type=int, default=3, help="clean runs wanted")
    parser.add_argument("--max-repeats", type=int, default=3, help="extra runs for busy ones")
    parser.add_argument(
        "--synapse-python", help="python of Synapse's virtualenv (default: install it)"
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    parser.add_argument(
        "--keep-work", action="store_true", help="keep the servers' logs and databases"
    )
    add_arguments(parser)
    args = parser.parse_args()
    started = time.monotonic()
    # A kill stops both servers too (the with blocks below run their exits).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {section}: {message}", flush=True)

    if (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 cores; the client shares the servers' core")
    synapse_python = args.synapse_python or install_synapse()
    prefix = f"antechamber-{section}-"
    with (
        contextlib.nullcontext(tempfile.mkdtemp(prefix=prefix))
        if args.keep_work
        else tempfile.TemporaryDirectory(prefix=prefix)
    ) as tmp:
        work = Path(tmp)
        if args.keep_work:
            log(f"work directory (kept): {work}")
        ca = TestCA(work / "ca")
        with (
            start_hosts(work, ca, args.sizes, synapse_python, log, no_push=no_push) as servers,
            RemoteHomeserver(ca, wall_clock_ms) as remote,
        ):
            pin_threads(CLIENT_CORE)
            result = run(hosts=servers, remote=remote, args=args, log=log)
        result["total_s"] = round(time.monotonic() - started, 1)
        write_section(section, result, work if args.no_write else RESULTS, log)
    return 0


def write_section(section: str, result: dict[str, Any], out: Path, log: Callable[[str], None]):
    """Put ``result`` in the results file of today and this commit (the other benchmark's
    section kept), then render the whole file as markdown and print it."""
    now = datetime.datetime.now(datetime.UTC)
    date, commit = now.strftime("%Y-%m-%d"), git_commit()
    stem = out / f"{date}-{commit}-join-send"
    out.mkdir(parents=True, exist_ok=True)
    path = stem.with_suffix(".json")
    report = json.loads(path.read_text()) if path.exists() else {}
    described = {key: value for key, value in machine().items() if key != "load_generator"}
    described["client"] = "httpx (sync), one request at a time, in the process of the fake remote"
    report.update({"date": date, "commit": commit, "machine": described, section: result})
    path.write_text(json.dumps(report, indent=2) + "\n")
    markdown = render(report)
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)
    log(f"wrote {stem}.md/.json")


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"# send_join and inbound transactions against Synapse {synapse_bench.SYNAPSE_VERSION}, "
        f"{report['date']} at {report['commit']}",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu_model']}, Python {m['python']}, kernel "
        f"{m['kernel']}; client: {m['client']}. Each server one process on core {SERVER_CORE}, "
        f"the client and the fake remote on core {CLIENT_CORE}; the server not measured stopped "
        "(SIGSTOP), the measured one idle before its turn, the first one alternating run by "
        "run; a run in which other work took over 10% of either core is busy and repeated. "
        "Ratio = Antechamber / Synapse.",
    ]
    for section in SECTIONS:
        if section in report:
            module = importlib.import_module(f"bench.{section}")
            lines += ["", *module.markdown(report[section])]
    return "\n".join(lines) + "\n"
