"""The two databases under the Store, SQLite (embedded) and PostgreSQL (shared), and every
difference between them in one place: connecting, placeholders, locks, transactions, DDL."""

import contextlib
import functools
import hashlib
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import sqlite_utils

Params = Sequence[Any]

# One advisory lock key for schema migrations (any constant no room key collides with in
# practice: room keys are hashes).
_MIGRATION_LOCK = 0x616E7465  # "ante"


class Rows(Protocol):
    """What a statement gives back: sqlite3's cursor, or PostgreSQL's rows read at once."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class DatabaseError(Exception):
    """A database URL that cannot be used: one line naming it, shown instead of a trace."""


class Database(Protocol):
    """One connection's worth of SQL in SQLite's dialect (``?`` placeholders, ``ON CONFLICT``
    upserts), run on either backend."""

    dialect: str
    url: str

    def execute(self, sql: str, params: Params = ()) -> Rows: ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    def stream(self, sql: str, size: int = 2000) -> Iterator[list[Any]]: ...

    @property
    def in_transaction(self) -> bool: ...

    def begin_write(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def lock(self, key: str) -> None: ...

    def lock_migrations(self) -> None: ...

    def unlock_migrations(self) -> None: ...

    def run_ddl(self, script: str) -> None: ...

    def server_name_sql(self, column: str) -> str: ...

    def close(self) -> None: ...


def open_database(target: str | Path) -> Database:
    """Connect to ``target``: a ``postgresql://`` URL, a ``sqlite:///`` URL, or a file path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text)
    if text.startswith("sqlite:///"):
        # As SQLAlchemy spells it: sqlite:///relative/path, sqlite:////absolute/path.
        return SqliteDatabase(Path(unquote(text[len("sqlite:///") :])))
    if "://" in text:
        raise DatabaseError(f"database_url {redact_url(text)!r}: not sqlite:/// or postgresql://")
    return SqliteDatabase(Path(text) if text != ":memory:" else text)


def redact_url(url: str) -> str:
    """``url`` with its password hidden, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def lock_key(key: str) -> int:
    """A signed 64-bit advisory lock number for ``key`` (stable across processes and hosts,
    unlike Python's hash)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big", signed=True)


# SQLite ------------------------------------------------------------------------------------


class SqliteDatabase:
    """One sqlite3 connection in WAL mode; a write transaction is BEGIN IMMEDIATE, which takes
    the database's one write lock at once, so room locks are already held."""

    dialect = "sqlite"

    def __init__(self, path: Path | str):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{path}"
        self.conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
        self.utils = sqlite_utils.Database(self.conn)
        # WAL: readers never block the writer; synchronous=NORMAL is durable across process
        # crashes (a kill -9 loses nothing committed), which is what a crash mid-write needs.
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=30000")

    def execute(self, sql: str, params: Params = ()) -> Rows:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self.conn.executemany(sql, rows)

    def stream(self, sql: str, size: int = 2000) -> Iterator[list[Any]]:
        """The rows of a large read, ``size`` at a time (not all held at once)."""
        cursor = self.conn.execute(sql)
        while batch := cursor.fetchmany(size):
            yield batch

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def begin_write(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def lock(self, key: str) -> None:
        """Nothing to take: BEGIN IMMEDIATE holds the whole database's write lock."""

    def lock_migrations(self) -> None:
        """Nothing to take: each migration runs in its own BEGIN IMMEDIATE."""

    def unlock_migrations(self) -> None:
        """Nothing was taken."""

    def run_ddl(self, script: str) -> None:
        for statement in split_statements(script):
            self.conn.execute(statement)

    def server_name_sql(self, column: str) -> str:
        """The server name of a user id column: all after the first colon (APPX §User
        Identifiers)."""
        return f"substr({column}, instr({column}, ':') + 1)"

    def close(self) -> None:
        self.conn.close()


# PostgreSQL --------------------------------------------------------------------------------


class PostgresDatabase:
    """psycopg 3 on a psycopg_pool pool. One connection is borrowed and kept (the Store is
    used by one thread at a time, so statements cost one round trip and nothing more); when it
    breaks (the server restarted, the network dropped it) it goes back to the pool, which
    discards it, and the next statement borrows a fresh one. Room locks are
    transaction-scoped advisory locks, so one writer per room holds across every instance
    sharing the database."""

    dialect = "postgresql"

    def __init__(self, url: str, *, connect_timeout_s: int = 10):
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        self._errors = psycopg.Error
        # A first connection of our own: a wrong URL, a refused password or a missing database
        # is said at once and in one line, where the pool would keep retrying it.
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout_s) as conn:
                row = conn.execute(
                    "SELECT datcollate, datctype, pg_encoding_to_char(encoding) FROM pg_database"
                    " WHERE datname = current_database()"
                ).fetchone()
        except psycopg.Error as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
            raise DatabaseError(f"cannot connect to {redact_url(url)}: {reason}") from None
        # Synapse refuses a database whose collation is not C (its ORDER BYs on ids and state
        # keys assume byte order, as SQLite's do); so do we, with the same advice.
        if row is not None and (row[0] != "C" or row[1] != "C" or row[2] != "UTF8"):
            raise DatabaseError(
                f"database {redact_url(url)} has LC_COLLATE {row[0]!r}, LC_CTYPE {row[1]!r},"
                f" encoding {row[2]!r}; create it with ENCODING 'UTF8' LC_COLLATE 'C'"
                " LC_CTYPE 'C' TEMPLATE template0"
            )
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=2,  # the kept connection, and the migrations' lock while they run
            timeout=30.0,
            kwargs={"autocommit": True, "connect_timeout": connect_timeout_s},
            name="antechamber",
            open=True,
        )
        self._held: Any = None
        self._in_transaction = False

    def _conn(self) -> Any:
        held = self._held
        if held is not None and not held.broken and not held.closed:
            return held
        if held is not None:
            self._held = None
            self.pool.putconn(held)  # broken: the pool drops it and opens another
        self._held = self.pool.getconn()
        return self._held

    def execute(self, sql: str, params: Params = ()) -> Rows:
        return _PgRows.read(self._conn().execute(_to_pyformat(sql), params))

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        if rows:
            with self._conn().cursor() as cursor:
                cursor.executemany(_to_pyformat(sql), rows)

    def stream(self, sql: str, size: int = 2000) -> Iterator[list[Any]]:
        """The rows of a large read, ``size`` at a time (psycopg's chunked results: not all
        held at once)."""
        batch: list[Any] = []
        with self._conn().cursor() as cursor:
            for row in cursor.stream(_to_pyformat(sql), size=size):
                batch.append(row)
                if len(batch) >= size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def begin_write(self) -> None:
        self._conn().execute("BEGIN")
        self._in_transaction = True

    def commit(self) -> None:
        self._in_transaction = False
        self._conn().execute("COMMIT")

    def rollback(self) -> None:
        self._in_transaction = False
        held = self._held
        if held is None or held.broken or held.closed:
            return  # the transaction died with its connection
        # Broken now, perhaps: then the next statement borrows another connection.
        with contextlib.suppress(self._errors):
            held.execute("ROLLBACK")

    def lock(self, key: str) -> None:
        """Hold ``key``'s lock until this transaction ends (pg_advisory_xact_lock)."""
        self.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(key),))

    def lock_migrations(self) -> None:
        # A session lock on a second connection, held while every migration runs: two
        # instances starting together apply each migration exactly once.
        self._migration_conn = self.pool.getconn()
        self._migration_conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))

    def unlock_migrations(self) -> None:
        conn = self._migration_conn
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
        finally:
            self.pool.putconn(conn)

    def run_ddl(self, script: str) -> None:
        for statement in split_statements(to_postgres_ddl(script)):
            self.execute(statement)

    def server_name_sql(self, column: str) -> str:
        """The server name of a user id column: all after the first colon (APPX §User
        Identifiers; ``strpos`` is PostgreSQL's ``instr``)."""
        return f"substr({column}, strpos({column}, ':') + 1)"

    def close(self) -> None:
        if self._in_transaction:
            self.rollback()
        held, self._held = self._held, None
        if held is not None:
            self.pool.putconn(held)
        self.pool.close()


class _PgRows:
    """A statement's rows, read before its connection goes back to the pool."""

    __slots__ = ("_next", "rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int):
        self.rows = rows
        self.rowcount = rowcount
        self._next = 0

    @classmethod
    def read(cls, cursor: Any) -> "_PgRows":
        rows = cursor.fetchall() if cursor.description is not None else []
        return cls(rows, cursor.rowcount)

    def fetchone(self) -> Any:
        if self._next >= len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self.rows[self._next :], len(self.rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


@functools.lru_cache(maxsize=4096)
def _to_pyformat(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (no ``?`` or ``%`` occurs in our SQL's
    literals; a ``%`` is doubled all the same)."""
    return sql.replace("%", "%%").replace("?", "%s")


# DDL ---------------------------------------------------------------------------------------

_DDL_REWRITES = [
    # A rowid alias becomes an identity column; explicit ids (db migrate) are still accepted.
    (
        re.compile(r"\bINTEGER PRIMARY KEY(?: AUTOINCREMENT)?"),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    # SQLite's INTEGER is 64-bit; PostgreSQL's is 32 (milliseconds since 1970 do not fit).
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
]


def to_postgres_ddl(script: str) -> str:
    """A migration script written for SQLite, in PostgreSQL's dialect."""
    for pattern, replacement in _DDL_REWRITES:
        script = pattern.sub(replacement, script)
    return script


def split_statements(script: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside our SQL literals)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def now_s() -> int:
    return int(time.time())
