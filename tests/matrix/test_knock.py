"""The pure knock decisions: template building and the send_knock format and auth checks."""

from matrix.knock import (
    build_knock_template,
    check_make_knock_allowed,
    check_send_knock_event,
)
from matrix.pdu_checks import check_pdu_format
from matrix.room_versions import V6, V11
from tests.matrix.knock_pdus import ORIGIN, ROOM, USER, errcode_of, signed_knock


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
