"""The Store: idempotent, all-or-nothing event persistence and the indexed reads built on it."""

import sqlite3
from typing import Any

import pytest
from canonicaljson import encode_canonical_json

from db.dialect import SqliteDatabase
from db.migrations import MIGRATIONS, apply_migrations
from db.store import Store, StoredRoom, UnknownRoomError
from tests.databases import database_for

ROOM = "!room:here.test"
V12_CREATE_ID = "$" + "C" * 43
V12_ROOM = "!" + "C" * 43


def pdu(event_type: str, sender: str = "@admin:here.test", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "room_id": ROOM,
        "content": {},
        "depth": 1,
        "origin": "here.test",
        "origin_server_ts": 1000,
        "prev_events": [],
        "auth_events": [],
        "hashes": {"sha256": "x"},
        "signatures": {},
    }
    event.update(fields)
    return event


def member(user_id: str, membership: str, prev: list[str], depth: int) -> dict[str, Any]:
    return pdu(
        "m.room.member",
        sender=user_id,
        state_key=user_id,
        content={"membership": membership},
        prev_events=prev,
        depth=depth,
    )


@pytest.fixture
def store(tmp_path):
    store = Store.open(database_for(tmp_path))
    yield store
    store.close()


@pytest.fixture
def room(store):
    """A room with a create event ($create) and the creator's join ($join)."""
    create = pdu("m.room.create", state_key="", content={"room_version": "10"})
    assert store.persist_event(create, "$create", "10") is True
    join = member("@admin:here.test", "join", ["$create"], 2)
    assert store.persist_event(join, "$join", "10") is True
    return store


def test_store_open_uses_wal_and_applies_every_migration(store):
    if store.dialect == "sqlite":
        assert store.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    applied = [row[0] for row in store.db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert applied == [name for name, _sql in MIGRATIONS]
    assert apply_migrations(store.db) == []


def test_persist_event_stores_the_exact_canonical_pdu(room):
    stored = room.db.execute("SELECT json FROM events WHERE event_id = '$join'").fetchone()[0]
    expected = member("@admin:here.test", "join", ["$create"], 2)
    assert stored == encode_canonical_json(expected).decode()
    assert room.get_event("$join") == expected
    assert "event_id" not in room.get_event("$join")
    assert room.get_event("$nope") is None


def test_persist_event_same_id_twice_stores_nothing_new(room):
    again = member("@admin:here.test", "leave", ["$join"], 3)
    assert room.persist_event(again, "$join", "10") is False
    assert room.get_event("$join")["content"] == {"membership": "join"}
    assert room.db.execute("SELECT count(*) FROM events").fetchone()[0] == 2
    assert room.get_forward_extremities(ROOM) == [("$join", 2)]


def test_persist_event_create_makes_the_room(room):
    assert room.get_room_version(ROOM) == "10"
    assert room.get_room_version("!other:here.test") is None
    assert room.list_rooms() == [StoredRoom(ROOM, "10", 1000)]


def test_persist_event_v12_create_without_room_id_names_the_room(store):
    create = pdu("m.room.create", state_key="", content={"room_version": "12"})
    del create["room_id"]
    assert store.persist_event(create, V12_CREATE_ID, "12")
    assert store.get_room_version(V12_ROOM) == "12"
    assert "room_id" not in store.get_current_state_event(V12_ROOM, "m.room.create", "")


def test_persist_event_refuses_events_of_unknown_rooms(store):
    with pytest.raises(UnknownRoomError):
        store.persist_event(member("@a:here.test", "join", [], 1), "$a", "10")
    with pytest.raises(ValueError, match="no room_id"):
        store.persist_event(pdu("m.room.message", room_id=None), "$b", "10")
    assert store.db.execute("SELECT count(*) FROM events").fetchone()[0] == 0


def test_persist_event_refuses_a_different_room_version(room):
    with pytest.raises(ValueError, match="version"):
        room.persist_event(pdu("m.room.message", prev_events=["$join"]), "$m", "11")


def test_persist_event_updates_state_and_extremities(room):
    assert room.get_current_state_event(ROOM, "m.room.member", "@admin:here.test")["content"] == {
        "membership": "join"
    }
    assert room.get_forward_extremities(ROOM) == [("$join", 2)]
    room.persist_event(pdu("m.room.message", prev_events=["$join"], depth=3), "$msg", "10")
    assert room.get_forward_extremities(ROOM) == [("$msg", 3)]
    # a fork: two events on the same parent are both extremities, deepest first
    room.persist_event(pdu("m.room.message", prev_events=["$join"], depth=3), "$fork", "10")
    assert room.get_forward_extremities(ROOM) == [("$fork", 3), ("$msg", 3)]
    name = pdu("m.room.name", state_key="", content={"name": "N"}, prev_events=["$msg", "$fork"])
    room.persist_event({**name, "depth": 4}, "$name", "10")
    assert room.get_forward_extremities(ROOM) == [("$name", 4)]
    assert room.get_current_state_events(ROOM, [("m.room.name", ""), ("m.room.topic", "")]) == {
        ("m.room.name", ""): {**name, "depth": 4}
    }
    assert [e["type"] for e in room.get_current_state(ROOM)] == [
        "m.room.create",
        "m.room.member",
        "m.room.name",
    ]


def test_persist_event_v1_pairs_in_prev_events_replace_extremities(room):
    pairs = [["$join", {"sha256": "h"}]]
    room.persist_event(pdu("m.room.message", prev_events=pairs, depth=3), "$msg", "10")
    assert room.get_forward_extremities(ROOM) == [("$msg", 3)]


def test_persist_event_rejected_changes_no_state(room):
    bad = member("@evil:there.test", "join", ["$join"], 3)
    assert room.persist_event(bad, "$bad", "10", rejected=True)
    assert room.is_event_rejected("$bad") is True
    assert room.is_event_rejected("$join") is False
    assert room.is_event_rejected("$nope") is None
    assert room.get_current_state_event(ROOM, "m.room.member", "@evil:there.test") is None
    assert room.get_forward_extremities(ROOM) == [("$join", 2)]
    assert not room.has_local_joined_member(ROOM, "there.test")


def test_persist_events_failure_mid_write_leaves_nothing(room, monkeypatch):
    def explode(*_args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(room, "_update_forward_extremities", explode)
    with pytest.raises(RuntimeError):
        room.persist_event(member("@bob:there.test", "join", ["$join"], 3), "$bob", "10")
    # the event row and the current_state/count rows written before the failure are gone
    assert room.get_event("$bob") is None
    assert room.get_current_state_event(ROOM, "m.room.member", "@bob:there.test") is None
    assert not room.has_local_joined_member(ROOM, "there.test")
    assert room.get_forward_extremities(ROOM) == [("$join", 2)]
    assert not room.db.in_transaction


def test_persist_events_batch_is_one_transaction(room):
    first = (member("@bob:there.test", "join", ["$join"], 3), "$bob")
    broken = (pdu("m.room.message", room_id="!unknown:x.test"), "$broken")
    with pytest.raises(UnknownRoomError):
        room.persist_events([first, broken], "10")
    assert room.get_event("$bob") is None
    assert room.persist_events([first, first], "10") == [True, False]


def test_has_local_joined_member_counts_joins_per_server(room):
    assert room.has_local_joined_member(ROOM, "here.test")
    assert not room.has_local_joined_member(ROOM, "there.test")
    room.persist_event(member("@a:there.test", "join", ["$join"], 3), "$a1", "10")
    room.persist_event(member("@b:there.test", "join", ["$a1"], 4), "$b1", "10")
    room.persist_event(member("@a:there.test", "join", ["$b1"], 5), "$a2", "10")  # no change
    room.persist_event(member("@a:there.test", "leave", ["$a2"], 6), "$a3", "10")
    assert room.has_local_joined_member(ROOM, "there.test")
    room.persist_event(member("@b:there.test", "knock", ["$a3"], 7), "$b2", "10")
    assert not room.has_local_joined_member(ROOM, "there.test")
    assert room.db.execute("SELECT count(*) FROM room_server_joined_members").fetchone()[0] == 1


def query_plan(store: Store, call) -> str:
    """The query plan of the one statement ``call`` runs on ``store`` (the Store's own SQL,
    captured as executed, so a change to it is what gets explained)."""
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        store.db.conn.set_trace_callback(None)
    (statement,) = statements
    return " | ".join(row[-1] for row in store.db.conn.execute("EXPLAIN QUERY PLAN " + statement))


@pytest.mark.sqlite
def test_has_local_joined_member_is_one_primary_key_lookup(room):
    plan = query_plan(room, lambda: room.has_local_joined_member(ROOM, "here.test"))
    assert "PRIMARY KEY" in plan
    assert "SCAN" not in plan


def test_get_memberships_lists_current_members_by_membership(room):
    room.persist_event(member("@k:there.test", "knock", ["$join"], 3), "$k", "10")
    assert [e["state_key"] for e in room.get_memberships(ROOM, "join")] == ["@admin:here.test"]
    assert [e["state_key"] for e in room.get_memberships(ROOM, "knock")] == ["@k:there.test"]
    assert room.get_memberships(ROOM, "ban") == []


def test_state_at_an_event_is_before_it_and_after_it_and_rejected_events_change_none(room):
    room.persist_event(member("@k:there.test", "knock", ["$join"], 3), "$k1", "10")
    room.persist_event(member("@k:there.test", "leave", ["$k1"], 4), "$k2", "10")
    room.persist_event(member("@k:there.test", "ban", ["$k2"], 5), "$k3", "10", rejected=True)
    room.persist_event(member("@k:there.test", "knock", ["$k3"], 6), "$k4", "10")
    key = ("m.room.member", "@k:there.test")

    def membership(event_id: str, after: bool) -> str | None:
        found = room.get_state_events_at(event_id, [key], after=after).get(key)
        return None if found is None else found["content"]["membership"]

    assert membership("$k1", False) is None
    assert membership("$k1", True) == "knock"
    assert membership("$k2", False) == "knock"
    assert membership("$k3", False) == "leave"
    # the rejected ban is never state: after it (and so before $k4) the leave stands
    assert membership("$k3", True) == "leave"
    assert membership("$k4", False) == "leave"
    assert room.get_state_ids_at("$k4") == {
        ("m.room.create", ""): "$create",
        ("m.room.member", "@admin:here.test"): "$join",
        key: "$k2",
    }
    assert room.get_state_ids_at("$k4", after=True)[key] == "$k4"
    assert room.get_state_ids_at("$nope") is None
    assert room.get_state_events_at("$nope", [key]) == {}
    assert room.get_server_memberships_after("$k2", "there.test") == ["leave"]
    assert room.get_server_memberships_after("$nope", "there.test") == []


@pytest.mark.sqlite
def test_state_at_an_event_reads_no_table_scan(room):
    statements: list[str] = []
    room.db.conn.set_trace_callback(statements.append)
    try:
        found = room.get_state_events_at(
            "$join", [("m.room.member", "@admin:here.test")], after=True
        )
    finally:
        room.db.conn.set_trace_callback(None)
    assert found  # the lookups did run
    assert len(statements) >= 2  # event_state, the deltas (the descent may be cached)
    for statement in statements:
        plan = " | ".join(
            row[-1] for row in room.db.conn.execute("EXPLAIN QUERY PLAN " + statement)
        )
        assert "SCAN" not in plan, statement


@pytest.mark.sqlite
def test_get_current_state_event_uses_the_primary_key(room):
    plan = query_plan(room, lambda: room.get_current_state_event(ROOM, "m.room.create", ""))
    assert "SCAN" not in plan


def test_current_state_ids_and_events_with_ids(room):
    assert room.get_current_state_ids(ROOM) == {
        ("m.room.create", ""): "$create",
        ("m.room.member", "@admin:here.test"): "$join",
    }
    found = room.get_current_state_events_with_ids(
        ROOM, [("m.room.create", ""), ("m.room.power_levels", "")]
    )
    assert list(found) == [("m.room.create", "")]
    assert found[("m.room.create", "")][0] == "$create"


@pytest.mark.sqlite
def test_migration_003_counts_members_stored_before_it(tmp_path):
    db = SqliteDatabase(tmp_path / "old.db")
    conn = db.conn
    for name, script in MIGRATIONS[:2]:
        assert isinstance(script, str)
        db.run_ddl(script)
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ts)")
        conn.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    conn.executemany(
        "INSERT INTO current_state VALUES (?, 'm.room.member', ?, ?, ?)",
        [
            (ROOM, "@a:x.test", "$1", "join"),
            (ROOM, "@b:x.test", "$2", "join"),
            (ROOM, "@c:y.test", "$3", "leave"),
        ],
    )
    conn.commit()
    assert MIGRATIONS[2][0] == "003_joined_members_per_server"
    assert apply_migrations(db) == [name for name, _script in MIGRATIONS[2:]]
    rows = conn.execute("SELECT * FROM room_server_joined_members").fetchall()
    assert rows == [(ROOM, "x.test", 2)]


def test_get_current_state_events_with_ids_in_key_order_missing_skipped(room):
    keys = [
        ("m.room.member", "@admin:here.test"),
        ("m.room.name", ""),
        ("m.room.create", ""),
        ("m.room.create", ""),
    ]
    found = room.get_current_state_events_with_ids(ROOM, keys)
    assert list(found) == [("m.room.member", "@admin:here.test"), ("m.room.create", "")]
    assert found[("m.room.create", "")][0] == "$create"
    assert found[("m.room.create", "")][1]["type"] == "m.room.create"
    assert room.get_current_state_events(ROOM, keys) == {k: v[1] for k, v in found.items()}
    assert room.get_current_state_events_with_ids(ROOM, []) == {}


@pytest.mark.sqlite
def test_get_current_state_events_seeks_every_key_never_scans(room):
    # A row-value IN list would scan the room's whole state: flat in room size only if every
    # key is its own primary-key seek.
    from db import store as store_module

    sql = " UNION ALL ".join([store_module._CURRENT_STATE_ROW_SQL] * 3)
    plan = [
        row[-1] for row in room.db.conn.execute("EXPLAIN QUERY PLAN " + sql, [ROOM, "t", ""] * 3)
    ]
    seeks = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert len(seeks) == 6
    assert all(step.startswith("SEARCH") for step in seeks), plan


@pytest.mark.sqlite
def test_write_transaction_holds_the_write_lock_and_nests(room, tmp_path):
    bob = (member("@bob:there.test", "join", ["$join"], 3), "$bob")

    def decide_against_it() -> None:
        with room.write_transaction():
            assert room.persist_events([bob], "10") == [True]  # joins the outer transaction
            # Another connection cannot write meanwhile (IMMEDIATE took the lock at BEGIN).
            other = sqlite3.connect(str(tmp_path / "antechamber.db"), timeout=0)
            with pytest.raises(sqlite3.OperationalError):
                other.execute("BEGIN IMMEDIATE")
            other.close()
            raise RuntimeError("decided against it")

    with pytest.raises(RuntimeError):
        decide_against_it()
    assert room.get_event("$bob") is None, "the nested write rolled back with the outer one"
    assert not room.db.in_transaction
    with room.write_transaction():
        room.persist_events([bob], "10")
    assert room.get_event("$bob") is not None


def test_get_accepted_events_and_newest_stream_ordering(room):
    bad = member("@evil:there.test", "join", ["$join"], 3)
    room.persist_event(bad, "$bad", "10", rejected=True)
    assert set(room.get_accepted_events(["$create", "$join", "$bad", "$nope"])) == {
        "$create",
        "$join",
    }
    assert room.get_accepted_events([]) == {}
    assert room.get_newest_stream_ordering(["$create", "$join"]) == room.get_stream_ordering(
        "$join"
    )
    assert room.get_newest_stream_ordering(["$join", "$join"]) == room.get_stream_ordering("$join")
    assert room.get_newest_stream_ordering(["$join", "$nope"]) is None
    assert room.get_newest_stream_ordering([]) is None
