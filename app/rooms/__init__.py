"""The room service: read a hosted room, apply matrix/'s rules, write it back, fan it out.

Modules, each one hop from the operation that uses it:
- ``hosted``: lookups of rooms hosted here (404s, residency, the server ACL gate, state reads);
- ``ingest``: the one intake for every event another server sends (``accept_pdu``);
- ``persist``: the one write step shared by received and local events (store, then fan out);
- ``membership``: the make_/send_ join and leave handshakes a resident answers;
- ``transactions``: inbound ``/send`` transactions, each PDU through the intake;
- ``admin``: local events built, authorised and signed by this server (CLI, tests, bench).

``Resident`` holds the per-worker dependencies; the logic stays in module functions.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from signedjson.types import SigningKey

from app.federation.client import FederationClient
from app.federation.keyring import Keyring
from app.rooms.hosted import RoomHeads
from app.rooms.persist import PduQueue
from db.store import Store


@dataclass(frozen=True)
class Resident:
    """What the room service needs of a worker: built once by the app's lifespan."""

    store: Store
    server_name: str
    keyring: Keyring
    outbox: PduQueue
    clock: Callable[[], int]
    # Signs what this server vouches for in a received event (a restricted join's authoriser)
    signing_key: SigningKey
    # Signed requests to other servers (fetching the events a transaction refers to); None
    # where nothing may be fetched.
    federation: FederationClient | None = None
    # The bound on one /get_missing_events request (config missing_events_timeout_s)
    missing_events_timeout_s: float = 10.0
    # What the template endpoints read of each room, kept while the room is unchanged
    heads: RoomHeads = field(default_factory=RoomHeads)
