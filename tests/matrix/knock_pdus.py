"""A signed knock PDU built from parts, and the errcode a pure check raises: for the knock and
receipt-check tests."""

import pytest

from matrix.errors import MatrixError
from matrix.events import compute_event_id, sign_event
from matrix.room_versions import V11
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
