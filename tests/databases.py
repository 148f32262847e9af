"""The database each test runs on: SQLite files (`make test`), or databases of a throwaway
PostgreSQL cluster (`make test-postgres`: ANTECHAMBER_TEST_DATABASE=postgresql)."""

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

BACKEND = os.environ.get("ANTECHAMBER_TEST_DATABASE", "sqlite")
if BACKEND not in {"sqlite", "postgresql"}:
    raise RuntimeError(f"ANTECHAMBER_TEST_DATABASE={BACKEND!r}: expected sqlite or postgresql")
POSTGRES = BACKEND == "postgresql"


def database_for(directory: Path | str, name: str = "antechamber") -> str:
    """The database a test keeps under ``directory``: SQLite's file ``<name>.db`` there (the
    server's default for a data dir when ``name`` is antechamber), or the same PostgreSQL
    database each time it is asked for the same directory and name."""
    if not POSTGRES:
        return str(Path(directory) / f"{name}.db")
    return get_cluster().database_for(str(Path(directory).resolve()), name)


def data_dir_env(data_dir: Path | str) -> dict[str, str]:
    """ANTECHAMBER_* variables for a server keeping its data in ``data_dir``: SQLite there by
    default, or its own PostgreSQL database."""
    env = {"ANTECHAMBER_DATA_DIR": str(data_dir)}
    if POSTGRES:
        env["ANTECHAMBER_DATABASE_URL"] = database_for(data_dir)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package")
    return found


class PostgresCluster:
    """initdb in a temporary folder, started on a free loopback port, removed at exit. Run as
    the ``postgres`` user when we are root (PostgreSQL refuses to run as root). Built for
    speed, not durability (fsync off): it is thrown away."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="antechamber-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "antechamber"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            _pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        )
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "start",
        )
        self._names: dict[tuple[str, str], str] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._template: str | None = None
        self._created: list[str] = []

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, timeout=120)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _template_database(self) -> str:
        # Every test database is a copy of one with the migrations applied (CREATE DATABASE
        # ... TEMPLATE is far faster than migrating each).
        if self._template is None:
            from db.store import Store

            self.admin("DROP DATABASE IF EXISTS migrated")
            self.admin("CREATE DATABASE migrated TEMPLATE template0")
            Store.open(self.url("migrated")).close()
            self._template = "migrated"
        return self._template

    def database_for(self, directory: str, name: str) -> str:
        with self._lock:
            key = (directory, name)
            if key not in self._names:
                self._count += 1
                database = f"t{self._count}"
                self.admin(
                    f"CREATE DATABASE {database} TEMPLATE {self._template_database()}"
                    " STRATEGY FILE_COPY"
                )
                self._names[key] = database
                self._created.append(database)
            return self.url(self._names[key])

    def created(self) -> list[str]:
        with self._lock:
            return list(self._created)

    def drop(self, databases: list[str]) -> None:
        with self._lock:
            self._created = [d for d in self._created if d not in databases]
            self._names = {k: v for k, v in self._names.items() if v not in databases}
        for database in databases:
            self.admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


_cluster: PostgresCluster | None = None
_cluster_lock = threading.Lock()


def get_cluster() -> PostgresCluster:
    global _cluster
    with _cluster_lock:
        if _cluster is None:
            _cluster = PostgresCluster()
            atexit.register(_cluster.stop)
        return _cluster


# PostgreSQL pools opened by this process (db/dialect.py), closed before their database is
# dropped: a test that never closes its Store would otherwise leave a pool retrying.
_open: "weakref.WeakSet[object]" = weakref.WeakSet()


def track_open_databases() -> None:
    from db import dialect

    original = dialect.PostgresDatabase.__init__

    def init(self: dialect.PostgresDatabase, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        _open.add(self)

    dialect.PostgresDatabase.__init__ = init  # type: ignore[method-assign]


@contextlib.contextmanager
def dropped_after() -> Iterator[None]:
    """Close the PostgreSQL pools a test opened and drop the databases it made, once it ends
    (those of wider fixtures, made before it began, stay); a no-op on SQLite."""
    if not POSTGRES:
        yield
        return
    pools = set(_open)
    databases = set(_cluster.created()) if _cluster is not None else set()
    try:
        yield
    finally:
        for database in set(_open) - pools:
            with contextlib.suppress(Exception):
                database.close()  # type: ignore[attr-defined]
        if _cluster is not None:
            _cluster.drop([d for d in _cluster.created() if d not in databases])


def postgres_installed() -> bool:
    """Whether Debian's postgresql package (initdb, pg_ctl) is on this machine."""
    try:
        _pg_bin("initdb")
    except RuntimeError:
        return False
    return True
