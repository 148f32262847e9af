"""The pure knock decisions: template building and the send_knock format and auth checks."""

import pytest

from matrix.errors import MatrixError
from matrix.events import compute_event_id, sign_event
from matrix.knock import (
    build_knock_template,
    check_make_knock_allowed,
    check_send_knock_event,
)
from matrix.pdu_checks import check_pdu_format
from matrix.room_versions import V6, V11
from tests.factories import make_signing_key

ORIGIN = "remote.test"
USER = "@alice:remote.test"
ROOM = "!room:resident.test"


def signed_knock(room_version=V11, **changes) -> tuple[dict, str]:
    event = {
        "room_id": ROOM,
        "type": "m.room.member",
        "state_key": USER,
        "sender": USER,
        "origin": ORIGIN,
        "origin_server_ts": 1000,
        "content": {"membership": "knock"},
        "depth": 4,
        "prev_events": ["$" + "a" * 43],
        "auth_events": ["$" + "b" * 43],
    }
    event.update(changes)
    signed = sign_event(event, room_version, ORIGIN, make_signing_key())
    return signed, compute_event_id(signed, room_version)


def errcode_of(call) -> str:
    with pytest.raises(MatrixError) as caught:
        call()
    return caught.value.errcode


def test_check_make_knock_allowed_order():
    assert errcode_of(lambda: check_make_knock_allowed(V11, ["12"], USER, ORIGIN)) == (
        "M_INCOMPATIBLE_ROOM_VERSION"
    )
    assert errcode_of(lambda: check_make_knock_allowed(V6, ["6"], USER, ORIGIN)) == "M_FORBIDDEN"
    assert errcode_of(lambda: check_make_knock_allowed(V11, ["11"], USER, "x.test")) == (
        "M_FORBIDDEN"
    )
    check_make_knock_allowed(V11, ["11"], USER, ORIGIN)


def test_build_knock_template_depth_is_capped():
    create = {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@c:resident.test",
        "content": {"room_version": "11"},
        "room_id": ROOM,
    }
    join_rules = {
        "type": "m.room.join_rules",
        "state_key": "",
        "sender": "@c:resident.test",
        "content": {"join_rule": "knock"},
        "room_id": ROOM,
    }
    state = {("m.room.create", ""): create, ("m.room.join_rules", ""): join_rules}
    ids = {("m.room.create", ""): "$c", ("m.room.join_rules", ""): "$j"}
    event = build_knock_template(
        V11,
        room_id=ROOM,
        user_id=USER,
        state=state,
        state_event_ids=ids,
        prev_events=[("$p", V11.max_depth)],
        origin="resident.test",
        origin_server_ts=5,
    )
    assert event["depth"] == V11.max_depth
    assert event["auth_events"] == ["$c", "$j"]


def test_check_pdu_format_accepts_a_signed_knock():
    event, event_id = signed_knock()
    check_pdu_format(event, V11)
    check_send_knock_event(event, V11, room_id=ROOM, event_id=event_id, origin=ORIGIN)


def test_check_send_knock_event_invalid_sender():
    event, event_id = signed_knock(sender="not-a-user", state_key="not-a-user")
    call = lambda: check_send_knock_event(  # noqa: E731
        event, V11, room_id=ROOM, event_id=event_id, origin=ORIGIN
    )
    assert errcode_of(call) == "M_INVALID_PARAM"
