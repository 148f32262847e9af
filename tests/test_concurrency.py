"""200 concurrent send_knock requests against `antechamber serve` with two workers.

Same and different users, and identical resends racing each other: no 5xx, no "database is
locked", every accepted knock stored, and current state and forward extremities equal to what
the events table says they should be.
"""

import asyncio
import time

import httpx
import pytest

from tests import remote as remote_homeserver
from tests.databases import database_for
from tests.remote import RemoteHomeserver
from tests.server_process import (
    ServerProcess,
    check_consistency,
    check_integrity,
    make_knock_event,
    send_knock,
    stored_event_ids,
    wall_clock_ms,
)

pytestmark = pytest.mark.slow

DISTINCT_USERS = 120
REPEATED_USERS = 10  # each knocks 6 times, concurrently
RESENDS = 20  # identical requests sent twice at once


@pytest.fixture
def served(tmp_path):
    ca = remote_homeserver.TestCA(tmp_path / "ca")
    with RemoteHomeserver(ca, wall_clock_ms) as remote:
        server = ServerProcess(
            tmp_path / "data", ca.ca_file, extra_env={"ANTECHAMBER_RC_FEDERATION_ENABLED": "false"}
        )
        server.data_dir.mkdir()
        rooms = server.prepare_rooms(["12", "10"])
        server.start()
        try:
            yield server, remote, rooms
        finally:
            server.stop()


def test_concurrency_200_send_knocks_over_two_workers(served):
    server, remote, rooms = served
    started = time.monotonic()
    plan = [(rooms[i % 2], f"@u{i}:{remote.server_name}", "hi") for i in range(DISTINCT_USERS)]
    plan += [
        (rooms[0], f"@same{i}:{remote.server_name}", f"try {n}")
        for i in range(REPEATED_USERS)
        for n in range(6)
    ]

    async def main():
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            events = await asyncio.gather(
                *(make_knock_event(client, remote, room, user, why) for room, user, why in plan)
            )
            resent = events[:RESENDS]
            return events, await asyncio.gather(
                *(send_knock(client, remote, event, event_id) for event, event_id in events),
                *(send_knock(client, remote, event, event_id) for event, event_id in resent),
            )

    events, results = asyncio.run(main())
    assert len(results) == DISTINCT_USERS + REPEATED_USERS * 6 + RESENDS == 200
    statuses = sorted({r.status for r in results})
    assert statuses == [200], [(r.status, r.body) for r in results if r.status != 200][:5]
    assert "database is locked" not in server.log_text()
    assert all("database is locked" not in str(r.body) for r in results)

    database = database_for(server.data_dir)
    server.stop()
    assert check_integrity(database) == "ok"
    assert {event_id for _, event_id in events} <= stored_event_ids(database)
    assert check_consistency(database, rooms) == []
    assert time.monotonic() - started < 60
