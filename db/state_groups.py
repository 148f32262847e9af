"""State at every event: immutable state groups stored as skip deltas, and their resolution."""

# Layout (issue 13). A state group is one full room state, (type, state_key) -> event id, never
# changed once written. Every stored event has the group of the state before it and after it
# (event_state); a non-state event shares both, one state event adds one group. A group knows its
# position along the line of groups it was derived from (a root is 1) and is stored as its
# difference to the ancestor at position pos - lowbit(pos), a Fenwick-tree descent: that
# ancestor is none when pos is a power of two, and the group is then stored whole. Reading a
# group walks at most log2(pos) + 1 deltas; writing one reads the parent's descent down to that
# ancestor, lowbit(pos) rows in a line of single changes. A room whose state changes N times in a
# line keeps about N * log2(N) / 2 rows: 0.9 million for 100,000 joins, where Synapse's delta
# chains (at most 100 hops, then a full snapshot) would keep about N^2 / 200 = 50 million.
#
# Where a state is the resolution of several (an event with forked prev_events, a room with
# several forward extremities), matrix/state_res.py resolves their full maps and the result is
# stored as a group derived from the deepest of them.

import json
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from db.dialect import Database
from matrix.events import get_event_reference_ids
from matrix.room_versions import RoomVersion, StateResVersion, get_room_version
from matrix.state_res import (
    GetEvent,
    make_auth_chain_getter,
    resolve_separated,
    resolve_state,
)

StateKey = tuple[str, str]
StateIds = dict[StateKey, str]
# A group's difference to its base: None marks a key the group does not have.
Changes = Mapping[StateKey, str | None]

# Full maps kept per connection: resolution and diffs read the same few groups again and again.
_FULL_MAPS_CACHED = 8


class StateGroups:
    """Reads and writes of state groups on one connection. Groups are immutable, so what is
    read is cached; ``forget`` drops it all when a write transaction rolls back (an id written
    in it may be given again)."""

    def __init__(self, db: Database):
        self.db = db
        # id -> (base, position)
        self._meta: dict[int, tuple[int | None, int]] = {}
        self._full: OrderedDict[int, StateIds] = OrderedDict()
        self._resolved: dict[frozenset[int], int] = {}

    def forget(self) -> None:
        self._meta.clear()
        self._full.clear()
        self._resolved.clear()

    # Reads -----------------------------------------------------------------------------------

    def _get_meta(self, group: int) -> tuple[int | None, int]:
        meta = self._meta.get(group)
        if meta is None:
            row = self.db.execute(
                "SELECT base, position FROM state_groups WHERE id = ?", (group,)
            ).fetchone()
            if row is None:
                raise LookupError(f"no state group {group}")
            meta = (row[0], int(row[1]))
            self._meta[group] = meta
        return meta

    def get_position(self, group: int) -> int:
        return self._get_meta(group)[1]

    def _descent(self, group: int, above: int = 0) -> list[int]:
        """``group`` and its bases, nearest first, while their position is above ``above``."""
        chain = []
        current: int | None = group
        while current is not None:
            base, position = self._get_meta(current)
            if position <= above:
                break
            chain.append(current)
            current = base
        return chain

    def _deltas(
        self, groups: Sequence[int], where: str = "", parameters: Sequence[Any] = ()
    ) -> dict[int, list[tuple[str, str, str | None]]]:
        if not groups:
            return {}
        marks = ",".join("?" * len(groups))
        rows = self.db.execute(
            "SELECT group_id, type, state_key, event_id FROM state_group_deltas"
            f" WHERE group_id IN ({marks}){where}",
            [*groups, *parameters],
        ).fetchall()
        found: dict[int, list[tuple[str, str, str | None]]] = {group: [] for group in groups}
        for row in rows:
            found[row[0]].append((row[1], row[2], row[3]))
        return found

    def _overlay(
        self, chain: Sequence[int], deltas: Mapping[int, list[tuple[str, str, str | None]]]
    ) -> dict[StateKey, str | None]:
        """The deltas of ``chain`` (nearest first) merged, the nearest winning."""
        merged: dict[StateKey, str | None] = {}
        for group in reversed(chain):
            for event_type, state_key, event_id in deltas[group]:
                merged[(event_type, state_key)] = event_id
        return merged

    def get_state_ids(self, group: int | None) -> StateIds:
        """The full state of ``group`` (None: the empty state before a create event)."""
        if group is None:
            return {}
        cached = self._full.get(group)
        if cached is not None:
            self._full.move_to_end(group)
            return cached
        chain = self._descent(group)
        merged = self._overlay(chain, self._deltas(chain))
        state = {key: event_id for key, event_id in merged.items() if event_id is not None}
        self._full[group] = state
        while len(self._full) > _FULL_MAPS_CACHED:
            self._full.popitem(last=False)
        return state

    def get_state_ids_for_keys(self, group: int | None, keys: Iterable[StateKey]) -> StateIds:
        """The event ids of ``group`` for ``keys`` it has: one primary-key seek per key and
        delta, so its cost does not grow with the room."""
        wanted = list(dict.fromkeys(keys))
        if group is None or not wanted:
            return {}
        cached = self._full.get(group)
        if cached is not None:
            return {key: cached[key] for key in wanted if key in cached}
        chain = self._descent(group)
        order = {g: n for n, g in enumerate(chain)}
        marks = ",".join("?" * len(chain))
        sql = " UNION ALL ".join(
            [
                "SELECT group_id, type, state_key, event_id FROM state_group_deltas"
                f" WHERE group_id IN ({marks}) AND type = ? AND state_key = ?"
            ]
            * len(wanted)
        )
        parameters = [value for key in wanted for value in (*chain, *key)]
        best: dict[StateKey, tuple[int, str | None]] = {}
        for group_id, event_type, state_key, event_id in self.db.execute(sql, parameters):
            rank = order[group_id]
            key = (event_type, state_key)
            if key not in best or rank < best[key][0]:
                best[key] = (rank, event_id)
        return {key: value[1] for key, value in best.items() if value[1] is not None}

    def get_member_ids_of_server(self, group: int | None, server_name: str) -> StateIds:
        """The m.room.member entries of ``group`` for users of ``server_name``."""
        if group is None:
            return {}
        chain = self._descent(group)
        deltas = self._deltas(
            chain,
            f" AND type = 'm.room.member' AND {self.db.server_name_sql('state_key')} = ?",
            [server_name],
        )
        merged = self._overlay(chain, deltas)
        return {key: event_id for key, event_id in merged.items() if event_id is not None}

    def get_changes_between(self, old: int, new: int) -> dict[StateKey, str | None]:
        """What turns group ``old`` into group ``new`` (None for removed keys), read from the
        deltas above their deepest shared ancestor when they have one."""
        values = self._values_above_shared_ancestor([old, new])
        if values is None:
            return get_state_changes(self.get_state_ids(old), self.get_state_ids(new))
        before, after = values
        return {k: after[k] for k in after if before[k] != after[k]}

    def _values_above_shared_ancestor(
        self, groups: Sequence[int]
    ) -> list[dict[StateKey, str | None]] | None:
        """For the keys any delta above the groups' deepest shared descent ancestor touches
        (the only keys on which they can differ), each group's value (None: absent); None when
        their descents share no group."""
        descents = [self._descent(group) for group in groups]
        shared = set(descents[0]).intersection(*descents[1:])
        if not shared:
            return None
        anchor = max(shared, key=self.get_position)
        overlays = []
        for descent in descents:
            above = descent[: descent.index(anchor)]
            overlays.append(self._overlay(above, self._deltas(above)))
        keys = set[StateKey]().union(*overlays)
        at_anchor = self.get_state_ids_for_keys(anchor, keys)
        return [
            {k: overlay[k] if k in overlay else at_anchor.get(k) for k in keys}
            for overlay in overlays
        ]

    # Writes ----------------------------------------------------------------------------------

    def create_group(self, room_id: str, parent: int | None, changes: Changes) -> int:
        """A new group: ``parent``'s state with ``changes`` applied (None removes a key)."""
        if parent is None:
            position, base = 1, None
            delta: dict[StateKey, str | None] = dict(changes)
        else:
            position = self.get_position(parent) + 1
            target = position - (position & -position)
            chain = self._descent(parent, above=target)
            # The parent's descent ends just above the new group's base (or at the root).
            delta = self._overlay(chain, self._deltas(chain))
            delta.update(changes)
            base = self._get_meta(chain[-1])[0] if chain else parent
        if base is None:
            delta = {key: event_id for key, event_id in delta.items() if event_id is not None}
        group = int(
            self.db.execute(
                "INSERT INTO state_groups (room_id, base, position) VALUES (?, ?, ?) RETURNING id",
                (room_id, base, position),
            ).fetchone()[0]
        )
        self.db.executemany(
            "INSERT INTO state_group_deltas (group_id, type, state_key, event_id)"
            " VALUES (?, ?, ?, ?)",
            [(group, key[0], key[1], event_id) for key, event_id in delta.items()],
        )
        self._meta[group] = (base, position)
        return group

    def add_event(
        self,
        room_id: str,
        room_version: str,
        event: Mapping[str, Any],
        event_id: str,
        *,
        rejected: bool,
    ) -> tuple[int | None, int | None]:
        """Record the state before and after a newly stored event; return both groups.

        Before: the resolution of the states after its known prev_events (SS §Room State
        Resolution: "the state of the room before the event"). After: that plus the event, when
        it is an accepted state event (a rejected one changes nothing, SS §Rejection; a
        soft-failed one is counted, as Synapse does, for the events that may cite it).
        """
        prev_ids = get_event_reference_ids(event.get("prev_events"))
        before = self.resolve(room_id, room_version, self.get_groups_after(prev_ids))
        after = before
        state_key = event.get("state_key")
        if isinstance(state_key, str) and not rejected:
            after = self.create_group(room_id, before, {(str(event["type"]), state_key): event_id})
        self.db.execute(
            "INSERT INTO event_state (event_id, before_group, after_group) VALUES (?, ?, ?)",
            (event_id, before, after),
        )
        return before, after

    def get_groups_after(self, event_ids: Sequence[str]) -> list[int]:
        """The distinct groups of the state after each of ``event_ids`` that is known here
        (an event before the create event's has none), in the order given."""
        unique = list(dict.fromkeys(event_ids))
        if not unique:
            return []
        marks = ",".join("?" * len(unique))
        rows = dict(
            self.db.execute(
                f"SELECT event_id, after_group FROM event_state WHERE event_id IN ({marks})",
                unique,
            ).fetchall()
        )
        return list(dict.fromkeys(rows[e] for e in unique if e in rows and rows[e] is not None))

    def get_event_groups(self, event_id: str) -> tuple[int | None, int | None] | None:
        """(before, after) groups of a stored event, or None when it has none."""
        row = self.db.execute(
            "SELECT before_group, after_group FROM event_state WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1])

    # Resolution ------------------------------------------------------------------------------

    def resolve(self, room_id: str, room_version: str, groups: Sequence[int]) -> int | None:
        """The group holding the resolution of ``groups`` (SS §Room State Resolution, by the
        room version's algorithm), written when it is a new state."""
        unique = list(dict.fromkeys(groups))
        if not unique:
            return None
        if len(unique) == 1:
            return unique[0]
        key = frozenset(unique)
        known = self._resolved.get(key)
        if known is not None:
            return known
        version = get_room_version(room_version)
        if version is None:
            raise ValueError(f"unknown room version {room_version!r}")
        events: dict[str, dict[str, Any] | None] = {}

        def get_event(event_id: str) -> dict[str, Any] | None:
            if event_id not in events:
                row = self.db.execute(
                    "SELECT json FROM events WHERE event_id = ?", (event_id,)
                ).fetchone()
                events[event_id] = None if row is None else _loads(row[0])
            return events[event_id]

        def is_rejected(event_id: str) -> bool:
            row = self.db.execute(
                "SELECT rejected FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
            return row is not None and bool(row[0])

        found = None
        if version.state_res is not StateResVersion.V1:
            try:
                found = self._resolve_by_deltas(version, unique, get_event, is_rejected)
            except _TooFar:
                found = None
        if found is None:
            found = self._resolve_whole(version, unique, get_event, is_rejected)
        parent, changes = found
        group = self.create_group(room_id, parent, changes) if changes else parent
        self._resolved[key] = group
        return group

    def _resolve_whole(
        self,
        version: RoomVersion,
        groups: list[int],
        get_event: GetEvent,
        is_rejected: Callable[[str], bool],
    ) -> tuple[int, dict[StateKey, str | None]]:
        """Resolution on the full state maps (rooms/v1, and forks with no shared delta)."""
        maps = [self.get_state_ids(group) for group in groups]
        resolved = resolve_state(
            version,
            maps,
            get_event,
            get_auth_chain=make_auth_chain_getter(get_event),
            is_rejected=is_rejected,
        )
        # Derive the result from the deepest input, so its delta stays small.
        deepest = max(range(len(groups)), key=lambda n: self.get_position(groups[n]))
        return groups[deepest], get_state_changes(maps[deepest], resolved)

    def _resolve_by_deltas(
        self,
        version: RoomVersion,
        groups: list[int],
        get_event: GetEvent,
        is_rejected: Callable[[str], bool],
    ) -> tuple[int, dict[StateKey, str | None]]:
        """The same resolution read from the deltas above the groups' deepest shared ancestor
        in their descents, so its cost follows the size of the fork, not of the room.

        v2 §Definitions: only keys some delta above the anchor touches can differ; the auth
        difference is union - intersection of the full auth chains, and the events every state
        set shares (U) with their chains are in every chain, so it is computed from the
        differing events' chains, less what lies in U or in U's auth chain (asked through the
        event_auth_edges index, bounded).
        """
        values = self._values_above_shared_ancestor(groups)
        if values is None:
            raise _TooFar
        keys = set(values[0])
        conflicted: dict[StateKey, set[str]] = {}
        for k in keys:
            seen = {value[k] for value in values}
            if len(seen) > 1:
                conflicted[k] = {e for e in seen if e is not None}
        deepest = max(range(len(groups)), key=lambda n: self.get_position(groups[n]))
        if not conflicted:
            return groups[deepest], {}
        unconflicted = _SharedState(self, groups[0], conflicted)
        chain = make_auth_chain_getter(get_event)
        reach: list[set[str]] = []
        for value in values:
            differing = {e for e in (value[k] for k in conflicted) if e is not None}
            reach.append(differing.union(*(chain(e) for e in differing)))
        candidates = set[str]().union(*reach) - reach[0].intersection(*reach[1:])
        auth_difference = {
            x for x in candidates if not self._in_shared_chain(x, unconflicted, get_event)
        }
        resolved = resolve_separated(
            version,
            unconflicted,
            conflicted,
            auth_difference,
            get_event,
            get_auth_chain=chain,
            is_rejected=is_rejected,
        )
        # The result is unconflicted + resolved; the deepest input already holds the former.
        touched = set(conflicted) | set(resolved)
        before = {k: values[deepest][k] for k in conflicted}
        before.update(self.get_state_ids_for_keys(groups[deepest], touched - set(conflicted)))
        changes = {k: resolved.get(k) for k in touched if resolved.get(k) != before.get(k)}
        return groups[deepest], changes

    def _in_shared_chain(self, event_id: str, shared: "_SharedState", get_event: GetEvent) -> bool:
        """Whether ``event_id`` is one of the shared state events U or in their auth chain:
        a walk up the events citing it, stopped at the first one in U (bounded)."""
        if shared.holds(event_id, get_event):
            return True
        seen = {event_id}
        waiting = deque([event_id])
        while waiting:
            cited = waiting.popleft()
            for (citer,) in self.db.execute(
                "SELECT event_id FROM event_auth_edges WHERE auth_event_id = ?", (cited,)
            ):
                if citer in seen:
                    continue
                if shared.holds(citer, get_event):
                    return True
                seen.add(citer)
                waiting.append(citer)
                if len(seen) > _MAX_CITER_WALK:
                    raise _TooFar
        return False


class _TooFar(Exception):
    """The fork is too wide for the delta path: resolve on whole states instead."""


# Events visited asking whether one is in the shared state's auth chain, before giving up.
_MAX_CITER_WALK = 2000


class _SharedState(Mapping[StateKey, str]):
    """The unconflicted state map of a resolution, read key by key from one input group
    (every input agrees on these keys) without the conflicted keys."""

    def __init__(self, groups: StateGroups, group: int, conflicted: Mapping[StateKey, object]):
        self._groups = groups
        self._group = group
        self._conflicted = conflicted
        self._read: dict[StateKey, str | None] = {}

    def __getitem__(self, key: StateKey) -> str:
        if key in self._conflicted:
            raise KeyError(key)
        if key not in self._read:
            found = self._groups.get_state_ids_for_keys(self._group, [key])
            self._read[key] = found.get(key)
        value = self._read[key]
        if value is None:
            raise KeyError(key)
        return value

    def holds(self, event_id: str, get_event: GetEvent) -> bool:
        """Whether ``event_id`` is the shared value of its own key."""
        event = get_event(event_id)
        if event is None or not isinstance(event.get("state_key"), str):
            return False
        return self.get((str(event["type"]), event["state_key"])) == event_id

    def __iter__(self) -> Iterator[StateKey]:
        # Not used by the resolution (it reads by key); complete for the Mapping contract.
        state = self._groups.get_state_ids(self._group)
        return iter([key for key in state if key not in self._conflicted])

    def __len__(self) -> int:
        return sum(1 for _key in self)


def get_state_changes(
    old: Mapping[StateKey, str], new: Mapping[StateKey, str]
) -> dict[StateKey, str | None]:
    """What turns ``old`` into ``new``: changed or added keys, and None for removed ones."""
    changes: dict[StateKey, str | None] = {
        key: event_id for key, event_id in new.items() if old.get(key) != event_id
    }
    changes.update({key: None for key in old if key not in new})
    return changes


def _loads(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text)
    return value
