"""Prometheus metrics of every process of the server, served on the admin listener."""

import os
import shutil
from pathlib import Path

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Every metric has a label: a labelled metric makes its value objects on first use, so
# enable_multiprocess() can still switch the value class after this module was imported.
FEDERATION_REQUESTS = Counter(
    "antechamber_federation_requests",
    "Federation requests answered, by contract operation and HTTP status",
    ["operation", "status"],
)
FEDERATION_REQUEST_DURATION = Histogram(
    "antechamber_federation_request_duration_seconds",
    "Time to answer a federation request, by contract operation",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
KNOCKS = Counter(
    "antechamber_knocks",
    "Knocks received over federation, accepted and denied by a moderator",
    ["outcome"],
)
KEY_FETCHES = Counter(
    "antechamber_key_fetches",
    "Fetches of other servers' signing keys, by result",
    ["result"],
)
DELIVERIES = Counter(
    "antechamber_federation_deliveries",
    "Outbound transactions, by destination and result",
    ["destination", "result"],
)
DATABASE_WRITE_DURATION = Histogram(
    "antechamber_database_write_duration_seconds",
    "Time of a database write transaction, by what it wrote",
    ["kind"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
)
# The operations a request is counted under when it matched none (bounded label values).
UNMATCHED_OPERATION = "unmatched"


def enable_multiprocess(directory: Path) -> None:
    """Count in ``directory`` (emptied first), shared with every worker started after this.

    Called by ``antechamber serve`` before workers start; workers inherit the variable and
    import this module with it set. This process may have imported prometheus_client
    already, so its value class is chosen again here.
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def render() -> bytes:
    """The text exposition of every process's metrics (multiprocess) or of this one."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return prometheus_client.generate_latest(registry)
    return prometheus_client.generate_latest()
