"""Pure helpers of `make bench`'s comparison with Synapse: per-core intruders, busy runs, ratios."""

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

# /proc/stat per-CPU columns that are not idle time: user nice system (idle iowait) irq softirq
# steal. Steal is time the hypervisor gave to another guest: on a shared machine, lost to us.
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)

# A run is busy when other work took more than this share of a core we measure on.
MAX_INTRUDER_PCT = 10.0
# A pinned server below this share of its core was starved (or did not saturate: c too low).
MIN_SERVER_BUSY_PCT = 90.0
# A cell whose runs spread more than this around their median is reported as noisy.
MAX_SPREAD_PCT = 15.0


def parse_cpu_busy(proc_stat: str) -> dict[int, int]:
    """Busy jiffies per CPU from the text of /proc/stat (the ``cpuN`` lines)."""
    busy: dict[int, int] = {}
    for line in proc_stat.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        values = [int(value) for value in rest.split()]
        busy[int(name[3:])] = sum(values[i] for i in _BUSY_COLUMNS if i < len(values))
    return busy


def intruder_pct(busy_jiffies: int, own_cpu_s: float, wall_s: float, ticks: int) -> float:
    """The share of one core's wall time (%) spent on anything but our own process on it."""
    if wall_s <= 0:
        return 0.0
    other_s = busy_jiffies / ticks - own_cpu_s
    return max(0.0, round(other_s * 100 / wall_s, 1))


def busy_reasons(cell: Mapping[str, Any], label: str) -> list[str]:
    """Why one measured cell does not count as a clean run (empty: it does)."""
    reasons = []
    for core in ("server_core", "load_core"):
        value = cell.get(f"other_{core}_pct")
        if value is not None and value > MAX_INTRUDER_PCT:
            reasons.append(f"{label}: other work took {value:.0f}% of the {core.replace('_', ' ')}")
    busy = cell.get("server_busy_pct")
    if busy is not None and busy < MIN_SERVER_BUSY_PCT:
        reasons.append(f"{label}: server used only {busy:.0f}% of its core")
    if cell.get("errors"):
        reasons.append(f"{label}: {cell['errors']} errors")
    return reasons


def run_busy_reasons(cells: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Why a run (server name -> room -> cell) does not count as clean (empty: it does)."""
    return [
        reason
        for name, per_room in cells.items()
        for room, cell in per_room.items()
        for reason in busy_reasons(cell, f"{name} {room}")
    ]


def describe_run(reasons: Sequence[str]) -> str:
    """``clean``, or ``busy (...)`` with the first three reasons."""
    if not reasons:
        return "clean"
    more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    return "busy (" + "; ".join(reasons[:3]) + more + ")"


def spread_pct(values: Sequence[float]) -> float:
    """(max - min) / median, in %: how far a cell's runs disagree."""
    if len(values) < 2:
        return 0.0
    middle = statistics.median(values)
    return round((max(values) - min(values)) * 100 / middle, 1) if middle else 0.0


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """Our figure over Synapse's (None when either is missing or Synapse's is 0)."""
    if ours is None or not theirs:
        return None
    return round(ours / theirs, 3)


def format_ratio(value: float | None, *, lower_is_better: bool = False) -> str:
    """``5.40x`` for a rate; ``0.18x (1/5.6)`` for a latency, where lower is better."""
    if value is None:
        return "n/a"
    if lower_is_better and value > 0:
        return f"{value:.3f}x (1/{1 / value:.1f})"
    return f"{value:.2f}x"
