"""Section "logging": the integration log's cost on the call path, and its throughput.

Sequential guarded no-op calls through one service, with no log store and
with a `SqliteLogStore` on a temporary file (the log-writer actor batching in
the same event loop, as in production). Reported: ns per call either way and
their ratio (the issue's goal: logging on within 1.5x of off), and records per
second into SQLite, counting every call from the first until the last record
is committed at shutdown (goal: at least 20,000 per second). Runs interleave
off and on, and the medians are reported.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import anyio

from connector import RateLimit, Runtime, SqliteLogStore

from ._harness import Figure, Section, Settings

__all__ = ["SECTION", "run"]


async def _noop() -> None:
    return None


async def _calls(ops: int, directory: Path | None) -> tuple[float, float]:
    """(seconds for ``ops`` calls, seconds until every record is written after them)."""
    if directory is None:
        async with Runtime() as rt:
            call = rt.register("api", rate_limit=RateLimit.per_second(1e9)).call
            started = time.perf_counter()
            for _ in range(ops):
                await call(_noop)
            return time.perf_counter() - started, 0.0
    async with SqliteLogStore(directory / f"logs-{time.perf_counter_ns()}.sqlite3") as store:
        rt = Runtime(log_store=store)
        await rt.__aenter__()
        call = rt.register("api", rate_limit=RateLimit.per_second(1e9)).call
        started = time.perf_counter()
        for _ in range(ops):
            await call(_noop)
        served = time.perf_counter()
        await rt.aclose()
        return served - started, time.perf_counter() - served


def run(settings: Settings) -> list[Figure]:
    ops = settings.ops
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in settings.backends:
            off: list[float] = []
            on: list[float] = []
            rates: list[float] = []
            for _ in range(max(3, settings.repetitions // 3)):
                seconds, _ = anyio.run(_calls, ops, None, backend=backend)
                off.append(seconds / ops * 1e9)
                seconds, flush = anyio.run(_calls, ops, Path(folder), backend=backend)
                on.append(seconds / ops * 1e9)
                rates.append(ops / (seconds + flush))
            median_off, median_on = statistics.median(off), statistics.median(on)
            figures += [
                Figure(
                    section="logging",
                    name="guarded call, no log",
                    backend=backend,
                    value=median_off,
                    unit="ns/call",
                ),
                Figure(
                    section="logging",
                    name="guarded call, SQLite log",
                    backend=backend,
                    value=median_on,
                    unit="ns/call",
                    note="the log writer batches in the same event loop",
                ),
                Figure(
                    section="logging",
                    name="log on / log off",
                    backend=backend,
                    value=median_on / median_off,
                    unit="x",
                    note="goal: <= 1.5",
                ),
                Figure(
                    section="logging",
                    name="records written",
                    backend=backend,
                    value=statistics.median(rates),
                    unit="records/s",
                    note="calls until the last record is committed; goal: >= 20,000",
                ),
            ]
    return figures


SECTION = Section(run=run)
