"""Checks on any received PDU: the room version's format and the hash-mismatch redaction."""

import copy

import pytest

from matrix.errors import MatrixError
from matrix.pdu_checks import (
    build_received_pdu,
    check_outlier_auth,
    check_pdu_format,
    check_pdu_references_in_room,
    check_transaction_format,
    get_redacted_if_hash_mismatch,
)
from matrix.room_versions import V5, V10, V11, V12
from tests.matrix.knock_pdus import errcode_of, signed_knock


def test_check_pdu_format_lenient_versions_allow_floats():
    # frag/v1-canonical-json: before v6 servers must not enforce canonical JSON strictly.
    event, _ = signed_knock(V5, content={"membership": "knock", "weight": 1.5})
    check_pdu_format(event, V5)
    assert errcode_of(lambda: check_pdu_format(event, V10)) == "M_BAD_JSON"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"room_id": 5}, id="room-id-type"),
        pytest.param({"origin": None}, id="origin-type"),
        pytest.param({"content": []}, id="content-type"),
        pytest.param({"origin_server_ts": "1"}, id="ts-type"),
        pytest.param({"origin_server_ts": True}, id="ts-bool"),
        pytest.param({"depth": -1}, id="depth-negative"),
        pytest.param({"depth": True}, id="depth-bool"),
        pytest.param({"hashes": {"sha1": "x"}}, id="hashes"),
        pytest.param({"signatures": []}, id="signatures"),
        pytest.param({"prev_events": ["$" + "a" * 43] * 21}, id="too-many-prev"),
        pytest.param({"auth_events": [5]}, id="auth-not-string"),
        pytest.param({"auth_events": ["$short"]}, id="auth-bad-id"),
        pytest.param({"state_key": 5}, id="state-key-type"),
        pytest.param({"type": "x" * 256}, id="type-too-long"),
    ],
)
def test_check_pdu_format_rejects(change):
    event, _ = signed_knock()
    event.update(change)
    assert errcode_of(lambda: check_pdu_format(event, V11)) == "M_BAD_JSON"


@pytest.mark.parametrize("key", ["room_id", "sender", "type"])
def test_check_pdu_format_requires(key):
    event, _ = signed_knock()
    del event[key]
    assert errcode_of(lambda: check_pdu_format(event, V11)) == "M_BAD_JSON"


def test_redacted_copy_only_on_hash_mismatch():
    event, _ = signed_knock(V12, content={"membership": "knock", "reason": "hi"})
    assert get_redacted_if_hash_mismatch(event, V12) is event
    tampered = copy.deepcopy(event)
    tampered["content"]["reason"] = "changed"
    redacted = get_redacted_if_hash_mismatch(tampered, V12)
    assert redacted["content"] == {"membership": "knock"}


# Issue 21: what a received PDU may keep and reference ------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "unsigned", "kept"),
    [
        pytest.param(
            "m.room.member",
            {"age": 1, "knock_room_state": [], "x": 2},
            {"age": 1, "knock_room_state": []},
            id="member-knock-state",
        ),
        pytest.param(
            "m.room.member",
            {"invite_room_state": [], "m.relations": {}},
            {"invite_room_state": []},
            id="member-invite-state",
        ),
        pytest.param(
            "m.room.message",
            {"age": 1, "knock_room_state": []},
            {"age": 1},
            id="other-type-age-only",
        ),
        pytest.param("m.room.member", "not an object", {}, id="not-an-object"),
    ],
)
def test_build_received_pdu_keeps_only_allowed_unsigned(event_type, unsigned, kept):
    event = {"type": event_type, "content": {}, "unsigned": unsigned}
    assert build_received_pdu(event) == {"type": event_type, "content": {}, "unsigned": kept}
    assert event["unsigned"] == unsigned  # the input is not changed


def test_build_received_pdu_without_unsigned_is_unchanged():
    event = {"type": "m.room.member", "content": {}}
    assert build_received_pdu(event) is event


def test_check_pdu_references_in_room_refuses_events_of_another_room():
    event = {"prev_events": ["$p"], "auth_events": ["$a", "$unknown"]}
    check_pdu_references_in_room(event, "!r:x", {"$p": "!r:x", "$a": "!r:x"})
    for known in ({"$p": "!other:x"}, {"$a": "!other:x"}):
        with pytest.raises(MatrixError) as raised:
            check_pdu_references_in_room(event, "!r:x", known)
        assert raised.value.errcode == "M_FORBIDDEN"
        assert raised.value.status == 403


@pytest.mark.parametrize(
    "ts",
    [
        pytest.param(2**63, id="above-int64"),
        pytest.param(-(2**63) - 1, id="below-int64"),
        pytest.param("1", id="string"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="missing"),
    ],
)
def test_check_transaction_format_refuses_timestamps_outside_int64(ts):
    body = {"origin": "x", "pdus": []} if ts is None else {"origin_server_ts": ts}
    with pytest.raises(MatrixError) as refused:
        check_transaction_format(body)
    assert refused.value.errcode == "M_BAD_JSON"


def test_check_transaction_format_accepts_int64_bounds():
    check_transaction_format({"origin_server_ts": 2**63 - 1})
    check_transaction_format({"origin_server_ts": -(2**63)})


def _v10_event(event_type: str, sender: str, state_key: str | None = None, **content) -> dict:
    event = {
        "type": event_type,
        "sender": sender,
        "room_id": "!r:x.test",
        "content": content,
        "depth": 2,
        "prev_events": [],
        "auth_events": [],
        "origin_server_ts": 1,
    }
    if state_key is not None:
        event["state_key"] = state_key
    return event


def test_check_outlier_auth_is_step_4_alone():
    create = _v10_event("m.room.create", "@c:x.test", "", creator="@c:x.test", room_version="10")
    join = _v10_event("m.room.member", "@c:x.test", "@c:x.test", membership="join")
    message = _v10_event("m.room.message", "@c:x.test", body="hi")
    # passes on its auth events alone: no current state, no state before
    check_outlier_auth(message, V10, auth_events=[create, join], create_event=create)
    stranger = _v10_event("m.room.message", "@d:x.test", body="hi")
    assert (
        errcode_of(
            lambda: check_outlier_auth(stranger, V10, auth_events=[create], create_event=create)
        )
        == "M_FORBIDDEN"
    )
    # a badly chosen auth event (one the selection would not pick) is refused too
    other = _v10_event("m.room.member", "@e:x.test", "@e:x.test", membership="join")
    assert (
        errcode_of(
            lambda: check_outlier_auth(
                message, V10, auth_events=[create, join, other], create_event=create
            )
        )
        == "M_FORBIDDEN"
    )
