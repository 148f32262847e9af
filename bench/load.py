"""Load generators: wrk when installed (Debian's `wrk`), else an asyncio/httpx client."""

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int  # socket errors and non-2xx answers
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    requests_file: Path | None = None,
    cpu: int | None = None,
    threads: int = 1,
) -> LoadResult:
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
    ]
    command += ["--timeout", "10s", "-s", str(WRK_SCRIPT)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    env = dict(os.environ)
    if requests_file is not None:
        env["REQUESTS_FILE"] = str(requests_file)
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("{"))
    data = json.loads(line)
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["socket_errors"] + data["non2xx"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


async def _run_httpx(
    url: str,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None,
    bodies: list[tuple[str, str, bytes]] | None,
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    next_body = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, next_body
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                if bodies:
                    path, auth, body = bodies[next_body % len(bodies)]
                    next_body += 1
                    response = await client.put(
                        url + path,
                        content=body,
                        headers={"Authorization": auth, "Content-Type": "application/json"},
                    )
                else:
                    response = await client.get(url, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code >= 300:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        errors=errors,
        p50_ms=statistics.median(latencies) * 1000 if latencies else 0.0,
        p90_ms=_percentile(latencies, 0.90) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
    )


def run_load(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    requests_file: Path | None = None,
    cpu: int | None = None,
    threads: int = 1,
) -> LoadResult:
    """``connections`` concurrent keep-alive connections for ``seconds`` against ``url``.

    ``requests_file`` (lines "path\\tauthorization\\tbody") turns it into PUTs of those bodies,
    relative to ``url``'s origin, in order.
    """
    if wrk_available():
        target = url
        if requests_file is not None:
            target = url.rstrip("/") + "/"
        return run_wrk(
            target,
            connections=connections,
            seconds=seconds,
            headers=headers,
            requests_file=requests_file,
            cpu=cpu,
            threads=threads,
        )
    bodies = None
    if requests_file is not None:
        bodies = []
        for line in requests_file.read_text().splitlines():
            path, auth, body = line.split("\t", 2)
            bodies.append((path, auth, body.encode()))
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        return asyncio.run(_run_httpx(url, connections, seconds, headers, bodies))
    finally:
        if cpu is not None:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
