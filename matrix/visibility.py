"""Which events another server may read (CS §Room history visibility, as servers apply it)."""

from collections.abc import Iterable

from matrix.types import JsonDict

# m.room.history_visibility: "shared" when the room has none (CS §History visibility).
DEFAULT_HISTORY_VISIBILITY = "shared"


def get_history_visibility(event: JsonDict | None) -> str:
    """The room's history_visibility from its m.room.history_visibility event (or the default
    for a missing event or value)."""
    value = None if event is None else event.get("content", {}).get("history_visibility")
    return value if isinstance(value, str) else DEFAULT_HISTORY_VISIBILITY


def is_event_visible_to_server(history_visibility: str, memberships: Iterable[str]) -> bool:
    """Whether a server may see an event whose room had ``history_visibility`` at it, given the
    memberships its users had at that event.

    The spec defines visibility for users (CS §History visibility); for servers it is silent, so
    this is Synapse's ``filter_events_for_server``: ``world_readable`` and ``shared`` (and any
    unknown value) are visible; ``invited`` needs one of the server's users invited or joined at
    the event, ``joined`` one joined. An invisible event is served redacted, not left out.
    """
    if history_visibility not in ("invited", "joined"):
        return True
    wanted = {"join", "invite"} if history_visibility == "invited" else {"join"}
    return any(membership in wanted for membership in memberships)
