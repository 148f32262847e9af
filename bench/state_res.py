"""State resolution benchmark: matrix/state_res.resolve_state against Synapse's on one input.

A room forked in two, generated deterministically (no randomness: fixed names, timestamps and
key): a base of joined members, then two branches that both rename the same members, raise or
demote a moderator, ban or kick other members and set the topic. Resolving the two branches'
states meets a conflicted set of about 1,000 state events over about 10,000 auth-chain events.

Both resolvers get the same events (ours as JSON, Synapse's parsed by its make_event_from_dict
before the clock starts) and the same state sets; each call starts cold (no auth chain or
event cached from the call before). Synapse runs bench/synapse_state_res.py in its own
virtualenv, pinned to the same core as ours. Both answers must be the same state map; the
medians and their ratio are printed and written to bench/results/.
"""

import argparse
import datetime
import gc
import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.compare import MAX_SPREAD_PCT, format_ratio, intruder_pct, parse_cpu_busy, spread_pct
from matrix.auth_rules import StateKey, get_auth_event_keys
from matrix.events import add_content_hash, compute_event_id, compute_room_id_v12
from matrix.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from matrix.state_res import make_auth_chain_getter, resolve_state
from matrix.types import JsonDict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORKER = ROOT / "bench" / "synapse_state_res.py"
SERVER = "sr.bench.test"
CREATOR = f"@creator:{SERVER}"
MOD_A = f"@mod1:{SERVER}"  # raised in branch A, demoted in branch B
MOD_B = f"@mod2:{SERVER}"
BASE_TS = 1_700_000_000_000
BANS = 40  # bans in branch A, and as many kicks in branch B: power events
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORE = 0


@dataclass
class StateResInput:
    room_version: str
    room_id: str
    events: dict[str, JsonDict]
    state_sets: list[dict[StateKey, str]]


class _Room:
    """Builds events one by one; each branch keeps its own state and forward extremity."""

    def __init__(self, room_version: RoomVersion):
        self.room_version = room_version
        self.events: dict[str, JsonDict] = {}
        self.room_id = ""
        self.depth = 0

    def send(
        self,
        state: dict[StateKey, str],
        prev: list[str],
        event_type: str,
        state_key: str,
        sender: str,
        content: JsonDict,
    ) -> str:
        """A state event on top of ``prev`` (a one-element list, updated), authorised by
        ``state`` (updated); hashed but not signed (state resolution checks no signature)."""
        self.depth += 1
        event: JsonDict = {
            "type": event_type,
            "state_key": state_key,
            "sender": sender,
            "content": content,
            "origin_server_ts": BASE_TS + self.depth,
            "depth": self.depth,
            "prev_events": list(prev),
            "auth_events": [],
        }
        if self.room_id:
            event["room_id"] = self.room_id
        event["auth_events"] = [
            state[key] for key in get_auth_event_keys(event, self.room_version) if key in state
        ]
        hashed = add_content_hash(event)
        event_id = compute_event_id(hashed, self.room_version)
        self.events[event_id] = hashed
        state[(event_type, state_key)] = event_id
        prev[:] = [event_id]
        return event_id


def _member(index: int) -> str:
    return f"@u{index:05d}:{SERVER}"


def build_input(
    room_version_id: str = "12", conflicted: int = 1_000, auth_chain: int = 10_000
) -> StateResInput:
    """The forked room: about ``conflicted`` conflicted state events, ``auth_chain`` events."""
    room_version = KNOWN_ROOM_VERSIONS[room_version_id]
    v12 = room_version.room_id_from_create_event
    renamed = conflicted // 2 - 2 * BANS - 2  # keys with two events each: renames, bans, kicks,
    # the power levels and the topic
    branch_events = (2 + 2 * renamed + BANS) + (2 + renamed + BANS)
    base_members = auth_chain - 7 - branch_events
    if renamed < 1 or base_members < renamed + 2 * BANS:
        raise ValueError("conflicted too small, or auth_chain too small for it")
    room = _Room(room_version)
    state: dict[StateKey, str] = {}
    prev: list[str] = []
    create: JsonDict = {"room_version": room_version_id}
    if not v12:
        create["creator"] = CREATOR
        room.room_id = f"!bench:{SERVER}"
    create_id = room.send(state, prev, "m.room.create", "", CREATOR, create)
    if v12:
        # rooms/v12: the room id names the create event (which has none itself)
        room.room_id = compute_room_id_v12(room.events[create_id])
    room.send(state, prev, "m.room.member", CREATOR, CREATOR, {"membership": "join"})
    users = {MOD_A: 50, MOD_B: 50}
    if not v12:
        users[CREATOR] = 100  # rooms/v12: creators are not listed (they outrank everyone)
    levels = {"ban": 50, "kick": 50, "state_default": 50, "events_default": 0, "users": users}
    room.send(state, prev, "m.room.power_levels", "", CREATOR, levels)
    room.send(state, prev, "m.room.join_rules", "", CREATOR, {"join_rule": "public"})
    visibility = {"history_visibility": "shared"}
    room.send(state, prev, "m.room.history_visibility", "", CREATOR, visibility)
    for mod in (MOD_A, MOD_B):
        room.send(state, prev, "m.room.member", mod, mod, {"membership": "join"})
    for index in range(base_members):
        user = _member(index)
        room.send(state, prev, "m.room.member", user, user, {"membership": "join"})
    renamed_users = [_member(i) for i in range(renamed)]
    banned = [_member(i) for i in range(renamed, renamed + BANS)]
    kicked = [_member(i) for i in range(renamed + BANS, renamed + 2 * BANS)]

    def rename(branch_state: dict[StateKey, str], branch_prev: list[str], tag: str) -> None:
        for user in renamed_users:
            content = {"membership": "join", "displayname": f"{user[1:7]} {tag}"}
            room.send(branch_state, branch_prev, "m.room.member", user, user, content)

    # Branch A: the creator raises mod1, who bans; the members rename twice.
    state_a, prev_a = dict(state), list(prev)
    raised = {**levels, "users": {**users, MOD_A: 75}}
    room.send(state_a, prev_a, "m.room.power_levels", "", CREATOR, raised)
    rename(state_a, prev_a, "a1")
    for user in banned:
        room.send(state_a, prev_a, "m.room.member", user, MOD_A, {"membership": "ban"})
    rename(state_a, prev_a, "a2")
    room.send(state_a, prev_a, "m.room.topic", "", MOD_A, {"topic": "branch A"})
    # Branch B: the creator demotes mod1; mod2 kicks and sets the topic; one rename each.
    state_b, prev_b = dict(state), list(prev)
    demoted = {**levels, "users": {**users, MOD_A: 0}}
    room.send(state_b, prev_b, "m.room.power_levels", "", CREATOR, demoted)
    for user in kicked:
        room.send(state_b, prev_b, "m.room.member", user, MOD_B, {"membership": "leave"})
    rename(state_b, prev_b, "b1")
    room.send(state_b, prev_b, "m.room.topic", "", MOD_B, {"topic": "branch B"})
    return StateResInput(room_version_id, room.room_id, room.events, [state_a, state_b])


def describe_input(case: StateResInput) -> dict[str, int]:
    """Conflicted state events, auth difference and the events in the sets' full auth chains."""
    keys = {key for state_set in case.state_sets for key in state_set}
    conflicted = set()
    for key in keys:
        ids = {state_set.get(key) for state_set in case.state_sets}
        if len(ids) > 1:
            conflicted |= {event_id for event_id in ids if event_id is not None}
    chain = make_auth_chain_getter(case.events.get)
    full_chains = [
        set(state_set.values()).union(*(chain(e) for e in state_set.values()))
        for state_set in case.state_sets
    ]
    union = set().union(*full_chains)
    return {
        "events": len(case.events),
        "state_keys": len(keys),
        "conflicted_state_events": len(conflicted),
        "auth_chain_events": len(union),
        "auth_difference": len(union - full_chains[0].intersection(*full_chains[1:])),
    }


def _core_busy() -> int:
    return parse_cpu_busy(Path("/proc/stat").read_text())[CORE]


def time_ours(case: StateResInput, repeat: int) -> tuple[dict[StateKey, str], list[float], float]:
    """``repeat`` cold calls of resolve_state on core CORE: the answer, the seconds of each call
    and how much of the core other work took meanwhile (%)."""
    room_version = KNOWN_ROOM_VERSIONS[case.room_version]
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CORE})
    try:
        busy_before, cpu_before, wall_before = _core_busy(), time.process_time(), time.monotonic()
        seconds = []
        resolved: dict[StateKey, str] = {}
        for _ in range(repeat):
            gc.collect()  # each call starts with the same heap (as the worker does)
            started = time.perf_counter()
            resolved = resolve_state(room_version, case.state_sets, case.events.get)
            seconds.append(time.perf_counter() - started)
        wall = time.monotonic() - wall_before
        other = intruder_pct(
            _core_busy() - busy_before, time.process_time() - cpu_before, wall, CLOCK_TICKS
        )
    finally:
        os.sched_setaffinity(0, affinity)
    return resolved, seconds, other


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_synapse(
    case: StateResInput, synapse_python: str, repeat: int
) -> tuple[dict[StateKey, str], list[float], list[float], list[str], float]:
    """``repeat`` cold calls of Synapse's resolve_events_with_store in its venv, on core CORE:
    the answer, the seconds of each call and of its store, the event ids Synapse computed, and
    how much of the core other work took while the worker ran (%)."""
    document = {
        "room_version": case.room_version,
        "room_id": case.room_id,
        "events": list(case.events.values()),
        "state_sets": [
            [[key[0], key[1], event_id] for key, event_id in state_set.items()]
            for state_set in case.state_sets
        ],
        "repeat": repeat,
    }
    busy_before, cpu_before, wall_before = _core_busy(), _children_cpu_s(), time.monotonic()
    proc = subprocess.run(
        ["taskset", "-c", str(CORE), synapse_python, str(WORKER)],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    wall = time.monotonic() - wall_before
    other = intruder_pct(
        _core_busy() - busy_before, _children_cpu_s() - cpu_before, wall, CLOCK_TICKS
    )
    if proc.returncode != 0:
        raise RuntimeError(f"synapse state res worker failed:\n{proc.stderr[-3000:]}")
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    resolved = {(t, k): e for t, k, e in answer["resolved"]}
    return resolved, answer["seconds"], answer["store_seconds"], answer["event_ids"], other


def state_differences(
    ours: Mapping[StateKey, str], theirs: Mapping[StateKey, str], limit: int = 10
) -> list[str]:
    """The keys the two resolved states disagree on, described (at most ``limit``)."""
    keys = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
    return [f"{key}: ours {ours.get(key)}, Synapse {theirs.get(key)}" for key in keys[:limit]]


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def run_case(
    room_version: str, synapse_python: str, rounds: int, repeat: int, log: Callable[[str], None]
) -> dict[str, Any]:
    started = time.perf_counter()
    case = build_input(room_version)
    shape = describe_input(case)
    log(f"v{room_version}: input {shape} built in {time.perf_counter() - started:.1f}s")
    ours_s: list[float] = []
    synapse_s: list[float] = []
    store_s: list[float] = []
    others: list[dict[str, float]] = []
    differences: list[str] = []
    ids_match = True
    for index in range(rounds):
        ours, seconds, other_ours = time_ours(case, repeat)
        ours_s += seconds
        theirs, syn_seconds, syn_store, event_ids, other_syn = time_synapse(
            case, synapse_python, repeat
        )
        synapse_s += syn_seconds
        store_s += syn_store
        others.append({"ours": other_ours, "synapse": other_syn})
        ids_match = ids_match and event_ids == sorted(case.events)
        differences = state_differences(ours, theirs)
        log(
            f"v{room_version}: round {index + 1}/{rounds}: ours {median_ms(seconds)} ms, "
            f"Synapse {median_ms(syn_seconds)} ms (store {median_ms(syn_store)} ms); other work "
            f"on core {CORE}: {other_ours}% / {other_syn}%"
        )
    algorithm_s = [total - store for total, store in zip(synapse_s, store_s, strict=True)]
    busy = any(max(other.values()) > 10 for other in others)
    result = {
        "room_version": room_version,
        "input": shape,
        "same_event_ids": ids_match,
        "same_resolved_state": not differences,
        "differences": differences,
        "resolved_keys": len(ours),
        "ours_ms": [round(s * 1000, 2) for s in ours_s],
        "synapse_ms": [round(s * 1000, 2) for s in synapse_s],
        "synapse_store_ms": [round(s * 1000, 2) for s in store_s],
        "median_ms": {
            "ours": median_ms(ours_s),
            "synapse": median_ms(synapse_s),
            "synapse_without_store": median_ms(algorithm_s),
        },
        "spread_pct": {
            "ours": spread_pct(ours_s),
            "synapse": spread_pct(synapse_s),
        },
        "other_work_pct": others,
        "busy": busy,
    }
    # The fastest call of each: on a machine whose speed drifts (shared, virtualised), the least
    # disturbed measurement of the same work.
    result["best_ms"] = {
        "ours": round(min(ours_s) * 1000, 2),
        "synapse": round(min(synapse_s) * 1000, 2),
    }
    result["speedup_best"] = round(min(synapse_s) / min(ours_s), 2)
    medians = result["median_ms"]
    result["speedup"] = round(medians["synapse"] / medians["ours"], 2)
    result["speedup_without_store"] = round(medians["synapse_without_store"] / medians["ours"], 2)
    return result


def write_markdown(report: dict[str, Any], path: Path) -> None:
    lines = [
        f"# State resolution benchmark {report['date']} at {report['commit']}",
        "",
        f"Machine: {report['machine']}. Both resolvers pinned to core {CORE}; "
        f"{report['rounds']} rounds of {report['repeat']} cold calls each, alternating ours and "
        f"Synapse {report['synapse_version']}'s (`synapse.state.v2.resolve_events_with_store` "
        "with an in-memory store, bench/synapse_state_res.py). Load average before/after: "
        f"{' '.join(report['loadavg_before'])} / {' '.join(report['loadavg_after'])}.",
        "",
        "| room version | conflicted events | auth-chain events | auth difference | ours ms | "
        "Synapse ms | of which its store | Synapse / ours | without the store | "
        "best ours / Synapse ms | ratio of bests | same state | spread ours / Synapse | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: "
        "| --- |",
    ]
    for case in report["cases"]:
        shape, medians, spread = case["input"], case["median_ms"], case["spread_pct"]
        store = statistics.median(case["synapse_store_ms"])
        noisy = max(spread.values()) > MAX_SPREAD_PCT
        state = "busy" if case["busy"] else ("noisy" if noisy else "clean")
        lines.append(
            f"| {case['room_version']} | {shape['conflicted_state_events']:,} | "
            f"{shape['auth_chain_events']:,} | {shape['auth_difference']:,} | "
            f"{medians['ours']:.1f} | {medians['synapse']:.1f} | {store:.1f} | "
            f"{format_ratio(case['speedup'])} | {format_ratio(case['speedup_without_store'])} | "
            f"{case['best_ms']['ours']:.1f} / {case['best_ms']['synapse']:.1f} | "
            f"{format_ratio(case['speedup_best'])} | "
            f"{'yes' if case['same_resolved_state'] else '**no**'} | "
            f"{spread['ours']:.0f}% / {spread['synapse']:.0f}% | {state} |"
        )
        for difference in case["differences"]:
            lines.append(f"  - v{case['room_version']} differs at {difference}")
    lines += [
        "",
        'Medians in ms ("best": the fastest call of each). "Without the store": Synapse\'s '
        "time less the time spent in the in-memory store that stands in for its database "
        "(auth chain difference, conflicted subgraph, event look-ups); ours computes the same "
        "from the events in its own time.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    from bench.run import git_commit, machine
    from interop.synapse_server import install_synapse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--room-versions", nargs="+", default=["12", "10"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="calls per round per resolver")
    parser.add_argument("--synapse-python", help="python of Synapse's virtualenv")
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    args = parser.parse_args()
    begun = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - begun:6.1f}s] {message}", flush=True)

    synapse_python = args.synapse_python or install_synapse()
    from bench.vs_synapse import installed_version

    loadavg_before = Path("/proc/loadavg").read_text().split()[:3]
    cases = [
        run_case(version, synapse_python, args.rounds, args.repeat, log)
        for version in args.room_versions
    ]
    m = machine()
    now = datetime.datetime.now(datetime.UTC)
    report = {
        "date": now.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "machine": f"{m['nproc']} cores, {m['cpu_model']}, Python {m['python']}",
        "synapse_version": installed_version(synapse_python),
        "rounds": args.rounds,
        "repeat": args.repeat,
        "cases": cases,
        "loadavg_before": loadavg_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
    }
    out = Path("/tmp") if args.no_write else RESULTS
    stem = f"{report['date']}-{report['commit']}-state-res"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out / f"{stem}.md")
    print((out / f"{stem}.md").read_text())
    log(f"wrote {out / stem}.md/.json")
    return 0 if all(case["same_resolved_state"] for case in cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
