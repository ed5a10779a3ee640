"""Section "redis": shared limiter admissions per second in Redis, from one process and four.

Every admission is one EVALSHA of the GCRA script on one key: one atomic round
trip, which the section checks against the server's own count of EVALSHA
calls. The limit admits everything, so this times the store, not waiting.
Measured: one caller making admissions in turn (the round trip's latency, next
to a bare PING's), 32 concurrent callers in one process, and 4 spawned
processes of 32 callers each on the same key, started together. ``ops // 5``
admissions per measurement (20,000 in a full run), the median of up to 3
repetitions. With few cores, the processes and the server share them.

Redis is the one at ``CONNECTOR_BENCH_REDIS_URL`` (default 127.0.0.1:6379);
without redis-py or a reachable server the section reports itself skipped.
asyncio only: redis-py's asyncio client needs it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
import uuid
from typing import Any

from connector._ratelimit import RateLimit
from connector._redis_state import RedisSharedState

from ._harness import CaseResult, Figure, Section, Settings

__all__ = ["SECTION", "run"]

_URL = os.environ.get("CONNECTOR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_CALLERS = 32
_PROCESSES = 4
_REPETITIONS = 3
_LIMIT = RateLimit.per_second(1e12, burst=10**9)  # admits everything: times the store


async def _admit(store: RedisSharedState, admissions: int, callers: int) -> int:
    """Make ``admissions`` admissions from ``callers`` concurrent tasks; how many went in."""
    counts = [0] * callers

    async def caller(index: int) -> None:
        for _ in range(admissions // callers):
            if await store.acquire("bench", _LIMIT, time.time()) == 0.0:
                counts[index] += 1

    await asyncio.gather(*(caller(index) for index in range(callers)))
    return sum(counts)


async def _evalsha_calls(store: RedisSharedState) -> int:
    stats = await store.client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _pings(url: str, count: int) -> float:
    """PINGs per second from one caller: the bare round trip, for comparison."""
    store = RedisSharedState.from_url(url)
    try:
        await store.client.ping()
        began = time.perf_counter()
        for _ in range(count):
            await store.client.ping()
        return count / (time.perf_counter() - began)
    finally:
        await store.aclose()


async def _one_process(url: str, admissions: int, callers: int) -> tuple[float, float]:
    """(admissions per second, EVALSHA calls per admission) in this process."""
    store = RedisSharedState.from_url(url, prefix=f"bench:{uuid.uuid4().hex}:")
    try:
        await _admit(store, callers, callers)  # connect every caller, load the script
        before = await _evalsha_calls(store)
        began = time.perf_counter()
        admitted = await _admit(store, admissions, callers)
        elapsed = time.perf_counter() - began
        calls = await _evalsha_calls(store) - before
        await store.client.delete(f"{store.prefix}limit:{{bench}}")
    finally:
        await store.aclose()
    return admitted / elapsed, calls / admitted


def _worker(url: str, prefix: str, admissions: int, ready: Any, go: Any, results: Any) -> None:
    async def work() -> None:
        store = RedisSharedState.from_url(url, prefix=prefix)
        try:
            await _admit(store, _CALLERS, _CALLERS)
            ready.put(os.getpid())
            await asyncio.to_thread(go.wait, 60)
            began = time.time()  # wall clock: comparable across the processes
            admitted = await _admit(store, admissions, _CALLERS)
            results.put((began, time.time(), admitted))
        finally:
            await store.aclose()

    asyncio.run(work())


def _processes(url: str, admissions: int) -> float:
    """Admissions per second of `_PROCESSES` processes sharing one key, started together."""
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    prefix = f"bench:{uuid.uuid4().hex}:"
    workers = [
        context.Process(
            target=_worker, args=(url, prefix, admissions // _PROCESSES, ready, go, results)
        )
        for _ in range(_PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=60)
        go.set()
        done: list[tuple[float, float, int]] = [results.get(timeout=300) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    began = min(start for start, _, _ in done)
    ended = max(end for _, end, _ in done)
    return sum(admitted for _, _, admitted in done) / (ended - began)


async def _reachable(url: str) -> str | None:
    """None when Redis answers at ``url``, else why not."""
    try:
        store = RedisSharedState.from_url(url, timeout=2.0)
    except ImportError:
        return "redis not installed (pip install 'nexus-connector[redis]')"
    try:
        await store.client.ping()
    except Exception as error:  # any failure means: skip, and say why
        return f"Redis not reachable at {url}: {type(error).__name__}"
    finally:
        await store.aclose()
    return None


def run(settings: Settings) -> list[CaseResult | Figure]:
    if "asyncio" not in settings.backends:
        return []
    reason = asyncio.run(_reachable(_URL))
    if reason is not None:
        return [
            CaseResult(
                section="redis",
                name="redis limiter admissions",
                backend="asyncio",
                note="",
                baseline=None,
                ops=0,
                sample_ns=[],
                median=None,
                min=None,
                ratio=None,
                overhead=None,
                skipped=reason,
            )
        ]
    admissions = max(_CALLERS * _PROCESSES, settings.ops // 5)
    repetitions = min(settings.repetitions, _REPETITIONS)
    single = [asyncio.run(_one_process(_URL, admissions // 10, 1)) for _ in range(repetitions)]
    many = [asyncio.run(_one_process(_URL, admissions, _CALLERS)) for _ in range(repetitions)]
    spread = [_processes(_URL, admissions) for _ in range(repetitions)]
    serial_rate = statistics.median(rate for rate, _ in single)
    ping_rate = statistics.median(
        asyncio.run(_pings(_URL, admissions // 10)) for _ in range(repetitions)
    )

    def figure(name: str, value: float, unit: str, note: str) -> Figure:
        return Figure(
            section="redis", name=name, backend="asyncio", value=value, unit=unit, note=note
        )

    return [
        figure(
            "redis-py PING: 1 caller",
            round(ping_rate),
            "round trips/s",
            f"the bare round trip: {1e6 / ping_rate:.0f} us",
        ),
        figure(
            "redis limiter: 1 caller",
            round(serial_rate),
            "admissions/s",
            f"one round trip each: {1e6 / serial_rate:.0f} us",
        ),
        figure(
            f"redis limiter: 1 process x {_CALLERS} callers",
            round(statistics.median(rate for rate, _ in many)),
            "admissions/s",
            "one key",
        ),
        figure(
            f"redis limiter: {_PROCESSES} processes x {_CALLERS} callers",
            round(statistics.median(spread)),
            "admissions/s",
            "one key, shared by every process",
        ),
        figure(
            "redis limiter: round trips per admission",
            max(calls for _, calls in many),
            "EVALSHA/admission",
            "counted by the server",
        ),
    ]


SECTION = Section(run=run, packages=("redis",))
