"""The state resolution benchmark's input: deterministic, and the size it was asked for."""

import pytest

from bench.state_res import build_input, describe_input, state_differences


@pytest.mark.parametrize(
    "room_version", [pytest.param("12", id="v12"), pytest.param("10", id="v10")]
)
def test_build_input_has_the_conflicted_and_auth_chain_sizes_asked(room_version):
    case = build_input(room_version, conflicted=200, auth_chain=600)
    shape = describe_input(case)
    assert shape["conflicted_state_events"] == 200
    assert shape["auth_chain_events"] == shape["events"] == 600
    assert len(case.state_sets) == 2


def test_build_input_is_deterministic():
    first = build_input("12", conflicted=200, auth_chain=600)
    second = build_input("12", conflicted=200, auth_chain=600)
    assert first.room_id == second.room_id
    assert first.state_sets == second.state_sets


def test_build_input_refuses_sizes_it_cannot_meet():
    with pytest.raises(ValueError, match="too small"):
        build_input("12", conflicted=100, auth_chain=600)


def test_state_differences_names_each_disagreeing_key():
    ours = {("m.room.topic", ""): "$a", ("m.room.name", ""): "$n"}
    theirs = {("m.room.topic", ""): "$b", ("m.room.name", ""): "$n"}
    assert state_differences(ours, theirs) == ["('m.room.topic', ''): ours $a, Synapse $b"]
