"""`make oracle`: matrix/'s auth verdicts against Synapse's event_auth on generated rooms, events.

Hypothesis generates cases (oracle/cases.py) in every room version 1-12, seeded and
derandomized; each goes to matrix/ in this process and to Synapse in a subprocess run by the
Synapse virtualenv's python (oracle/synapse_worker.py, JSON lines). A disagreement is either one
of the documented Synapse deviations (oracle/deviations.py) or a failure: Hypothesis shrinks it
and the minimal case is printed as JSON. ORACLE_CASES (default 2000) sets the number of cases,
ORACLE_SEED a different seed.
"""

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

from matrix.auth_rules import check_auth_events_selection, check_auth_rules
from matrix.errors import MatrixError
from matrix.events import compute_event_id, compute_room_id_v12, get_event_reference_ids
from matrix.room_versions import KNOWN_ROOM_VERSIONS
from matrix.types import JsonDict
from oracle.cases import oracle_case
from oracle.deviations import Disagreement, classify

WORKER = Path(__file__).with_name("synapse_worker.py")
PROGRESS_EVERY = 10_000


def our_verdict(case: JsonDict) -> tuple[str, str]:
    """What the intake does with a PDU's own auth events (matrix.pdu_checks step 4)."""
    room_version = KNOWN_ROOM_VERSIONS[case["room_version"]]
    event = case["event"]
    by_id = {compute_event_id(e, room_version): e for e in case["store"]}
    auth_events = [by_id[i] for i in get_event_reference_ids(event["auth_events"]) if i in by_id]
    create_event = None
    if room_version.room_id_from_create_event and event["type"] != "m.room.create":
        # rooms/v12: the room id names the create event, never listed in auth_events
        create_event = next(
            (
                e
                for e in case["store"]
                if e["type"] == "m.room.create"
                and "room_id" not in e
                and compute_room_id_v12(e) == event["room_id"]
            ),
            None,
        )
    signatures = event.get("signatures", {})
    try:
        check_auth_events_selection(event, auth_events, room_version)
        auth_state = {(e["type"], e["state_key"]): e for e in auth_events}
        check_auth_rules(
            event,
            auth_state,
            room_version,
            create_event=create_event,
            is_signed_by=lambda server: server in signatures,
        )
    except MatrixError as exc:
        return "deny", str(exc)
    return "allow", ""


class Synapse:
    """The Synapse worker process: one JSON line per case each way."""

    def __init__(self, python: str) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        self.process = subprocess.Popen(
            [python, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )

    def verdict(self, case: JsonDict) -> JsonDict:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(case) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the Synapse worker exited")
        answer: JsonDict = json.loads(line)
        return answer

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


class Stats:
    def __init__(self) -> None:
        self.cases = 0
        self.agree = 0
        self.agree_synapse_crashed = 0
        self.expected: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.realistic = 0
        self.realistic_agree = 0
        self.unexpected = 0


def compare(case: JsonDict, synapse: Synapse, stats: Stats | None) -> None:
    ours, our_reason = our_verdict(case)
    theirs = synapse.verdict(case)
    # An exception in Synapse's auth code, or an event its parser refuses (a v12 create event
    # with a room_id), is no acceptance: counted as a rejection
    synapse_side = "allow" if theirs["verdict"] == "allow" else "deny"
    if stats is not None:
        stats.cases += 1
        stats.realistic += not case["junk"]
        if stats.cases % PROGRESS_EVERY == 0:
            print(f"oracle: {stats.cases} cases...", file=sys.stderr, flush=True)
    if ours == synapse_side:
        if stats is not None:
            stats.agree += 1
            stats.agree_synapse_crashed += theirs["verdict"] in ("crash", "invalid")
            stats.realistic_agree += not case["junk"]
        return
    kind = classify(Disagreement(ours, theirs, case))
    if kind is not None:
        if stats is not None:
            stats.expected[kind] += 1
        return
    if stats is not None:
        stats.unexpected += 1
    raise AssertionError(
        "unexplained disagreement\n"
        f"  matrix/: {ours} {our_reason}\n"
        f"  Synapse: {theirs['verdict']} {theirs['reason']} (in {theirs['where']})\n"
        f"  case: {json.dumps(case, sort_keys=True)}"
    )


def run(cases: int, synapse_python: str, seed_value: int | None) -> int:
    synapse = Synapse(synapse_python)
    stats = Stats()
    failure: list[BaseException] = []
    shrinking = False

    def test(case: JsonDict) -> None:
        nonlocal shrinking
        # Only generated cases are counted: after the first failure Hypothesis is shrinking
        try:
            compare(case, synapse, None if shrinking else stats)
        except AssertionError:
            shrinking = True
            raise

    configured = settings(
        max_examples=cases,
        derandomize=seed_value is None,
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )(given(oracle_case())(test))
    if seed_value is not None:
        configured = seed(seed_value)(configured)
    started = time.monotonic()
    try:
        configured()
    except AssertionError as exc:
        failure.append(exc)
    finally:
        synapse.close()
    elapsed = time.monotonic() - started
    _report(stats, elapsed)
    if failure:
        print(f"\nFAIL (minimal case after shrinking):\n{failure[0]}", file=sys.stderr)
        return 1
    return 0


def _report(stats: Stats, elapsed: float) -> None:
    def pct(n: int, d: int) -> str:
        return f"{100 * n / d:.2f}%" if d else "n/a"

    print(f"oracle: {stats.cases} cases in {elapsed:.0f}s")
    print(
        f"  agreements: {stats.agree} ({pct(stats.agree, stats.cases)}; "
        f"{stats.agree_synapse_crashed} of them Synapse raised or refused to parse)"
    )
    print(
        f"  realistic cases: {stats.realistic}, agreements {stats.realistic_agree} "
        f"({pct(stats.realistic_agree, stats.realistic)})"
    )
    print(f"  expected differences: {sum(stats.expected.values())}")
    for kind, count in sorted(stats.expected.items(), key=lambda kv: -kv[1]):
        print(f"    {kind}: {count}")
    print(f"  unexpected: {stats.unexpected}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synapse-python", required=True)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    return run(args.cases, args.synapse_python, args.seed)


if __name__ == "__main__":
    sys.exit(main())


__all__: list[Any] = ["compare", "main", "our_verdict"]
