"""The one write step for accepted events, received or local: store, then fan out after commit."""

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from app.metrics import DATABASE_WRITE_DURATION, KNOCKS
from db.store import Store
from matrix.destinations import get_event_destinations
from matrix.types import JsonDict

logger = logging.getLogger(__name__)


class PduQueue(Protocol):
    """Told of destinations with new deliveries in the outbox, once they are committed
    (app/federation/sender.py delivers them)."""

    def notify(self, destinations: Iterable[str]) -> None: ...


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
    """Store ``events`` of one room and their deliveries in one write transaction: each newly
    stored event is queued in the durable outbox for the servers matrix/destinations.py names
    for it (those with a joined user in the state just before it, plus the invitee's server when
    it rescinds an invite, never this one nor ``origin``, which has it already). Once it
    commits, ``outbox`` is told which destinations have new deliveries.

    SS §Joining Rooms (which §Knocking follows): the resident sends an event it accepted on the
    sender's behalf to the other servers in the room; taking the servers from before the event
    is Synapse's rule (a kicked user's server hears of its kick). Nothing is queued for events
    already stored, nor when the transaction rolls back.
    """
    started = time.perf_counter()
    stored = _persist(store, outbox, events, room_id, room_version, server_name, origin)
    DATABASE_WRITE_DURATION.labels("events").observe(time.perf_counter() - started)
    if origin is not None:
        received = sum(
            is_new and _is_knock(event) for is_new, (event, _id) in zip(stored, events, strict=True)
        )
        if received:
            KNOCKS.labels("received").inc(received)
    return stored


def _is_knock(event: JsonDict) -> bool:
    content = event.get("content")
    return (
        event.get("type") == "m.room.member"
        and isinstance(content, dict)
        and content.get("membership") == "knock"
    )


def _persist(
    store: Store,
    outbox: PduQueue | None,
    events: Sequence[tuple[JsonDict, str]],
    room_id: str,
    room_version: str,
    server_name: str,
    origin: str | None,
) -> list[bool]:
    with store.write_transaction(room_id):
        if outbox is None:
            return store.persist_events(events, room_version)
        stored: list[bool] = []
        notified: set[str] = set()
        for event, event_id in events:
            # Read the state before each event (the previous one of the batch may change it)
            destinations = get_event_destinations(
                event,
                store.get_joined_servers(room_id),
                server_name=server_name,
                origin=origin,
                target_member_before=_target_member(store, room_id, event),
            )
            is_new = store.persist_events([(event, event_id)], room_version)[0]
            stored.append(is_new)
            if is_new and destinations:
                store.enqueue_delivery(destinations, event_id, room_id)
                notified.update(destinations)
        if notified:
            store.call_after_commit(lambda: outbox.notify(sorted(notified)))
    return stored


def _target_member(store: Store, room_id: str, event: JsonDict) -> tuple[str, JsonDict] | None:
    """(event id, event) of the target's current membership, read only for a leave by someone
    else (the only events whose destinations depend on it)."""
    state_key = event.get("state_key")
    content = event.get("content")
    if (
        event.get("type") != "m.room.member"
        or not isinstance(state_key, str)
        or state_key == event.get("sender")
        or not isinstance(content, dict)
        or content.get("membership") != "leave"
    ):
        return None
    return store.get_current_state_events_with_ids(room_id, [("m.room.member", state_key)]).get(
        ("m.room.member", state_key)
    )
