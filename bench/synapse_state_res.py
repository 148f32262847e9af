"""Synapse's own state resolution on a bench/state_res.py input, run by Synapse's virtualenv.

Reads one JSON document on stdin ({"room_version", "room_id", "events": [pdu...], "state_sets":
[[[type, state_key, event_id]...]...], "repeat"}) and writes one JSON line: the resolved state
(the same triples), the seconds of each of ``repeat`` calls of
synapse.state.v2.resolve_events_with_store, and the seconds of those spent in the in-memory
store below. That store stands in for Synapse's database: events by id, and the auth chain
difference (with v2.1's conflicted subgraph) computed from auth_events links with memoised auth
chains, as the chain cover index would answer it. Each call gets a fresh store and an empty
event map, so nothing is reused between calls. This file imports Synapse and nothing of the
project's; the project never imports it.
"""

import gc
import json
import sys
import time
from collections.abc import Collection, Coroutine
from typing import Any

# synapse.event_auth before synapse.state: the other order is a circular import in 1.163.
from synapse import event_auth  # noqa: F401
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import EventBase, make_event_from_dict
from synapse.state.v2 import resolve_events_with_store
from synapse.storage.databases.main.event_federation import StateDifference


class _Clock:
    """State res only ever sleeps 0 s, to yield to the reactor; here there is none."""

    async def sleep(self, duration: Any) -> None:
        return None


class _Store:
    """Synapse's StateResolutionStore protocol over a dict of events, timing itself."""

    def __init__(self, events: dict[str, EventBase]) -> None:
        self.events = events
        self.chains: dict[str, frozenset[str]] = {}
        self.seconds = 0.0

    def _chain(self, event_id: str) -> frozenset[str]:
        """Every event reachable from ``event_id`` through auth_events (memoised)."""
        if event_id in self.chains:
            return self.chains[event_id]
        chain: set[str] = set()
        event = self.events.get(event_id)
        stack = list(event.auth_event_ids()) if event is not None else []
        while stack:
            auth_id = stack.pop()
            if auth_id in chain:
                continue
            chain.add(auth_id)
            if auth_id in self.chains:
                chain.update(self.chains[auth_id])
                continue
            auth_event = self.events.get(auth_id)
            if auth_event is not None:
                stack.extend(auth_event.auth_event_ids())
        self.chains[event_id] = frozenset(chain)
        return self.chains[event_id]

    async def get_events(
        self, event_ids: Collection[str], allow_rejected: bool = False
    ) -> dict[str, EventBase]:
        started = time.perf_counter()
        found = {i: self.events[i] for i in event_ids if i in self.events}
        self.seconds += time.perf_counter() - started
        return found

    async def get_auth_chain_difference(
        self,
        room_id: str,
        state_sets: list[set[str]],
        conflicted_state: set[str] | None,
        additional_backwards_reachable_conflicted_events: set[str] | None,
    ) -> StateDifference:
        started = time.perf_counter()
        # A state set's full auth chain includes its own events (as Synapse's tests expect).
        chains = [
            set(state_set).union(*(self._chain(e) for e in state_set)) for state_set in state_sets
        ]
        difference = set().union(*chains) - chains[0].intersection(*chains[1:])
        subgraph = None
        if conflicted_state is not None:
            # rooms/v12: events on auth_events paths between conflicted events, ends included.
            below = set().union(*(self._chain(e) for e in conflicted_state))
            subgraph = set(conflicted_state) | {
                x for x in below if self._chain(x) & conflicted_state
            }
        self.seconds += time.perf_counter() - started
        return StateDifference(auth_difference=difference, conflicted_subgraph=subgraph)


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never suspends (the store and clock above answer at once)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("state resolution suspended on a store that never blocks")


def main() -> None:
    case = json.load(sys.stdin)
    room_version = KNOWN_ROOM_VERSIONS[case["room_version"]]
    events: dict[str, EventBase] = {}
    for pdu in case["events"]:
        event = make_event_from_dict(pdu, room_version)
        events[event.event_id] = event
    state_sets = [
        {(event_type, state_key): event_id for event_type, state_key, event_id in state_set}
        for state_set in case["state_sets"]
    ]
    seconds, store_seconds = [], []
    resolved: Any = None
    for _ in range(case["repeat"]):
        store = _Store(events)
        gc.collect()  # each call starts with the same heap (as bench/state_res.py does)
        started = time.perf_counter()
        resolved = _run(
            resolve_events_with_store(
                _Clock(), case["room_id"], room_version, state_sets, None, store
            )
        )
        seconds.append(time.perf_counter() - started)
        store_seconds.append(store.seconds)
    answer = {
        "resolved": sorted([key[0], key[1], event_id] for key, event_id in resolved.items()),
        "seconds": seconds,
        "store_seconds": store_seconds,
        "event_ids": sorted(events),
    }
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
