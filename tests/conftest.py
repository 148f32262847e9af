"""Shared fixtures: a fresh configuration and data dir, the app, and a test client."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.config import Config, load_config
from app.main import create_app
from tests.databases import (
    POSTGRES,
    data_dir_env,
    dropped_after,
    get_cluster,
    postgres_installed,
    track_open_databases,
)

SERVER_NAME = "antechamber.test"
FIXED_NOW_MS = 1_790_000_000_000


if POSTGRES:
    track_open_databases()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not POSTGRES:
        return
    skip = pytest.mark.skip(reason="checks SQLite itself (its query plans, locks or files)")
    for item in items:
        if item.get_closest_marker("sqlite"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _test_database() -> Iterator[None]:
    """On PostgreSQL, each test's databases are dropped when it ends."""
    with dropped_after():
        yield


@pytest.fixture
def pg_cluster():
    """The throwaway PostgreSQL cluster, whichever backend the suite runs on (for the tests of
    PostgreSQL itself and of moving to it). Skipped where Debian's postgresql is not installed,
    except in CI, which installs it (.ci/run)."""
    if not postgres_installed():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return get_cluster()


class FakeClock:
    """A clock the tests move by hand (milliseconds)."""

    def __init__(self, now_ms: int = FIXED_NOW_MS):
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
            **data_dir_env(tmp_path / "data"),
            "ANTECHAMBER_VALIDATE_RESPONSES": "true",
        }
    )


@pytest.fixture
def client(config: Config, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(config, clock=clock), raise_server_exceptions=False) as test_client:
        yield test_client


# A remote homeserver for X-Matrix tests -------------------------------------------------------

KEY_FETCH_TIMEOUT_S = 2.0


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory):
    """A throwaway CA and a loopback certificate, shared by every remote in the session."""
    from tests.remote import TestCA

    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def remote(test_ca, clock: FakeClock):
    """A real fake homeserver with its own key, serving its key document over HTTPS."""
    from tests.remote import RemoteHomeserver

    with RemoteHomeserver(test_ca, clock) as server:
        yield server


@pytest.fixture
def federation_config(tmp_path: Path, test_ca) -> Config:
    """``config`` that trusts the test CA and gives up on key fetches quickly."""
    return load_config(
        environ={
            "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
            **data_dir_env(tmp_path / "data"),
            "ANTECHAMBER_VALIDATE_RESPONSES": "true",
            "ANTECHAMBER_FEDERATION_CA_FILE": str(test_ca.ca_file),
            "ANTECHAMBER_KEY_FETCH_TIMEOUT_S": str(KEY_FETCH_TIMEOUT_S),
            "ANTECHAMBER_MISSING_EVENTS_TIMEOUT_S": str(KEY_FETCH_TIMEOUT_S),
            # The remote homeserver listens on loopback, which is denied by default.
            "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
        }
    )
