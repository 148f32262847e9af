"""The one Store: every read and write of Antechamber's database, named for its intent."""

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canonicaljson import encode_canonical_json

from db.dialect import Database, open_database
from db.migrations import apply_migrations
from db.state_groups import StateGroups, get_state_changes
from matrix.events import get_event_reference_ids
from matrix.ids import get_domain

JsonDict = dict[str, Any]
StateKey = tuple[str, str]


@dataclass(frozen=True)
class StoredServerKey:
    server_name: str
    key_id: str
    verify_key: str  # unpadded base64
    valid_until_ts: int
    expired_ts: int | None


@dataclass(frozen=True)
class StoredRoom:
    room_id: str
    room_version: str
    created_ts: int


@dataclass(frozen=True)
class StoredEvent:
    event_id: str
    stream_ordering: int
    event: JsonDict


class UnknownRoomError(LookupError):
    """An event for a room this server has no row for (its create event was never stored)."""


class Store:
    """One database connection (SQLite) or pool (PostgreSQL) per process; writes in
    transactions (db/dialect.py has what differs between the two)."""

    def __init__(self, db: Database):
        self.db = db
        self._in_write_transaction = False
        self._after_commit: list[Callable[[], None]] = []
        self._groups = StateGroups(self.db)

    @classmethod
    def open(cls, target: Path | str) -> "Store":
        """Open (creating if needed) the database at ``target`` (a SQLite file path, or a
        ``sqlite:///`` or ``postgresql://`` URL) and bring its schema up to date."""
        db = open_database(target)
        try:
            apply_migrations(db)
        except BaseException:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        self.db.close()

    @property
    def dialect(self) -> str:
        return self.db.dialect

    # Remote server keys -------------------------------------------------------------------

    def get_server_key(self, server_name: str, key_id: str) -> StoredServerKey | None:
        row = self.db.execute(
            "SELECT verify_key, valid_until_ts, expired_ts FROM server_keys"
            " WHERE server_name = ? AND key_id = ?",
            (server_name, key_id),
        ).fetchone()
        if row is None:
            return None
        return StoredServerKey(server_name, key_id, row[0], row[1], row[2])

    def get_server_key_ids(self, server_name: str) -> set[str]:
        rows = self.db.execute(
            "SELECT key_id FROM server_keys WHERE server_name = ?", (server_name,)
        ).fetchall()
        return {row[0] for row in rows}

    def has_server_keys(self, server_name: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM server_keys WHERE server_name = ? LIMIT 1", (server_name,)
        ).fetchone()
        return row is not None

    def store_server_keys(
        self,
        keys: list[StoredServerKey],
        fetched_ts: int,
        keep_per_server: int | None = None,
    ) -> None:
        """Insert or replace the keys learned from one key response, atomically; with
        ``keep_per_server``, only that many most recently fetched rows of each server remain."""
        with self.write_transaction():
            self.db.executemany(
                "INSERT INTO server_keys"
                " (server_name, key_id, verify_key, valid_until_ts, expired_ts, fetched_ts)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (server_name, key_id) DO UPDATE SET"
                " verify_key = excluded.verify_key, valid_until_ts = excluded.valid_until_ts,"
                " expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts",
                [
                    (
                        k.server_name,
                        k.key_id,
                        k.verify_key,
                        k.valid_until_ts,
                        k.expired_ts,
                        fetched_ts,
                    )
                    for k in keys
                ],
            )
            if keep_per_server is not None:
                for server_name in {k.server_name for k in keys}:
                    self.db.execute(
                        "DELETE FROM server_keys WHERE server_name = ? AND key_id NOT IN"
                        " (SELECT key_id FROM server_keys WHERE server_name = ?"
                        "  ORDER BY fetched_ts DESC, key_id LIMIT ?)",
                        (server_name, server_name, keep_per_server),
                    )

    def delete_server_keys_fetched_before(self, fetched_ts: int) -> int:
        """Forget keys fetched before ``fetched_ts``; how many rows went."""
        with self.write_transaction():
            cursor = self.db.execute("DELETE FROM server_keys WHERE fetched_ts < ?", (fetched_ts,))
        return cursor.rowcount

    # Rooms and events: reads ----------------------------------------------------------------
    # Hot-path reads are point lookups on a primary key or index; none scans a room.

    def get_room_version(self, room_id: str) -> str | None:
        row = self.db.execute(
            "SELECT room_version FROM rooms WHERE room_id = ?", (room_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def get_room_change(self, room_id: str) -> tuple[str, int] | None:
        """(room_version, change_seq) of a stored room: change_seq moves whenever its forward
        extremities or current state may have changed (one primary-key read)."""
        row = self.db.execute(
            "SELECT room_version, change_seq FROM rooms WHERE room_id = ?", (room_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def list_rooms(self) -> list[StoredRoom]:
        """Every room, oldest first (admin/CLI only)."""
        rows = self.db.execute(
            "SELECT room_id, room_version, created_ts FROM rooms ORDER BY created_ts, room_id"
        ).fetchall()
        return [StoredRoom(row[0], row[1], row[2]) for row in rows]

    def get_event(self, event_id: str) -> JsonDict | None:
        """The PDU exactly as stored (rejected events included), or None."""
        row = self.db.execute("SELECT json FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else _parse(row[0])

    def is_event_soft_failed(self, event_id: str) -> bool | None:
        """Whether the stored event was soft-failed (SS §Soft failure); None when unknown."""
        row = self.db.execute(
            "SELECT soft_failed FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else bool(row[0])

    def is_event_rejected(self, event_id: str) -> bool | None:
        """Whether the stored event was rejected by the auth rules; None when it is unknown."""
        row = self.db.execute(
            "SELECT rejected FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else bool(row[0])

    def get_accepted_events(self, event_ids: Sequence[str]) -> dict[str, JsonDict]:
        """The PDUs among ``event_ids`` that are stored and not rejected (one unique-index seek
        each, in one statement)."""
        if not event_ids:
            return {}
        marks = ",".join("?" * len(event_ids))
        rows = self.db.execute(
            f"SELECT event_id, json FROM events WHERE event_id IN ({marks}) AND rejected = 0",
            list(event_ids),
        ).fetchall()
        return {row[0]: _parse(row[1]) for row in rows}

    def get_event_room_ids(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The room of each of ``event_ids`` stored here (rejected ones included)."""
        if not event_ids:
            return {}
        marks = ",".join("?" * len(event_ids))
        rows = self.db.execute(
            f"SELECT event_id, room_id FROM events WHERE event_id IN ({marks})",
            list(event_ids),
        ).fetchall()
        return {row[0]: row[1] for row in rows}

    def get_newest_stream_ordering(self, event_ids: Sequence[str]) -> int | None:
        """The newest stream position among ``event_ids``; None unless every one is stored."""
        unique = list(dict.fromkeys(event_ids))
        if not unique:
            return None
        marks = ",".join("?" * len(unique))
        count, newest = self.db.execute(
            f"SELECT count(*), max(stream_ordering) FROM events WHERE event_id IN ({marks})",
            unique,
        ).fetchone()
        return int(newest) if count == len(unique) else None

    def get_stream_ordering(self, event_id: str) -> int | None:
        row = self.db.execute(
            "SELECT stream_ordering FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def get_current_state_event(
        self, room_id: str, event_type: str, state_key: str
    ) -> JsonDict | None:
        row = self.db.execute(
            "SELECT e.json FROM current_state AS cs JOIN events AS e ON e.event_id = cs.event_id"
            " WHERE cs.room_id = ? AND cs.type = ? AND cs.state_key = ?",
            (room_id, event_type, state_key),
        ).fetchone()
        return None if row is None else _parse(row[0])

    def get_current_state_events(
        self, room_id: str, keys: Iterable[StateKey]
    ) -> dict[StateKey, JsonDict]:
        """The current state events for ``keys`` that exist (one statement, see below)."""
        found = self.get_current_state_events_with_ids(room_id, keys)
        return {key: event for key, (_event_id, event) in found.items()}

    def get_current_state_events_with_ids(
        self, room_id: str, keys: Iterable[StateKey]
    ) -> dict[StateKey, tuple[str, JsonDict]]:
        """(event id, PDU) of the current state events for ``keys`` that exist (v3+ PDUs carry
        no event_id, and auth_events/templates need it), in the order of ``keys``.

        One statement of UNION ALL'd primary-key seeks, so its cost does not grow with the
        room: a row-value ``(room_id, type, state_key) IN (VALUES ...)`` makes SQLite scan
        the room's whole state instead (25 ms in a 100,000-member room, against 16 us here).
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        sql = " UNION ALL ".join([_CURRENT_STATE_ROW_SQL] * len(wanted))
        parameters = [value for key in wanted for value in (room_id, *key)]
        rows = {
            (row[0], row[1]): (row[2], row[3])
            for row in self.db.execute(sql, parameters).fetchall()
        }
        return {key: (rows[key][0], _parse(rows[key][1])) for key in wanted if key in rows}

    def get_current_state(self, room_id: str) -> list[JsonDict]:
        """The whole current state of a room, by (type, state_key) (admin/CLI only)."""
        rows = self.db.execute(
            "SELECT e.json FROM current_state AS cs JOIN events AS e ON e.event_id = cs.event_id"
            " WHERE cs.room_id = ? ORDER BY cs.type, cs.state_key",
            (room_id,),
        ).fetchall()
        return [_parse(row[0]) for row in rows]

    def get_current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        """(type, state_key) -> event id for the whole current state (admin/CLI only)."""
        rows = self.db.execute(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?", (room_id,)
        ).fetchall()
        return {(row[0], row[1]): row[2] for row in rows}

    def get_memberships(self, room_id: str, membership: str) -> list[JsonDict]:
        """Current m.room.member events with ``membership`` (admin/CLI only)."""
        rows = self.db.execute(
            "SELECT e.json FROM current_state AS cs JOIN events AS e ON e.event_id = cs.event_id"
            " WHERE cs.room_id = ? AND cs.type = 'm.room.member' AND cs.membership = ?"
            " ORDER BY cs.state_key",
            (room_id, membership),
        ).fetchall()
        return [_parse(row[0]) for row in rows]

    def get_current_members(self, room_id: str) -> list[tuple[str, JsonDict]]:
        """(event id, PDU) of every m.room.member event in current state, whatever the
        membership, by user id (admin/CLI only)."""
        rows = self.db.execute(
            "SELECT cs.event_id, e.json FROM current_state AS cs"
            " JOIN events AS e ON e.event_id = cs.event_id"
            " WHERE cs.room_id = ? AND cs.type = 'm.room.member' ORDER BY cs.state_key",
            (room_id,),
        ).fetchall()
        return [(row[0], _parse(row[1])) for row in rows]

    def get_recent_events(self, room_id: str, limit: int) -> list[StoredEvent]:
        """The newest ``limit`` accepted events of a room by stream ordering, newest last
        (admin/CLI only: it walks the stream backwards from its end)."""
        rows = self.db.execute(
            "SELECT event_id, stream_ordering, json FROM events"
            " WHERE room_id = ? AND rejected = 0 AND soft_failed = 0"
            " ORDER BY stream_ordering DESC LIMIT ?",
            (room_id, max(limit, 0)),
        ).fetchall()
        return [StoredEvent(row[0], int(row[1]), _parse(row[2])) for row in reversed(rows)]

    def get_forward_extremities(
        self, room_id: str, limit: int | None = None
    ) -> list[tuple[str, int]]:
        """(event_id, depth) of the room's forward extremities, deepest (then newest) first;
        at most ``limit`` of them (remote knocks built on old events can add many)."""
        sql = (
            "SELECT fe.event_id, e.depth FROM forward_extremities AS fe"
            " JOIN events AS e ON e.event_id = fe.event_id"
            " WHERE fe.room_id = ? ORDER BY e.depth DESC, e.stream_ordering DESC"
        )
        parameters: list[Any] = [room_id]
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(max(limit, 0))
        rows = self.db.execute(sql, parameters).fetchall()
        return [(row[0], int(row[1])) for row in rows]

    # State at every event (db/state_groups.py) --------------------------------------------

    def get_state_ids_at(self, event_id: str, *, after: bool = False) -> dict[StateKey, str] | None:
        """(type, state_key) -> event id of the room's state before (or after) a stored event;
        None when the event is unknown here."""
        groups = self._groups.get_event_groups(event_id)
        if groups is None:
            return None
        return dict(self._groups.get_state_ids(groups[1] if after else groups[0]))

    def get_state_events_at(
        self, event_id: str, keys: Iterable[StateKey], *, after: bool = False
    ) -> dict[StateKey, JsonDict]:
        """The state events for ``keys`` before (or after) a stored event: a few seeks each."""
        groups = self._groups.get_event_groups(event_id)
        if groups is None:
            return {}
        ids = self._groups.get_state_ids_for_keys(groups[1] if after else groups[0], keys)
        return self._load_state_events(ids)

    def get_state_events_after_prev_events(
        self,
        room_id: str,
        room_version: str,
        prev_event_ids: Sequence[str],
        keys: Iterable[StateKey],
    ) -> dict[StateKey, JsonDict]:
        """The state events for ``keys`` in the resolution of the states after the known
        ``prev_event_ids``: the state before an event citing them (SS §Checks performed on
        receipt of a PDU, step 5). Resolving writes the resolved group, so call it inside a
        write transaction."""
        group = self._groups.resolve(
            room_id, room_version, self._groups.get_groups_after(prev_event_ids)
        )
        return self._load_state_events(self._groups.get_state_ids_for_keys(group, keys))

    def get_server_memberships_after(self, event_id: str, server_name: str) -> list[str]:
        """The memberships of ``server_name``'s users in the room's state just after a stored
        event (history visibility: SS §Authorization of event access)."""
        groups = self._groups.get_event_groups(event_id)
        if groups is None:
            return []
        ids = self._groups.get_member_ids_of_server(groups[1], server_name)
        events = self._load_state_events(ids)
        memberships = [event.get("content", {}).get("membership") for event in events.values()]
        return [m for m in memberships if isinstance(m, str)]

    def get_unknown_event_ids(self, event_ids: Sequence[str]) -> list[str]:
        """Those of ``event_ids`` not stored here (in the order given, once each)."""
        unique = list(dict.fromkeys(event_ids))
        known: set[str] = set()
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            known.update(
                row[0]
                for row in self.db.execute(
                    f"SELECT event_id FROM events WHERE event_id IN ({marks})", chunk
                )
            )
        return [event_id for event_id in unique if event_id not in known]

    def get_state_keys_of(self, room_id: str, event_ids: Sequence[str]) -> dict[str, StateKey]:
        """(type, state_key) of each of ``event_ids`` that is a stored, not rejected state
        event of ``room_id``."""
        unique = list(dict.fromkeys(event_ids))
        found: dict[str, StateKey] = {}
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT event_id, type, state_key FROM events WHERE event_id IN ({marks})"
                " AND room_id = ? AND state_key IS NOT NULL AND rejected = 0",
                [*chunk, room_id],
            )
            found.update({row[0]: (row[1], row[2]) for row in rows})
        return found

    def get_events_without_state(self, event_ids: Sequence[str]) -> list[str]:
        """Those of ``event_ids`` whose state is not known here: not stored, or outliers
        fetched without it. An event citing one as a prev_event cannot be judged yet."""
        unique = list(dict.fromkeys(event_ids))
        if not unique:
            return []
        marks = ",".join("?" * len(unique))
        known = {
            row[0]
            for row in self.db.execute(
                f"SELECT event_id FROM event_state WHERE event_id IN ({marks})", unique
            )
        }
        return [event_id for event_id in unique if event_id not in known]

    def set_outlier_state(
        self,
        room_id: str,
        event_id: str,
        event: JsonDict,
        state_before: dict[StateKey, str],
    ) -> None:
        """Record the state before and after an outlier as its origin told it (/state_ids at
        a missing prev event), so events built on it are judged on that state. Stored as a
        difference to the room's current state, which it mostly shares."""
        row = self.db.execute(
            "SELECT current_state_group FROM rooms WHERE room_id = ?", (room_id,)
        ).fetchone()
        parent = row[0] if row is not None else None
        base_state = self._groups.get_state_ids(parent)
        before = self._groups.create_group(
            room_id, parent, get_state_changes(base_state, state_before)
        )
        after = before
        state_key = event.get("state_key")
        if isinstance(state_key, str) and not self.is_event_rejected(event_id):
            after = self._groups.create_group(
                room_id, before, {(event["type"], state_key): event_id}
            )
        self.db.execute(
            "INSERT INTO event_state (event_id, before_group, after_group) VALUES (?, ?, ?)"
            " ON CONFLICT (event_id) DO UPDATE SET before_group = excluded.before_group,"
            " after_group = excluded.after_group",
            (event_id, before, after),
        )

    def _load_state_events(self, ids: dict[StateKey, str]) -> dict[StateKey, JsonDict]:
        # State groups hold accepted events only (a rejected event adds none).
        found = self.get_events_by_id(list(ids.values()))
        return {key: found[event_id] for key, event_id in ids.items() if event_id in found}

    def get_auth_chain_ids(self, event_ids: Sequence[str]) -> list[str]:
        """Every stored event reachable from ``event_ids`` through auth_events (v1/v2 pairs or
        v3+ ids), the events themselves excluded unless reached; oldest first. Walked on
        event_auth_edges, written with each stored event."""
        if not event_ids:
            return []
        marks = ",".join("?" * len(event_ids))
        rows = self.db.execute(
            "WITH RECURSIVE chain(id) AS ("
            f"  SELECT auth_event_id FROM event_auth_edges WHERE event_id IN ({marks})"
            "  UNION"
            "  SELECT a.auth_event_id FROM chain"
            "  JOIN event_auth_edges AS a ON a.event_id = chain.id"
            ")"
            " SELECT e.event_id FROM chain JOIN events AS e ON e.event_id = chain.id"
            " ORDER BY e.stream_ordering",
            list(event_ids),
        ).fetchall()
        return [row[0] for row in rows]

    def get_events_by_id(self, event_ids: Sequence[str]) -> dict[str, JsonDict]:
        """The stored PDUs among ``event_ids`` (rejected ones included), by id."""
        found: dict[str, JsonDict] = {}
        unique = list(dict.fromkeys(event_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT event_id, json FROM events WHERE event_id IN ({marks})", chunk
            ).fetchall()
            found.update({row[0]: _parse(row[1]) for row in rows})
        return found

    def get_events_in_order(self, event_ids: Sequence[str]) -> list[JsonDict]:
        """The stored PDUs among ``event_ids``, in the order given (unknown ids skipped)."""
        found = self.get_events_by_id(event_ids)
        return [found[event_id] for event_id in event_ids if event_id in found]

    def get_local_joined_members(self, room_id: str, server_name: str) -> list[str]:
        """This server's users currently joined to the room (by user id)."""
        rows = self.db.execute(
            "SELECT state_key FROM current_state WHERE room_id = ? AND type = 'm.room.member'"
            f" AND membership = 'join' AND {self.db.server_name_sql('state_key')} = ?"
            " ORDER BY state_key",
            (room_id, server_name),
        ).fetchall()
        return [row[0] for row in rows]

    def get_accepted_event_with_position(self, event_id: str) -> tuple[str, int, JsonDict] | None:
        """(room id, stream ordering, PDU) of a stored event that was not rejected, or None."""
        row = self.db.execute(
            "SELECT room_id, stream_ordering, json FROM events WHERE event_id = ? AND rejected = 0",
            (event_id,),
        ).fetchone()
        return None if row is None else (row[0], int(row[1]), _parse(row[2]))

    def get_server_memberships_at(
        self, room_id: str, server_name: str, stream_ordering: int
    ) -> list[str]:
        """The memberships of ``server_name``'s users in the room's state just after the event
        stored at ``stream_ordering`` (the newest accepted member event per user up to it)."""
        rows = self.db.execute(
            "SELECT e.json FROM events AS e JOIN"
            " (SELECT max(stream_ordering) AS newest FROM events"
            "  WHERE room_id = ? AND type = 'm.room.member' AND state_key IS NOT NULL"
            "  AND rejected = 0 AND soft_failed = 0 AND stream_ordering <= ?"
            f"  AND {self.db.server_name_sql('state_key')} = ?"
            "  GROUP BY state_key) AS m ON e.stream_ordering = m.newest",
            (room_id, stream_ordering, server_name),
        ).fetchall()
        contents = [_parse(row[0]).get("content") for row in rows]
        memberships = [c.get("membership") for c in contents if isinstance(c, dict)]
        return [m for m in memberships if isinstance(m, str)]

    # Durable delivery: the outbox and per-destination state ------------------------------

    def enqueue_delivery(self, destinations: Sequence[str], event_id: str, room_id: str) -> None:
        """Queue the stored ``event_id`` for each destination, in the caller's write
        transaction (the event and its deliveries commit together or not at all)."""
        position = self.get_stream_ordering(event_id)
        if position is None or not destinations:
            return
        with self.write_transaction():
            self.db.executemany(
                "INSERT INTO outbox (destination, stream_ordering, room_id)"
                " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [(destination, position, room_id) for destination in destinations],
            )
            self.db.executemany(
                "INSERT INTO destinations (destination) VALUES (?) ON CONFLICT DO NOTHING",
                [(destination,) for destination in destinations],
            )

    def count_pending(self, destination: str) -> int:
        row = self.db.execute(
            "SELECT count(*) FROM outbox WHERE destination = ?", (destination,)
        ).fetchone()
        return int(row[0])

    def prune_to_newest_per_room(self, destination: str) -> int:
        """Catch-up (Synapse's destination_rooms): keep only the newest pending event per room
        for ``destination``, which fetches the gap itself (/get_missing_events). Returns how
        many deliveries were dropped."""
        with self.write_transaction():
            cursor = self.db.execute(
                "DELETE FROM outbox WHERE destination = ? AND stream_ordering NOT IN"
                " (SELECT max(stream_ordering) FROM outbox WHERE destination = ?"
                " GROUP BY room_id)",
                (destination, destination),
            )
            return int(cursor.rowcount)

    def get_due_destinations(self, now_ms: int) -> list[str]:
        """Destinations with pending deliveries, not backed off and not leased by a live
        worker (oldest pending first)."""
        rows = self.db.execute(
            "SELECT d.destination FROM destinations AS d"
            " JOIN (SELECT destination, min(stream_ordering) AS first FROM outbox"
            "       GROUP BY destination) AS o ON o.destination = d.destination"
            " WHERE d.retry_at_ts <= ? AND (d.lease_owner IS NULL OR d.lease_until_ts < ?)"
            " ORDER BY o.first",
            (now_ms, now_ms),
        ).fetchall()
        return [row[0] for row in rows]

    def get_backed_off_destinations(self, now_ms: int) -> list[str]:
        """Destinations waiting out a backoff at ``now_ms``."""
        rows = self.db.execute(
            "SELECT destination FROM destinations WHERE retry_at_ts > ?", (now_ms,)
        ).fetchall()
        return [row[0] for row in rows]

    def get_retry_at(self, destination: str) -> int:
        """When ``destination`` may be tried again (0: now; also for an unknown one)."""
        row = self.db.execute(
            "SELECT retry_at_ts FROM destinations WHERE destination = ?", (destination,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def claim_destination(self, destination: str, owner: str, now_ms: int, lease_ms: int) -> bool:
        """Take (or renew) the lease to send to ``destination``: exactly one worker sends to a
        destination at a time; a dead worker's lease runs out after ``lease_ms``."""
        with self.write_transaction():
            cursor = self.db.execute(
                "UPDATE destinations SET lease_owner = ?, lease_until_ts = ?"
                " WHERE destination = ? AND (lease_owner IS NULL OR lease_owner = ?"
                " OR lease_until_ts < ?)",
                (owner, now_ms + lease_ms, destination, owner, now_ms),
            )
            return cursor.rowcount == 1

    def release_destination(self, destination: str, owner: str) -> None:
        with self.write_transaction():
            self.db.execute(
                "UPDATE destinations SET lease_owner = NULL, lease_until_ts = 0"
                " WHERE destination = ? AND lease_owner = ?",
                (destination, owner),
            )

    def get_delivery_batch(
        self, destination: str, limit: int
    ) -> tuple[str | None, list[tuple[int, JsonDict]]]:
        """(txn id, [(stream ordering, PDU)]) to send next: the transaction in flight when there
        is one (same id, its events that are still pending, in order), else the oldest
        ``limit`` pending events and no id yet."""
        row = self.db.execute(
            "SELECT txn_id, txn_orderings FROM destinations WHERE destination = ?",
            (destination,),
        ).fetchone()
        if row is not None and row[0] is not None:
            orderings = [int(value) for value in json.loads(row[1])]
            marks = ",".join("?" * len(orderings)) or "NULL"
            rows = self.db.execute(
                "SELECT o.stream_ordering, e.json FROM outbox AS o"
                " JOIN events AS e ON e.stream_ordering = o.stream_ordering"
                f" WHERE o.destination = ? AND o.stream_ordering IN ({marks})"
                " ORDER BY o.stream_ordering",
                [destination, *orderings],
            ).fetchall()
            if rows:
                return str(row[0]), [(int(r[0]), _parse(r[1])) for r in rows]
        rows = self.db.execute(
            "SELECT o.stream_ordering, e.json FROM outbox AS o"
            " JOIN events AS e ON e.stream_ordering = o.stream_ordering"
            " WHERE o.destination = ? ORDER BY o.stream_ordering LIMIT ?",
            (destination, limit),
        ).fetchall()
        return None, [(int(r[0]), _parse(r[1])) for r in rows]

    def start_transaction(self, destination: str, txn_id: str, orderings: Sequence[int]) -> None:
        """Record the transaction about to be sent, so a retry (by any worker, after any
        crash) re-sends the same id with the same events."""
        with self.write_transaction():
            self.db.execute(
                "UPDATE destinations SET txn_id = ?, txn_orderings = ? WHERE destination = ?",
                (txn_id, json.dumps(list(orderings)), destination),
            )

    def complete_transaction(self, destination: str, orderings: Sequence[int], now_ms: int) -> None:
        """The destination answered 200: its deliveries are done, its backoff is reset."""
        with self.write_transaction():
            self.db.executemany(
                "DELETE FROM outbox WHERE destination = ? AND stream_ordering = ?",
                [(destination, ordering) for ordering in orderings],
            )
            self.db.execute(
                "UPDATE destinations SET txn_id = NULL, txn_orderings = NULL, retry_at_ts = 0,"
                " backoff_ms = 0, last_success_ts = ? WHERE destination = ?",
                (now_ms, destination),
            )

    def fail_transaction(
        self, destination: str, error: str, now_ms: int, *, start_ms: int, max_ms: int
    ) -> int:
        """The send failed: back off (``start_ms``, doubling up to ``max_ms``); the transaction
        keeps its id for the retry. Returns the new backoff."""
        with self.write_transaction():
            row = self.db.execute(
                "SELECT backoff_ms FROM destinations WHERE destination = ?", (destination,)
            ).fetchone()
            current = int(row[0]) if row is not None else 0
            backoff = min(max(current * 2, start_ms), max_ms)
            self.db.execute(
                "UPDATE destinations SET backoff_ms = ?, retry_at_ts = ?, last_error = ?,"
                " last_error_ts = ? WHERE destination = ?",
                (backoff, now_ms + backoff, error[:500], now_ms, destination),
            )
            return backoff

    def reset_backoff(self, destination: str) -> bool:
        """Retry ``destination`` at once (the operator's `federation retry`, or an inbound
        request from it). False when nothing is known about it."""
        with self.write_transaction():
            cursor = self.db.execute(
                "UPDATE destinations SET retry_at_ts = 0, backoff_ms = 0 WHERE destination = ?",
                (destination,),
            )
            return cursor.rowcount == 1

    def reset_backoff_of_pending(self) -> int:
        """Retry every destination with pending deliveries at once (a server start)."""
        with self.write_transaction():
            cursor = self.db.execute(
                "UPDATE destinations SET retry_at_ts = 0, backoff_ms = 0"
                " WHERE retry_at_ts > 0 AND destination IN (SELECT destination FROM outbox)"
            )
            return int(cursor.rowcount)

    def drop_deliveries_for_left_rooms(self, destination: str, server_name: str) -> int:
        """Deliveries of rooms this server has no joined user in any more are not retried
        (Synapse #18491/#18500: a left room must not be retried forever)."""
        with self.write_transaction():
            cursor = self.db.execute(
                "DELETE FROM outbox WHERE destination = ? AND room_id NOT IN"
                " (SELECT room_id FROM room_server_joined_members WHERE server_name = ?)",
                (destination, server_name),
            )
            return int(cursor.rowcount)

    def get_destination_status(self) -> list[JsonDict]:
        """Per known destination: pending count, backoff, last success and error (admin)."""
        rows = self.db.execute(
            "SELECT d.destination, (SELECT count(*) FROM outbox AS o"
            " WHERE o.destination = d.destination), d.retry_at_ts, d.backoff_ms,"
            " d.last_success_ts, d.last_error, d.last_error_ts, d.txn_id, d.lease_owner"
            " FROM destinations AS d ORDER BY d.destination"
        ).fetchall()
        keys = (
            "destination",
            "pending",
            "retry_at_ts",
            "backoff_ms",
            "last_success_ts",
            "last_error",
            "last_error_ts",
            "txn_id",
            "lease_owner",
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # Received transactions (SS §Transactions) ---------------------------------------------

    def get_transaction_response(self, origin: str, txn_id: str) -> JsonDict | None:
        """The answer given to ``origin``'s transaction ``txn_id``, when it was processed."""
        row = self.db.execute(
            "SELECT response_json FROM received_transactions WHERE origin = ? AND txn_id = ?",
            (origin, txn_id),
        ).fetchone()
        return None if row is None else _parse(row[0])

    def store_transaction_response(
        self, origin: str, txn_id: str, response: JsonDict, received_ts: int
    ) -> None:
        """Remember the answer to a transaction, so a retry is answered the same; the first
        answer stored wins."""
        with self.write_transaction():
            self.db.execute(
                "INSERT INTO received_transactions"
                " (origin, txn_id, response_json, received_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (origin, txn_id, encode_canonical_json(response).decode("utf-8"), received_ts),
            )

    def has_local_joined_member(self, room_id: str, server_name: str) -> bool:
        """Whether any user of ``server_name`` is currently joined (one primary-key lookup)."""
        row = self.db.execute(
            "SELECT 1 FROM room_server_joined_members WHERE room_id = ? AND server_name = ?",
            (room_id, server_name),
        ).fetchone()
        return row is not None

    def get_joined_servers(self, room_id: str) -> list[str]:
        """The servers with at least one joined user (a primary-key prefix range)."""
        rows = self.db.execute(
            "SELECT server_name FROM room_server_joined_members WHERE room_id = ?"
            " ORDER BY server_name",
            (room_id,),
        ).fetchall()
        return [row[0] for row in rows]

    # Rooms and events: the one write path ---------------------------------------------------

    def persist_event(
        self,
        event: JsonDict,
        event_id: str,
        room_version: str,
        *,
        rejected: bool = False,
        soft_failed: bool = False,
        outlier: bool = False,
    ) -> bool:
        """Store one PDU with its state and extremity updates in one transaction.

        Returns False (and writes nothing) when ``event_id`` is already stored.
        """
        return self.persist_events(
            [(event, event_id)],
            room_version,
            rejected=rejected,
            soft_failed=soft_failed,
            outlier=outlier,
        )[0]

    def persist_events(
        self,
        events: Sequence[tuple[JsonDict, str]],
        room_version: str,
        *,
        rejected: bool = False,
        soft_failed: bool = False,
        outlier: bool = False,
    ) -> list[bool]:
        """Store (event, event_id) pairs of one room, in order, all in ONE transaction.

        A room's first event must be its m.room.create: storing it creates the room row.
        Everything or nothing is written; already stored ids are skipped (False in the result).
        An ``outlier`` (fetched to fill a gap) gets no state from its prev_events: its state,
        when known, is recorded with ``set_outlier_state``.
        """
        with self.write_transaction():
            for room_id in dict.fromkeys(
                _room_id_of(event, event_id) for event, event_id in events
            ):
                self.lock_room(room_id)
            return [
                self._persist_one(event, event_id, room_version, rejected, soft_failed, outlier)
                for event, event_id in events
            ]

    @contextlib.contextmanager
    def write_transaction(self, room_id: str | None = None) -> Iterator[None]:
        """One write transaction, COMMIT at the end (ROLLBACK on error); nested uses join the
        outer one. With ``room_id``, that room's lock is held (see ``lock_room``).

        On SQLite the transaction is BEGIN IMMEDIATE, which takes the one write lock at once.
        Either way, what a caller reads inside after locking the room is still the room's
        state when it writes: a decision made on the current state (an auth check) cannot be
        overtaken by another worker's, another instance's or the CLI's write in between.
        """
        if self._in_write_transaction:
            if room_id is not None:
                self.lock_room(room_id)
            yield
            return
        self.db.begin_write()
        self._in_write_transaction = True
        try:
            if room_id is not None:
                self.lock_room(room_id)
            yield
            self.db.commit()
        except BaseException:
            self.db.rollback()
            self._after_commit.clear()
            # Group ids written in the rolled-back transaction may be handed out again.
            self._groups.forget()
            raise
        finally:
            self._in_write_transaction = False
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def lock_room(self, room_id: str) -> None:
        """Hold ``room_id``'s write lock until the current write transaction ends: one writer
        per room at a time, in every process sharing the database (PostgreSQL: an advisory
        transaction lock; SQLite: the write lock already held)."""
        if not self._in_write_transaction:
            raise RuntimeError("lock_room outside a write transaction")
        self.db.lock(room_id)

    def call_after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current write transaction has committed (never on
        rollback): work that must only follow durable data, such as sending it elsewhere."""
        if not self._in_write_transaction:
            raise RuntimeError("call_after_commit outside a write transaction")
        self._after_commit.append(callback)

    def _persist_one(
        self,
        event: JsonDict,
        event_id: str,
        room_version: str,
        rejected: bool,
        soft_failed: bool = False,
        outlier: bool = False,
    ) -> bool:
        if self.db.execute("SELECT 1 FROM events WHERE event_id = ?", (event_id,)).fetchone():
            return False
        room_id = _room_id_of(event, event_id)
        known_version = self.get_room_version(room_id)
        if known_version is None:
            if event.get("type") != "m.room.create" or rejected:
                raise UnknownRoomError(f"no room {room_id!r}: store its m.room.create first")
            self.db.execute(
                "INSERT INTO rooms (room_id, room_version, created_ts) VALUES (?, ?, ?)",
                (room_id, room_version, event["origin_server_ts"]),
            )
        elif known_version != room_version:
            raise ValueError(f"room {room_id!r} is version {known_version}, not {room_version}")
        state_key = event.get("state_key")
        self.db.execute(
            "INSERT INTO events (event_id, room_id, type, state_key, sender, depth,"
            " origin_server_ts, rejected, soft_failed, outlier, json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event_id,
                room_id,
                event["type"],
                state_key,
                event["sender"],
                event["depth"],
                event["origin_server_ts"],
                int(rejected),
                int(soft_failed or outlier),
                int(outlier),
                encode_canonical_json(event).decode("utf-8"),
            ),
        )
        self.db.executemany(
            "INSERT INTO event_auth_edges (auth_event_id, event_id) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            [(auth_id, event_id) for auth_id in get_event_reference_ids(event.get("auth_events"))],
        )
        if outlier:
            return True
        before, after = self._groups.add_event(
            room_id, room_version, event, event_id, rejected=rejected
        )
        if rejected or soft_failed:
            # A rejected event is kept (so it is not fetched again) but changes nothing; a
            # soft-failed one is kept and served, but is not state, extremity or timeline.
            return True
        self._update_forward_extremities(room_id, event, event_id)
        self._update_current_state(room_id, room_version, event, event_id, before, after)
        self.db.execute(
            "UPDATE rooms SET change_seq = change_seq + 1 WHERE room_id = ?", (room_id,)
        )
        return True

    def _update_current_state(
        self,
        room_id: str,
        room_version: str,
        event: JsonDict,
        event_id: str,
        before: int | None,
        after: int | None,
    ) -> None:
        """Current state = the resolution of the states after the forward extremities (SS
        §Room State Resolution); current_state mirrors it, changed by the difference only."""
        current = self.db.execute(
            "SELECT current_state_group FROM rooms WHERE room_id = ?", (room_id,)
        ).fetchone()[0]
        extremities = [
            row[0]
            for row in self.db.execute(
                "SELECT event_id FROM forward_extremities WHERE room_id = ?", (room_id,)
            )
        ]
        new = self._groups.resolve(
            room_id, room_version, self._groups.get_groups_after(extremities)
        )
        if new is None or new == current:
            return
        changes: dict[StateKey, str | None]
        state_key = event.get("state_key")
        if current is not None and current == before and new == after:
            # The usual case: the event extends the current state by itself.
            changes = {(event["type"], state_key): event_id} if isinstance(state_key, str) else {}
        else:
            changes = (
                self._groups.get_changes_between(current, new)
                if current is not None
                else get_state_changes(
                    self.get_current_state_ids(room_id), self._groups.get_state_ids(new)
                )
            )
        self._apply_current_state_changes(room_id, changes, {event_id: event})
        self.db.execute(
            "UPDATE rooms SET current_state_group = ? WHERE room_id = ?", (new, room_id)
        )

    def _apply_current_state_changes(
        self, room_id: str, changes: dict[StateKey, str | None], known: dict[str, JsonDict]
    ) -> None:
        missing = [e for e in changes.values() if e is not None and e not in known]
        loaded = {**known, **self.get_events_by_id(missing)}
        for (event_type, state_key), event_id in changes.items():
            membership: str | None = None
            if event_type == "m.room.member":
                content = loaded[event_id].get("content") if event_id is not None else None
                value = content.get("membership") if isinstance(content, dict) else None
                membership = value if isinstance(value, str) else None
                row = self.db.execute(
                    "SELECT membership FROM current_state"
                    " WHERE room_id = ? AND type = 'm.room.member' AND state_key = ?",
                    (room_id, state_key),
                ).fetchone()
                previous = None if row is None else row[0]
                self._count_joined_member(room_id, state_key, previous, membership)
            if event_id is None:
                self.db.execute(
                    "DELETE FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?",
                    (room_id, event_type, state_key),
                )
                continue
            self.db.execute(
                "INSERT INTO current_state (room_id, type, state_key, event_id, membership)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, type, state_key)"
                " DO UPDATE SET event_id = excluded.event_id, membership = excluded.membership",
                (room_id, event_type, state_key, event_id, membership),
            )

    def _count_joined_member(
        self, room_id: str, user_id: str, previous: str | None, membership: str | None
    ) -> None:
        if (previous == "join") == (membership == "join") or ":" not in user_id:
            return
        server_name = get_domain(user_id)  # APPX §User Identifiers: @localpart:server_name
        if membership == "join":
            self.db.execute(
                "INSERT INTO room_server_joined_members (room_id, server_name, joined_count)"
                " VALUES (?, ?, 1) ON CONFLICT (room_id, server_name)"
                " DO UPDATE SET joined_count = room_server_joined_members.joined_count + 1",
                (room_id, server_name),
            )
            return
        self.db.execute(
            "UPDATE room_server_joined_members SET joined_count = joined_count - 1"
            " WHERE room_id = ? AND server_name = ?",
            (room_id, server_name),
        )
        self.db.execute(
            "DELETE FROM room_server_joined_members"
            " WHERE room_id = ? AND server_name = ? AND joined_count <= 0",
            (room_id, server_name),
        )

    def _update_forward_extremities(self, room_id: str, event: JsonDict, event_id: str) -> None:
        # The new event replaces the extremities it points at (v1/v2 pairs or v3+ ids).
        self.db.executemany(
            "DELETE FROM forward_extremities WHERE room_id = ? AND event_id = ?",
            [(room_id, prev_id) for prev_id in get_event_reference_ids(event.get("prev_events"))],
        )
        self.db.execute(
            "INSERT INTO forward_extremities (room_id, event_id) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            (room_id, event_id),
        )


# One (room_id, type, state_key) primary-key seek, repeated and UNION ALL'd for several keys.
_CURRENT_STATE_ROW_SQL = (
    "SELECT cs.type, cs.state_key, cs.event_id, e.json FROM current_state AS cs"
    " JOIN events AS e ON e.event_id = cs.event_id"
    " WHERE cs.room_id = ? AND cs.type = ? AND cs.state_key = ?"
)


def _room_id_of(event: JsonDict, event_id: str) -> str:
    room_id = event.get("room_id")
    if isinstance(room_id, str):
        return room_id
    if event.get("type") == "m.room.create" and event_id.startswith("$"):
        # rooms/v12: the create event carries no room_id; the room id is its event id, "!" sigil
        return "!" + event_id[1:]
    raise ValueError(f"event {event_id!r} has no room_id")


def _parse(text: str) -> JsonDict:
    value: JsonDict = json.loads(text)
    return value
