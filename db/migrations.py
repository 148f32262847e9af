"""Schema migrations, applied in order once each; the applied ones are recorded in the database."""

import json
from collections.abc import Callable

from db.dialect import Database, now_s
from db.state_groups import StateGroups

_M001_ROOMS_AND_EVENTS = """
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);
-- stream_ordering is the order events were stored here (the rowid alias).
CREATE TABLE events (
    stream_ordering INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL REFERENCES rooms(room_id),
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    depth INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    rejected INTEGER NOT NULL DEFAULT 0,
    json TEXT NOT NULL
);
-- State at a point in the stream: the newest state event for (room, type, state_key)
-- at or before a stream position is one index seek.
CREATE INDEX events_state_history
    ON events (room_id, type, state_key, stream_ordering)
    WHERE state_key IS NOT NULL AND rejected = 0;
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
) WITHOUT ROWID;
CREATE TABLE forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;
"""

_M002_SERVER_KEYS = """
-- Remote servers' verify keys (SS §Retrieving server keys). expired_ts is set for keys
-- learned from old_verify_keys: those verify events, never requests.
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts INTEGER NOT NULL,
    expired_ts INTEGER,
    fetched_ts INTEGER NOT NULL,
    PRIMARY KEY (server_name, key_id)
) WITHOUT ROWID;
"""

_M003_JOINED_MEMBERS_PER_SERVER = """
-- How many users of each server are joined to each room, kept in the same transaction as
-- current_state (rows reaching zero are deleted), so "does server S have a joined member?"
-- is one primary-key lookup.
CREATE TABLE room_server_joined_members (
    room_id TEXT NOT NULL,
    server_name TEXT NOT NULL,
    joined_count INTEGER NOT NULL,
    PRIMARY KEY (room_id, server_name)
) WITHOUT ROWID;
"""


def _m003_joined_members_per_server(db: Database) -> None:
    db.run_ddl(_M003_JOINED_MEMBERS_PER_SERVER)
    # Rooms stored before this migration: count their current joined members once.
    server = db.server_name_sql("state_key")
    db.execute(
        "INSERT INTO room_server_joined_members (room_id, server_name, joined_count)"
        f" SELECT room_id, {server}, count(*) FROM current_state"
        " WHERE type = 'm.room.member' AND membership = 'join' AND state_key LIKE '%:%'"
        f" GROUP BY room_id, {server}"
    )


_M004_RECEIVED_TRANSACTIONS = """
-- SS §Transactions: the answer to each (origin, txnId) received, so a retried transaction is
-- answered as the first time without being applied again (Synapse: received_transactions).
CREATE TABLE received_transactions (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
) WITHOUT ROWID;
"""

_M005_OUTBOX = """
-- Durable delivery (SS §Transactions): one row per (destination, event) still to send, written
-- in the transaction that stores the event and deleted only once the destination answered 200
-- to the transaction that carried it.
CREATE TABLE outbox (
    destination TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
) WITHOUT ROWID;
-- Per destination: backoff, the transaction in flight (its id is kept across retries so the
-- receiver de-duplicates), the worker holding the lease to send to it, the last outcome.
CREATE TABLE destinations (
    destination TEXT PRIMARY KEY,
    retry_at_ts INTEGER NOT NULL DEFAULT 0,
    backoff_ms INTEGER NOT NULL DEFAULT 0,
    txn_id TEXT,
    txn_orderings TEXT,
    lease_owner TEXT,
    lease_until_ts INTEGER NOT NULL DEFAULT 0,
    last_success_ts INTEGER,
    last_error TEXT,
    last_error_ts INTEGER
) WITHOUT ROWID;
"""

_M006_SOFT_FAILED = """
-- SS §Soft failure: an event that passes the auth rules against its auth events and the state
-- before it but not against the current state is kept (it is served on /event and may be
-- referenced), but it is not part of the room's state, extremities or timeline.
ALTER TABLE events ADD COLUMN soft_failed INTEGER NOT NULL DEFAULT 0;
"""

_M007_STATE_GROUPS = """
-- State at every event (db/state_groups.py has the layout): immutable state groups, each a
-- delta against an ancestor (base NULL: stored whole), and the groups before and after each
-- event. rooms.current_state_group is the group current_state mirrors (NULL: not yet known,
-- current_state itself is then the reference).
CREATE TABLE state_groups (
    id INTEGER PRIMARY KEY,
    room_id TEXT NOT NULL,
    base INTEGER,
    position INTEGER NOT NULL
);
CREATE TABLE state_group_deltas (
    group_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    PRIMARY KEY (group_id, type, state_key)
) WITHOUT ROWID;
CREATE TABLE event_state (
    event_id TEXT PRIMARY KEY,
    before_group INTEGER,
    after_group INTEGER
) WITHOUT ROWID;
ALTER TABLE rooms ADD COLUMN current_state_group INTEGER;
-- The stream-order state lookups it replaces.
DROP INDEX events_state_history
"""


def _m008_state_at_stored_events(db: Database) -> None:
    """Events stored before state groups existed get theirs, replayed in stream order."""
    groups = StateGroups(db)
    rows = db.execute(
        "SELECT e.event_id, e.room_id, r.room_version, e.rejected, e.json FROM events AS e"
        " JOIN rooms AS r ON r.room_id = e.room_id ORDER BY e.stream_ordering"
    )
    for event_id, room_id, room_version, rejected, text in rows.fetchall():
        groups.add_event(room_id, room_version, json.loads(text), event_id, rejected=bool(rejected))


_M009_OUTLIERS = """
-- Outliers: events fetched to fill a gap (the state at a missing prev event, missing auth
-- events), checked against their own auth events only. Kept out of the timeline, the current
-- state and the extremities as a soft-failed event is (soft_failed is set for them too).
ALTER TABLE events ADD COLUMN outlier INTEGER NOT NULL DEFAULT 0
"""

_M010_AUTH_EDGES = """
-- Which events cite each event in their auth_events: state resolution asks whether an event
-- is in the auth chain of the state the forks share without walking that whole state.
CREATE TABLE event_auth_edges (
    auth_event_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (auth_event_id, event_id)
) WITHOUT ROWID;
"""

_M010_AUTH_EDGES_OF_STORED_EVENTS = {
    "sqlite": """
INSERT OR IGNORE INTO event_auth_edges (auth_event_id, event_id)
    SELECT CASE a.type WHEN 'array' THEN json_extract(a.value, '$[0]') ELSE a.value END,
        e.event_id
    FROM events AS e, json_each(e.json, '$.auth_events') AS a
""",
    # PostgreSQL databases begin at a release that writes every edge with its event (and
    # `antechamber db migrate` copies the table): there are none to carry.
    "postgresql": "",
}


def _m010_auth_edges(db: Database) -> None:
    db.run_ddl(_M010_AUTH_EDGES)
    db.run_ddl(_M010_AUTH_EDGES_OF_STORED_EVENTS[db.dialect])


_M011_ROOM_CHANGE_SEQ = """
-- Bumped in the transaction that changes a room's forward extremities or current state (and so
-- its joined members): a worker keeps what make_knock / make_join / make_leave read of a room
-- (app/rooms/hosted.py) for as long as this number is unchanged, whichever process wrote.
ALTER TABLE rooms ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0
"""

_M012_AUTH_EDGES_BY_EVENT = """
-- The auth chain is walked from an event to the events it cites (get_auth_chain_ids): the
-- edges table read by its second column, in place of parsing each event's JSON.
CREATE INDEX event_auth_edges_by_event ON event_auth_edges (event_id, auth_event_id)
"""

# SQL written for SQLite (db/dialect.py turns it into PostgreSQL's), or a function taking the
# database, for a step whose SQL differs.
Migration = str | Callable[[Database], None]

# (name, SQL script or function). Append only; never edit an applied migration.
MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_rooms_and_events", _M001_ROOMS_AND_EVENTS),
    ("002_server_keys", _M002_SERVER_KEYS),
    ("003_joined_members_per_server", _m003_joined_members_per_server),
    ("004_received_transactions", _M004_RECEIVED_TRANSACTIONS),
    ("005_outbox", _M005_OUTBOX),
    ("006_soft_failed", _M006_SOFT_FAILED),
    ("007_state_groups", _M007_STATE_GROUPS),
    ("008_state_at_stored_events", _m008_state_at_stored_events),
    ("009_outliers", _M009_OUTLIERS),
    ("010_auth_edges", _m010_auth_edges),
    ("011_room_change_seq", _M011_ROOM_CHANGE_SEQ),
    ("012_auth_edges_by_event", _M012_AUTH_EDGES_BY_EVENT),
]


def apply_migrations(db: Database) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; return their names.

    Two processes starting together apply each migration exactly once: on SQLite each runs in
    BEGIN IMMEDIATE, on PostgreSQL all run under one advisory lock.
    """
    db.lock_migrations()
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ts BIGINT)"
        )
        applied = []
        for name, script in MIGRATIONS:
            db.begin_write()
            try:
                if db.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                    db.rollback()
                    continue
                if callable(script):
                    script(db)
                else:
                    db.run_ddl(script)
                db.execute(
                    "INSERT INTO _migrations (name, applied_ts) VALUES (?, ?)", [name, now_s()]
                )
                db.commit()
            except BaseException:
                db.rollback()
                raise
            applied.append(name)
        return applied
    finally:
        db.unlock_migrations()
