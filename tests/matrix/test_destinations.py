"""Where an event stored here goes: joined servers before it, plus a rescinded invite's target."""

import pytest

from matrix.destinations import get_event_destinations, is_rescinded_invite

HERE = "resident.test"
ADMIN = "@admin:resident.test"
BOB = "@bob:invitee.test"
INVITE = {"type": "m.room.member", "state_key": BOB, "content": {"membership": "invite"}}
KNOCK = {"type": "m.room.member", "state_key": BOB, "content": {"membership": "knock"}}


def leave(sender=ADMIN, auth_events=("$pl", "$invite"), **changes):
    event = {
        "type": "m.room.member",
        "state_key": BOB,
        "sender": sender,
        "content": {"membership": "leave"},
        "auth_events": list(auth_events),
    }
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("event", "target", "expected"),
    [
        pytest.param(leave(), ("$invite", INVITE), True, id="rescind"),
        pytest.param(leave(auth_events=[["$invite", {}]]), ("$invite", INVITE), True, id="v1-refs"),
        pytest.param(leave(), None, False, id="no-target-member"),
        pytest.param(leave(type="m.room.name"), ("$invite", INVITE), False, id="not-member"),
        pytest.param(leave(sender=BOB), ("$invite", INVITE), False, id="own-rejection"),
        pytest.param(leave(content={"membership": "ban"}), ("$invite", INVITE), False, id="ban"),
        pytest.param(leave(content="x"), ("$invite", INVITE), False, id="bad-content"),
        pytest.param(leave(), ("$invite", KNOCK), False, id="knock-denied"),
        pytest.param(leave(), ("$other", INVITE), False, id="invite-not-in-auth-events"),
        pytest.param(leave(auth_events="x"), ("$invite", INVITE), False, id="bad-auth-events"),
    ],
)
def test_is_rescinded_invite(event, target, expected):
    assert is_rescinded_invite(event, target) is expected


def test_destinations_are_joined_servers_before_but_never_here_or_the_origin():
    joined = ["b.test", HERE, "a.test", "origin.test"]
    event = {"type": "m.room.message", "sender": "@x:origin.test", "content": {}}
    assert get_event_destinations(event, joined, server_name=HERE, origin="origin.test") == [
        "a.test",
        "b.test",
    ]
    assert get_event_destinations(event, joined, server_name=HERE) == [
        "a.test",
        "b.test",
        "origin.test",
    ]


def test_destinations_add_the_invitee_server_when_its_invite_is_rescinded():
    joined = [HERE, "member.test"]
    assert get_event_destinations(
        leave(), joined, server_name=HERE, target_member_before=("$invite", INVITE)
    ) == ["invitee.test", "member.test"]
    # a knock denial (and a kick) is not sent to the target's server (Synapse)
    assert get_event_destinations(
        leave(), joined, server_name=HERE, target_member_before=("$invite", KNOCK)
    ) == ["member.test"]
    # never back to the server that sent the event, even for a rescind
    assert get_event_destinations(
        leave(),
        joined,
        server_name=HERE,
        origin="invitee.test",
        target_member_before=("$invite", INVITE),
    ) == ["member.test"]
