"""`antechamber federation status|retry`: the outbox per destination, from the command line."""

import json

import pytest

from app.cli import main
from db.store import Store
from tests.databases import data_dir_env, database_for


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    for name, value in data_dir_env(str(tmp_path / "data")).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANTECHAMBER_SERVER_NAME", "cli.test")
    monkeypatch.delenv("ANTECHAMBER_CONFIG", raising=False)
    return tmp_path / "data"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def failed_destination(data_dir, name: str, error: str) -> None:
    """A room whose event is queued for ``name``, whose delivery failed with ``error``."""
    code = main(["rooms", "create", "--join-rule", "knock", "--json"])
    assert code == 0
    store = Store.open(database_for(data_dir))
    try:
        (room,) = store.list_rooms()
        with store.write_transaction():
            (event_id,) = [
                row[0]
                for row in store.db.execute(
                    "SELECT event_id FROM events WHERE type = 'm.room.create'"
                )
            ]
            store.enqueue_delivery([name], event_id, room.room_id)
        store.fail_transaction(name, error, 1_000, start_ms=60_000, max_ms=86_400_000)
    finally:
        store.close()


def test_federation_status_lists_queued_events_and_the_last_error(data_dir, capsys):
    failed_destination(data_dir, "down.example", "HTTP 503")
    capsys.readouterr()
    code, out, _err = run(capsys, "federation", "status", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["destination"], row["pending"], row["last_error"]) == (
        "down.example",
        1,
        "HTTP 503",
    )
    assert row["retry_at_ts"] == 61_000
    code, out, _err = run(capsys, "federation", "status")
    assert code == 0
    assert out.startswith("down.example  queued 1")


def test_federation_status_escapes_hostile_errors(data_dir, capsys):
    failed_destination(data_dir, "evil.example", "boom\x1b[31m\nnext line")
    capsys.readouterr()
    code, out, _err = run(capsys, "federation", "status")
    assert code == 0
    assert "\x1b" not in out
    assert out.count("\n") == 1


def test_federation_retry_clears_the_backoff(data_dir, capsys):
    failed_destination(data_dir, "down.example", "HTTP 503")
    capsys.readouterr()
    code, out, _err = run(capsys, "federation", "retry", "down.example", "--json")
    assert code == 0
    assert json.loads(out) == {"destination": "down.example", "retry": "now"}
    _code, out, _err = run(capsys, "federation", "status", "--json")
    assert json.loads(out)[0]["retry_at_ts"] == 0


def test_federation_retry_unknown_destination_is_one_line_exit_1(data_dir, capsys):
    main(["rooms", "create", "--join-rule", "knock"])
    capsys.readouterr()
    code, out, err = run(capsys, "federation", "retry", "never.example")
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
