"""Room and event factories: real rooms built through RoomAdmin, members local and remote."""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import pytest
from signedjson.key import decode_signing_key_base64, get_verify_key
from signedjson.types import SigningKey, VerifyKey

from app.rooms.admin import RoomAdmin, Signer
from db.store import Store
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from matrix.types import JsonDict
from tests.conftest import FIXED_NOW_MS, SERVER_NAME

REMOTE_SERVER_NAME = "remote.test"

# Fixed seeds so signatures and v3+ event ids are reproducible run to run.
LOCAL_KEY_SEED = "T42rnziLZsy4ZzMutUMK/H0hT0tisgxaEqRfIJ1owS4"  # sha256("antechamber local")
REMOTE_KEY_SEED = "znlz+SZctqnEzbsqR1zZt7si7xll8as/arbyy5defQI"  # sha256("antechamber remote")

# Every room version, with readable ids ("v7"), for pytest.mark.parametrize.
ALL_VERSIONS = [pytest.param(v, id=f"v{v}") for v in KNOWN_ROOM_VERSIONS]
KNOCK_VERSIONS = [
    pytest.param(v, id=f"v{v}") for v, rv in KNOWN_ROOM_VERSIONS.items() if rv.knock_join_rule
]


def make_signing_key(seed: str = LOCAL_KEY_SEED, version: str = "k1") -> SigningKey:
    key: SigningKey = decode_signing_key_base64("ed25519", version, seed)
    return key


class SigningServer(Protocol):
    """Anything with a server name and its signing key (FakeServer, tests.remote's homeserver)."""

    @property
    def server_name(self) -> str: ...

    @property
    def signing_key(self) -> SigningKey: ...


def signer_of(server: SigningServer) -> Signer:
    return Signer(server.server_name, server.signing_key)


@dataclass(frozen=True)
class FakeServer:
    """Another homeserver as far as events go: a name and its own signing key."""

    server_name: str
    signing_key: SigningKey

    @property
    def signer(self) -> Signer:
        return Signer(self.server_name, self.signing_key)

    @property
    def key_id(self) -> str:
        return f"{self.signing_key.alg}:{self.signing_key.version}"

    @property
    def verify_key(self) -> VerifyKey:
        verify_key: VerifyKey = get_verify_key(self.signing_key)
        return verify_key

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"


def make_remote_server(
    server_name: str = REMOTE_SERVER_NAME, seed: str = REMOTE_KEY_SEED
) -> FakeServer:
    return FakeServer(server_name, make_signing_key(seed, "r1"))


def make_room_admin(
    store: Store,
    server_name: str = SERVER_NAME,
    signing_key: SigningKey | None = None,
    clock: Callable[[], int] = lambda: FIXED_NOW_MS,
) -> RoomAdmin:
    return RoomAdmin(store, server_name, signing_key or make_signing_key(), clock)


def create_room(
    admin: RoomAdmin,
    version: str = "12",
    join_rule: str = "knock",
    *,
    name: str | None = "Knock knock",
    topic: str | None = None,
    allow_rooms: Iterable[str] = (),
) -> str:
    """A room created by @admin on ``admin``'s server; returns its room id."""
    return admin.create_room(version, join_rule, name=name, topic=topic, allow_rooms=allow_rooms)


def add_member(
    admin: RoomAdmin, room_id: str, user_id: str, *, remote: SigningServer | None = None
) -> str:
    """Join ``user_id`` whatever the join rule: invited by the creator first unless public.

    A remote user's join is signed by ``remote`` (that server's key), as it would be over
    federation. Returns the join's event id.
    """
    join_rules = admin.store.get_current_state_event(room_id, "m.room.join_rules", "")
    if join_rules is None or join_rules["content"].get("join_rule") != "public":
        admin.invite_user(room_id, user_id)
    return admin.join_user(room_id, user_id, signer=None if remote is None else signer_of(remote))


def add_knock(admin: RoomAdmin, room_id: str, user_id: str, *, remote: SigningServer) -> str:
    """A knock stored directly (as if it had arrived), signed by the knocker's server."""
    return admin.knock_user(room_id, user_id, signer=signer_of(remote))


def stored_events(store: Store, room_id: str) -> list[tuple[str, JsonDict]]:
    """Every (event id, PDU) of a room in stream order (tests only: a scan)."""
    rows = store.db.execute(
        "SELECT event_id, json FROM events WHERE room_id = ? ORDER BY stream_ordering", (room_id,)
    ).fetchall()
    return [(row[0], json.loads(row[1])) for row in rows]


class OutboxView:
    """The durable outbox as (destinations, PDU) per event, in stream order (tests only)."""

    def __init__(self, store: Store):
        self.store = store

    @property
    def pending(self) -> list[tuple[list[str], JsonDict]]:
        rows = self.store.db.execute(
            "SELECT o.stream_ordering, o.destination, e.json FROM outbox AS o"
            " JOIN events AS e ON e.stream_ordering = o.stream_ordering"
            " ORDER BY o.stream_ordering, o.destination"
        ).fetchall()
        grouped: dict[int, tuple[list[str], JsonDict]] = {}
        for ordering, destination, text in rows:
            grouped.setdefault(ordering, ([], json.loads(text)))[0].append(destination)
        return list(grouped.values())

    def clear(self) -> None:
        with self.store.write_transaction():
            self.store.db.execute("DELETE FROM outbox")
