"""matrix/visibility.py: history visibility for servers (Synapse filter_events_for_server)."""

import pytest

from matrix.visibility import get_history_visibility, is_event_visible_to_server


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(None, "shared", id="no-event"),
        pytest.param({"content": {}}, "shared", id="no-value"),
        pytest.param({"content": {"history_visibility": 5}}, "shared", id="not-a-string"),
        pytest.param({"content": {"history_visibility": "joined"}}, "joined", id="joined"),
    ],
)
def test_get_history_visibility(event, expected):
    assert get_history_visibility(event) == expected


@pytest.mark.parametrize(
    ("visibility", "memberships", "visible"),
    [
        pytest.param("world_readable", [], True, id="world-readable"),
        pytest.param("shared", ["leave"], True, id="shared"),
        pytest.param("something-new", [], True, id="unknown-value"),
        pytest.param("invited", ["invite"], True, id="invited-invite"),
        pytest.param("invited", ["join"], True, id="invited-join"),
        pytest.param("invited", ["knock", "leave"], False, id="invited-knock"),
        pytest.param("joined", ["invite"], False, id="joined-invite"),
        pytest.param("joined", ["leave", "join"], True, id="joined-join"),
        pytest.param("joined", [], False, id="joined-nobody"),
    ],
)
def test_is_event_visible_to_server(visibility, memberships, visible):
    assert is_event_visible_to_server(visibility, memberships) is visible
