"""The one write step for accepted events, received or local: store, then fan out after commit."""

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from db.store import Store
from matrix.types import JsonDict

logger = logging.getLogger(__name__)


class PduQueue(Protocol):
    """Delivery of events to other servers (app/federation/sender.py implements it)."""

    def send_pdu(self, destinations: Iterable[str], pdu: JsonDict) -> None: ...


def persist_and_fan_out(
    store: Store,
    outbox: PduQueue | None,
    events: Sequence[tuple[JsonDict, str]],
    room_id: str,
    room_version: str,
    *,
    server_name: str,
    origin: str | None = None,
) -> list[bool]:
    """Store ``events`` of one room in one write transaction; once it commits, queue each newly
    stored event in ``outbox`` for every server with a joined user in the room before the first
    of them, but this one and ``origin`` (the server that sent it has it already).

    SS §Joining Rooms (which §Knocking follows): the resident sends an event it accepted on the
    sender's behalf to the other servers in the room; taking the servers from before the event
    is Synapse's rule (a kicked user's server hears of its kick). Nothing is queued for events
    already stored, nor when the transaction rolls back.
    """
    with store.write_transaction():
        destinations = (
            sorted(set(store.get_joined_servers(room_id)) - {server_name, origin})
            if outbox is not None
            else []
        )
        stored = store.persist_events(events, room_version)
        if outbox is not None and destinations:
            new = [
                event for (event, _event_id), is_new in zip(events, stored, strict=True) if is_new
            ]
            store.call_after_commit(lambda: _queue(outbox, destinations, new))
    return stored


def _queue(outbox: PduQueue, destinations: list[str], events: list[JsonDict]) -> None:
    for event in events:
        outbox.send_pdu(destinations, event)
