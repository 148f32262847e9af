"""Crash safety: SIGKILL `antechamber serve` in the middle of a send_knock load, then check.

    .venv/bin/python scripts/crash_test.py [--kill-after 300] [--workers 2] [--concurrency 16]

Starts a real server (two workers) and a real remote homeserver, knocks from many users at
once, and once ``--kill-after`` knocks have been answered 200 kills the whole process group
with SIGKILL while requests are still in flight. Then it restarts the server on the same
database and checks: ``PRAGMA integrity_check`` is ok, every knock that got a 200 is stored,
current state and forward extremities match the events table, and a new knock is accepted.
Prints a JSON summary; exit status 0 only if every check holds. tests/test_crash.py runs a
small version of it in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests import remote as remote_homeserver  # noqa: E402
from tests.server_process import (  # noqa: E402
    KnockResult,
    ServerProcess,
    check_consistency,
    check_integrity,
    make_knock_event,
    send_knock,
    stored_event_ids,
    wall_clock_ms,
)


async def _load_until_killed(
    server: ServerProcess, remote, rooms: list[str], kill_after: int, concurrency: int
) -> tuple[list[KnockResult], float]:
    results: list[KnockResult] = []
    stop = asyncio.Event()
    killed_at = 0.0

    async def knocker(worker: int) -> None:
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as client:
            n = 0
            while not stop.is_set():
                user = f"@crash{worker}x{n}:{remote.server_name}"
                n += 1
                try:
                    event, event_id = await make_knock_event(
                        client, remote, rooms[n % len(rooms)], user, "crash test"
                    )
                except (httpx.HTTPError, RuntimeError):
                    await asyncio.sleep(0.05)
                    continue
                results.append(await send_knock(client, remote, event, event_id))

    async def killer() -> None:
        nonlocal killed_at
        while sum(r.status == 200 for r in results) < kill_after:
            await asyncio.sleep(0.01)
        # Requests are in flight right now: that is the point.
        await asyncio.to_thread(server.kill)
        killed_at = time.monotonic()
        await asyncio.sleep(0.5)
        stop.set()

    await asyncio.wait_for(
        asyncio.gather(killer(), *(knocker(w) for w in range(concurrency))), timeout=120
    )
    return results, killed_at


def run_crash_test(
    work_dir: Path, *, kill_after: int = 300, workers: int = 2, concurrency: int = 16
) -> dict:
    ca = remote_homeserver.TestCA(work_dir / "ca")
    with remote_homeserver.RemoteHomeserver(ca, wall_clock_ms) as remote:
        server = ServerProcess(
            work_dir / "data",
            ca.ca_file,
            workers=workers,
            extra_env={"ANTECHAMBER_RC_FEDERATION_ENABLED": "false"},
        )
        server.data_dir.mkdir(parents=True)
        rooms = server.prepare_rooms(["12", "10"])
        server.start()
        try:
            results, _ = asyncio.run(
                _load_until_killed(server, remote, rooms, kill_after, concurrency)
            )
        finally:
            if server.proc is not None:
                server.kill()
        database = server.data_dir / "antechamber.db"
        accepted = {r.event_id for r in results if r.status == 200}
        server.start()  # same port, same database
        try:
            integrity = check_integrity(database)
            stored = stored_event_ids(database)

            async def one_more() -> int:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                    user = f"@after:{remote.server_name}"
                    event, event_id = await make_knock_event(client, remote, rooms[0], user, "")
                    return (await send_knock(client, remote, event, event_id)).status

            after_restart = asyncio.run(one_more())
        finally:
            server.stop()
        problems = check_consistency(database, rooms)
    missing = sorted(accepted - stored)
    summary = {
        "knocks_sent": len(results),
        "answered_200": len(accepted),
        "no_answer_at_kill": sum(r.status == 0 for r in results),
        "other_statuses": sorted({r.status for r in results} - {0, 200}),
        "integrity_check": integrity,
        "missing_after_restart": missing,
        "consistency_problems": problems,
        "knock_after_restart": after_restart,
    }
    summary["ok"] = (
        integrity == "ok"
        and not missing
        and not problems
        and after_restart == 200
        and not summary["other_statuses"]
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-after", type=int, default=300, help="200s before the SIGKILL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="antechamber-crash-") as tmp:
        summary = run_crash_test(
            Path(tmp),
            kill_after=args.kill_after,
            workers=args.workers,
            concurrency=args.concurrency,
        )
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
