"""Hostile peers (issue 21): RSS, database size and a parallel /version p99 under each attack.

    .venv/bin/python scripts/hostile_peers.py        (make hostile)

A real `antechamber serve` (one worker) takes, one phase after another:
- bloated: requests naming a fresh key id of an origin whose key document carries 600 fresh
  made-up old_verify_keys in every answer, the most its 64 KiB cap lets through (2,400 as in
  the review are refused whole) (findings 1 and 3);
- made-up key ids: requests naming a fresh key id of a well-behaved origin (finding 2);
- tarpits: requests from many origins that accept connections and never answer, while a new
  legitimate server makes its first request and a known one refreshes its key (finding 5).
While each phase runs, a prober sends GET /version one at a time. The backoff is cut to 0.2 s
(ANTECHAMBER_KEY_FETCH_FAILURE_BACKOFF_S) so origins may be asked again often: a harsher setting
than the default 30 s. Prints one JSON report; not part of CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests import remote as remote_homeserver  # noqa: E402
from tests.server_process import SERVER_NAME, ServerProcess, wall_clock_ms  # noqa: E402

BACKOFF_S = 0.2


def rss_mb(server: ServerProcess) -> float:
    total_kb = 0
    for pid in server.pids():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1)


def db_mb(server: ServerProcess) -> float:
    files = [server.data_dir / n for n in ("antechamber.db", "antechamber.db-wal")]
    return round(sum(f.stat().st_size for f in files if f.exists()) / 1e6, 2)


def key_rows(server: ServerProcess) -> int:
    import sqlite3

    conn = sqlite3.connect(server.data_dir / "antechamber.db")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM server_keys").fetchone()[0])
    finally:
        conn.close()


def forged_header(origin: str, key_id: str) -> str:
    return f'X-Matrix origin="{origin}",destination="{SERVER_NAME}",key="{key_id}",sig="{"A" * 86}"'


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def probe(url: str, stop: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            await client.get("/_matrix/federation/v1/version")
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.005)


async def phase(server: ServerProcess, name: str, attack) -> dict:
    stop = asyncio.Event()
    latencies: list[float] = []
    prober = asyncio.create_task(probe(server.url, stop, latencies))
    before = {"rss_mb": rss_mb(server), "db_mb": db_mb(server), "key_rows": key_rows(server)}
    started = time.monotonic()
    details = await attack()
    elapsed = time.monotonic() - started
    stop.set()
    await prober
    return {
        "phase": name,
        "seconds": round(elapsed, 1),
        "before": before,
        "after": {"rss_mb": rss_mb(server), "db_mb": db_mb(server), "key_rows": key_rows(server)},
        "version_p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "version_p99_ms": round(percentile(latencies, 0.99), 2),
        "version_probes": len(latencies),
        **details,
    }


async def tarpit_server() -> tuple[asyncio.Server, str, list]:
    held: list = []

    async def hold(_reader, writer):
        held.append(writer)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}", held


async def run(server: ServerProcess, bloated, good, fresh, room_uri: str) -> list[dict]:
    statuses: dict[str, dict[int, int]] = {}

    async def send(client, name, origin, key_id, signed_by=None):
        if signed_by is not None:
            header = signed_by.auth_header("GET", room_uri, SERVER_NAME)
        else:
            header = forged_header(origin, key_id)
        response = await client.get(room_uri, headers={"Authorization": header})
        counts = statuses.setdefault(name, {})
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        return response

    results = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

        async def bloated_attack():
            # The most that fits in KEY_RESPONSE_MAX_BYTES (64 KiB); more is refused whole.
            bloated.mode, bloated.bloat_keys = "bloated", 600
            for _ in range(100):
                await send(
                    client, "bloated", bloated.server_name, f"ed25519:{secrets.token_hex(4)}"
                )
                await asyncio.sleep(BACKOFF_S)  # past the backoff: the origin may be asked again
            return {"requests": 100, "origin_key_fetches": bloated.key_fetches}

        # A known server: its key is held before the attacks start.
        await send(client, "warm", "", "", signed_by=good)

        async def quiet():
            await asyncio.sleep(3)
            return {}

        results.append(await phase(server, "no attack (baseline)", quiet))
        results.append(await phase(server, "bloated key documents", bloated_attack))

        async def made_up_attack():
            fetches_before = good.key_fetches

            async def worker():
                for _ in range(100):
                    key_id = f"ed25519:{secrets.token_hex(4)}"
                    await send(client, "made-up", good.server_name, key_id)

            await asyncio.gather(*(worker() for _ in range(8)))
            return {
                "requests": 800,
                "concurrency": 8,
                "origin_key_fetches": good.key_fetches - fetches_before,
            }

        results.append(await phase(server, "made-up key ids", made_up_attack))

        async def tarpit_attack():
            tarpits = [await tarpit_server() for _ in range(60)]
            try:
                flood = [
                    asyncio.create_task(send(client, "tarpit", name, "ed25519:a"))
                    for _, name, _ in tarpits
                ]
                await asyncio.sleep(0.5)
                started = time.monotonic()
                first = await send(client, "new-legit", "", "", signed_by=fresh)
                new_s = time.monotonic() - started
                started = time.monotonic()
                known = await send(client, "known-legit", "", "", signed_by=good)
                known_s = time.monotonic() - started
                await asyncio.gather(*flood)
            finally:
                for srv, _, held in tarpits:
                    for writer in held:
                        writer.close()
                    srv.close()
            return {
                "tarpit_origins": len(tarpits),
                "new_legit_first_request": {"status": first.status_code, "s": round(new_s, 2)},
                "known_legit_request": {"status": known.status_code, "s": round(known_s, 2)},
            }

        results.append(await phase(server, "tarpit origins", tarpit_attack))
    results.append({"statuses": statuses})
    return results


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="antechamber-hostile-") as tmp:
        work = Path(tmp)
        ca = remote_homeserver.TestCA(work / "ca")
        with (
            remote_homeserver.RemoteHomeserver(ca, wall_clock_ms, key_version="bloat") as bloated,
            remote_homeserver.RemoteHomeserver(ca, wall_clock_ms, key_version="good") as good,
            remote_homeserver.RemoteHomeserver(ca, wall_clock_ms, key_version="fresh") as fresh,
        ):
            server = ServerProcess(
                work / "data",
                ca.ca_file,
                workers=1,
                extra_env={
                    "ANTECHAMBER_KEY_FETCH_FAILURE_BACKOFF_S": str(BACKOFF_S),
                    "ANTECHAMBER_RC_FEDERATION_ENABLED": "false",
                    "ANTECHAMBER_LOG_LEVEL": "ERROR",
                },
            )
            server.data_dir.mkdir(parents=True)
            (room,) = server.prepare_rooms(["12"])
            user = quote(f"@u:{good.server_name}", safe="")
            room_uri = f"/_matrix/federation/v1/make_knock/{quote(room, safe='')}/{user}?ver=12"
            server.start()
            try:
                baseline = {"rss_mb": rss_mb(server), "db_mb": db_mb(server)}
                results = asyncio.run(run(server, bloated, good, fresh, room_uri))
            finally:
                server.stop()
            unhandled = server.log_text().count("Unhandled error")
    report = {"baseline": baseline, "phases": results, "unhandled_errors_logged": unhandled}
    print(json.dumps(report, indent=2))
    return 0 if unhandled == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
