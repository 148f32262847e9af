"""State groups: skip deltas read back exactly, compact in a line, replayed for old rooms."""

import json
import math
import random

import pytest

from db.dialect import SqliteDatabase
from db.migrations import MIGRATIONS, apply_migrations
from db.state_groups import StateGroups, get_state_changes
from db.store import Store
from tests.databases import database_for
from tests.db.test_store import ROOM, member, pdu


@pytest.fixture
def groups(tmp_path):
    store = Store.open(database_for(tmp_path, "groups"))
    yield StateGroups(store.db)
    store.close()


def _random_tree(groups: StateGroups, count: int, seed: int) -> dict[int, dict]:
    """``count`` groups, each derived from a random earlier one (forks everywhere) by a few
    random changes, removals included; returns the expected full state of each."""
    rng = random.Random(seed)
    expected: dict[int, dict] = {}
    for _ in range(count):
        parent = rng.choice([None, *expected]) if rng.random() < 0.1 else None
        if expected and parent is None and rng.random() < 0.9:
            parent = rng.choice(list(expected)[-5:])  # mostly long lines, as rooms grow
        state = dict(expected[parent]) if parent is not None else {}
        changes: dict = {}
        for _change in range(rng.choice([1, 1, 1, 2, 5])):
            key = ("m.room.member", f"@u{rng.randrange(40)}:s{rng.randrange(3)}.test")
            if state and rng.random() < 0.1:
                key = rng.choice(list(state))
                changes[key] = None
            else:
                changes[key] = f"${rng.randrange(10**9)}"
        for key, event_id in changes.items():
            if event_id is None:
                state.pop(key, None)
            else:
                state[key] = event_id
        expected[groups.create_group(ROOM, parent, changes)] = state
    return expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_state_groups_read_back_every_state_of_a_forked_tree(groups, seed):
    expected = _random_tree(groups, 300, seed)
    fresh = StateGroups(groups.db)  # nothing cached: every read goes to the tables
    for group, state in expected.items():
        assert fresh.get_state_ids(group) == state
        keys = [*list(state)[:3], ("m.room.member", "@absent:s0.test")]
        assert fresh.get_state_ids_for_keys(group, keys) == {
            k: state[k] for k in keys if k in state
        }
        of_s1 = {k: v for k, v in state.items() if k[1].endswith(":s1.test")}
        assert fresh.get_member_ids_of_server(group, "s1.test") == of_s1
    assert fresh.get_state_ids(None) == {}
    assert fresh.get_state_ids_for_keys(None, [("m.room.create", "")]) == {}
    assert fresh.get_member_ids_of_server(None, "s1.test") == {}


def test_state_groups_stay_compact_and_shallow_in_a_line_of_single_changes(groups):
    # The layout's claim (db/state_groups.py): N single changes keep about N log2(N) / 2 rows
    # and any group is read through at most log2(N) + 1 deltas.
    count = 4096
    group = None
    for n in range(count):
        group = groups.create_group(ROOM, group, {("m.room.member", f"@u{n}:s.test"): f"${n}"})
    rows = groups.db.execute("SELECT count(*) FROM state_group_deltas").fetchone()[0]
    assert rows <= count * math.log2(count) / 2 + count
    assert rows < count * count / 200  # Synapse's 100-hop delta chains, for scale
    assert max(len(groups._descent(g)) for g in range(1, count + 1)) <= math.log2(count) + 1
    assert len(groups.get_state_ids(group)) == count


def test_state_changes_name_changed_added_and_removed_keys():
    old = {("a", ""): "$1", ("b", ""): "$2", ("c", ""): "$3"}
    new = {("a", ""): "$1", ("b", ""): "$9", ("d", ""): "$4"}
    assert get_state_changes(old, new) == {("b", ""): "$9", ("d", ""): "$4", ("c", ""): None}


def test_a_rolled_back_group_leaves_no_stale_cache(tmp_path):
    store = Store.open(database_for(tmp_path, "rollback"))
    create = pdu("m.room.create", state_key="", content={"room_version": "10"})
    store.persist_event(create, "$create", "10")

    def join_then_fail() -> None:
        with store.write_transaction():
            store.persist_event(member("@a:x.test", "join", ["$create"], 2), "$a", "10")
            assert ("m.room.member", "@a:x.test") in store.get_state_ids_at("$a", after=True)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        join_then_fail()
    assert store.get_event("$a") is None
    # The rolled-back event's group id is given to the next group written: read it afresh.
    store.persist_event(member("@b:x.test", "join", ["$create"], 2), "$b", "10")
    assert store.get_state_ids_at("$b", after=True) == {
        ("m.room.create", ""): "$create",
        ("m.room.member", "@b:x.test"): "$b",
    }
    store.close()


@pytest.mark.sqlite
def test_migration_008_gives_events_stored_before_it_their_state(tmp_path):
    # A database at migration 006 with a room in it, then the rest applied.
    db = SqliteDatabase(tmp_path / "old.db")
    conn = db.conn
    conn.isolation_level = None
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_ts INTEGER)")
    for name, script in MIGRATIONS[:6]:
        script(db) if callable(script) else db.run_ddl(script)
        conn.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    conn.execute("INSERT INTO rooms VALUES (?, '10', 0)", (ROOM,))
    events = [
        ("$create", pdu("m.room.create", state_key="", content={"room_version": "10"}), 0),
        ("$join", member("@a:here.test", "join", ["$create"], 2), 0),
        ("$bad", member("@x:here.test", "join", ["$join"], 3), 1),
        ("$msg", pdu("m.room.message", prev_events=["$join"], depth=3), 0),
    ]
    for event_id, event, rejected in events:
        conn.execute(
            "INSERT INTO events (event_id, room_id, type, state_key, sender, depth,"
            " origin_server_ts, rejected, json) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (
                event_id,
                ROOM,
                event["type"],
                event.get("state_key"),
                event["sender"],
                event["depth"],
                rejected,
                json.dumps(event),
            ),
        )
    assert apply_migrations(db) == [name for name, _script in MIGRATIONS[6:]]
    db.close()
    store = Store.open(tmp_path / "old.db")
    joined = {("m.room.create", ""): "$create", ("m.room.member", "@a:here.test"): "$join"}
    assert store.get_state_ids_at("$create") == {}
    assert store.get_state_ids_at("$msg") == joined
    assert store.get_state_ids_at("$bad", after=True) == joined  # rejected: no change
    store.close()


@pytest.mark.parametrize("seed", range(12))
def test_resolution_from_deltas_equals_a_replay_on_whole_states(tmp_path, seed):
    # A random room history full of forks (joins, leaves, topics, power changes; each event on
    # one or two of the recent events) is stored; its current state and the state at every
    # event must equal tests/server_process.recompute_room's independent replay, which resolves
    # whole state maps with matrix/state_res.py directly.
    from tests.server_process import recompute_room

    rng = random.Random(seed)
    store = Store.open(database_for(tmp_path, "forks"))
    admin = "@admin:here.test"
    power = {"users": {admin: 100}, "state_default": 50, "events_default": 0}
    initial = [
        (
            "$create",
            pdu("m.room.create", state_key="", content={"room_version": "10", "creator": admin}),
        ),
        ("$join", member(admin, "join", ["$create"], 2)),
        (
            "$pl",
            pdu("m.room.power_levels", state_key="", content=power, prev_events=["$join"], depth=3),
        ),
        (
            "$jr",
            pdu(
                "m.room.join_rules",
                state_key="",
                content={"join_rule": "public"},
                prev_events=["$pl"],
                depth=4,
            ),
        ),
    ]
    order = []
    for event_id, event in initial:
        event["auth_events"] = [e for e, _ in initial if e != event_id][: len(order)]
        store.persist_event(event, event_id, "10")
        order.append(event_id)
    # A line of joins first, so the forks below sit between two powers of two and mostly take
    # the delta path (forks straddling one fall back to whole states)
    for n in range(90):
        event = member(f"@line{n}:x.test", "join", [order[-1]], 10 + n)
        event["auth_events"] = ["$create", "$pl", "$jr"]
        store.persist_event(event, f"$line{n}", "10")
        order.append(f"$line{n}")
    users = [f"@u{n}:x.test" for n in range(6)]
    for n in range(70):
        prevs = rng.sample(order[-6:], rng.choice([1, 1, 2]))
        depth = 100 + n
        kind = rng.choice(["join", "leave", "topic", "topic", "power"])
        user = rng.choice(users)
        if kind in ("join", "leave"):
            event = member(user, kind, prevs, depth)
        elif kind == "topic":
            event = pdu(
                "m.room.topic",
                sender=rng.choice([admin, user]),
                state_key="",
                content={"topic": f"t{n}"},
                prev_events=prevs,
                depth=depth,
            )
        else:
            levels = {**power, "users": {admin: 100, user: rng.choice([0, 50])}}
            event = pdu(
                "m.room.power_levels", state_key="", content=levels, prev_events=prevs, depth=depth
            )
        event["origin_server_ts"] = 1000 + rng.randrange(50)
        current = store.get_current_state_ids(ROOM)
        keys = [
            ("m.room.create", ""),
            ("m.room.power_levels", ""),
            ("m.room.join_rules", ""),
            ("m.room.member", event["sender"]),
        ]
        event["auth_events"] = [current[k] for k in keys if k in current]
        event_id = f"$e{n}"
        store.persist_event(event, event_id, "10")
        order.append(event_id)
    state, extremities = recompute_room(store.db, ROOM)
    assert store.get_current_state_ids(ROOM) == state
    assert {e for e, _depth in store.get_forward_extremities(ROOM)} == extremities
    store.close()
