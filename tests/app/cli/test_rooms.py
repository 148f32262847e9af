"""`antechamber rooms ...`: create and change rooms from the command line, errors as one line."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from db.store import Store
from tests.databases import POSTGRES, data_dir_env, database_for

ROOT = Path(__file__).resolve().parents[3]
V12_ROOM_ID = re.compile(r"![A-Za-z0-9_-]{43}")


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    for name, value in data_dir_env(str(tmp_path / "data")).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANTECHAMBER_SERVER_NAME", "cli.test")
    monkeypatch.delenv("ANTECHAMBER_CONFIG", raising=False)
    return tmp_path / "data"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def create(capsys, *extra):
    code, out, err = run(capsys, "rooms", "create", "--json", *extra)
    assert code == 0, err
    return json.loads(out)["room_id"]


def event_count(data_dir):
    if not POSTGRES and not (data_dir / "antechamber.db").exists():
        return 0
    store = Store.open(database_for(data_dir))
    try:
        return store.db.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        store.close()


def assert_one_line_error(code, out, err):
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1


def test_cli_rooms_create_v12_knock_prints_the_room_id(cli_env, capsys):
    code, out, err = run(capsys, "rooms", "create", "--version", "12", "--join-rule", "knock")
    assert code == 0, err
    assert V12_ROOM_ID.fullmatch(out.strip())


def test_cli_rooms_create_defaults_to_v12(cli_env, capsys):
    code, out, _err = run(capsys, "rooms", "create", "--join-rule", "public", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["room_version"] == "12"
    assert V12_ROOM_ID.fullmatch(created["room_id"])


def test_cli_rooms_state_json_shows_a_v12_create_without_room_id(cli_env, capsys):
    room_id = create(capsys, "--version", "12", "--join-rule", "knock", "--name", "Lobby")
    code, out, _err = run(capsys, "rooms", "state", room_id, "--json")
    assert code == 0
    events = json.loads(out)
    by_type = {event["type"]: event for event in events}
    assert "room_id" not in by_type["m.room.create"]
    assert by_type["m.room.create"]["content"]["room_version"] == "12"
    assert by_type["m.room.name"]["content"] == {"name": "Lobby"}
    assert all("signatures" in event and "hashes" in event for event in events)


def test_cli_rooms_state_text_lists_each_event(cli_env, capsys):
    room_id = create(capsys, "--version", "7", "--join-rule", "knock")
    code, out, _err = run(capsys, "rooms", "state", room_id)
    assert code == 0
    assert len(out.strip().splitlines()) == 5
    assert "m.room.join_rules" in out


def test_cli_rooms_list(cli_env, capsys):
    code, out, _err = run(capsys, "rooms", "list")
    assert code == 0
    assert out.strip() == "no rooms"
    first = create(capsys, "--version", "10", "--join-rule", "knock_restricted", "--name", "N")
    second = create(capsys, "--version", "1", "--join-rule", "invite")
    code, out, _err = run(capsys, "rooms", "list", "--json")
    assert code == 0
    rooms = {room["room_id"]: room for room in json.loads(out)}
    assert rooms[first]["join_rule"] == "knock_restricted"
    assert rooms[first]["name"] == "N"
    assert rooms[second]["room_version"] == "1"
    assert rooms[second]["name"] is None
    code, out, _err = run(capsys, "rooms", "list")
    assert code == 0
    assert len(out.strip().splitlines()) == 2


def test_cli_rooms_changes_print_event_ids(cli_env, capsys):
    room_id = create(capsys, "--join-rule", "knock")
    commands = [
        ("join-rule", room_id, "knock_restricted", "--allow-room", "!a:x.test"),
        ("ban", room_id, "@spam:remote.test", "--reason", "spam"),
        ("unban", room_id, "@spam:remote.test"),
        ("acl", room_id, "--deny", "evil.test", "--no-ip-literals"),
        ("acl", room_id, "--allow", "*.good.test", "--allow", "good.test"),
    ]
    for command in commands:
        code, out, err = run(capsys, "rooms", *command, "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["room_id"] == room_id
        assert result["event_id"].startswith("$")
    code, out, _err = run(capsys, "rooms", "state", room_id, "--json")
    state = {(e["type"], e["state_key"]): e["content"] for e in json.loads(out)}
    assert state[("m.room.server_acl", "")] == {
        "allow": ["*.good.test", "good.test"],
        "deny": [],
        "allow_ip_literals": True,
    }
    assert state[("m.room.member", "@spam:remote.test")] == {"membership": "leave"}
    assert state[("m.room.join_rules", "")]["join_rule"] == "knock_restricted"


def test_cli_rooms_acl_defaults_to_allowing_everyone(cli_env, capsys):
    room_id = create(capsys, "--join-rule", "knock")
    code, _out, _err = run(capsys, "rooms", "acl", room_id, "--deny", "evil.test")
    assert code == 0
    _code, out, _err = run(capsys, "rooms", "state", room_id, "--json")
    acl = next(e for e in json.loads(out) if e["type"] == "m.room.server_acl")
    assert acl["content"] == {"allow": ["*"], "deny": ["evil.test"], "allow_ip_literals": True}


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["create", "--version", "6", "--join-rule", "knock"], id="v6-no-knock"),
        pytest.param(["create", "--version", "99", "--join-rule", "knock"], id="unknown-version"),
        pytest.param(["create", "--join-rule", "open"], id="unknown-rule"),
        pytest.param(["create", "--join-rule", "knock", "--creator", "a:b"], id="bad-creator"),
        pytest.param(["state", "!nope:cli.test"], id="unknown-room"),
        pytest.param(["state", "nope"], id="malformed-room"),
        pytest.param(["ban", "{room}", "not-a-user"], id="malformed-user"),
        pytest.param(["unban", "{room}", "@never:banned.test"], id="unban-not-banned"),
        pytest.param(["join-rule", "{room}", "private-ish"], id="unknown-rule-change"),
        pytest.param(["join-rule", "{room}", "knock", "--allow-room", "!a:x.test"], id="allow"),
    ],
)
def test_cli_rooms_errors_are_one_line_and_write_nothing(argv, cli_env, capsys):
    room_id = create(capsys, "--version", "12", "--join-rule", "knock")
    before = event_count(cli_env)
    code, out, err = run(capsys, "rooms", *[arg.format(room=room_id) for arg in argv])
    assert_one_line_error(code, out, err)
    assert event_count(cli_env) == before


def test_cli_rooms_error_with_json_is_still_one_line(cli_env, capsys):
    code, out, err = run(capsys, "rooms", "state", "!nope:cli.test", "--json")
    assert_one_line_error(code, out, err)


def test_cli_rooms_refused_by_power_levels_is_one_line(cli_env, capsys):
    # a v1-v11 room's creator can still be out-ranked: here the room is v6 and the ban target
    # is the creator itself, which the auth rules forbid (target level >= sender level)
    room_id = create(capsys, "--version", "6", "--join-rule", "invite")
    before = event_count(cli_env)
    code, out, err = run(capsys, "rooms", "ban", room_id, "@admin:cli.test")
    assert_one_line_error(code, out, err)
    assert "M_FORBIDDEN" in err
    assert event_count(cli_env) == before


def test_cli_rooms_help_lists_every_command():
    result = subprocess.run(
        [sys.executable, "-m", "app", "rooms", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0
    for name in (
        "create",
        "list",
        "state",
        "join-rule",
        "ban",
        "unban",
        "acl",
        "accept",
        "deny",
        "invite",
        "kick",
        "members",
        "message",
        "timeline",
        "power",
    ):
        assert name in result.stdout


def test_cli_rooms_unknown_room_on_a_fresh_server_is_one_line_and_makes_no_key(tmp_path):
    # a real process, so log lines (e.g. "generated a signing key") would show on stderr too
    env = {
        "PATH": "/usr/bin:/bin",
        **data_dir_env(str(tmp_path / "data")),
        "ANTECHAMBER_SERVER_NAME": "cli.test",
    }
    result = subprocess.run(
        [sys.executable, "-m", "app", "rooms", "ban", "!nope:cli.test", "@a:cli.test"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "signing.key").exists()


def test_cli_rooms_knocks_lists_pending_knocks(cli_env, capsys):
    from app.signing_key import load_or_generate_signing_key
    from tests.factories import add_knock, make_remote_server, make_room_admin

    room_id = create(capsys, "--version", "11", "--join-rule", "knock")
    code, out, _ = run(capsys, "rooms", "knocks", room_id, "--json")
    assert (code, json.loads(out)) == (0, [])
    remote = make_remote_server()
    store = Store.open(database_for(cli_env))
    key = load_or_generate_signing_key(cli_env / "signing.key")
    admin = make_room_admin(store, "cli.test", key)
    event_id = add_knock(admin, room_id, remote.user("alice"), remote=remote)
    store.close()
    code, out, _ = run(capsys, "rooms", "knocks", room_id, "--json")
    assert code == 0
    (knock,) = json.loads(out)
    assert knock["user_id"] == remote.user("alice")
    assert knock["event_id"] == event_id
    assert isinstance(knock["origin_server_ts"], int)
    code, out, _ = run(capsys, "rooms", "knocks", room_id)
    assert code == 0
    assert remote.user("alice") in out


def test_cli_rooms_knocks_unknown_room_is_one_line(cli_env, capsys):
    assert_one_line_error(*run(capsys, "rooms", "knocks", "!nope:cli.test"))


# Operator actions: accept, deny, invite, kick, members, message, timeline, power ----------

HOSTILE = "sorry\x1b[2J\x1b[31m\nFAKE LINE\u202e"


@pytest.fixture
def fed_cli_env(cli_env, monkeypatch, test_ca):
    """cli_env whose federation client trusts the test CA and may reach loopback."""
    monkeypatch.setenv("ANTECHAMBER_FEDERATION_CA_FILE", str(test_ca.ca_file))
    monkeypatch.setenv("ANTECHAMBER_FEDERATION_IP_RANGE_ALLOWLIST", "127.0.0.0/8")
    return cli_env


def knock_as(data_dir, room_id, user_id, remote, reason=None):
    """A knock stored as if it had arrived from ``remote``, optionally with a reason."""
    from app.signing_key import load_or_generate_signing_key
    from tests.factories import make_room_admin, signer_of

    store = Store.open(database_for(data_dir))
    try:
        admin = make_room_admin(
            store, "cli.test", load_or_generate_signing_key(data_dir / "signing.key")
        )
        content = {"membership": "knock", **({"reason": reason} if reason else {})}
        return admin.send_state_event(
            room_id, "m.room.member", user_id, content, user_id, signer=signer_of(remote)
        )
    finally:
        store.close()


def members_of(capsys, room_id):
    code, out, err = run(capsys, "rooms", "members", room_id, "--json")
    assert code == 0, err
    return {member["user_id"]: member for member in json.loads(out)}


@pytest.mark.parametrize("version", ["10", "12"], ids=lambda v: f"v{v}")
def test_cli_rooms_accept_invites_the_knocker_through_its_server(
    version, fed_cli_env, capsys, remote
):
    room_id = create(capsys, "--version", version, "--join-rule", "knock")
    alice = f"@alice:{remote.server_name}"
    knock_as(fed_cli_env, room_id, alice, remote)
    code, out, err = run(capsys, "rooms", "accept", room_id, alice, "--reason", "hi", "--json")
    assert code == 0, err
    event_id = json.loads(out)["event_id"]
    ((_target, _auth, body),) = remote.invites
    assert body["room_version"] == version
    assert body["invite_room_state"][0]["type"] == "m.room.create"
    member = members_of(capsys, room_id)[alice]
    assert (member["membership"], member["reason"], member["event_id"]) == (
        "invite",
        "hi",
        event_id,
    )
    assert member["sender"] == "@admin:cli.test"


def test_cli_rooms_invite_refused_by_the_remote_is_one_line_and_writes_nothing(
    fed_cli_env, capsys, remote
):
    room_id = create(capsys, "--version", "12", "--join-rule", "invite")
    remote.invite_mode = "forbidden"
    before = event_count(fed_cli_env)
    code, out, err = run(capsys, "rooms", "invite", room_id, f"@bob:{remote.server_name}")
    assert_one_line_error(code, out, err)
    # the errcode and status the remote answered are in the line
    assert "M_FORBIDDEN" in err
    assert "403" in err
    assert "\x1b" not in err, "the remote's text is escaped"
    assert event_count(fed_cli_env) == before


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["accept", "{room}", "@nobody:remote.test"], id="accept-no-knock"),
        pytest.param(["deny", "{room}", "@nobody:remote.test"], id="deny-no-knock"),
        pytest.param(["invite", "{room}", "@local:cli.test"], id="invite-local"),
        pytest.param(["kick", "{room}", "@nobody:remote.test"], id="kick-not-member"),
        pytest.param(
            ["kick", "{room}", "@k:remote.test", "--sender", "@x:remote.test"], id="remote-sender"
        ),
        pytest.param(["message", "{room}", "hi", "--sender", "@no:cli.test"], id="non-member"),
        pytest.param(["power", "{room}", "@admin:cli.test", "100"], id="v12-creator-power"),
        pytest.param(["power", "{room}", "@a:cli.test", "9007199254740992"], id="too-big"),
        pytest.param(["timeline", "{room}", "--limit", "0"], id="limit-0"),
        pytest.param(["members", "!nope:cli.test"], id="members-unknown-room"),
    ],
)
def test_cli_rooms_operator_refusals_are_one_line_and_write_nothing(argv, cli_env, capsys, remote):
    room_id = create(capsys, "--version", "12", "--join-rule", "knock")
    knock_as(cli_env, room_id, "@k:remote.test", make_fake_remote())
    before = event_count(cli_env)
    code, out, err = run(capsys, "rooms", *[arg.format(room=room_id) for arg in argv])
    assert_one_line_error(code, out, err)
    assert event_count(cli_env) == before


def make_fake_remote():
    from tests.factories import make_remote_server

    return make_remote_server()


def test_cli_rooms_deny_kick_message_power_and_timeline(cli_env, capsys):
    room_id = create(capsys, "--version", "10", "--join-rule", "knock")
    remote = make_fake_remote()
    knock_as(cli_env, room_id, remote.user("k"), remote)
    knock_as(cli_env, room_id, remote.user("j"), remote)
    for command in (
        ("deny", room_id, remote.user("k"), "--reason", "no"),
        ("kick", room_id, remote.user("j")),
        ("message", room_id, "Hello, room"),
        ("power", room_id, "@mod:cli.test", "50"),
    ):
        code, out, err = run(capsys, "rooms", *command, "--json")
        assert code == 0, err
        assert json.loads(out)["event_id"].startswith("$")
    members = members_of(capsys, room_id)
    assert members[remote.user("k")]["membership"] == "leave"
    assert members[remote.user("k")]["reason"] == "no"
    code, out, _err = run(capsys, "rooms", "timeline", room_id, "--limit", "4", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [entry["type"] for entry in entries] == [
        "m.room.member",
        "m.room.member",
        "m.room.message",
        "m.room.power_levels",
    ]
    assert entries[0]["summary"].startswith(f"denied the knock of {remote.user('k')}")
    assert entries[1]["summary"].startswith(f"denied the knock of {remote.user('j')}")
    assert entries[2]["summary"] == "Hello, room"
    assert entries[2]["state_key"] is None
    code, out, _err = run(capsys, "rooms", "timeline", room_id)
    assert code == 0
    assert len(out.strip().splitlines()) == 11  # 5 initial events, 2 knocks and 4 changes
    assert out.strip().splitlines()[-2].endswith("@admin:cli.test  m.room.message  Hello, room")


def test_cli_rooms_hostile_text_is_escaped_in_text_and_plain_in_json(cli_env, capsys):
    room_id = create(capsys, "--version", "12", "--join-rule", "knock")
    remote = make_fake_remote()
    knock_as(cli_env, room_id, remote.user("h"), remote, reason=HOSTILE)
    code, out, _err = run(capsys, "rooms", "members", room_id)
    assert code == 0
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert len(out.strip().splitlines()) == 2  # the admin and the knocker, one line each
    assert "\\x1b[2J" in out
    assert "\\n" in out
    code, out, _err = run(capsys, "rooms", "timeline", room_id, "--limit", "1")
    assert code == 0
    assert "\x1b" not in out
    assert len(out.strip().splitlines()) == 1
    assert members_of(capsys, room_id)[remote.user("h")]["reason"] == HOSTILE


def test_cli_rooms_topic_sets_the_topic(cli_env, capsys):
    room_id = create(capsys, "--version", "12", "--join-rule", "knock")
    code, out, err = run(capsys, "rooms", "topic", room_id, "Where we knock", "--json")
    assert code == 0, err
    event_id = json.loads(out)["event_id"]
    code, out, _err = run(capsys, "rooms", "state", room_id, "--json")
    assert code == 0
    (topic,) = [e for e in json.loads(out) if e["type"] == "m.room.topic"]
    assert topic["content"] == {"topic": "Where we knock"}
    code, _out, err = run(capsys, "rooms", "topic", room_id, "x", "--sender", "@nobody:cli.test")
    assert code != 0
    assert event_id.startswith("$")
