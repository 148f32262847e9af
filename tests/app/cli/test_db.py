"""`antechamber db migrate`: a SQLite server with rooms, knocks and members moved into an empty
PostgreSQL, verified, and answering make_knock byte for byte as before."""

import json
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from app.cli import main
from app.config import load_config
from app.main import create_app
from app.signing_key import load_or_generate_signing_key
from db.store import Store
from tests.conftest import KEY_FETCH_TIMEOUT_S, SERVER_NAME
from tests.factories import add_knock, add_member, create_room, make_room_admin


def environ(tmp_path, test_ca, database_url):
    return {
        "ANTECHAMBER_SERVER_NAME": SERVER_NAME,
        "ANTECHAMBER_DATA_DIR": str(tmp_path / "data"),
        "ANTECHAMBER_DATABASE_URL": database_url,
        "ANTECHAMBER_FEDERATION_CA_FILE": str(test_ca.ca_file),
        "ANTECHAMBER_KEY_FETCH_TIMEOUT_S": str(KEY_FETCH_TIMEOUT_S),
        "ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST": "127.0.0.0/8",
    }


@pytest.fixture
def source(tmp_path, test_ca, remote, clock, monkeypatch):
    """A server on SQLite (whatever the suite's backend) with two rooms: members local and
    remote, a pending knock, a ban. The CLI sees the same configuration."""
    env = environ(tmp_path, test_ca, f"sqlite:///{tmp_path / 'data' / 'antechamber.db'}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ANTECHAMBER_CONFIG", raising=False)
    config = load_config(environ=env)
    key = load_or_generate_signing_key(config.resolved_signing_key_path)
    store = Store.open(config.database)
    admin = make_room_admin(store, SERVER_NAME, key, clock)
    knock_room = create_room(admin, "12", "knock", name="Lobby")
    add_member(admin, knock_room, "@local:antechamber.test")
    add_member(admin, knock_room, f"@carol:{remote.server_name}", remote=remote)
    add_knock(admin, knock_room, f"@bob:{remote.server_name}", remote=remote)
    admin.ban(knock_room, "@spam:elsewhere.test", "spam")
    public_room = create_room(admin, "10", "public", name=None)
    add_member(admin, public_room, f"@dave:{remote.server_name}", remote=remote)
    store.close()
    return config, env, knock_room


def make_knock(config, clock, remote, room_id):
    uri = (
        f"/_matrix/federation/v1/make_knock/{quote(room_id, safe='')}"
        f"/{quote('@alice:' + remote.server_name, safe='')}?ver=12"
    )
    headers = {"Authorization": remote.auth_header("GET", uri, SERVER_NAME)}
    with TestClient(create_app(config, clock=clock), raise_server_exceptions=False) as client:
        response = client.get(uri, headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_db_migrate_moves_rooms_knocks_and_members(
    source, pg_cluster, tmp_path, clock, remote, capsys
):
    config, env, knock_room = source
    before = make_knock(config, clock, remote, knock_room)
    _code, rooms_before, _err = run(capsys, "rooms", "list", "--json")
    _code, state_before, _err = run(capsys, "rooms", "state", knock_room, "--json")
    target = pg_cluster.database_for(str(tmp_path), "moved")

    code, out, err = run(capsys, "db", "migrate", "--to", target, "--json")

    assert code == 0, err
    report = json.loads(out)
    assert report["rooms_checked"] == 2
    assert report["target"] == target
    sqlite = Store.open(config.database)
    try:
        for table, count in report["rows"].items():
            assert sqlite.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count
        assert report["rows"]["rooms"] == 2
        assert (
            report["rows"]["events"]
            == sqlite.db.execute("SELECT count(*) FROM events").fetchone()[0]
        )
    finally:
        sqlite.close()

    moved = load_config(environ={**env, "ANTECHAMBER_DATABASE_URL": target})
    assert make_knock(moved, clock, remote, knock_room) == before
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANTECHAMBER_DATABASE_URL", target)
        assert run(capsys, "rooms", "list", "--json")[1] == rooms_before
        assert run(capsys, "rooms", "state", knock_room, "--json")[1] == state_before
        # New rows after the copied ones: the identity sequences moved past the copied ids.
        code, out, err = run(capsys, "rooms", "ban", knock_room, "@eve:x.test", "--json")
        assert code == 0, err
    pg = Store.open(target)
    try:
        newest = pg.db.execute(
            "SELECT event_id FROM events ORDER BY stream_ordering DESC LIMIT 1"
        ).fetchone()[0]
        assert newest == json.loads(out)["event_id"]
    finally:
        pg.close()


def test_db_migrate_text_output_says_what_to_set(source, pg_cluster, tmp_path, capsys):
    target = pg_cluster.database_for(str(tmp_path), "moved")
    code, out, err = run(capsys, "db", "migrate", "--to", target)
    assert code == 0, err
    assert f"database_url = '{target}'" in out
    assert "2 room(s)" in out
    assert any(line.startswith("events: ") for line in err.split("\r"))


def test_db_migrate_refuses_a_target_with_rows(source, pg_cluster, tmp_path, capsys):
    target = pg_cluster.database_for(str(tmp_path), "moved")
    assert run(capsys, "db", "migrate", "--to", target)[0] == 0
    code, out, err = run(capsys, "db", "migrate", "--to", target, "--json")
    assert code == 1  # a refusal (CommandError)
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    pg = Store.open(target)
    try:  # nothing copied twice
        assert pg.db.execute("SELECT count(*) FROM rooms").fetchone()[0] == 2
    finally:
        pg.close()


@pytest.mark.parametrize(
    "to",
    [
        "mysql://u@h/db",
        "postgresql://antechamber@127.0.0.1:1/nothing",
        "SOURCE",
    ],
    ids=["other-scheme", "unreachable", "same-database"],
)
def test_db_migrate_refusals_are_one_line(source, capsys, to):
    config, _env, _room = source
    code, out, err = run(capsys, "db", "migrate", "--to", config.database if to == "SOURCE" else to)
    assert code == 1  # a refusal (CommandError)
    assert out == ""
    assert len(err.strip().splitlines()) == 1
