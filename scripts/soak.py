"""Soak: mixed valid and invalid federation traffic with key-server faults; RSS/fds over time.

    .venv/bin/python scripts/soak.py [--minutes 10] [--workers 2] [--concurrency 8]

A real `antechamber serve` (two workers) takes, for ``--minutes``: valid knocks (make_knock +
send_knock) from a good remote; requests from a second remote whose key server cycles through
faults (hang, garbage, bad signature, wrong server name, ok) and which signs with fresh key ids
so keys keep being fetched; unsigned and badly signed requests; unknown rooms; bodies that are
not JSON; over-long URLs. Every 15 s it samples RSS and open file descriptors of the server's
processes. Prints a JSON report; exit status 0 only with zero 5xx and RSS/fds flat (the last
sample within 25% / +20 fds of the first sample after the warm-up minute). Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from signedjson.key import generate_signing_key  # noqa: E402

from tests import remote as remote_homeserver  # noqa: E402
from tests.server_process import (  # noqa: E402
    SERVER_NAME,
    ServerProcess,
    check_consistency,
    check_integrity,
    make_knock_event,
    send_knock,
    wall_clock_ms,
)

FAULTS = ["hang", "garbage", "bad_signature", "wrong_server_name", "ok"]
SAMPLE_EVERY_S = 15


def sample(server: ServerProcess) -> dict:
    rss_kb = 0
    fds = 0
    for pid in server.pids():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return {"rss_mb": round(rss_kb / 1024, 1), "fds": fds, "processes": len(server.pids())}


async def traffic(server, good, faulty, rooms, deadline, concurrency, statuses, errors):
    def count(kind: str, status: int) -> None:
        statuses.setdefault(kind, {}).setdefault(str(status), 0)
        statuses[kind][str(status)] += 1

    async def one(client: httpx.AsyncClient, rng: random.Random, n: int) -> None:
        choice = rng.random()
        room_id = rng.choice(rooms)
        room = quote(room_id, safe="")
        try:
            if choice < 0.45:
                user = f"@soak{n % 500}:{good.server_name}"
                event, event_id = await make_knock_event(client, good, room_id, user, f"n{n}")
                count("knock", (await send_knock(client, good, event, event_id)).status)
            elif choice < 0.6:
                # The faulty remote, with a key id it never published: a key fetch each time
                # its backoff allows, against whatever fault its key server is in.
                uri = f"/_matrix/federation/v1/make_knock/{room}/@x:{faulty.server_name}?ver=12"
                key = generate_signing_key(f"k{n}")
                header = faulty.auth_header("GET", uri, SERVER_NAME, signing_key=key)
                response = await client.get(uri, headers={"Authorization": header})
                count("faulty_origin", response.status_code)
            elif choice < 0.7:
                uri = f"/_matrix/federation/v1/make_knock/{room}/@x:{good.server_name}?ver=12"
                response = await client.get(uri)
                count("unsigned", response.status_code)
            elif choice < 0.8:
                uri = f"/_matrix/federation/v1/make_knock/{room}/@x:{good.server_name}?ver=12"
                header = good.auth_header("GET", uri + "&x=1", SERVER_NAME)
                count(
                    "bad_signature",
                    (await client.get(uri, headers={"Authorization": header})).status_code,
                )
            elif choice < 0.88:
                uri = f"/_matrix/federation/v1/send_knock/{room}/%24e"
                header = good.auth_header("PUT", uri, SERVER_NAME, {})
                response = await client.put(
                    uri,
                    content=rng.choice([b"{nope", b"[]", b'{"a":1e400}', b"\xff", b"{}"]),
                    headers={"Authorization": header, "Content-Type": "application/json"},
                )
                count("bad_body", response.status_code)
            elif choice < 0.95:
                uri = f"/_matrix/federation/v1/make_knock/%21nope%3Ax/@x:{good.server_name}?ver=12"
                response = await client.get(
                    uri, headers={"Authorization": good.auth_header("GET", uri, SERVER_NAME)}
                )
                count("unknown_room", response.status_code)
            else:
                response = await client.get("/_matrix/federation/v1/version?" + "a" * 9000)
                count("long_url", response.status_code)
        except (httpx.HTTPError, RuntimeError) as exc:
            errors.append(repr(exc)[:200])

    async def worker(w: int) -> None:
        rng = random.Random(w)
        n = w * 1_000_000
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            while time.monotonic() < deadline:
                n += 1
                await one(client, rng, n)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))


async def faults(faulty, deadline) -> None:
    i = 0
    while time.monotonic() < deadline:
        faulty.mode = FAULTS[i % len(FAULTS)]
        i += 1
        await asyncio.sleep(10)


async def sampler(server, deadline, samples, started) -> None:
    while time.monotonic() < deadline:
        samples.append({"t_s": round(time.monotonic() - started), **sample(server)})
        await asyncio.sleep(SAMPLE_EVERY_S)
    samples.append({"t_s": round(time.monotonic() - started), **sample(server)})


def run_soak(work_dir: Path, minutes: float, workers: int, concurrency: int) -> dict:
    ca = remote_homeserver.TestCA(work_dir / "ca")
    with (
        remote_homeserver.RemoteHomeserver(ca, wall_clock_ms) as good,
        remote_homeserver.RemoteHomeserver(ca, wall_clock_ms, key_version="faulty") as faulty,
    ):
        faulty.hang_s = 4
        server = ServerProcess(
            work_dir / "data",
            ca.ca_file,
            workers=workers,
            extra_env={
                "ANTECHAMBER_KEY_FETCH_TIMEOUT_S": "2",
                "ANTECHAMBER_KEY_FETCH_FAILURE_BACKOFF_S": "1",
                "ANTECHAMBER_RC_FEDERATION_PER_SECOND": "1000",
                "ANTECHAMBER_RC_FEDERATION_BURST_COUNT": "2000",
            },
        )
        server.data_dir.mkdir(parents=True)
        rooms = server.prepare_rooms(["12", "10", "11"])
        server.start()
        statuses: dict = {}
        errors: list[str] = []
        samples: list[dict] = []
        started = time.monotonic()
        deadline = started + minutes * 60

        async def main() -> None:
            await asyncio.gather(
                traffic(server, good, faulty, rooms, deadline, concurrency, statuses, errors),
                faults(faulty, deadline),
                sampler(server, deadline, samples, started),
            )

        try:
            asyncio.run(main())
        finally:
            server.stop()
        database = server.database
        integrity = check_integrity(database)
        problems = check_consistency(database, rooms)
        log_5xx = [line for line in server.log_text().splitlines() if "Unhandled error" in line]
    warm = [s for s in samples if s["t_s"] >= min(60, minutes * 60 / 3)] or samples
    first, last = warm[0], samples[-1]
    fivexx = sum(
        count
        for kind in statuses.values()
        for status, count in kind.items()
        if status.startswith("5")
    )
    report = {
        "minutes": minutes,
        "requests": sum(sum(kind.values()) for kind in statuses.values()),
        "statuses": statuses,
        "5xx": fivexx,
        "client_errors": len(errors),
        "client_error_examples": errors[:5],
        "unhandled_errors_logged": len(log_5xx),
        "samples": samples,
        "rss_mb_after_warmup": first["rss_mb"],
        "rss_mb_at_end": last["rss_mb"],
        "fds_after_warmup": first["fds"],
        "fds_at_end": last["fds"],
        "integrity_check": integrity,
        "consistency_problems": problems,
    }
    report["flat"] = last["rss_mb"] <= first["rss_mb"] * 1.25 and last["fds"] <= first["fds"] + 20
    report["ok"] = (
        fivexx == 0
        and not errors
        and not log_5xx
        and report["flat"]
        and integrity == "ok"
        and not problems
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="antechamber-soak-") as tmp:
        report = run_soak(Path(tmp), args.minutes, args.workers, args.concurrency)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
