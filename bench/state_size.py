"""How big state at every event gets: a room of N joined members built through RoomAdmin, measured.

    .venv/bin/python -m bench.state_size --members 100000

Prints the rows and bytes of the state-group tables (db/state_groups.py) beside the room's
current state, and the time to read the whole state at the newest event and one key of it
(medians of 5). The Synapse figure is arithmetic, not a measurement: its delta chains of at most
100 hops store a full snapshot every 100 state changes, about N^2 / 200 rows for N joins.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.fixtures import SERVER_NAME, build_member_room
from db.store import Store
from tests.factories import make_room_admin, make_signing_key


def _table_bytes(store: Store, table: str) -> int | None:
    try:
        row = store.db.conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?", (table,))
    except Exception:  # SQLite built without the dbstat table
        return None
    value = row.fetchone()[0]
    return int(value) if value is not None else 0


def _cold(store: Store) -> Store:
    """The store with its state-group caches emptied, so a read goes to the tables."""
    store._groups.forget()
    return store


def _median_ms(call, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "state.db")
        admin = make_room_admin(store, SERVER_NAME, make_signing_key())
        room = build_member_room(admin, args.members, f"{args.members} members")
        newest = store.get_recent_events(room.room_id, 1)[0].event_id
        count = {
            table: store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("events", "current_state", "state_groups", "state_group_deltas")
        }
        state = store.get_state_ids_at(newest, after=True) or {}
        key = next(iter(sorted(state)))
        figures = {
            "members": room.members,
            "events": count["events"],
            "build_s": round(room.build_s, 1),
            "current_state_rows": count["current_state"],
            "state_groups": count["state_groups"],
            "state_group_delta_rows": count["state_group_deltas"],
            "delta_rows_per_state_event": round(
                count["state_group_deltas"] / max(count["state_groups"], 1), 2
            ),
            "state_group_delta_bytes": _table_bytes(store, "state_group_deltas"),
            "events_bytes": _table_bytes(store, "events"),
            "synapse_100_hop_rows_estimate": count["state_groups"] ** 2 // 200,
            "read_full_state_ms": round(
                _median_ms(lambda: _cold(store).get_state_ids_at(newest)), 1
            ),
            "read_one_key_ms": round(
                _median_ms(lambda: _cold(store).get_state_events_at(newest, [key])), 2
            ),
            "state_keys_at_newest": len(state),
        }
        store.close()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
