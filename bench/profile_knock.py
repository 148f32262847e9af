"""Where make_knock's time goes: py-spy samples of the pinned server under the bench's load.

One `antechamber serve` (and, with --synapse, the pinned Synapse of the comparison) on core 0,
wrk on core 1 at c=8 replaying one signed make_knock in the 10-member knock room; py-spy
records the server for --seconds while the load runs, and the samples are summed by what they
were doing (the category of a sample's innermost frame that has one, so the shares add up to
100%). Prints the table and the top leaf functions; writes the raw stacks too.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import httpx

from bench import fixtures
from bench import vs_synapse as synapse_bench
from bench.load import run_load
from bench.run import Server, free_port, make_knock_uri, wall_clock_ms
from tests.remote import RemoteHomeserver, TestCA

# py-spy comes with the bench extras, beside this interpreter.
PY_SPY = Path(sys.executable).parent / "py-spy"
# (category, pattern on a frame's file path). A sample goes to the category of its innermost
# frame that matches one, tried in this order: the shares add up to 100%.
CATEGORIES = [
    ("ed25519 verification (PyNaCl)", r"nacl/"),
    ("canonical JSON and signedjson", r"signedjson/|canonicaljson/|matrix/canonical\.py"),
    ("JSON encode/decode (stdlib json)", r"json/"),
    ("logging (the access log line)", r"logging/"),
    ("Prometheus metrics", r"prometheus_client/"),
    ("the store (db/, SQLite)", r"db/|sqlite3/"),
    ("X-Matrix header parsing and checks", r"matrix/xmatrix\.py|app/http/(xmatrix|auth)"),
    ("matrix/ rules (template, knock checks, ids)", r"matrix/"),
    ("room service (app/rooms)", r"app/rooms/"),
    ("handlers", r"handlers/"),
    ("keyring and outbound federation", r"app/federation/"),
    ("fast path (app/http/fast_path.py)", r"app/http/fast_path\.py"),
    ("access log and metrics middleware", r"app/http/access_log\.py"),
    ("rest of the app/http edge (limits, rate limit, errors)", r"app/http/"),
    ("Connexion / Starlette", r"connexion/|starlette/"),
    ("uvicorn HTTP protocol (httptools)", r"uvicorn/|httptools/"),
    ("asyncio event loop", r"asyncio/|uvloop/"),
    ("Synapse: storage and SQLite", r"synapse/storage/"),
    ("Synapse: auth rules (event_auth)", r"synapse/event_auth\.py"),
    ("Synapse: keyring (signature checks)", r"synapse/crypto/"),
    ("Synapse: events, builders and validation", r"synapse/events/"),
    ("Synapse: handlers (federation, message, auth)", r"synapse/handlers/"),
    ("Synapse: federation server and transport", r"synapse/federation/"),
    ("Synapse: HTTP server and request logging", r"synapse/http/|synapse/logging/"),
    ("Synapse: state, caches and utilities", r"synapse/"),
    ("Twisted (web server, reactor, Deferreds)", r"twisted/"),
]
_COMPILED = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
_FRAME_PATH = re.compile(r"\(([^()]*?):\d+\)$")


def read_stacks(path: Path) -> Counter[str]:
    """py-spy --format raw: one "frame;frame;... count" line per distinct stack."""
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def frame_category(frame: str) -> str | None:
    """The category of one py-spy frame, ``function (path:line)``, or None."""
    match = _FRAME_PATH.search(frame)
    path = match.group(1) if match else ""
    return next((name for name, regex in _COMPILED if regex.match(path)), None)


def categorise(stacks: Counter[str]) -> list[tuple[str, float]]:
    """The share of samples (%) per category of their innermost categorised frame."""
    total = sum(stacks.values()) or 1
    shares: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        name = next(filter(None, map(frame_category, reversed(frames))), "other")
        shares[name] += count
    return [(name, round(hits * 100 / total, 1)) for name, hits in shares.most_common()]


def top_leaves(stacks: Counter[str], count: int = 15) -> list[tuple[str, float]]:
    total = sum(stacks.values()) or 1
    leaves: Counter[str] = Counter()
    for stack, hits in stacks.items():
        leaves[stack.rsplit(";", 1)[-1]] += hits
    return [(leaf, round(hits * 100 / total, 1)) for leaf, hits in leaves.most_common(count)]


def profile(pid: int, url: str, headers: dict[str, str], seconds: float, out: Path) -> float:
    """Record ``pid`` with py-spy while wrk loads ``url``; the load's req/s."""
    recorder = subprocess.Popen(
        [
            str(PY_SPY),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    result: dict[str, float] = {}

    def load() -> None:
        outcome = run_load(url, connections=8, seconds=seconds + 1, headers=headers, cpu=1)
        result["rps"] = outcome.rps

    thread = threading.Thread(target=load)
    thread.start()
    _, stderr = recorder.communicate(timeout=seconds + 60)
    thread.join()
    if recorder.returncode != 0:
        raise RuntimeError(f"py-spy failed: {stderr.decode(errors='replace')[-2000:]}")
    return result["rps"]


def report(name: str, rps: float, stacks: Counter[str]) -> None:
    print(f"\n## {name}: {rps:.0f} req/s under py-spy, {sum(stacks.values()):,} samples\n")
    print("| share of samples | what |\n| ---: | --- |")
    for category, share in categorise(stacks):
        print(f"| {share:.1f}% | {category} |")
    print("\nTop leaf functions (self time):\n")
    for leaf, share in top_leaves(stacks):
        print(f"- {share:.1f}% {leaf}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--synapse", action="store_true", help="profile Synapse too")
    parser.add_argument("--synapse-python", help="python of Synapse's virtualenv")
    parser.add_argument("--keep", type=Path, help="directory for the raw stacks")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="antechamber-profile-"))
    keep = args.keep or work
    keep.mkdir(parents=True, exist_ok=True)
    rooms = {r.label: r for r in fixtures.build_fixtures(work / "data", sizes=(10,), history=False)}
    ca = TestCA(work / "ca")
    with RemoteHomeserver(ca, wall_clock_ms) as remote:
        user = f"@bench:{remote.server_name}"
        server = Server(work / "data", ca.ca_file, 1, 0, work / "server.log")
        try:
            uri = make_knock_uri(rooms["10-members"].room_id, user)
            headers = {"Authorization": remote.auth_header("GET", uri, fixtures.SERVER_NAME)}
            httpx.get(server.base_url + uri, headers=headers, timeout=30).raise_for_status()
            run_load(server.base_url + uri, connections=8, seconds=2, headers=headers, cpu=1)
            out = keep / "antechamber.txt"
            rps = profile(server.process.pid, server.base_url + uri, headers, args.seconds, out)
            report("Antechamber make_knock (10-member room)", rps, read_stacks(out))
        finally:
            server.stop()
        if args.synapse:
            from interop.synapse_server import install_synapse

            synapse_python = args.synapse_python or install_synapse()
            synapse, synapse_rooms = synapse_bench.start_with_fixtures(
                synapse_python, work / "synapse", port=free_port(), ca_file=ca.ca_file, cpu=0
            )
            try:
                room = next(r for r in synapse_rooms if r.label == "10-members")
                uri = make_knock_uri(room.room_id, user)
                auth = remote.auth_header("GET", uri, synapse_bench.SERVER_NAME)
                headers = {"Authorization": auth}
                httpx.get(synapse.base_url + uri, headers=headers, timeout=60).raise_for_status()
                run_load(synapse.base_url + uri, connections=8, seconds=2, headers=headers, cpu=1)
                out = keep / "synapse.txt"
                pid = synapse.process.pid
                rps = profile(pid, synapse.base_url + uri, headers, args.seconds, out)
                report("Synapse make_knock (10-member room)", rps, read_stacks(out))
            finally:
                synapse.stop()
    print(f"\nraw stacks in {keep}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
