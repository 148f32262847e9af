"""Copy a whole database into an empty one (SQLite to PostgreSQL, as Synapse's synapse_port_db
does), then verify the copy: row counts, every table's content, and each room's state."""

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from db.dialect import Database, redact_url
from db.store import Store

# Parents before children: events name their room (a foreign key).
_FIRST = ("rooms",)
_BATCH_ROWS = 2000


class PortError(Exception):
    """The copy cannot be made or does not match its source: one line, nothing claimed."""


@dataclass
class PortReport:
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    rooms_checked: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "rows": dict(self.rows),
            "rooms_checked": self.rooms_checked,
        }


def get_tables(db: Database) -> dict[str, list[str]]:
    """Every table of the schema (the migrations' bookkeeping aside) and its columns, in
    copying order."""
    if db.dialect == "sqlite":
        names = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name != '_migrations' ORDER BY name"
            )
        ]
        columns = {
            name: [row[1] for row in db.execute(f'PRAGMA table_info("{name}")')] for name in names
        }
    else:
        rows = db.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name != '_migrations'"
            " ORDER BY table_name, ordinal_position"
        ).fetchall()
        columns = {}
        for table, column in rows:
            columns.setdefault(table, []).append(column)
    ordered = [t for t in _FIRST if t in columns] + sorted(t for t in columns if t not in _FIRST)
    return {table: columns[table] for table in ordered}


def port_database(
    source: Store, target: Store, *, progress: Callable[[str, int, bool], None] | None = None
) -> PortReport:
    """Copy every row of ``source`` into ``target`` (its schema made by the same migrations,
    and empty), in one transaction on the target, then verify it. ``progress(table, rows,
    done)`` hears of each batch and each finished table. Raises PortError."""
    report = PortReport(redact_url(source.db.url), redact_url(target.db.url))
    tables = get_tables(source.db)
    target_tables = get_tables(target.db)
    if set(tables) != set(target_tables):
        raise PortError(
            f"the schemas differ: {sorted(set(tables) ^ set(target_tables))} (upgrade both)"
        )
    for table, columns in tables.items():
        if set(columns) != set(target_tables[table]):
            raise PortError(f"table {table}: the columns differ (upgrade both)")
    applied = [_migrations(source.db), _migrations(target.db)]
    if applied[0] != applied[1]:
        raise PortError("the two databases are at different migrations (upgrade both)")
    for table in tables:
        if target.db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            raise PortError(f"the target is not empty (table {table} has rows)")
    with target.write_transaction():
        for table, columns in tables.items():
            count = 0
            for batch in _read_batches(source.db, table, columns):
                target.db.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)})"
                    f" VALUES ({', '.join('?' * len(columns))})",
                    batch,
                )
                count += len(batch)
                if progress is not None:
                    progress(table, count, False)
            if progress is not None:
                progress(table, count, True)
            report.rows[table] = count
        _advance_identities(target.db, tables)
    _verify(source, target, tables, report)
    return report


def _migrations(db: Database) -> list[str]:
    return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY name")]


def _read_batches(db: Database, table: str, columns: list[str]) -> Iterator[list[Any]]:
    return db.stream(f"SELECT {', '.join(columns)} FROM {table}", _BATCH_ROWS)


def _advance_identities(db: Database, tables: dict[str, list[str]]) -> None:
    """Rows copied with their ids leave PostgreSQL's identity sequences behind: move each past
    the largest id, so new rows get new ids (SQLite's rowid needs nothing)."""
    if db.dialect != "postgresql":
        return
    rows = db.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in rows:
        if table in tables:
            db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
            )


def _verify(source: Store, target: Store, tables: dict[str, list[str]], report: PortReport) -> None:
    for table, columns in tables.items():
        counts = [
            store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for store in (source, target)
        ]
        if counts[0] != counts[1]:
            raise PortError(f"table {table}: {counts[0]} rows in the source, {counts[1]} copied")
        digests = [_digest(store.db, table, columns) for store in (source, target)]
        if digests[0] != digests[1]:
            raise PortError(f"table {table}: the copied rows differ from the source's")
    for room in source.list_rooms():
        for read in (Store.get_current_state_ids, _extremities):
            if read(source, room.room_id) != read(target, room.room_id):
                raise PortError(f"room {room.room_id}: its state differs after the copy")
        report.rooms_checked += 1


def _digest(db: Database, table: str, columns: list[str]) -> int:
    """A digest of the table's rows as a multiset (the sum of each row's hash), so the two
    databases' row orders need not agree (they put NULLs at opposite ends)."""
    total = 0
    for batch in _read_batches(db, table, columns):
        for row in batch:
            total += int.from_bytes(hashlib.sha256(repr(tuple(row)).encode("utf-8")).digest())
    return total % (1 << 256)


def _extremities(store: Store, room_id: str) -> list[tuple[str, int]]:
    return store.get_forward_extremities(room_id)
