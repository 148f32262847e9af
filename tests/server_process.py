"""A real `antechamber serve` in a subprocess, knock traffic against it, and consistency checks.

Shared by tests/test_concurrency.py, tests/test_crash.py, scripts/crash_test.py and
scripts/soak.py. The server runs in its own process group, so a SIGKILL reaches the uvicorn
master and its workers together, and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from app.signing_key import load_or_generate_signing_key
from db.dialect import Database, open_database
from db.store import Store
from matrix.events import compute_event_id, sign_event
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from tests.databases import POSTGRES, data_dir_env, database_for
from tests.factories import add_member, create_room, make_room_admin
from tests.live_server import free_port
from tests.remote import RemoteHomeserver

ROOT = Path(__file__).resolve().parent.parent
ANTECHAMBER = [sys.executable, "-m", "app"]
SERVER_NAME = "antechamber.test"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ServerProcess:
    data_dir: Path
    ca_file: Path
    workers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    admin_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> str:
        """Its database: SQLite in the data dir, or the suite's PostgreSQL database for it."""
        return database_for(self.data_dir)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTECHAMBER_")}
        env.update(
            {
                "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
                "ANTECHAMBER_BIND_HOST": "127.0.0.1",
                "ANTECHAMBER_BIND_PORT": str(self.port),
                "ANTECHAMBER_ADMIN_BIND_PORT": str(self.admin_port),
                **data_dir_env(str(self.data_dir)),
                "ANTECHAMBER_WORKERS": str(self.workers),
                "ANTECHAMBER_FEDERATION_CA_FILE": str(self.ca_file),
                "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
                "ANTECHAMBER_LOG_LEVEL": "WARNING",
                **self.extra_env,
            }
        )
        return env

    def prepare_rooms(self, versions: list[str], members: Sequence[Any] = ()) -> list[str]:
        """Create knockable rooms in the database before the server starts; a user of each
        server in ``members`` (remote homeservers) joins every room."""
        store = Store.open(database_for(self.data_dir))
        try:
            key = load_or_generate_signing_key(self.data_dir / "signing.key")
            admin = make_room_admin(store, SERVER_NAME, key, wall_clock_ms)
            rooms = [create_room(admin, version, "knock") for version in versions]
            for room_id in rooms:
                for member in members:
                    add_member(admin, room_id, f"@member:{member.server_name}", remote=member)
            return rooms
        finally:
            store.close()

    def start(self, timeout_s: float = 30) -> None:
        self.port = self.port or free_port()
        self.admin_port = self.admin_port or free_port()
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*ANTECHAMBER, "serve"],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: master and workers
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/_matrix/federation/v1/version", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start in time")

    def pids(self) -> list[int]:
        """The master and its workers (children), for RSS and fd sampling."""
        if self.proc is None:
            return []
        pids = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return pids
        return pids + [int(pid) for pid in children.split()]

    def kill(self) -> None:
        """SIGKILL the whole process group (the crash test)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


# Knock traffic -----------------------------------------------------------------------------------


@dataclass
class KnockResult:
    room_id: str
    user_id: str
    event_id: str
    status: int
    body: Any


def _uri(kind: str, room_id: str, second: str) -> str:
    return f"/_matrix/federation/v1/{kind}/{quote(room_id, safe='')}/{quote(second, safe='')}"


async def make_knock_event(
    client: httpx.AsyncClient, remote: RemoteHomeserver, room_id: str, user_id: str, reason: str
) -> tuple[dict[str, Any], str]:
    """make_knock, then what the knocking server does: fill in, hash, sign, compute the id."""
    uri = _uri("make_knock", room_id, user_id) + "?ver=7&ver=10&ver=11&ver=12"
    response = await client.get(
        uri, headers={"Authorization": remote.auth_header("GET", uri, SERVER_NAME)}
    )
    if response.status_code != 200:
        raise RuntimeError(f"make_knock {response.status_code}: {response.text}")
    answer = response.json()
    room_version = KNOWN_ROOM_VERSIONS[answer["room_version"]]
    draft = {
        **answer["event"],
        "origin": remote.server_name,
        "origin_server_ts": wall_clock_ms(),
        "content": {"membership": "knock", "reason": reason},
    }
    event = sign_event(draft, room_version, remote.server_name, remote.signing_key)
    return event, compute_event_id(event, room_version)


async def send_knock(
    client: httpx.AsyncClient, remote: RemoteHomeserver, event: dict[str, Any], event_id: str
) -> KnockResult:
    uri = _uri("send_knock", event["room_id"], event_id)
    header = remote.auth_header("PUT", uri, SERVER_NAME, event)
    try:
        response = await client.put(uri, json=event, headers={"Authorization": header})
        status, body = response.status_code, response.text
    except httpx.HTTPError as exc:
        status, body = 0, repr(exc)  # no answer (e.g. the server was killed)
    return KnockResult(event["room_id"], event["state_key"], event_id, status, body)


# Consistency -------------------------------------------------------------------------------------


def check_integrity(database: Path | str) -> str:
    """SQLite's own check of its file ("ok"); PostgreSQL keeps its files itself."""
    if POSTGRES:
        return "ok"
    conn = sqlite3.connect(database)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def recompute_room(conn: Database, room_id: str) -> tuple[dict, set]:
    """Current state and forward extremities recomputed from the events table alone, with
    full state maps and no state groups: an independent replay of the store's rules.

    SS §Room State Resolution: the state before an event is the resolution of the states after
    its prev_events; after it, that plus the event unless it was rejected. An accepted, not
    soft-failed event replaces the extremities it names in prev_events; current state is the
    resolution of the states after the extremities.
    """
    import json

    from matrix.events import get_event_reference_ids
    from matrix.room_versions import get_room_version
    from matrix.state_res import resolve_state

    (version_id,) = conn.execute(
        "SELECT room_version FROM rooms WHERE room_id = ?", (room_id,)
    ).fetchone()
    version = get_room_version(version_id)
    rows = conn.execute(
        "SELECT event_id, type, state_key, rejected, soft_failed, json FROM events"
        " WHERE room_id = ? ORDER BY stream_ordering",
        (room_id,),
    ).fetchall()
    events = {row[0]: json.loads(row[5]) for row in rows}
    rejected = {row[0] for row in rows if row[3]}

    def resolve(states: list[dict]) -> dict:
        unique = [dict(s) for s in {tuple(sorted(s.items())): s for s in states}.values()]
        if len(unique) <= 1:
            return unique[0] if unique else {}
        return resolve_state(version, unique, events.get, is_rejected=rejected.__contains__)

    after: dict[str, dict] = {}
    extremities: set[str] = set()
    for event_id, event_type, state_key, is_rejected, soft_failed, _text in rows:
        prevs = get_event_reference_ids(events[event_id].get("prev_events"))
        state = resolve([after[p] for p in prevs if p in after])
        if state_key is not None and not is_rejected:
            state = {**state, (event_type, state_key): event_id}
        after[event_id] = state
        if not is_rejected and not soft_failed:
            extremities = (extremities - set(prevs)) | {event_id}
    return resolve([after[e] for e in extremities]), extremities


def check_consistency(database: Path | str, room_ids: list[str]) -> list[str]:
    """Differences between the stored and the recomputed state/extremities (empty = consistent)."""
    problems = []
    conn = open_database(database)
    try:
        for room_id in room_ids:
            state, extremities = recompute_room(conn, room_id)
            stored_state = {
                (row[0], row[1]): row[2]
                for row in conn.execute(
                    "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?",
                    (room_id,),
                )
            }
            stored_extremities = {
                row[0]
                for row in conn.execute(
                    "SELECT event_id FROM forward_extremities WHERE room_id = ?", (room_id,)
                )
            }
            if stored_state != state:
                problems.append(f"{room_id}: current state differs from the events table")
            if stored_extremities != extremities:
                problems.append(
                    f"{room_id}: extremities {sorted(stored_extremities)} != {sorted(extremities)}"
                )
    finally:
        conn.close()
    return problems


def stored_event_ids(database: Path | str) -> set[str]:
    conn = open_database(database)
    try:
        return {row[0] for row in conn.execute("SELECT event_id FROM events WHERE rejected = 0")}
    finally:
        conn.close()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
