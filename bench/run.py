"""`make bench`: make_knock and send_knock against a real `antechamber serve`, reported.

Layouts: one worker pinned to core 0 with the load generator on core 1, and two workers
unpinned. Targets: the trivial version endpoint (the framework baseline, in the same run) and
make_knock in rooms of 10, 1,000 and 100,000 members and of 500,000 events. Each cell is run
RUNS times (interleaved, so drift spreads over all cells) and the median is reported.

Layout vs-synapse: the pinned Synapse of `make interop` (bench/vs_synapse.py) and Antechamber, each
one process on core 0 with the load on core 1, make_knock at c=8 in knock rooms of 10 and 1,000
(optionally 10,000) members on both, interleaved run by run; every figure beside its ratio to
Synapse's. A run during which other work took a share of either core is marked busy and
repeated.
"""

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench import fixtures
from bench import vs_synapse as synapse_bench
from bench.compare import (
    MAX_SPREAD_PCT,
    busy_reasons,
    describe_run,
    format_ratio,
    intruder_pct,
    parse_cpu_busy,
    ratio,
    run_busy_reasons,
    spread_pct,
)
from bench.load import LoadResult, run_load, wrk_available
from interop.synapse_server import install_synapse
from matrix.canonical import encode_canonical_json
from matrix.events import compute_event_id, sign_event
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from tests.remote import RemoteHomeserver, TestCA

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# What Synapse sends: every stable room version it supports.
VER_QUERY = "&".join(f"ver={v}" for v in range(1, 13))
VERSION_PATH = "/_matrix/federation/v1/version"


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Server processes ---------------------------------------------------------------------------


class Server:
    """`antechamber serve` as a subprocess, configured through ANTECHAMBER_* variables."""

    def __init__(self, data_dir: Path, ca_file: Path, workers: int, cpu: int | None, log: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "ANTECHAMBER_SERVER_NAME": fixtures.SERVER_NAME,
            "ANTECHAMBER_DATA_DIR": str(data_dir),
            "ANTECHAMBER_BIND_PORT": str(self.port),
            # The admin listener is not what is measured (and its port may be taken)
            "ANTECHAMBER_ADMIN_ENABLED": "false",
            "ANTECHAMBER_WORKERS": str(workers),
            "ANTECHAMBER_FEDERATION_CA_FILE": str(ca_file),
            "ANTECHAMBER_LOG_LEVEL": "INFO",
            # The fake remotes listen on loopback, which outbound requests refuse by default.
            "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
            # One origin sends thousands of requests a second here: keep the per-origin rate
            # limiter on the path (its cost is measured) but with a bucket it cannot empty.
            "ANTECHAMBER_RC_FEDERATION_PER_SECOND": "1000000000",
            "ANTECHAMBER_RC_FEDERATION_BURST_COUNT": "1000000000",
        }
        command = self.command()
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        self.workers = workers
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=self._log, cwd=ROOT
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base_url + VERSION_PATH, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"server did not start; see {log}")
            time.sleep(0.1)
        if workers > 1:
            # Every worker must be up before measuring (the first answer came from one).
            deadline = time.monotonic() + 60
            while len(self.worker_pids()) < workers and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)

    def command(self) -> list[str]:
        # `python -m app` from the checkout: the tree being measured is the one this file is in.
        return [sys.executable, "-m", "app", "serve"]

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the one process, or the supervisor's children."""
        pid = self.process.pid
        if self.workers == 1:
            # taskset execs the server in place: same pid.
            return [pid]
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        # uvicorn's workers are multiprocessing spawns; skip the resource tracker.
        return [
            int(child)
            for child in children
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        ]

    def all_pids(self) -> list[int]:
        return sorted({self.process.pid, *self.worker_pids()})

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.all_pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return total / CLOCK_TICKS

    def peak_rss_mb(self) -> list[float]:
        peaks = []
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return peaks

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class BareAsgiServer(Server):
    """bench/bare_asgi.py: the same stack answering constant JSON, the floor under make_knock."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.bare_asgi", "--port", str(self.port)]


# Requests -----------------------------------------------------------------------------------


def make_knock_uri(room_id: str, user_id: str) -> str:
    return (
        f"/_matrix/federation/v1/make_knock/{quote(room_id, safe='')}/"
        f"{quote(user_id, safe='')}?{VER_QUERY}"
    )


def build_knocks(
    server: Server, remote: RemoteHomeserver, room_id: str, count: int, tag: str
) -> list[str]:
    """``count`` distinct signed send_knock requests ("path\\tauthorization\\tbody" lines) by
    users of ``remote``, built from one make_knock template as the remote would."""
    room_version = KNOWN_ROOM_VERSIONS[fixtures.ROOM_VERSION]
    first_user = f"@{tag}0:{remote.server_name}"
    uri = make_knock_uri(room_id, first_user)
    response = httpx.get(
        server.base_url + uri,
        headers={"Authorization": remote.auth_header("GET", uri, fixtures.SERVER_NAME)},
        timeout=30,
    )
    response.raise_for_status()
    template = response.json()["event"]
    lines = []
    for index in range(count):
        user = f"@{tag}{index}:{remote.server_name}"
        event = {**template, "sender": user, "state_key": user, "origin": remote.server_name}
        signed = sign_event(event, room_version, remote.server_name, remote.signing_key)
        event_id = compute_event_id(signed, room_version)
        path = (
            f"/_matrix/federation/v1/send_knock/{quote(room_id, safe='')}/"
            f"{quote(event_id, safe='')}"
        )
        auth = remote.auth_header("PUT", path, fixtures.SERVER_NAME, content=signed)
        lines.append(f"{path}\t{auth}\t{encode_canonical_json(signed).decode()}")
    return lines


def cold_first_request_ms(server: Server, ca: TestCA, room_id: str) -> float:
    """One make_knock from a server never seen before: includes fetching its keys over TLS."""
    with RemoteHomeserver(ca, wall_clock_ms) as newcomer:
        uri = make_knock_uri(room_id, f"@cold:{newcomer.server_name}")
        headers = {"Authorization": newcomer.auth_header("GET", uri, fixtures.SERVER_NAME)}
        with httpx.Client(timeout=30) as client:
            started = time.perf_counter()
            response = client.get(server.base_url + uri, headers=headers)
            elapsed = time.perf_counter() - started
        response.raise_for_status()
        assert newcomer.key_fetches == 1, newcomer.key_fetches
    return elapsed * 1000


def cold_burst(server: Server, ca: TestCA, room_id: str, burst: int = 50) -> dict[str, Any]:
    """``burst`` simultaneous make_knocks from a new origin: how many key fetches it caused."""
    with RemoteHomeserver(ca, wall_clock_ms) as newcomer:
        uri = make_knock_uri(room_id, f"@burst:{newcomer.server_name}")
        headers = {"Authorization": newcomer.auth_header("GET", uri, fixtures.SERVER_NAME)}

        async def fire() -> list[int]:
            limits = httpx.Limits(max_connections=burst)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                # Open the connections first, so the requests themselves arrive together.
                await asyncio.gather(
                    *(client.get(server.base_url + VERSION_PATH) for _ in range(burst))
                )
                responses = await asyncio.gather(
                    *(client.get(server.base_url + uri, headers=headers) for _ in range(burst))
                )
            return [response.status_code for response in responses]

        started = time.perf_counter()
        statuses = asyncio.run(fire())
        elapsed = time.perf_counter() - started
        return {
            "requests": burst,
            "ok": sum(status == 200 for status in statuses),
            "key_fetches": newcomer.key_fetches,
            "all_done_ms": round(elapsed * 1000, 1),
        }


# Measuring ----------------------------------------------------------------------------------


def _load_generator_cpu_s() -> float:
    """CPU of this process and of its waited-for children (wrk runs as one)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def measure(
    server: Any,
    url: str,
    connections: int,
    seconds: float,
    *,
    server_core: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One load run against ``server`` (Server or SynapseProcess). With ``server_core`` and the
    load's ``cpu``, also how much of each of those cores other work took meanwhile."""
    load_core = options.get("cpu")
    stat_before = parse_cpu_busy(Path("/proc/stat").read_text())
    load_cpu_before = _load_generator_cpu_s()
    cpu_before = server.cpu_seconds()
    result: LoadResult = run_load(url, connections=connections, seconds=seconds, **options)
    cpu = server.cpu_seconds() - cpu_before
    load_cpu = _load_generator_cpu_s() - load_cpu_before
    stat_after = parse_cpu_busy(Path("/proc/stat").read_text())
    others: dict[str, float] = {}
    if server_core is not None and load_core is not None:
        for name, core, own in (
            ("server_core", server_core, cpu),
            ("load_core", load_core, load_cpu),
        ):
            jiffies = stat_after[core] - stat_before[core]
            others[f"other_{name}_pct"] = intruder_pct(jiffies, own, result.seconds, CLOCK_TICKS)
    return {
        **asdict(result),
        "rps": round(result.rps, 1),
        "cpu_ms_per_request": round(cpu * 1000 / result.requests, 4) if result.requests else None,
        # Server CPU over wall time: a pinned worker at saturation should be near 100%; less
        # means something else ran on its core (this machine is shared).
        "server_busy_pct": round(cpu * 100 / result.seconds, 1) if result.seconds else None,
        **others,
    }


def count_knocks(data_dir: Path, room_id: str) -> int:
    import sqlite3

    conn = sqlite3.connect(data_dir / "antechamber.db")
    try:
        row = conn.execute(
            "SELECT count(*) FROM current_state WHERE room_id = ? AND membership = 'knock'",
            (room_id,),
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def run_layout(
    name: str,
    *,
    workers: int,
    server_cpu: int | None,
    load_cpu: int | None,
    data_dir: Path,
    work: Path,
    ca: TestCA,
    remote: RemoteHomeserver,
    rooms: dict[str, fixtures.BenchRoom],
    args: argparse.Namespace,
    log,
) -> dict[str, Any]:
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    server = Server(data_dir, ca.ca_file, workers, server_cpu, work / f"server-{name}.log")
    try:
        threads = 1 if load_cpu is not None else 2
        targets: dict[str, tuple[str, dict[str, str]]] = {"version": (VERSION_PATH, {})}
        user = f"@bench:{remote.server_name}"
        for label in (
            "10-members",
            "1,000-members",
            "100,000-members",
            f"{fixtures.HISTORY_EVENTS // 1000}k-events",
        ):
            room = rooms[label]
            uri = make_knock_uri(room.room_id, user)
            auth = remote.auth_header("GET", uri, fixtures.SERVER_NAME)
            targets[label] = (uri, {"Authorization": auth})
        # The first signed request fetches the remote's keys; then warm every target up.
        for uri, headers in targets.values():
            response = httpx.get(server.base_url + uri, headers=headers, timeout=30)
            response.raise_for_status()
        for uri, headers in targets.values():
            run_load(
                server.base_url + uri,
                connections=8,
                seconds=args.warmup,
                headers=headers,
                cpu=load_cpu,
                threads=threads,
            )
        cells: dict[str, dict[str, list[dict[str, Any]]]] = {
            target: {str(c): [] for c in args.concurrency} for target in targets
        }
        for run in range(args.runs):
            for target, (uri, headers) in targets.items():
                for connections in args.concurrency:
                    cells[target][str(connections)].append(
                        measure(
                            server,
                            server.base_url + uri,
                            connections,
                            args.seconds,
                            headers=headers,
                            cpu=load_cpu,
                            threads=threads,
                        )
                    )
            log(f"{name}: run {run + 1}/{args.runs} done")
        # send_knock: distinct signed knocks from many users, c=8.
        send_room = rooms["send_knock"]
        before = count_knocks(data_dir, send_room.room_id)
        lines = build_knocks(server, remote, send_room.room_id, args.knocks, tag=f"k{name}_")
        requests_file = work / f"knocks-{name}.tsv"
        requests_file.write_text("\n".join(lines) + "\n")
        send_knock = measure(
            server,
            server.base_url,
            8,
            args.seconds,
            requests_file=requests_file,
            cpu=load_cpu,
            threads=1,
        )
        send_knock["distinct_knocks_stored"] = count_knocks(data_dir, send_room.room_id) - before
        send_knock["distinct_knocks_available"] = len(lines)
        log(f"{name}: send_knock {send_knock['rps']} req/s")
        cold: dict[str, Any] = {}
        if not args.skip_cold:
            firsts = [
                cold_first_request_ms(server, ca, rooms["10-members"].room_id) for _ in range(3)
            ]
            cold = {
                "first_request_ms": [round(value, 1) for value in firsts],
                "first_request_ms_median": round(statistics.median(firsts), 1),
                "burst_50": cold_burst(server, ca, rooms["10-members"].room_id),
            }
            log(f"{name}: cold path {cold}")
        peak_rss = server.peak_rss_mb()
    finally:
        server.stop()
    medians = {
        target: {c: summarise(results) for c, results in per_c.items()}
        for target, per_c in cells.items()
    }
    return {
        "workers": workers,
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "cells": cells,
        "medians": medians,
        "send_knock": send_knock,
        "cold": cold,
        "peak_rss_mb_per_worker": [round(value, 1) for value in peak_rss],
        # Other work on the machine shows here: 1-minute load before and after the layout.
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
    }


VS_SYNAPSE = "vs-synapse"
COMPARED_FIGURES = (
    ("rps", False),
    ("p50_ms", True),
    ("p99_ms", True),
    ("cpu_ms_per_request", True),
)


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


@contextlib.contextmanager
def paused(servers: list[Any]) -> Iterator[None]:
    """SIGSTOP the servers not being measured (they share its core), SIGCONT them after."""
    pids = [pid for server in servers for pid in server.all_pids()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def check_knock_template(response: httpx.Response, user: str) -> None:
    """The first answer of a target must be a knock template for ``user`` (both servers)."""
    response.raise_for_status()
    body = response.json()
    event = body["event"]
    ok = body.get("room_version") == fixtures.ROOM_VERSION and event["state_key"] == user
    if not ok or event["content"].get("membership") != "knock":
        raise RuntimeError(f"not a knock template: {json.dumps(body)[:300]}")


def run_vs_synapse(
    *,
    data_dir: Path,
    work: Path,
    ca: TestCA,
    remote: RemoteHomeserver,
    rooms: dict[str, fixtures.BenchRoom],
    args: argparse.Namespace,
    log,
) -> dict[str, Any]:
    """make_knock at c=8 on Antechamber and on Synapse, each one process on core 0 with the load
    on core 1, in rooms of the same sizes, run after run; busy runs repeated."""
    server_core, load_core = 0, 1
    load_before = loadavg()
    servers: dict[str, Any] = {}
    floor_server: BareAsgiServer | None = None
    try:
        servers["antechamber"] = Server(
            data_dir, ca.ca_file, 1, server_core, work / "server-vs-synapse.log"
        )
        synapse, synapse_rooms = synapse_bench.start_with_fixtures(
            args.synapse_python,
            work / "synapse",
            port=free_port(),
            ca_file=ca.ca_file,
            cpu=server_core,
            sizes=tuple(args.synapse_sizes),
            log=log,
        )
        servers["synapse"] = synapse
        # The floor: the same stack with none of our work, measured with the same requests.
        floor = floor_server = BareAsgiServer(
            data_dir, ca.ca_file, 1, server_core, work / "bare-asgi.log"
        )
        by_label = {room.label: room for room in synapse_rooms}
        labels = [label for label in by_label if label in rooms]
        user = f"@bench:{remote.server_name}"
        destinations = {"antechamber": fixtures.SERVER_NAME, "synapse": synapse_bench.SERVER_NAME}
        room_ids = {
            "antechamber": {label: rooms[label].room_id for label in labels},
            "synapse": {label: by_label[label].room_id for label in labels},
        }
        targets: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        for name, server in servers.items():
            for label in labels:
                uri = make_knock_uri(room_ids[name][label], user)
                auth = remote.auth_header("GET", uri, destinations[name])
                targets[(name, label)] = (server.base_url + uri, {"Authorization": auth})
        # The first signed request makes each server fetch the remote's key; then warm up.
        for url, headers in targets.values():
            check_knock_template(httpx.get(url, headers=headers, timeout=60), user)
        for url, headers in targets.values():
            run_load(url, connections=8, seconds=args.warmup, headers=headers, cpu=load_core)
        runs: list[dict[str, Any]] = []
        clean = 0

        def noisy() -> bool:
            """Whether some cell's clean runs spread more than MAX_SPREAD_PCT (req/s)."""
            counted = [run for run in runs if not run["busy"]]
            return any(
                spread_pct([run["cells"][name][label]["rps"] for run in counted]) > MAX_SPREAD_PCT
                for name in servers
                for label in labels
            )

        # Busy runs are repeated; so are noisy ones, while the repeats last.
        while len(runs) < args.vs_runs + args.max_repeats and (clean < args.vs_runs or noisy()):
            cells: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in servers}
            # Alternate which server goes first, so slow drift does not favour one.
            order = list(servers) if len(runs) % 2 == 0 else list(reversed(servers))
            for label in labels:
                for name in order:
                    url, headers = targets[(name, label)]
                    others = [server for other, server in servers.items() if other != name]
                    with paused([*others, floor]):
                        cells[name][label] = measure(
                            servers[name],
                            url,
                            8,
                            args.seconds,
                            server_core=server_core,
                            headers=headers,
                            cpu=load_core,
                        )
            # The same request (Antechamber's first room) to the bare app.
            url, headers = targets[("antechamber", labels[0])]
            with paused(list(servers.values())):
                floor_cell = measure(
                    floor,
                    floor.base_url + url.removeprefix(servers["antechamber"].base_url),
                    8,
                    args.seconds,
                    server_core=server_core,
                    headers=headers,
                    cpu=load_core,
                )
            reasons = run_busy_reasons(cells) + busy_reasons(floor_cell, "bare ASGI floor")
            runs.append(
                {"cells": cells, "floor": floor_cell, "busy": reasons, "loadavg_after": loadavg()}
            )
            clean += not reasons
            state = "busy: " + "; ".join(reasons) if reasons else "clean"
            summary = ", ".join(
                f"{label} {cells['antechamber'][label]['rps']:.0f} vs "
                f"{cells['synapse'][label]['rps']:.0f} req/s"
                for label in labels
            )
            log(
                f"{VS_SYNAPSE}: run {len(runs)} ({state}): {summary}; "
                f"bare ASGI floor {floor_cell['rps']:.0f} req/s"
            )
        peak_rss = {name: server.peak_rss_mb() for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
        if floor_server is not None:
            floor_server.stop()
    counted = [run for run in runs if not run["busy"]] or runs
    medians: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in servers}
    spreads: dict[str, dict[str, float]] = {name: {} for name in servers}
    for name in servers:
        for label in labels:
            results = [run["cells"][name][label] for run in counted]
            medians[name][label] = summarise(results)
            spreads[name][label] = spread_pct([result["rps"] for result in results])
    # Each run measures both servers within seconds: its own ratio shows how steady the ratio is
    # when the absolute figures drift.
    run_ratios = {
        label: [
            ratio(run["cells"]["antechamber"][label]["rps"], run["cells"]["synapse"][label]["rps"])
            for run in counted
        ]
        for label in labels
    }
    ratios = {
        label: {
            figure: ratio(medians["antechamber"][label][figure], medians["synapse"][label][figure])
            for figure, _ in COMPARED_FIGURES
        }
        for label in labels
    }
    return {
        "server_cpu": server_core,
        "load_cpu": load_core,
        "connections": 8,
        "synapse_version": synapse_bench.SYNAPSE_VERSION,
        "synapse_settle_s": servers["synapse"].settle_s,
        "synapse_fixtures": [asdict(room) for room in synapse_rooms],
        "rooms": labels,
        "runs": runs,
        "clean_runs": clean,
        # Medians over the clean runs (over all runs, marked busy, when none was clean).
        "busy": clean == 0,
        "medians": medians,
        "spread_rps_pct": spreads,
        "ratios": ratios,
        "rps_ratio_per_run": run_ratios,
        "floor": summarise([run["floor"] for run in counted]),
        "peak_rss_mb": {name: [round(v, 1) for v in values] for name, values in peak_rss.items()},
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        values = [r[key] for r in results if r[key] is not None]
        return round(statistics.median(values), 4) if values else 0.0

    return {
        "rps": med("rps"),
        "p50_ms": med("p50_ms"),
        "p90_ms": med("p90_ms"),
        "p99_ms": med("p99_ms"),
        "cpu_ms_per_request": med("cpu_ms_per_request"),
        "server_busy_pct": med("server_busy_pct"),
        "errors": sum(r["errors"] for r in results),
        "runs": len(results),
    }


# Reports ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_generator": "wrk" if wrk_available() else "httpx (asyncio)",
    }


def git_commit() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return commit or "unknown"


def check_synapse_targets(layout: dict[str, Any] | None) -> list[tuple[str, str, bool]]:
    """Issue 15: make_knock at c=8 >= 10x Synapse's req/s and p99 <= 1/10 of Synapse's."""
    if layout is None:
        return []
    out = []
    for label in layout["rooms"]:
        ratios = layout["ratios"][label]
        rps, p99 = ratios["rps"], ratios["p99_ms"]
        out.append(
            (
                f"make_knock c=8 req/s >= 10x Synapse ({label})",
                format_ratio(rps),
                rps is not None and rps >= 10,
            )
        )
        out.append(
            (
                f"make_knock c=8 p99 <= 1/10 of Synapse's ({label})",
                format_ratio(p99, lower_is_better=True),
                p99 is not None and p99 <= 0.1,
            )
        )
    return out


def check_targets(report: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The issues' targets against the medians: (target, where we are, met?)."""
    out = check_synapse_targets(report["layouts"].get(VS_SYNAPSE))
    if not {"1-worker-pinned", "2-workers"} <= set(report["layouts"]):
        return out
    one = report["layouts"]["1-worker-pinned"]["medians"]
    two = report["layouts"]["2-workers"]["medians"]
    small = one["10-members"]
    big = one["100,000-members"]
    c8 = small.get("8")
    if c8:
        out.append(
            ("make_knock 1 worker c=8 >= 1,500 req/s", f"{c8['rps']:.0f} req/s", c8["rps"] >= 1500)
        )
        out.append(
            ("make_knock 1 worker c=8 p99 <= 8 ms", f"{c8['p99_ms']:.2f} ms", c8["p99_ms"] <= 8)
        )
    c1 = small.get("1")
    if c1:
        out.append(("make_knock c=1 p50 <= 1 ms", f"{c1['p50_ms']:.3f} ms", c1["p50_ms"] <= 1))
        ratio = big["1"]["p50_ms"] / c1["p50_ms"]
        out.append(("p50 100k members <= 1.25x 10 members (c=1)", f"{ratio:.2f}x", ratio <= 1.25))
    if c8:
        cpu_ratio = c8["cpu_ms_per_request"] / one["version"]["8"]["cpu_ms_per_request"]
        out.append(
            ("CPU per make_knock <= 2x version endpoint (c=8)", f"{cpu_ratio:.2f}x", cpu_ratio <= 2)
        )
    # Saturation throughput of each layout: its best concurrency.
    best_one = max(small.values(), key=lambda s: s["rps"])["rps"]
    best_two = max(two["10-members"].values(), key=lambda s: s["rps"])["rps"]
    scale = best_two / best_one
    out.append(
        (
            "2 workers >= 1.6x 1 worker (peak req/s over c)",
            f"{scale:.2f}x ({best_two:.0f} / {best_one:.0f})",
            scale >= 1.6,
        )
    )
    rss = max(
        report["layouts"]["1-worker-pinned"]["peak_rss_mb_per_worker"]
        + report["layouts"]["2-workers"]["peak_rss_mb_per_worker"]
    )
    out.append(("peak RSS <= 150 MB per worker", f"{rss:.0f} MB", rss <= 150))
    return out


def write_markdown(report: dict[str, Any], path: Path) -> None:
    m = report["machine"]
    lines = [
        f"# Benchmark {report['date']} at {report['commit']}",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu_model']}, Python {m['python']}, "
        f"kernel {m['kernel']}; load generator: {m['load_generator']}. "
        f"Medians of {report['settings']['runs']} runs ({report['settings']['vs_runs']} clean "
        f"runs for {VS_SYNAPSE}) of {report['settings']['seconds']} s per cell after a "
        f"{report['settings']['warmup']} s warm-up; total {report['total_s']} s.",
        "",
        f"Server: `python -m app serve` (uvicorn with httptools and uvloop), access log at INFO "
        f"to a file, per-origin rate limiter on with a bucket the load cannot empty; make_knock "
        f"sends 12 `ver` values (as Synapse does) in room version {fixtures.ROOM_VERSION} knock "
        f"rooms; one signed X-Matrix header per target, replayed (the signature is verified on "
        f"every request).",
        "",
        "## Fixtures",
        "",
        "| room | members | events | build time | |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for room in report["fixtures"]:
        note = "cached (build time of the cached build)" if room["cached"] else "built this run"
        lines.append(
            f"| {room['label']} | {room['members']:,} | {room['events']:,} | "
            f"{room['build_s']:.1f} s | {note} |"
        )
    lines += ["", "## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    one = report["layouts"].get("1-worker-pinned", {}).get("medians", {})
    if one:
        cpu_ms = one["10-members"]["8"]["cpu_ms_per_request"]
        busy = one["10-members"]["8"]["server_busy_pct"]
        lines.insert(
            len(lines) - 4,
            f"One worker's CPU-bound capacity for make_knock (1 / server CPU per request, c=8): "
            f"{1000 / cpu_ms:.0f} req/s; the pinned server was busy {busy:.0f}% of the time "
            "at c=8 (below ~95% means another process shared its core during the run).\n",
        )
    for target, value, met in report["targets"]:
        lines.append(f"| {target} | {value} | {'yes' if met else '**no**'} |")
    for name, layout in report["layouts"].items():
        if name == VS_SYNAPSE:
            lines += synapse_markdown(layout)
            continue
        pin = (
            f"server on core {layout['server_cpu']}, load on core {layout['load_cpu']}"
            if layout["server_cpu"] is not None
            else "unpinned"
        )
        rss = ", ".join(f"{value:.0f} MB" for value in layout["peak_rss_mb_per_worker"])
        lines += [
            "",
            f"## {name} ({layout['workers']} worker(s), {pin}; peak RSS per worker: {rss})",
            "",
            f"Load average before/after: {' '.join(layout['loadavg_before'])} / "
            f"{' '.join(layout['loadavg_after'])}.",
            "",
            "| endpoint / room | c | req/s | p50 ms | p90 ms | p99 ms | server CPU ms/req"
            " | server busy | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for target, per_c in layout["medians"].items():
            what = "version" if target == "version" else f"make_knock {target}"
            for c, s in per_c.items():
                lines.append(
                    f"| {what} | {c} | {s['rps']:.0f} | {s['p50_ms']:.3f} | {s['p90_ms']:.3f} | "
                    f"{s['p99_ms']:.3f} | {s['cpu_ms_per_request']:.3f} | "
                    f"{s['server_busy_pct']:.0f}% | {s['errors']} |"
                )
        sk = layout["send_knock"]
        lines += [
            "",
            f"send_knock (c=8, {sk['distinct_knocks_stored']:,} distinct knocks stored of "
            f"{sk['requests']:,} requests): {sk['rps']:.0f} req/s, p50 {sk['p50_ms']:.2f} ms, "
            f"p99 {sk['p99_ms']:.2f} ms, server CPU {sk['cpu_ms_per_request']:.3f} ms/req, "
            f"errors {sk['errors']}.",
        ]
        cold = layout["cold"]
        if cold:
            burst = cold["burst_50"]
            lines += [
                "",
                f"Cold path: first request from a new origin (key fetch over TLS included) "
                f"{cold['first_request_ms_median']} ms (median of {cold['first_request_ms']}); "
                f"{burst['requests']} simultaneous requests from a new origin: "
                f"{burst['key_fetches']} key fetch(es), {burst['ok']} answered 200, all done in "
                f"{burst['all_done_ms']} ms.",
            ]
    lines += ["", f"Chart: `{report['chart']}`" if report.get("chart") else "No chart."]
    path.write_text("\n".join(lines) + "\n")


def synapse_markdown(layout: dict[str, Any]) -> list[str]:
    """The vs-synapse section: both servers' medians and their ratios, then every run."""
    medians, ratios = layout["medians"], layout["ratios"]
    rss = ", ".join(
        f"{name} {values[0]:.0f} MB" for name, values in layout["peak_rss_mb"].items() if values
    )
    state = (
        "**busy: no run was clean, medians over all runs**"
        if layout["busy"]
        else f"medians of {layout['clean_runs']} clean runs"
    )
    lines = [
        "",
        f"## Antechamber against Synapse {layout['synapse_version']}, same run ({VS_SYNAPSE})",
        "",
        f"Each server one process on core {layout['server_cpu']}, wrk on core "
        f"{layout['load_cpu']}, c={layout['connections']}, make_knock with one signed request per "
        f"room replayed; rooms interleaved run by run, the first server alternating, the other "
        f"server stopped (SIGSTOP) while one is measured; Synapse measured once idle (it "
        f"settled {layout['synapse_settle_s']} s after its start). {state} "
        f"({len(layout['runs'])} made). Ratio = Antechamber / Synapse (for latencies, 1/n: n "
        f"times lower). Peak RSS: {rss}. Load average before/after: "
        f"{' '.join(layout['loadavg_before'])} / {' '.join(layout['loadavg_after'])}.",
        "",
        "| room | req/s A | req/s S | ratio | p50 ms A | p50 ms S | ratio | p99 ms A | p99 ms S "
        "| ratio | CPU ms/req A | CPU ms/req S | ratio | req/s spread A / S | req/s ratio by run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
    ]
    for label in layout["rooms"]:
        ours, theirs = medians["antechamber"][label], medians["synapse"][label]
        cells = [label]
        for figure, lower in COMPARED_FIGURES:
            digits = 0 if figure == "rps" else 3
            cells += [
                f"{ours[figure]:,.{digits}f}",
                f"{theirs[figure]:,.{digits}f}",
                format_ratio(ratios[label][figure], lower_is_better=lower),
            ]
        spread = layout["spread_rps_pct"]
        noisy = max(spread["antechamber"][label], spread["synapse"][label]) > MAX_SPREAD_PCT
        cells.append(
            f"{spread['antechamber'][label]:.0f}% / {spread['synapse'][label]:.0f}%"
            + (" (noisy)" if noisy else "")
        )
        by_run = [value for value in layout["rps_ratio_per_run"][label] if value is not None]
        cells.append(f"{min(by_run):.2f}-{max(by_run):.2f}x" if by_run else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    floor = layout.get("floor")
    if floor:
        floor_cpu = floor["cpu_ms_per_request"] or float("nan")
        per_room = ", ".join(
            f"{label} {medians['antechamber'][label]['cpu_ms_per_request'] / floor_cpu:.1f}x"
            for label in layout["rooms"]
        )
        lines += [
            "",
            f"Floor (bench/bare_asgi.py: the same uvicorn + httptools + uvloop process, pinned "
            f"the same way, answering the same requests with constant JSON of a template's size, "
            f"no middleware): {floor['rps']:,.0f} req/s, p99 {floor['p99_ms']:.3f} ms, "
            f"{floor['cpu_ms_per_request']:.3f} ms CPU per request. Antechamber's make_knock CPU "
            f"per request is {per_room} the floor's.",
        ]
    lines += ["", "Runs (req/s, Antechamber / Synapse):", ""]
    for index, run in enumerate(layout["runs"], 1):
        figures = ", ".join(
            f"{label} {run['cells']['antechamber'][label]['rps']:.0f} / "
            f"{run['cells']['synapse'][label]['rps']:.0f}"
            for label in layout["rooms"]
        )
        state = describe_run(run["busy"])
        lines.append(f"- run {index}: {figures}; {state}; load {' '.join(run['loadavg_after'])}")
    fixture_lines = ", ".join(
        f"{room['label']} ({room['members']:,} members, {room['events']:,} events)"
        for room in layout["synapse_fixtures"]
    )
    lines += [
        "",
        f"Synapse's rooms (local users joined through its admin API, SQLite, plain-HTTP "
        f"listener, federation rate limits out of reach): {fixture_lines}.",
    ]
    return lines


def write_chart(report: dict[str, Any], path: Path) -> bool:
    if "1-worker-pinned" not in report["layouts"]:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rooms = ["10-members", "1,000-members", "100,000-members"]
    sizes = [10, 1_000, 100_000]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    one = report["layouts"]["1-worker-pinned"]["medians"]
    for c in one["10-members"]:
        left.plot(sizes, [one[room][c]["p50_ms"] for room in rooms], marker="o", label=f"p50 c={c}")
        left.plot(
            sizes,
            [one[room][c]["p99_ms"] for room in rooms],
            marker="x",
            ls="--",
            label=f"p99 c={c}",
        )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("room members")
    left.set_ylabel("make_knock latency (ms)")
    left.set_title("1 worker pinned: latency against room size")
    left.legend(fontsize=7)
    for name, layout in report["layouts"].items():
        medians = layout["medians"]
        cs = [int(c) for c in medians["10-members"]]
        right.plot(
            cs,
            [medians["10-members"][str(c)]["rps"] for c in cs],
            marker="o",
            label=f"make_knock, {name}",
        )
        right.plot(
            cs,
            [medians["version"][str(c)]["rps"] for c in cs],
            marker="x",
            ls="--",
            label=f"version, {name}",
        )
    right.set_xscale("log", base=2)
    right.set_xlabel("concurrent connections")
    right.set_ylabel("requests/s")
    right.set_title("throughput against concurrency (10-member room)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--knocks", type=int, default=4000)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument(
        "--layouts", nargs="+", default=["1-worker-pinned", "2-workers", VS_SYNAPSE]
    )
    parser.add_argument("--vs-runs", type=int, default=5, help="clean runs of vs-synapse")
    parser.add_argument("--max-repeats", type=int, default=3, help="extra runs for busy ones")
    parser.add_argument(
        "--synapse-sizes", type=int, nargs="+", default=list(synapse_bench.ROOM_SIZES)
    )
    parser.add_argument(
        "--synapse-python", help="python of Synapse's virtualenv (default: install it)"
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    args = parser.parse_args()
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    if (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 cores; the pinned layout shares one core")
    work = Path(tempfile.mkdtemp(prefix="antechamber-bench-"))
    data_dir = work / "data"
    try:
        if args.layouts == [VS_SYNAPSE]:
            built = fixtures.build_fixtures(
                data_dir, log=log, sizes=tuple(args.synapse_sizes), history=False
            )
        else:
            built = fixtures.build_fixtures(data_dir, log=log)
        if VS_SYNAPSE in args.layouts and not args.synapse_python:
            args.synapse_python = install_synapse()
        rooms = {room.label: room for room in built}
        ca = TestCA(work / "ca")
        layouts_spec = {
            "1-worker-pinned": {"workers": 1, "server_cpu": 0, "load_cpu": 1},
            "2-workers": {"workers": 2, "server_cpu": None, "load_cpu": None},
        }
        layouts = {}
        with RemoteHomeserver(ca, wall_clock_ms) as remote:
            for name in args.layouts:
                if name == VS_SYNAPSE:
                    layouts[name] = run_vs_synapse(
                        data_dir=data_dir,
                        work=work,
                        ca=ca,
                        remote=remote,
                        rooms=rooms,
                        args=args,
                        log=log,
                    )
                    continue
                layouts[name] = run_layout(
                    name,
                    **layouts_spec[name],
                    data_dir=data_dir,
                    work=work,
                    ca=ca,
                    remote=remote,
                    rooms=rooms,
                    args=args,
                    log=log,
                )
        now = datetime.datetime.now(datetime.UTC)
        report: dict[str, Any] = {
            "date": now.strftime("%Y-%m-%d"),
            "commit": git_commit(),
            "machine": machine(),
            "settings": {
                "runs": args.runs,
                "seconds": args.seconds,
                "warmup": args.warmup,
                "concurrency": args.concurrency,
                "vs_runs": args.vs_runs,
                "max_repeats": args.max_repeats,
            },
            "fixtures": [asdict(room) for room in built],
            "layouts": layouts,
            "total_s": round(time.monotonic() - started, 1),
        }
        report["targets"] = check_targets(report)
        stem = f"{report['date']}-{report['commit']}"
        if args.no_write:
            out = work
        else:
            RESULTS.mkdir(parents=True, exist_ok=True)
            out = RESULTS
        chart = out / f"{stem}.png"
        if report["targets"] and write_chart(report, chart):
            report["chart"] = chart.name
        (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        write_markdown(report, out / f"{stem}.md")
        print((out / f"{stem}.md").read_text())
        log(f"wrote {out / stem}.md/.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
