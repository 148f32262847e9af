"""The pinned Synapse beside Antechamber in `make bench`: one process on a core, knock rooms.

Synapse is the one `make interop` installs and configures (interop/synapse_server.py), here
with a plain-HTTP listener (the load reaches both servers the same way) and rate limits the
load cannot reach. Its fixtures are knock rooms (v12) of 10 and 1,000 members besides the creator
(10,000 with `--synapse-sizes 10 1000 10000`: Synapse joins them at about 10 a second, so that
room took 18 minutes to build once here), built through its client and admin APIs (local
users, each joined by the admin join API) and cached under bench/.cache like Antechamber's large
room. bench/send_join.py and bench/transactions.py ask for public rooms instead (a remote user
joins them without an invite), cached under their own key.
"""

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench.fixtures import CACHE_DIR, ROOM_VERSION, BenchRoom
from interop.synapse_server import (
    SynapseConfig,
    generate_signing_key,
    homeserver_command,
    register_and_login,
    write_synapse_config,
)

SERVER_NAME = "synapse.bench.test"
SYNAPSE_VERSION = "1.163.2"  # the pin of interop/install-synapse.sh (checked at start)
ROOM_SIZES = (10, 1_000)
# Bump when what the fixtures contain changes: the cache key includes it.
RECIPE_VERSION = 1
BUILD_CONCURRENCY = 8
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_UNLIMITED = 1_000_000_000
# The per-origin federation limiter stays on the path, with limits the load cannot reach (as
# Antechamber's bench does with its own).
BENCH_OVERRIDES: dict[str, Any] = {
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": _UNLIMITED,
        "sleep_delay": 0,
        "reject_limit": _UNLIMITED,
        "concurrent": _UNLIMITED,
    },
    "rc_joins": {
        "local": {"per_second": _UNLIMITED, "burst_count": _UNLIMITED},
        "remote": {"per_second": _UNLIMITED, "burst_count": _UNLIMITED},
    },
    "rc_joins_per_room": {"per_second": _UNLIMITED, "burst_count": _UNLIMITED},
    # Off the make_knock path, and quadratic here: once a room of N local members stops being
    # public, Synapse's user directory records every pair of them (users_who_share_private_rooms,
    # about 80,000 rows a minute on this machine: 10,000 members would keep it busy for a day).
    # `user_directory.enabled: false` only turns the search off; naming a worker that does not
    # exist is what stops the main process from updating it.
    "update_user_directory_from_worker": "no-such-worker",
}


def installed_version(synapse_python: str) -> str:
    proc = subprocess.run(
        [
            synapse_python,
            "-c",
            'import importlib.metadata as m; print(m.version("matrix-synapse"))',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def wait_until_idle(
    cpu_seconds: Callable[[], float], limit_s: float, window_s: float, threshold_pct: float
) -> float:
    """Wait until a process (its ``cpu_seconds``) used under ``threshold_pct`` of a core in two
    windows of ``window_s`` running; the seconds it took, or about ``limit_s`` if it never did."""
    started = time.monotonic()
    quiet = 0
    while quiet < 2 and time.monotonic() - started < limit_s:
        before = cpu_seconds()
        time.sleep(window_s)
        busy = (cpu_seconds() - before) * 100 / window_s
        quiet = quiet + 1 if busy < threshold_pct else 0
    return time.monotonic() - started


class SynapseProcess:
    """`synapse.app.homeserver` as a subprocess, optionally pinned to one core."""

    def __init__(
        self,
        synapse_python: str,
        base: Path,
        *,
        port: int,
        ca_file: Path,
        cpu: int | None,
        limit_s: float = 180,
        overrides: dict[str, Any] | None = None,
    ):
        self.config: SynapseConfig = write_synapse_config(
            base,
            server_name=SERVER_NAME,
            port=port,
            ca_file=ca_file,
            tls=None,
            overrides={**BENCH_OVERRIDES, **(overrides or {})},
        )
        self.base_url = self.config.url
        self.settle_s = 0.0
        if not (base / "signing.key").exists():
            generate_signing_key(synapse_python, self.config, timeout=120)
        command = homeserver_command(synapse_python, self.config)
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        self._stdout = open(base / "stdout.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.STDOUT,
            cwd=base,
        )
        deadline = time.monotonic() + limit_s
        while True:
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"synapse did not start; see {base}/homeserver.log")
            time.sleep(0.3)

    def wait_until_idle(
        self, limit_s: float = 900, window_s: float = 3, threshold_pct: float = 5
    ) -> float:
        """Wait until Synapse has done the work it gives itself after a start or a fixture
        build (background updates, catching up on new events), so that none of it runs while
        either server is measured; the seconds it took, or ``limit_s`` if it never went idle."""
        return round(wait_until_idle(self.cpu_seconds, limit_s, window_s, threshold_pct), 1)

    def all_pids(self) -> list[int]:
        return [self.process.pid]  # taskset execs Synapse in place; its threads share the pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mb(self) -> list[float]:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return [int(line.split()[1]) / 1024]
        return []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stdout.close()


def cache_key(sizes: tuple[int, ...], join_rule: str = "knock") -> str:
    # Knock rooms keep the key they had before other join rules were asked for.
    rule = "" if join_rule == "knock" else f"{join_rule}-"
    return f"synapse-{SYNAPSE_VERSION}-recipe-{RECIPE_VERSION}-{rule}" + "-".join(map(str, sizes))


async def _fill_room(
    url: str, token: str, room_id: str, start: int, count: int, log: Callable[[str], None]
) -> None:
    """``count`` new local users (admin API), each joined to ``room_id`` (admin join API)."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=BUILD_CONCURRENCY)
    queue = list(range(start, start + count))
    done = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as c:

        async def worker() -> None:
            nonlocal done
            while queue:
                user_id = f"@m{queue.pop()}:{SERVER_NAME}"
                user_path = f"/_synapse/admin/v2/users/{quote(user_id, safe='')}"
                (await c.put(user_path, json={"displayname": user_id[1:]})).raise_for_status()
                join_path = f"/_synapse/admin/v1/join/{quote(room_id, safe='')}"
                (await c.post(join_path, json={"user_id": user_id})).raise_for_status()
                done += 1
                if done % 2000 == 0:
                    log(f"synapse fixtures: {done:,}/{count:,} joined")

        await asyncio.gather(*(worker() for _ in range(BUILD_CONCURRENCY)))


def _build_rooms(
    synapse: SynapseProcess, sizes: tuple[int, ...], join_rule: str, log: Callable[[str], None]
) -> list[BenchRoom]:
    url = synapse.base_url
    with httpx.Client(timeout=120) as client:
        token = register_and_login(
            client, url, synapse.config.registration_secret, "bench-admin", admin=True
        )
        headers = {"Authorization": f"Bearer {token}"}
        rooms = []
        next_user = 0
        for size in sizes:
            started = time.perf_counter()
            label = f"{size:,}-members"
            room_id = (
                client.post(
                    f"{url}/_matrix/client/v3/createRoom",
                    headers=headers,
                    json={
                        "room_version": ROOM_VERSION,
                        "preset": "public_chat",
                        "name": f"bench {label}",
                        "topic": "benchmark",
                    },
                )
                .raise_for_status()
                .json()["room_id"]
            )
            asyncio.run(_fill_room(url, token, room_id, next_user, size, log))
            next_user += size
            # Public while the members join, then the join rule asked (knock: as Antechamber's).
            if join_rule != "public":
                client.put(
                    f"{url}/_matrix/client/v3/rooms/{quote(room_id, safe='')}"
                    "/state/m.room.join_rules/",
                    headers=headers,
                    json={"join_rule": join_rule},
                ).raise_for_status()
            members = (
                client.get(
                    f"{url}/_matrix/client/v3/rooms/{quote(room_id, safe='')}/joined_members",
                    headers=headers,
                )
                .raise_for_status()
                .json()["joined"]
            )
            elapsed = time.perf_counter() - started
            rooms.append(BenchRoom(label, room_id, len(members), -1, elapsed))
            log(f"synapse fixtures: {label}: {len(members):,} joined in {elapsed:.1f}s")
    return rooms


def start_with_fixtures(
    synapse_python: str,
    base: Path,
    *,
    port: int,
    ca_file: Path,
    cpu: int | None,
    sizes: tuple[int, ...] = ROOM_SIZES,
    join_rule: str = "knock",
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[SynapseProcess, list[BenchRoom]]:
    """Synapse running on ``port`` with its rooms (``join_rule`` ones, knock by default): from
    the cache, or built (unpinned, then cached) and restarted on ``cpu``. ``overrides``: more
    config keys, over BENCH_OVERRIDES."""
    version = installed_version(synapse_python)
    if version != SYNAPSE_VERSION:
        raise RuntimeError(f"bench/vs_synapse.py expects Synapse {SYNAPSE_VERSION}, not {version}")
    cached = CACHE_DIR / cache_key(sizes, join_rule)
    base.mkdir(parents=True, exist_ok=True)
    rooms: list[BenchRoom] = []
    if not (cached / "rooms.json").exists():
        log(f"synapse fixtures: building rooms of {', '.join(f'{s:,}' for s in sizes)} members")
        synapse = SynapseProcess(
            synapse_python, base, port=port, ca_file=ca_file, cpu=None, overrides=overrides
        )
        try:
            rooms = _build_rooms(synapse, sizes, join_rule, log)
            # Snapshot a Synapse that has caught up, or every start from the cache redoes it.
            log(f"synapse fixtures: idle {synapse.wait_until_idle()}s after the build")
        finally:
            synapse.stop()
        conn = sqlite3.connect(base / "homeserver.db")
        for room in rooms:
            row = conn.execute("SELECT count(*) FROM events WHERE room_id = ?", (room.room_id,))
            room.events = int(row.fetchone()[0])
        conn.close()
        tmp = cached.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for path in base.glob("homeserver.db*"):
            shutil.copyfile(path, tmp / path.name)
        shutil.copyfile(base / "signing.key", tmp / "signing.key")
        (tmp / "rooms.json").write_text(json.dumps([room.__dict__ for room in rooms]))
        shutil.rmtree(cached, ignore_errors=True)
        tmp.rename(cached)
    else:
        for path in cached.glob("homeserver.db*"):
            shutil.copyfile(path, base / path.name)
        shutil.copyfile(cached / "signing.key", base / "signing.key")
        log(f"synapse fixtures: from cache {cached.name}")
        rooms = [
            BenchRoom(**{**entry, "cached": True})
            for entry in json.loads((cached / "rooms.json").read_text())
        ]
    synapse = SynapseProcess(
        synapse_python, base, port=port, ca_file=ca_file, cpu=cpu, overrides=overrides
    )
    try:
        synapse.settle_s = synapse.wait_until_idle()
        log(f"synapse: idle {synapse.settle_s}s after its start")
    except BaseException:
        synapse.stop()
        raise
    return synapse, rooms
