"""`python -m bench.send_join`: a full send_join's latency, Antechamber against Synapse, same run.

A fake remote homeserver joins new users one at a time to a public room of 1,000 members
(`--sizes 1000 10000` adds 10,000: Synapse's room of that size takes about 18 minutes to build
the first time, then is cached) hosted by each server (bench/join_send.py): make_join, then
send_join (v2), whose answer is the whole state before the join and its auth chain. Every join
is a new user, so no answer is the previous one's. Each server is idle before each join, so what
one join leaves running is not timed in the next. Reported: p50 and p90 of the send_join round
trip until its answer is read whole (make_join apart), the answer's size, each server's CPU per
join (make_join, send_join and whatever follows until it is idle) and its peak RSS (VmHWM)
before the first join and after the last. Issue 15's goal: Antechamber's p50 at most 1/10 of
Synapse's.
"""

import statistics
from typing import Any

from bench.compare import format_ratio
from bench.join_send import (
    Figure,
    Host,
    Measured,
    compare_runs,
    fixtures_line,
    join,
    main,
    over_runs,
    peak_rss_mb,
    result_lines,
    settle,
    targets,
)
from bench.load import _percentile
from tests.remote import RemoteHomeserver

JOINS_PER_RUN = 10
# Figures compared with Synapse's (all lower is better).
COMPARED = ("send_join_p50_ms", "send_join_p90_ms", "make_join_p50_ms", "server_cpu_ms_per_join")


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--joins", type=int, default=JOINS_PER_RUN, help="joins per server, room and run"
    )


def measure_joins(
    host: Host, remote: RemoteHomeserver, room_id: str, members: int, count: int, tag: str
) -> dict[str, Any]:
    """``count`` new users of ``remote`` join ``room_id`` on ``host``, one after the other, the
    server idle before each."""
    joins = []
    with Measured(host) as measured:
        for index in range(count):
            joined = join(host, remote, room_id, f"@{tag}-{index}:{remote.server_name}")
            if len(joined.state) < members:
                raise RuntimeError(
                    f"{host.name}: send_join answered {len(joined.state)} state events in a room "
                    f"of {members} members"
                )
            joins.append(
                {
                    "make_join_ms": round(joined.make_join_ms, 3),
                    "send_join_ms": round(joined.send_join_ms, 3),
                    "response_bytes": joined.response_bytes,
                    "state_events": len(joined.state),
                    "auth_chain_events": len(joined.auth_chain),
                    # How long the server kept working after it answered (0.5 s at least).
                    "settle_s": round(settle(host), 3),
                }
            )
    return {"joins": joins, **measured.figures}


def cell_p50(cell: dict[str, Any]) -> float:
    """The median send_join of one server's turn in one run."""
    return round(statistics.median(one["send_join_ms"] for one in cell["joins"]), 3)


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's figures for one room over the runs counted: percentiles over every join."""
    joins = [one for cell in cells for one in cell["joins"]]
    send = sorted(one["send_join_ms"] for one in joins)

    def med(key: str) -> float:
        return round(statistics.median(one[key] for one in joins), 3)

    return {
        "joins": len(joins),
        "send_join_p50_ms": round(statistics.median(send), 3),
        "send_join_p90_ms": round(_percentile(send, 0.90), 3),
        "send_join_min_ms": send[0],
        "send_join_max_ms": send[-1],
        "make_join_p50_ms": med("make_join_ms"),
        "response_kb": round(med("response_bytes") / 1024, 1),
        "state_events": med("state_events"),
        "auth_chain_events": med("auth_chain_events"),
        "settle_p50_s": med("settle_s"),
        "server_cpu_ms_per_join": round(
            sum(cell["server_cpu_s"] for cell in cells) * 1000 / len(joins), 2
        ),
    }


# Logged run by run, and its ratio run by run reported.
P50 = Figure("send_join p50", "ms", cell_p50, 1)


def run(*, hosts: list[Host], remote: RemoteHomeserver, args: Any, log: Any) -> dict[str, Any]:
    rss_start = {host.name: peak_rss_mb(host) for host in hosts}
    # One join per server and room first: the server fetches the remote's key and warms up.
    for host in hosts:
        for size in args.sizes:
            join(host, remote, host.rooms[size], f"@warmup-{size}:{remote.server_name}")
            settle(host)

    def measure_one(host: Host, size: int, run_index: int) -> dict[str, Any]:
        tag = f"j{run_index}-{size}"
        return measure_joins(host, remote, host.rooms[size], size, args.joins, tag)

    section = compare_runs(hosts, args, measure_one, summarise, COMPARED, P50, log)
    section["joins_per_run"] = args.joins
    section["peak_rss_mb"] = {
        host.name: {"before": rss_start[host.name], "after": peak_rss_mb(host)} for host in hosts
    }
    section["targets"] = targets(
        section,
        "send_join_p50_ms",
        "send_join p50 <= 1/10 of Synapse's",
        0.1,
        lower_is_better=True,
    )
    return section


def markdown(section: dict[str, Any]) -> list[str]:
    medians, ratios = section["medians"], section["ratios"]["synapse"]
    rss = ", ".join(
        f"{name} {peak['before']:.0f} MB before the first join, {peak['after']:.0f} MB after "
        "the last"
        for name, peak in section["peak_rss_mb"].items()
    )
    lines = [
        f"## send_join (v2) of a new user, Antechamber against Synapse "
        f"{section['synapse_version']}",
        "",
        f"`python -m bench.send_join`: a fake remote makes and sends the join of a new user into "
        f"a public room (v12), {section['joins_per_run']} joins per server and room in each run, "
        f"each server idle before each join; {over_runs(section, 'percentiles')} of all their "
        "joins. Latency: the send_join round trip until the whole answer (state before the "
        "join and its auth chain) is read; make_join apart. CPU: the server's, per join, "
        f"make_join and send_join and whatever it did after answering until idle. Peak RSS "
        f"(VmHWM): {rss}.",
        "",
        "| room | joins A / S | send_join p50 ms A | S | ratio | p90 ms A | S | ratio "
        "| make_join p50 ms A | S | answer KB A / S | state + auth chain events A | S "
        "| CPU ms/join A | S | ratio | p50 ratio by run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for room in section["rooms"]:
        a, s, r = medians["antechamber"][room], medians["synapse"][room], ratios[room]
        by_run = [value for value in section["ratio_by_run"]["synapse"][room] if value]
        cells = [
            room,
            f"{a['joins']} / {s['joins']}",
            f"{a['send_join_p50_ms']:,.1f}",
            f"{s['send_join_p50_ms']:,.1f}",
            format_ratio(r["send_join_p50_ms"], lower_is_better=True),
            f"{a['send_join_p90_ms']:,.1f}",
            f"{s['send_join_p90_ms']:,.1f}",
            format_ratio(r["send_join_p90_ms"], lower_is_better=True),
            f"{a['make_join_p50_ms']:,.1f}",
            f"{s['make_join_p50_ms']:,.1f}",
            f"{a['response_kb']:,.0f} / {s['response_kb']:,.0f}",
            f"{a['state_events']:,.0f} + {a['auth_chain_events']:,.0f}",
            f"{s['state_events']:,.0f} + {s['auth_chain_events']:,.0f}",
            f"{a['server_cpu_ms_per_join']:,.1f}",
            f"{s['server_cpu_ms_per_join']:,.1f}",
            format_ratio(r["server_cpu_ms_per_join"], lower_is_better=True),
            f"1/{1 / max(by_run):.1f}-1/{1 / min(by_run):.1f}" if by_run else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *result_lines(section, P50)]
    lines += ["", *fixtures_line(section["fixtures"])]
    return lines


if __name__ == "__main__":
    raise SystemExit(main("send_join", __doc__ or "", add_arguments, run))
