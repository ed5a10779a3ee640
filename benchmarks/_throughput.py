"""Section "throughput": many concurrent callers through one service.

``ops // 10`` callers (10,000 in a full run) start together and make 10 calls
each, one after the other. The provider yields to the event loop once
(``anyio.sleep(0)``, a checkpoint), as a call doing I/O would, so the callers
interleave and thousands of calls are in flight at once. A sample is all
``ops`` calls, from the first caller started to the last one done; the table
gives ns per call and the figures calls per second.

Our service's bulkhead and mailbox are sized above the callers, so every call
is admitted on the fast path: this times the runtime, not its queueing. The
composed peer stack (asyncio only) is the one of the overhead section.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

from connector import Breaker, RateLimit, Runtime

from ._harness import Case, CaseResult, Figure, Runner, Section, Settings, run_cases
from ._overhead import COMPOSED, COMPOSED_REQUIRES, composed_stack

__all__ = ["CALLS_PER_CALLER", "SECTION", "cases", "figures", "run"]

CALLS_PER_CALLER = 10
_RATE = 1e9  # calls per second: the limiter always admits
_BULKHEAD = 20_000  # above any caller count: no call waits for a slot
_MAILBOX = 20_000
_GOAL_RATIO = 0.5  # the goal: at least half the bare throughput


async def _provider() -> None:
    """One trip through the event loop, as a call doing I/O makes (`anyio.sleep(0)`)."""
    await anyio.lowlevel.checkpoint()


def _callers(ops: int) -> int:
    return max(1, ops // CALLS_PER_CALLER)


def _swarm(ops: int, call: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
    """All callers at once, each making `CALLS_PER_CALLER` calls in turn."""
    callers = _callers(ops)

    async def caller() -> None:
        for _ in range(CALLS_PER_CALLER):
            await call()

    async def run() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(callers):
                group.start_soon(caller)

    return run


def _bare(ops: int) -> Runner:
    return _swarm(ops, _provider)


def _connector(ops: int) -> Runner:
    runtime = Runtime()
    service = runtime.register(
        "bench",
        breaker=Breaker(),
        rate_limit=RateLimit.per_second(_RATE),
        max_concurrency=_BULKHEAD,
        mailbox=_MAILBOX,
    )
    call, fn = service.call, _provider

    async def guarded() -> None:
        await call(fn)

    swarm = _swarm(ops, guarded)

    async def run() -> None:
        async with runtime:
            await swarm()

    return run


def _composed(ops: int) -> Runner:
    return _swarm(ops, composed_stack(_provider))


def cases() -> list[Case]:
    return [
        Case(
            name="bare calls",
            setup=_bare,
            asynchronous=True,
            note=f"ops/{CALLS_PER_CALLER} callers x {CALLS_PER_CALLER} calls of checkpoint()",
        ),
        Case(
            name="connector calls",
            setup=_connector,
            asynchronous=True,
            baseline="bare calls",
            note="breaker, limiter, retry + budget, bulkhead 20,000",
        ),
        Case(
            name=COMPOSED,
            setup=_composed,
            asynchronous=True,
            baseline="bare calls",
            note="@retry around limiter around breaker",
            requires=COMPOSED_REQUIRES,
            backends=frozenset({"asyncio"}),
        ),
    ]


def figures(results: list[CaseResult]) -> list[Figure]:
    """Calls per second for every timed case, and each guarded case's share of bare."""
    found: list[Figure] = []
    for result in results:
        if result.median is None:
            continue
        found.append(
            Figure(
                section="throughput",
                name=f"{result.name}: rate",
                backend=result.backend,
                value=round(1e9 / result.median),
                unit="calls/s",
                note=f"{_callers(result.ops):,} callers x {CALLS_PER_CALLER} calls",
            )
        )
    for result in results:
        if result.ratio is None:
            continue
        note = f"goal >= {_GOAL_RATIO:.0%}" if result.name == "connector calls" else ""
        found.append(
            Figure(
                section="throughput",
                name=f"{result.name} / {result.baseline}",
                backend=result.backend,
                value=1 / result.ratio,
                unit="x rate",
                note=note,
            )
        )
    return found


def run(settings: Settings) -> list[CaseResult | Figure]:
    results = run_cases("throughput", cases(), settings)
    return [*results, *figures(results)]


SECTION = Section(run=run, packages=("aiolimiter", "aiobreaker", "tenacity"))
