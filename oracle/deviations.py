"""Known Synapse 1.163.2 deviations from the spec's auth rules: one predicate per deviation.

Each predicate gets a disagreement (our verdict, Synapse's, the case) and says whether that
deviation explains it. Where Synapse deviates from the spec, matrix/ follows the spec and the
difference is expected; a disagreement no predicate explains fails the oracle run. Clauses:
matrix-org/matrix-spec content/rooms/fragments/*auth-rules*.md (rule numbers as in rooms/v11).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from matrix.types import JsonDict

_PL_FUNCTIONS = {
    "get_user_power_level",
    "get_named_level",
    "get_send_level",
    "_can_send_event",
    "_check_power_levels",
    "_is_membership_change_allowed",
}
_LEVEL_KEYS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "kick",
    "redact",
    "invite",
)


@dataclass(frozen=True)
class Disagreement:
    ours: str  # "allow" | "deny"
    synapse: JsonDict  # the worker's answer: verdict, reason, where
    case: JsonDict

    @property
    def event(self) -> JsonDict:
        return self.case["event"]

    @property
    def content(self) -> JsonDict:
        content = self.event.get("content")
        return content if isinstance(content, dict) else {}

    @property
    def create(self) -> JsonDict:
        return next(e for e in self.case["store"] if e["type"] == "m.room.create")

    def auth_events(self) -> list[JsonDict]:
        refs = self.event.get("auth_events", [])
        ids = {r[0] if isinstance(r, list) else r for r in refs}
        return [e for e in self.case["store"] if _event_id(e, self.case) in ids]


def _event_id(event: JsonDict, case: JsonDict) -> str:
    from matrix.events import compute_event_id
    from matrix.room_versions import KNOWN_ROOM_VERSIONS

    return compute_event_id(event, KNOWN_ROOM_VERSIONS[case["room_version"]])


def _domain(user_id: object) -> str | None:
    return user_id.split(":", 1)[1] if isinstance(user_id, str) and ":" in user_id else None


def _synapse_denies(d: Disagreement) -> bool:
    return d.ours == "allow" and d.synapse["verdict"] == "deny"


def _federate_target(d: Disagreement) -> bool:
    """Rule 3 (v12 4) checks only the *sender*'s domain against m.federate: false. Synapse's
    _is_membership_change_allowed also refuses a member event whose *target* is on another
    server, so an unfederated room's own users cannot even invite a remote user."""
    federate = d.create["content"].get("m.federate", True)
    creator_domain = _domain(d.create["sender"])
    return (
        _synapse_denies(d)
        and d.event["type"] == "m.room.member"
        and federate is not True
        and _domain(d.event["sender"]) == creator_domain
        and _domain(d.event.get("state_key")) != creator_domain
    )


def _federate_not_boolean(d: Disagreement) -> bool:
    """Rule 3: only m.federate *false* keeps other servers out. Synapse's _can_federate treats
    any value that is not ``true`` ("false", 0, null, "true") as false."""
    federate = d.create["content"].get("m.federate", True)
    return (
        _synapse_denies(d)
        and not isinstance(federate, bool)
        and _domain(d.event["sender"]) != _domain(d.create["sender"])
    )


def _authoriser_signature_joins_only(d: Disagreement) -> bool:
    """Rule 4.2 (v8+): a member event with join_authorised_via_users_server must be signed by
    that user's server, whatever its membership. Synapse (validate_event_for_room_version)
    checks it on joins only, so it lets a knock, invite, leave or ban without it through."""
    authoriser = d.content.get("join_authorised_via_users_server")
    return (
        d.ours == "deny"
        and d.synapse["verdict"] == "allow"
        and d.event["type"] == "m.room.member"
        and d.content.get("membership") != "join"
        and authoriser is not None
        and _domain(authoriser) not in d.event.get("signatures", {})
    )


def _python_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


def _is_spec_level(value: object, room_version: str) -> bool:
    """Whether the spec reads ``value`` as a level the way Python's int() does."""
    from matrix.auth_rules import _parse_level
    from matrix.room_versions import KNOWN_ROOM_VERSIONS

    parsed = _parse_level(value, KNOWN_ROOM_VERSIONS[room_version])
    return parsed is not None and parsed == _python_int(value)


def _level_values(content: object) -> Iterator[object]:
    if not isinstance(content, dict):
        return
    for key in _LEVEL_KEYS:
        if key in content:
            yield content[key]
    for key in ("users", "events", "notifications"):
        inner = content.get(key)
        if isinstance(inner, dict):
            yield from inner.values()


def _power_levels_contents(d: Disagreement) -> list[object]:
    contents = [e.get("content") for e in d.auth_events() if e["type"] == "m.room.power_levels"]
    if d.event["type"] == "m.room.power_levels":
        contents.append(d.event.get("content"))
    return contents


def _python_int_levels(d: Disagreement) -> bool:
    """Power levels are integers (v10+), or in v1-v9 also strings of an optional sign and
    decimal digits with optional surrounding whitespace (frag/v1-stringy-power-levels); booleans
    are not numbers. Synapse reads every level with Python's int(): true is 1, "5_0" is 50,
    "\u0665\u0660" (Arabic-Indic digits) is 50, and in v1-v9 it accepts such users levels."""
    if d.synapse["verdict"] == "crash":
        return False
    return any(
        _python_int(value) is not None and not _is_spec_level(value, d.case["room_version"])
        for content in _power_levels_contents(d)
        for value in _level_values(content)
    )


def _redaction_without_redacts(d: Disagreement) -> bool:
    """v1-v2 rule 11: a redaction below the redact level is allowed only if the redacted
    event's id has the redaction's domain; with no (string) redacts there is nothing to match,
    so it is rejected. Synapse's check_redaction allows it."""
    return (
        d.case["room_version"] in ("1", "2")
        and d.event["type"] == "m.room.redaction"
        and not isinstance(d.event.get("redacts"), str)
        and d.ours == "deny"
        and d.synapse["verdict"] == "allow"
    )


def _crash_on_junk_power_levels(d: Disagreement) -> bool:
    """Levels the spec ignores or rejects (v1-v9 a first event's junk "ban": "x", a map that is
    not an object in the current state) make Synapse raise TypeError/ValueError/AttributeError
    from int() or .get() instead of deciding; the spec's rules decide these events."""
    return (
        d.synapse["verdict"] == "crash"
        and d.ours == "allow"
        and d.synapse["where"] in _PL_FUNCTIONS
        and any(
            any(True for _ in _maps(content))
            or any(
                not _is_spec_level(value, d.case["room_version"])
                for value in _level_values(content)
            )
            for content in _power_levels_contents(d)
        )
    )


def _maps(content: object) -> Iterator[object]:
    """users / events / notifications values that are not objects."""
    if isinstance(content, dict):
        for key in ("users", "events", "notifications"):
            if key in content and not isinstance(content[key], dict):
                yield content[key]


@dataclass(frozen=True)
class Deviation:
    name: str
    clause: str
    predicate: Callable[[Disagreement], bool]


DEVIATIONS = (
    Deviation("m.federate target check", "v1+ rule 3 (v12 rule 4)", _federate_target),
    Deviation("non-boolean m.federate", "v1+ rule 3 (v12 rule 4)", _federate_not_boolean),
    Deviation(
        "authoriser signature on joins only",
        "v8+ rule 4.2 (v12 5.2)",
        _authoriser_signature_joins_only,
    ),
    Deviation(
        "Python int() power levels",
        "frag/v1-stringy-power-levels, v10+ rule 9.1-9.3",
        _python_int_levels,
    ),
    Deviation("v1/v2 redaction without redacts", "v1-v2 rule 11", _redaction_without_redacts),
    Deviation(
        "crash on junk power levels",
        "v1-v9 rule 10.1-10.2, m.room.power_levels schema",
        _crash_on_junk_power_levels,
    ),
)


def classify(d: Disagreement) -> str | None:
    """The first known deviation that explains ``d``, or None."""
    return next((dev.name for dev in DEVIATIONS if dev.predicate(d)), None)


__all__: list[Any] = ["DEVIATIONS", "Deviation", "Disagreement", "classify"]
