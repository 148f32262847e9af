"""State resolution of room versions 1-12: algorithms v1, v2 and v2.1 (MSC4297), with no I/O."""

# Sources: content/rooms/v1.md §State resolution (v1), content/rooms/fragments/v2-state-res.md
# (v2, room versions 2-11) and content/rooms/v12.md §State resolution (v2.1). "v2 §Definitions"
# and "v2 §Algorithm n" below name the fragment's subsections and numbered steps.

import hashlib
import heapq
import math
from collections import ChainMap
from collections.abc import (
    Callable,
    Collection,
    Hashable,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
    Set,
)
from typing import TypeVar, cast

from matrix.auth_rules import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    POWER_LEVELS_KEY,
    StateKey,
    check_auth_rules,
    get_auth_event_keys,
    get_power_level,
)
from matrix.errors import MatrixError
from matrix.events import get_event_reference_ids
from matrix.room_versions import RoomVersion, StateResVersion
from matrix.types import JsonDict

StateIds = Mapping[StateKey, str]
GetEvent = Callable[[str], JsonDict | None]
GetAuthChain = Callable[[str], Set[str]]

_K = TypeVar("_K", bound=Hashable)


def get_auth_event_ids(event: Mapping[str, object]) -> list[str]:
    """The ids in ``auth_events``: bare ids (v3+) or the first of [id, hashes] pairs (v1-v2)."""
    return get_event_reference_ids(event.get("auth_events"))


def make_auth_chain_getter(get_event: GetEvent) -> GetAuthChain:
    """A memoising ``get_auth_chain`` that walks ``auth_events`` links; unknown events end a walk.

    v2 §Definitions, Auth chain: every event reachable through auth_events (so an event is in its
    own chain only on a cycle, which event ids made of hashes rule out).
    """
    chains: dict[str, frozenset[str]] = {}

    def get_auth_chain(event_id: str) -> Set[str]:
        if event_id in chains:
            return chains[event_id]
        chain: set[str] = set()
        event = get_event(event_id)
        stack = get_auth_event_ids(event) if event is not None else []
        while stack:
            auth_id = stack.pop()
            if auth_id in chain:
                continue
            chain.add(auth_id)
            if auth_id in chains:
                chain.update(chains[auth_id])
                continue
            auth_event = get_event(auth_id)
            if auth_event is not None:
                stack.extend(get_auth_event_ids(auth_event))
        chains[event_id] = frozenset(chain)
        return chains[event_id]

    return get_auth_chain


def _separate(
    state_sets: Sequence[StateIds], *, missing_conflicts: bool
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """The unconflicted state map and, per conflicted key, its event ids.

    v2 §Definitions: a key is unconflicted when every state set maps it to the same event, so a key
    missing from some set is conflicted. rooms/v1: a conflict is two sets giving a key different
    events, so a key missing from some sets is not one.
    """
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key in sorted({key for state_set in state_sets for key in state_set}):
        values = [state_set.get(key) for state_set in state_sets]
        event_ids = {value for value in values if value is not None}
        if len(event_ids) == 1 and (None not in values or not missing_conflicts):
            unconflicted[key] = event_ids.pop()
        else:
            conflicted[key] = event_ids
    return unconflicted, conflicted


def get_auth_difference(state_sets: Sequence[StateIds], get_auth_chain: GetAuthChain) -> set[str]:
    """v2 §Definitions, Auth difference: union(C) - intersection(C) over the full
    auth chains C of the state sets.

    Like Synapse and Ruma, a state set's full auth chain includes the set's own events (Synapse's
    AuthChainDifferenceTestCase expects exactly that).
    """
    chains = [
        set(state_set.values()).union(*(get_auth_chain(e) for e in state_set.values()))
        for state_set in state_sets
    ]
    if not chains:
        return set()
    return set[str]().union(*chains) - chains[0].intersection(*chains[1:])


def get_conflicted_subgraph(conflicted_ids: Set[str], get_auth_chain: GetAuthChain) -> set[str]:
    """rooms/v12 §Definitions, Conflicted state subgraph: the events on auth_events paths between
    conflicted events, endpoints included."""
    below = set().union(*(get_auth_chain(event_id) for event_id in conflicted_ids))
    # x lies on a path c1 -> ... -> x -> ... -> c2 when x is in c1's auth chain and c2 in x's
    return set(conflicted_ids) | {x for x in below if get_auth_chain(x) & conflicted_ids}


def reverse_topological_sort(
    graph: Mapping[str, Collection[str]], key: Callable[[str], _K]
) -> list[str]:
    """Kahn's algorithm, earliest first, taking the smallest ``key`` among the ready events.

    ``graph`` maps each event to the events it cites (its auth events); citations of events outside
    ``graph`` are ignored, and events on a cycle (impossible with hash ids) are left out.
    """
    waiting = {node: {dep for dep in deps if dep in graph} for node, deps in graph.items()}
    dependents: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in waiting.items():
        for dep in deps:
            dependents[dep].append(node)
    ready = [(key(node), node) for node, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        ordered.append(node)
        for dependent in dependents[node]:
            waiting[dependent].discard(node)
            if not waiting[dependent]:
                heapq.heappush(ready, (key(dependent), dependent))
    return ordered


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[StateIds],
    get_event: GetEvent,
    *,
    get_auth_chain: GetAuthChain | None = None,
    is_rejected: Callable[[str], bool] | None = None,
) -> dict[StateKey, str]:
    """The resolution of ``state_sets`` (maps (type, state_key) -> event id) by the room version's
    algorithm.

    ``get_event`` returns an event by id (events need no ``event_id`` field), or None when it is not
    known: unknown events take no part. ``get_auth_chain`` defaults to walking auth_events through
    ``get_event``. ``is_rejected`` names events rejected against their auth chain, which the
    iterative auth checks never use as auth events (v2 §Rejected events); v1 uses neither, as it
    checks against the state being resolved alone. Signatures are taken as already checked when
    the events were received.
    """
    if room_version.state_res is StateResVersion.V1:
        return _resolve_v1(room_version, state_sets, get_event)
    chain = get_auth_chain if get_auth_chain is not None else make_auth_chain_getter(get_event)
    return _Resolver(room_version, get_event, chain, is_rejected).resolve(state_sets)


def resolve_separated(
    room_version: RoomVersion,
    unconflicted: StateIds,
    conflicted: Mapping[StateKey, Set[str]],
    auth_difference: Set[str],
    get_event: GetEvent,
    *,
    get_auth_chain: GetAuthChain | None = None,
    is_rejected: Callable[[str], bool] | None = None,
) -> dict[StateKey, str]:
    """v2 / v2.1 (room versions 2-12) from inputs already separated: the unconflicted state map
    (read key by key only, so it may be lazy), the conflicted event ids per key and the auth
    difference. Returns the resolved keys the unconflicted map does not hold; the resolution is
    ``{**unconflicted, **returned}``. A caller that computes the separation from deltas (db/)
    avoids reading whole states; ``resolve_state`` is the same on full state sets.
    """
    if room_version.state_res is StateResVersion.V1:
        raise ValueError("rooms/v1 state resolution has no separated form")
    chain = get_auth_chain if get_auth_chain is not None else make_auth_chain_getter(get_event)
    resolver = _Resolver(room_version, get_event, chain, is_rejected)
    return resolver.resolve_separated(unconflicted, conflicted, auth_difference)


def _state_key_of(event: JsonDict) -> StateKey | None:
    event_type, state_key = event.get("type"), event.get("state_key")
    if isinstance(event_type, str) and isinstance(state_key, str):
        return (event_type, state_key)
    return None


def _int_field(event: JsonDict, name: str) -> int:
    value = event.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _is_power_event(key: StateKey, event: JsonDict) -> bool:
    """v2 §Definitions, Power events; like Synapse and Ruma, the create event counts as one too."""
    if key in (POWER_LEVELS_KEY, JOIN_RULES_KEY, CREATE_KEY):
        return True
    if key[0] != "m.room.member":
        return False
    content = event.get("content")
    membership = content.get("membership") if isinstance(content, dict) else None
    return membership in ("leave", "ban") and event.get("sender") != key[1]


def _signatures_checked(server_name: str) -> bool:
    # State resolution re-applies the auth rules to events whose signatures were verified on
    # receipt (SS §Checks performed on receipt of a PDU, step 2), so they all count as signed.
    return True


class _Resolver:
    """One v2 / v2.1 resolution: the inputs and the auth chains it has already walked."""

    def __init__(
        self,
        room_version: RoomVersion,
        get_event: GetEvent,
        get_auth_chain: GetAuthChain,
        is_rejected: Callable[[str], bool] | None,
    ) -> None:
        self.room_version = room_version
        self.get_event = get_event
        self.get_auth_chain = get_auth_chain
        self.is_rejected = is_rejected if is_rejected is not None else lambda _event_id: False
        self.v2_1 = room_version.state_res is StateResVersion.V2_1

    def resolve(self, state_sets: Sequence[StateIds]) -> dict[StateKey, str]:
        unconflicted, conflicted = _separate(state_sets, missing_conflicts=True)
        if not conflicted:
            return unconflicted
        resolved = self.resolve_separated(
            unconflicted, conflicted, get_auth_difference(state_sets, self.get_auth_chain)
        )
        return {**unconflicted, **resolved}

    def resolve_separated(
        self,
        unconflicted: StateIds,
        conflicted: Mapping[StateKey, Set[str]],
        auth_difference: Set[str],
    ) -> dict[StateKey, str]:
        """Algorithm 1-5 on separated inputs; returns the keys the iterative auth checks set
        that the unconflicted state map does not hold (it has the last word on its own keys).

        ``unconflicted`` is only ever read key by key, so a caller may pass a lazy mapping.
        """
        conflicted_ids = set[str]().union(*conflicted.values())
        # v2 §Definitions, Full conflicted set: conflicted state set + auth difference; rooms/v12
        # adds the conflicted state subgraph
        full = conflicted_ids | auth_difference
        if self.v2_1:
            full |= get_conflicted_subgraph(conflicted_ids, self.get_auth_chain)
        # only known state events take part: nothing else can enter the state
        known: dict[str, tuple[StateKey, JsonDict]] = {}
        for event_id in full:
            event = self.get_event(event_id)
            key = _state_key_of(event) if event is not None else None
            if event is not None and key is not None:
                known[event_id] = (key, event)
        # v2 §Algorithm 1: power events of the full conflicted set and their auth chains within it
        power = {
            event_id for event_id, (key, event) in known.items() if _is_power_event(key, event)
        }
        power |= {a for p in power for a in self.get_auth_chain(p) if a in known}
        graph = {event_id: self.get_auth_chain(event_id) for event_id in power}
        levels = {event_id: self._sender_level(known[event_id][1]) for event_id in power}
        ordered_power = reverse_topological_sort(
            graph,
            key=lambda e: (-levels[e], _int_field(known[e][1], "origin_server_ts"), e),
        )
        # v2 §Algorithm 2 from the unconflicted state map; rooms/v12 Algorithm 2: from empty state
        # (writes go to the ChainMap's first map: the map below is only read)
        below = cast("MutableMapping[StateKey, str]", {} if self.v2_1 else unconflicted)
        resolved = self._iterative_auth_checks(
            [(e, *known[e]) for e in ordered_power], ChainMap({}, below)
        )
        # v2 §Algorithm 3: the other events by mainline ordering on the resolved power levels
        others = self._mainline_order(
            {e: known[e][1] for e in known.keys() - power}, resolved.get(POWER_LEVELS_KEY)
        )
        # v2 §Algorithm 4
        resolved = self._iterative_auth_checks([(e, *known[e]) for e in others], resolved)
        # v2 §Algorithm 5: the unconflicted state map has the last word
        return {key: e for key, e in resolved.maps[0].items() if key not in unconflicted}

    def _auth_events_by_key(self, event: JsonDict) -> dict[StateKey, tuple[str, JsonDict]]:
        by_key: dict[StateKey, tuple[str, JsonDict]] = {}
        for auth_id in get_auth_event_ids(event):
            auth_event = self.get_event(auth_id)
            key = _state_key_of(auth_event) if auth_event is not None else None
            if auth_event is not None and key is not None:
                by_key[key] = (auth_id, auth_event)
        return by_key

    def _create_event(self, event: JsonDict) -> JsonDict | None:
        # rooms/v12: the room id names the create event, which auth_events no longer cite
        room_id = event.get("room_id")
        if self.room_version.room_id_from_create_event and isinstance(room_id, str):
            return self.get_event("$" + room_id[1:])
        return None

    def _sender_level(self, event: JsonDict) -> int | float:
        """v2 §Definitions, Reverse topological power ordering: the sender's level by its
        auth_events (infinite for rooms/v12 creators)."""
        state = {
            key: auth_event for key, (_, auth_event) in self._auth_events_by_key(event).items()
        }
        sender = event.get("sender")
        if not isinstance(sender, str):
            return 0
        return get_power_level(sender, state, self.room_version, self._create_event(event))

    def _iterative_auth_checks(
        self,
        events: Iterable[tuple[str, StateKey, JsonDict]],
        resolved: ChainMap[StateKey, str],
    ) -> ChainMap[StateKey, str]:
        """v2 §Definitions, Iterative auth checks: apply each event the auth rules allow (into
        ``resolved``'s first map, over the state below it)."""
        for event_id, key, event in events:
            from_auth_events = self._auth_events_by_key(event)
            auth_state: dict[StateKey, JsonDict] = {}
            for auth_key in get_auth_event_keys(event, self.room_version):
                state_event = self.get_event(resolved[auth_key]) if auth_key in resolved else None
                if state_event is not None:
                    auth_state[auth_key] = state_event
                elif auth_key in from_auth_events:
                    # a key missing from the state comes from the event's auth_events, unless the
                    # auth event was rejected
                    auth_id, auth_event = from_auth_events[auth_key]
                    if not self.is_rejected(auth_id):
                        auth_state[auth_key] = auth_event
            try:
                check_auth_rules(
                    event,
                    auth_state,
                    self.room_version,
                    create_event=self._create_event(event),
                    is_signed_by=_signatures_checked,
                    # the id the create event is known by here, not recomputed from its JSON
                    create_event_id=resolved.get(CREATE_KEY),
                )
            except MatrixError:
                continue  # events the auth rules reject are ignored
            resolved[key] = event_id
        return resolved

    def _power_levels_auth_event(self, event: JsonDict) -> str | None:
        for auth_id, auth_event in self._auth_events_by_key(event).values():
            if _state_key_of(auth_event) == POWER_LEVELS_KEY:
                return auth_id
        return None

    def _power_levels_chain(self, event: JsonDict) -> list[str]:
        """e₁, e₂, ...: each the power levels event among the previous one's auth_events."""
        chain: list[str] = []
        next_id = self._power_levels_auth_event(event)
        while next_id is not None and next_id not in chain:  # a cycle ends the walk
            chain.append(next_id)
            next_event = self.get_event(next_id)
            next_id = self._power_levels_auth_event(next_event) if next_event else None
        return chain

    def _mainline_order(
        self, events: Mapping[str, JsonDict], power_levels_id: str | None
    ) -> list[str]:
        """v2 §Definitions, Mainline ordering based on ``power_levels_id``."""
        mainline: list[str] = []
        if power_levels_id is not None:
            power_levels = self.get_event(power_levels_id)
            mainline = [power_levels_id]
            if power_levels is not None:
                mainline += self._power_levels_chain(power_levels)
        positions: dict[str, int] = {}
        for index, event_id in enumerate(mainline):
            positions.setdefault(event_id, index)  # a cycle back to P0 keeps P0's index

        def position(event: JsonDict) -> float:
            # the first eⱼ (j >= 1) on the mainline gives its index i there; otherwise ∞
            for event_id in self._power_levels_chain(event):
                if event_id in positions:
                    return positions[event_id]
            return math.inf

        keyed = {
            event_id: (-position(event), _int_field(event, "origin_server_ts"), event_id)
            for event_id, event in events.items()
        }
        # the greater mainline position first, then origin_server_ts, then event id
        return sorted(keyed, key=keyed.__getitem__)


def _resolve_v1(
    room_version: RoomVersion, state_sets: Sequence[StateIds], get_event: GetEvent
) -> dict[StateKey, str]:
    """rooms/v1 §State resolution."""
    # rooms/v1: R starts as the union of the states without the conflicting events
    resolved, conflicted_ids = _separate(state_sets, missing_conflicts=False)
    conflicted: dict[StateKey, list[tuple[str, JsonDict]]] = {}
    for key, event_ids in conflicted_ids.items():
        known = [(e, event) for e in sorted(event_ids) if (event := get_event(e)) is not None]
        if len(known) == 1:
            resolved[key] = known[0][0]  # Synapse: a conflict with one known event is none
        elif known:
            conflicted[key] = known
    # rooms/v1: power levels, then join rules, then memberships, then everything else; each pass
    # checks against R as the earlier passes left it
    passes: list[Callable[[StateKey], bool]] = [
        lambda key: key == POWER_LEVELS_KEY,
        lambda key: key[0] == "m.room.join_rules",
        lambda key: key[0] == "m.room.member",
    ]
    for in_pass in passes:
        chosen = {
            key: _resolve_v1_auth_events(room_version, key, events, resolved, get_event)
            for key, events in conflicted.items()
            if in_pass(key)
        }
        resolved.update(chosen)
        for key in chosen:
            del conflicted[key]
    resolved.update(
        {
            key: _resolve_v1_other_events(room_version, events, resolved, get_event)
            for key, events in conflicted.items()
        }
    )
    return resolved


def _v1_order(events: list[tuple[str, JsonDict]]) -> list[tuple[str, JsonDict]]:
    # rooms/v1: ascending depth, then descending sha1(event_id) (two stable sorts)
    def sha1(item: tuple[str, JsonDict]) -> str:
        return hashlib.sha1(item[0].encode("utf-8"), usedforsecurity=False).hexdigest()

    by_hash = sorted(events, key=sha1, reverse=True)
    return sorted(by_hash, key=lambda item: _int_field(item[1], "depth"))


def _v1_allowed(
    room_version: RoomVersion, event: JsonDict, state: StateIds, get_event: GetEvent
) -> bool:
    auth_state: dict[StateKey, JsonDict] = {}
    for key in get_auth_event_keys(event, room_version):
        state_event = get_event(state[key]) if key in state else None
        if state_event is not None:
            auth_state[key] = state_event
    try:
        check_auth_rules(
            event,
            auth_state,
            room_version,
            is_signed_by=_signatures_checked,
            create_event_id=state.get(CREATE_KEY),
        )
    except MatrixError:
        return False
    return True


def _resolve_v1_auth_events(
    room_version: RoomVersion,
    key: StateKey,
    events: list[tuple[str, JsonDict]],
    resolved: StateIds,
    get_event: GetEvent,
) -> str:
    ordered = _v1_order(events)
    # rooms/v1: the first event goes into R; each next one replaces it while the auth rules allow
    # it in R, and the first refusal ends the pass
    state = dict(resolved)
    chosen = ordered[0][0]
    for event_id, event in ordered[1:]:
        state[key] = chosen
        if not _v1_allowed(room_version, event, state, get_event):
            break
        chosen = event_id
    return chosen


def _resolve_v1_other_events(
    room_version: RoomVersion,
    events: list[tuple[str, JsonDict]],
    resolved: StateIds,
    get_event: GetEvent,
) -> str:
    # rooms/v1: the highest depth and lowest sha1(event_id) that passes the auth rules in R
    ordered = list(reversed(_v1_order(events)))
    for event_id, event in ordered:
        if _v1_allowed(room_version, event, resolved, get_event):
            return event_id
    # the spec names no winner when none passes; Synapse takes the last, the lowest depth
    return ordered[-1][0]
