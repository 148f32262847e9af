"""Synapse's auth verdicts for oracle cases, run by the Synapse virtualenv's python (JSON lines).

Reads one case per line on stdin ({"room_version", "store": [pdu...], "event": pdu}) and answers
one line per case: {"verdict": "allow" | "deny" | "crash" | "invalid", "reason": ..., "where": ...}.
It runs what Synapse runs on a received PDU (federation_event._check_event_auth): the
room-version validation, then the state-independent and the state-dependent auth rules, against
the event's own auth events. This file imports Synapse and nothing of the project's; the
project never imports it.
"""

import json
import sys
import traceback
from collections.abc import Collection, Coroutine
from typing import Any

from synapse import event_auth
from synapse.api.errors import SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import EventBase, make_event_from_dict


class _Store:
    """The one store method the state-independent rules call: every event the case holds."""

    def __init__(self, events: dict[str, EventBase]) -> None:
        self.events = events

    async def get_events(
        self, event_ids: Collection[str], *args: Any, **kwargs: Any
    ) -> dict[str, EventBase]:
        return {i: self.events[i] for i in event_ids if i in self.events}


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Drive a coroutine that never suspends (the store above answers at once)."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise AssertionError("the auth rules suspended on a store that never blocks")


def _where(exc: BaseException) -> str:
    """The innermost Synapse function on the traceback: the crash site."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "synapse" in f.filename]
    return frames[-1].name if frames else "?"


def verdict(case: dict[str, Any]) -> dict[str, str]:
    room_version = KNOWN_ROOM_VERSIONS[case["room_version"]]
    try:
        events = {}
        for pdu in case["store"]:
            stored = make_event_from_dict(pdu, room_version)
            events[stored.event_id] = stored
        event = make_event_from_dict(case["event"], room_version)
    except Exception as exc:  # an event Synapse's parser refuses (a v12 create with a room_id)
        return {"verdict": "invalid", "reason": repr(exc), "where": _where(exc)}
    try:
        event_auth.validate_event_for_room_version(event)
        _run(event_auth.check_state_independent_auth_rules(_Store(events), event))
        auth_events = [events[i] for i in event.auth_event_ids() if i in events]
        event_auth.check_state_dependent_auth_rules(event, auth_events)
    except SynapseError as exc:  # AuthError is one: a rejection
        return {"verdict": "deny", "reason": str(exc), "where": _where(exc)}
    except RuntimeError as exc:
        if "unknown auth event" in str(exc):
            # Synapse fetches missing auth events before this point; none exist, so it rejects
            return {"verdict": "deny", "reason": str(exc), "where": _where(exc)}
        return {"verdict": "crash", "reason": repr(exc), "where": _where(exc)}
    except Exception as exc:
        return {"verdict": "crash", "reason": repr(exc), "where": _where(exc)}
    return {"verdict": "allow", "reason": "", "where": ""}


def main() -> None:
    for line in sys.stdin:
        sys.stdout.write(json.dumps(verdict(json.loads(line))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
