"""Benchmark fixtures: knock rooms of 10 to 100,000 members and a 500,000-event room.

Every member is a real join event signed by one of a few fake remote servers, built, authorised
and stored through RoomAdmin and Store.persist_events like any other event (in batches, one
transaction per batch). The 500,000-event room is slow to build, so it is cached under
bench/.cache, keyed by the schema's migrations and this recipe's version.
"""

import hashlib
import inspect
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from signedjson.key import decode_signing_key_base64
from signedjson.types import SigningKey

from app.rooms.admin import RoomAdmin, Signer
from app.signing_key import load_or_generate_signing_key
from db.migrations import MIGRATIONS
from db.store import Store

SERVER_NAME = "bench.antechamber.test"
ROOM_VERSION = "12"
# Bump when what the fixtures contain changes: the cache key includes it.
RECIPE_VERSION = 1
# 10,000: the largest room the Synapse comparison builds on Synapse too (bench/vs_synapse.py).
MEMBER_ROOM_SIZES = (10, 1_000, 10_000, 100_000)
# ANTECHAMBER_BENCH_HISTORY_EVENTS makes a quicker (not comparable) run possible.
HISTORY_EVENTS = int(os.environ.get("ANTECHAMBER_BENCH_HISTORY_EVENTS", "500000"))
HISTORY_MEMBERS = 1_000
BATCH = 5_000
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
# A few fake remote homeservers the members belong to (fixed seeds: reproducible event ids).
MEMBER_SERVERS = 4


def _member_signers() -> list[Signer]:
    signers = []
    for index in range(MEMBER_SERVERS):
        seed = hashlib.sha256(f"antechamber bench member server {index}".encode()).digest()
        from unpaddedbase64 import encode_base64

        key: SigningKey = decode_signing_key_base64("ed25519", f"m{index}", encode_base64(seed))
        signers.append(Signer(f"members{index}.bench.test", key))
    return signers


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class BenchRoom:
    label: str
    room_id: str
    members: int
    events: int
    build_s: float
    cached: bool = False


def _joins(signers: list[Signer], start: int, count: int) -> Iterator[tuple]:
    for index in range(start, start + count):
        signer = signers[index % len(signers)]
        user = f"@u{index}:{signer.server_name}"
        yield ("m.room.member", user, {"membership": "join"}, user, signer)


def _batched(items: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _count_events(store: Store, room_id: str) -> int:
    row = store.db.execute("SELECT count(*) FROM events WHERE room_id = ?", (room_id,))
    return int(row.fetchone()[0])


def build_member_room(
    admin: RoomAdmin, members: int, label: str, *, join_rule: str = "knock"
) -> BenchRoom:
    """A room (v12, knock unless ``join_rule`` says otherwise) with ``members`` remote joined
    members besides its local creator."""
    started = time.perf_counter()
    # Public while the members join (no invite per member), then knock, as a room that opened
    # up and later closed would be.
    room_id = admin.create_room(ROOM_VERSION, "public", name=f"bench {label}", topic="benchmark")
    signers = _member_signers()
    for batch in _batched(_joins(signers, 0, members), BATCH):
        admin.send_state_events(room_id, batch)
    if join_rule != "public":
        admin.set_join_rule(room_id, join_rule)
    elapsed = time.perf_counter() - started
    return BenchRoom(label, room_id, members + 1, _count_events(admin.store, room_id), elapsed)


def build_history_room(admin: RoomAdmin, total_events: int, label: str) -> BenchRoom:
    """A knock room with HISTORY_MEMBERS members and ``total_events`` events: after the joins,
    members change their display names over and over (state events that replace state)."""
    started = time.perf_counter()
    room_id = admin.create_room(ROOM_VERSION, "public", name=f"bench {label}")
    signers = _member_signers()
    for batch in _batched(_joins(signers, 0, HISTORY_MEMBERS), BATCH):
        admin.send_state_events(room_id, batch)

    def renames() -> Iterator[tuple]:
        remaining = total_events - _count_events(admin.store, room_id) - 1
        for index in range(remaining):
            member = index % HISTORY_MEMBERS
            signer = signers[member % len(signers)]
            user = f"@u{member}:{signer.server_name}"
            content = {"membership": "join", "displayname": f"user {member} v{index}"}
            yield ("m.room.member", user, content, user, signer)

    for batch in _batched(renames(), BATCH):
        admin.send_state_events(room_id, batch)
    admin.set_join_rule(room_id, "knock")
    elapsed = time.perf_counter() - started
    return BenchRoom(
        label, room_id, HISTORY_MEMBERS + 1, _count_events(admin.store, room_id), elapsed
    )


def cache_key() -> str:
    # A migration written as a function is keyed by its source (json.dumps refuses functions).
    recipe = [
        (name, script if isinstance(script, str) else inspect.getsource(script))
        for name, script in MIGRATIONS
    ]
    migrations = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]
    return f"schema-{len(MIGRATIONS)}-{migrations}-recipe-{RECIPE_VERSION}-{HISTORY_EVENTS}"


def _checkpoint(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def build_fixtures(
    data_dir: Path,
    log=print,
    *,
    sizes: tuple[int, ...] = MEMBER_ROOM_SIZES,
    history: bool = True,
    join_rule: str = "knock",
) -> list[BenchRoom]:
    """Fill ``data_dir`` (database and signing key) with the benchmark rooms: the member rooms
    of ``sizes`` (``join_rule`` rooms: public ones for bench/send_join.py), the send_knock room
    and, with ``history``, the cached large room."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db_path = data_dir / "antechamber.db"
    key_path = data_dir / "signing.key"
    cached_dir = CACHE_DIR / cache_key()
    rooms: list[BenchRoom] = []
    if history and (cached_dir / "rooms.json").exists():
        shutil.copyfile(cached_dir / "antechamber.db", db_path)
        shutil.copyfile(cached_dir / "signing.key", key_path)
        for entry in json.loads((cached_dir / "rooms.json").read_text()):
            rooms.append(BenchRoom(**{**entry, "cached": True}))
        log(f"fixtures: {rooms[0].label} room from cache {cached_dir.name}")
    signing_key = load_or_generate_signing_key(key_path)
    store = Store.open(db_path)
    admin = RoomAdmin(store, SERVER_NAME, signing_key, _wall_clock_ms)
    try:
        if history and not rooms:
            log(f"fixtures: building the {HISTORY_EVENTS:,}-event room (cached afterwards)")
            room = build_history_room(admin, HISTORY_EVENTS, f"{HISTORY_EVENTS // 1000}k-events")
            rooms.append(room)
            store.close()
            _checkpoint(db_path)
            tmp = cached_dir.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            shutil.copyfile(db_path, tmp / "antechamber.db")
            shutil.copyfile(key_path, tmp / "signing.key")
            (tmp / "rooms.json").write_text(json.dumps([room.__dict__ for room in rooms]))
            shutil.rmtree(cached_dir, ignore_errors=True)
            tmp.rename(cached_dir)
            store = Store.open(db_path)
            admin = RoomAdmin(store, SERVER_NAME, signing_key, _wall_clock_ms)
        for size in sizes:
            room = build_member_room(admin, size, f"{size:,}-members", join_rule=join_rule)
            log(f"fixtures: {room.label}: {room.events:,} events in {room.build_s:.1f}s")
            rooms.append(room)
        # A room of its own for send_knock: accepted knocks add forward extremities there.
        rooms.append(build_member_room(admin, 10, "send_knock"))
    finally:
        store.close()
    _checkpoint(db_path)
    return rooms
