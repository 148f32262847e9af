"""The pure helpers of make bench's Synapse comparison: /proc/stat parsing, busy runs, ratios."""

import pytest

from bench.compare import (
    busy_reasons,
    format_ratio,
    intruder_pct,
    parse_cpu_busy,
    ratio,
    spread_pct,
)

PROC_STAT = """cpu  344088 0 17539 1083115 1983 0 1679 29354 0 0
cpu0 128059 0 8195 587508 640 0 403 14550 0 0
cpu1 216028 0 9343 495607 1343 0 1275 14804 0 0
intr 2104962 0 0 0
"""


def test_parse_cpu_busy_counts_user_system_irq_and_steal_not_idle():
    assert parse_cpu_busy(PROC_STAT) == {
        0: 128059 + 8195 + 403 + 14550,
        1: 216028 + 9343 + 1275 + 14804,
    }


def test_intruder_pct_is_the_core_time_not_spent_by_our_process():
    # 300 busy jiffies at 100 Hz over 3 s of wall time, 2.4 s of them ours: 20% was someone else's
    assert intruder_pct(300, 2.4, 3.0, 100) == pytest.approx(20.0)


def test_intruder_pct_never_negative_and_zero_without_wall_time():
    assert intruder_pct(100, 1.2, 1.0, 100) == 0.0
    assert intruder_pct(100, 0.0, 0.0, 100) == 0.0


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param(
            {"other_server_core_pct": 1.0, "other_load_core_pct": 2.0, "server_busy_pct": 99.0},
            0,
            id="clean",
        ),
        pytest.param({"other_server_core_pct": 25.0, "server_busy_pct": 99.0}, 1, id="intruder"),
        pytest.param({"server_busy_pct": 60.0}, 1, id="starved-server"),
        pytest.param({"errors": 3, "server_busy_pct": 99.0}, 1, id="errors"),
    ],
)
def test_busy_reasons_name_each_thing_that_spoils_a_run(cell, expected):
    assert len(busy_reasons(cell, "antechamber 10-members")) == expected


def test_spread_pct_is_range_over_median():
    assert spread_pct([90.0, 100.0, 110.0]) == pytest.approx(20.0)
    assert spread_pct([100.0]) == 0.0


def test_ratio_and_its_formats():
    assert ratio(2800.0, 520.0) == pytest.approx(5.385)
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 1.0) is None
    assert format_ratio(5.385) == "5.38x"
    assert format_ratio(0.2, lower_is_better=True) == "0.200x (1/5.0)"
    assert format_ratio(None) == "n/a"
