"""Invites out: the invite_room_state keys, the request body and the countersigned answer."""

import pytest

from matrix.invite import (
    MAX_COUNTERSIGNATURE_KEYS,
    build_invite_request,
    get_invite_room_state_keys,
    parse_invite_response,
)
from matrix.room_versions import V10
from tests.matrix.knock_pdus import errcode_of

INVITEE = "invitee.test"
SENT = {
    "type": "m.room.member",
    "state_key": "@bob:invitee.test",
    "sender": "@admin:resident.test",
    "content": {"membership": "invite"},
    "signatures": {"resident.test": {"ed25519:a": "ours"}},
}


def answer(**changes):
    event = {**SENT, "signatures": {**SENT["signatures"], INVITEE: {"ed25519:b": "theirs"}}}
    event.update(changes)
    return {"event": event}


def test_invite_room_state_keys_start_with_the_create_event():
    keys = get_invite_room_state_keys("@admin:resident.test")
    assert keys[0] == ("m.room.create", "")
    assert keys[-1] == ("m.room.member", "@admin:resident.test")
    assert ("m.room.join_rules", "") in keys


def test_build_invite_request():
    state = [{"type": "m.room.create"}]
    assert build_invite_request(SENT, V10, state) == {
        "room_version": "10",
        "event": SENT,
        "invite_room_state": state,
    }


def test_parse_invite_response_merges_only_the_invitee_signature():
    body = answer(unsigned={"invite_room_state": []})
    body["event"]["signatures"]["resident.test"] = {"ed25519:a": "replaced"}
    body["event"]["signatures"]["third.test"] = {"ed25519:c": "extra"}
    merged = parse_invite_response(body, SENT, INVITEE)
    assert merged["signatures"] == {
        "resident.test": {"ed25519:a": "ours"},
        INVITEE: {"ed25519:b": "theirs"},
    }
    assert "unsigned" not in merged
    assert SENT["signatures"] == {"resident.test": {"ed25519:a": "ours"}}, "not modified"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({}, id="no-event"),
        pytest.param({"event": "x"}, id="event-not-an-object"),
        pytest.param(answer(content={"membership": "join"}), id="different-event"),
        pytest.param(answer(signatures="x"), id="signatures-not-an-object"),
        pytest.param(answer(signatures=SENT["signatures"]), id="not-countersigned"),
        pytest.param(answer(signatures={INVITEE: {}}), id="empty-countersign"),
        pytest.param(answer(signatures={INVITEE: {"ed25519:b": 1}}), id="signature-not-text"),
        pytest.param(
            answer(
                signatures={
                    INVITEE: {f"ed25519:{i}": "s" for i in range(MAX_COUNTERSIGNATURE_KEYS + 1)}
                }
            ),
            id="too-many-keys",
        ),
    ],
)
def test_parse_invite_response_refuses(body):
    assert errcode_of(lambda: parse_invite_response(body, SENT, INVITEE)) == "M_INVALID_PARAM"
