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
import contextlib
import json
import os
import signal
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


async def _poke(server: ServerProcess, member) -> None:
    """A signed request from ``member`` (a 404 once authenticated is enough)."""
    uri = "/_matrix/federation/v1/event/%24nothing"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for _ in range(4):  # reach every worker
            auth = member.auth_header("GET", uri, "antechamber.test")
            await client.get(uri, headers={"Authorization": auth, "Connection": "close"})


async def _wait_delivered(
    member, accepted: set[str], rooms: list[str], timeout_s: float, poke=None
) -> list[str]:
    """Event ids of the knocks ``member`` received (each transaction id counted once)."""
    from matrix.events import compute_event_id
    from matrix.room_versions import KNOWN_ROOM_VERSIONS

    def received() -> list[str]:
        ids = []
        for pdu in list(member.accepted_pdus):
            if (
                pdu.get("type") != "m.room.member"
                or pdu.get("content", {}).get("membership") != "knock"
            ):
                continue
            version = "12" if pdu["room_id"] == rooms[0] else "10"
            ids.append(compute_event_id(pdu, KNOWN_ROOM_VERSIONS[version]))
        return ids

    poked = time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not accepted <= set(received()):
        await asyncio.sleep(0.2)
        if poke is not None and time.monotonic() - poked >= 2.0:
            # A server that is back keeps calling (as Synapse does); a worker that had not
            # yet seen the backoff when the first call came sees it within a poll.
            await poke()
            poked = time.monotonic()
    return received()


def run_crash_test(
    work_dir: Path, *, kill_after: int = 300, workers: int = 2, concurrency: int = 16
) -> dict:
    ca = remote_homeserver.TestCA(work_dir / "ca")
    with (
        remote_homeserver.RemoteHomeserver(ca, wall_clock_ms) as remote,
        remote_homeserver.RemoteHomeserver(ca, wall_clock_ms, key_version="member1") as member,
    ):
        server = ServerProcess(
            work_dir / "data",
            ca.ca_file,
            workers=workers,
            extra_env={"ANTECHAMBER_RC_FEDERATION_ENABLED": "false"},
        )
        server.data_dir.mkdir(parents=True)
        # A second server is in every room: each accepted knock is sent to it. It is down
        # during the load, so deliveries are pending in the outbox when the server is killed.
        rooms = server.prepare_rooms(["12", "10"], members=[member])
        member.send_status = 503
        server.start()
        try:
            results, _ = asyncio.run(
                _load_until_killed(server, remote, rooms, kill_after, concurrency)
            )
        finally:
            if server.proc is not None:
                server.kill()
        database = server.database
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
            # The member server is back and says so by calling us (any signed request): its
            # backoff is reset and every pending delivery goes out.
            member.send_status = 200
            asyncio.run(_poke(server, member))
            delivered = asyncio.run(
                _wait_delivered(
                    member, accepted, rooms, timeout_s=60, poke=lambda: _poke(server, member)
                )
            )
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
        "undelivered_to_member": sorted(accepted - set(delivered)),
        "delivered_twice_to_member": sorted(
            {event_id for event_id in delivered if delivered.count(event_id) > 1}
        ),
    }
    summary["ok"] = (
        integrity == "ok"
        and not missing
        and not problems
        and after_restart == 200
        and not summary["other_statuses"]
        and not summary["undelivered_to_member"]
        and not summary["delivered_twice_to_member"]
    )
    return summary


def run_worker_kill_test(work_dir: Path, *, knocks: int = 500, concurrency: int = 8) -> dict:
    """Issue 14: two workers, ``knocks`` accepted knocks into rooms shared with three member
    servers, one worker SIGKILLed halfway (uvicorn starts a new one). Every member must receive
    every accepted knock exactly once (by event id; each transaction id counted once, as a
    real receiver de-duplicates). A dead worker's lease runs out after 60 s, so this takes
    about a minute and a half."""
    ca = remote_homeserver.TestCA(work_dir / "ca")
    with contextlib.ExitStack() as stack:
        remote = stack.enter_context(remote_homeserver.RemoteHomeserver(ca, wall_clock_ms))
        members = [
            stack.enter_context(
                remote_homeserver.RemoteHomeserver(ca, wall_clock_ms, key_version=f"m{n}")
            )
            for n in range(3)
        ]
        server = ServerProcess(
            work_dir / "data",
            ca.ca_file,
            workers=2,
            extra_env={"ANTECHAMBER_RC_FEDERATION_ENABLED": "false"},
        )
        server.data_dir.mkdir(parents=True)
        rooms = server.prepare_rooms(["12", "10"], members=members)
        server.start()
        killed: list[int] = []
        try:

            async def load() -> list[KnockResult]:
                results: list[KnockResult] = []
                counter = iter(range(knocks))

                async def knocker() -> None:
                    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                        for n in counter:
                            if n == knocks // 2 and not killed:
                                worker = server.pids()[-1]
                                os.kill(worker, signal.SIGKILL)
                                killed.append(worker)
                            user = f"@w{n}:{remote.server_name}"
                            try:
                                event, event_id = await make_knock_event(
                                    client, remote, rooms[n % 2], user, "worker kill"
                                )
                            except (httpx.HTTPError, RuntimeError):
                                continue
                            results.append(await send_knock(client, remote, event, event_id))

                await asyncio.gather(*(knocker() for _ in range(concurrency)))
                return results

            results = asyncio.run(load())
            accepted = {r.event_id for r in results if r.status == 200}
            received = [
                asyncio.run(_wait_delivered(member, accepted, rooms, timeout_s=150))
                for member in members
            ]
        finally:
            server.stop()
    return {
        "knocks_sent": len(results),
        "answered_200": len(accepted),
        "worker_killed": killed,
        "undelivered": [len(accepted - set(ids)) for ids in received],
        "duplicates": [len(ids) - len(set(ids)) for ids in received],
        "ok": bool(killed)
        and len(accepted) > knocks // 2
        and all(accepted <= set(ids) and len(ids) == len(set(ids)) for ids in received),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-after", type=int, default=300, help="200s before the SIGKILL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--kill-one-worker",
        action="store_true",
        help="instead: 500 knocks, three member servers, one of two workers killed halfway",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="antechamber-crash-") as tmp:
        if args.kill_one_worker:
            summary = run_worker_kill_test(Path(tmp))
        else:
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
