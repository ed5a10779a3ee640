"""Section "policies": ns per admission decision, our state machines against peers.

Every case loops over the same precomputed tuple of ``now`` values (one per
operation, 1 µs apart), so the loop itself costs every case the same and the
baselines show what it costs. Methods are bound to locals before the loop in
every case alike, so no case pays an attribute lookup the others skip. Each
case branches on its decision as a real caller would; with the rates below a
rejection never happens, and if one did the case fails loudly instead of
timing the cheaper rejection path.

Our policies are single-owner state machines (one actor mutates them) and take
``now`` from the caller. pybreaker is thread-safe (an RLock per call) and
aiolimiter reads the event loop's clock on every check: both are part of what
a user of those libraries pays, so they stay in the numbers.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from connector import GCRA, Breaker, CircuitBreaker, RateLimit, TokenBucket

from ._harness import Case, CaseResult, Runner, Section, Settings, run_cases

__all__ = ["SECTION", "cases", "run"]

_STEP = 1e-6  # seconds between consecutive `now`s: time passes, as it does between calls
_RATE = 1e12  # admissions per second: so large that every call in a sample is admitted


@functools.cache
def _nows(ops: int) -> tuple[float, ...]:
    return tuple(i * _STEP for i in range(1, ops + 1))


def _noop() -> None:
    """The guarded call: empty, so only the policy's cost shows."""


async def _anoop() -> None:
    """The awaited counterpart of `_noop`."""


def _rejected(case: str) -> RuntimeError:
    return RuntimeError(f"{case} rejected a call: the benchmark would time the wrong path")


# -- baselines -------------------------------------------------------------------


# A plain call of an empty function: what any guarded call costs at the least.
def _bare_call(ops: int) -> Runner:
    nows, call = _nows(ops), _noop

    def run() -> None:
        for _now in nows:
            call()

    return run


# Awaiting an empty coroutine function: the floor for anything awaited.
def _bare_await(ops: int) -> Runner:
    nows, call = _nows(ops), _anoop

    async def run() -> None:
        for _now in nows:
            await call()

    return run


# -- circuit breakers ----------------------------------------------------------------


def _ours_breaker(config: Breaker) -> Callable[[int], Runner]:
    # Closed state: admit (a permit), make the call, record its success: the
    # whole decision and bookkeeping the actor does around one provider call.
    def setup(ops: int) -> Runner:
        nows, call = _nows(ops), _noop
        breaker = CircuitBreaker(config)
        admit, record = breaker.admit, breaker.record_success

        def run() -> None:
            for now in nows:
                permit = admit(now)
                if permit is None:
                    raise _rejected("connector.CircuitBreaker")
                call()
                record(permit, now)

        return run

    return setup


def _pybreaker(*, listener: bool) -> Callable[[int], Runner]:
    # Closed state: `CircuitBreaker.call(noop)`, the same decision (is the
    # circuit closed?) and record (reset the failure count) around the call.
    # Its defaults (memory storage, no listeners, no excluded exceptions) are
    # its lowest-overhead configuration; ``listener`` adds one no-op
    # `CircuitBreakerListener`, the hook pybreaker offers for metrics and logs.
    def setup(ops: int) -> Runner:
        import pybreaker

        nows, call = _nows(ops), _noop
        listeners = [pybreaker.CircuitBreakerListener()] if listener else []
        guarded = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60, listeners=listeners).call

        def run() -> None:
            for _now in nows:
                guarded(call)

        return run

    return setup


# -- rate limiters -------------------------------------------------------------------


# `try_acquire(now)` returns 0.0 when it took a token; `now` comes from the
# precomputed tuple, as the actor passes the time it read once per call.
def _token_bucket(ops: int) -> Runner:
    nows = _nows(ops)
    acquire = TokenBucket(RateLimit.per_second(_RATE)).try_acquire

    def run() -> None:
        for now in nows:
            if acquire(now):
                raise _rejected("connector.TokenBucket")

    return run


# The same, reading `time.monotonic()` per call (the clock asyncio's loop.time()
# reads): the like-for-like with aiolimiter, which reads that clock itself.
def _token_bucket_clock(ops: int) -> Runner:
    nows, clock = _nows(ops), time.monotonic
    acquire = TokenBucket(RateLimit.per_second(_RATE)).try_acquire

    def run() -> None:
        for _now in nows:
            if acquire(clock()):
                raise _rejected("connector.TokenBucket")

    return run


# GCRA's `try_acquire(now)`: one theoretical arrival time compared and moved.
def _gcra(ops: int) -> Runner:
    nows = _nows(ops)
    acquire = GCRA(RateLimit(rate=_RATE, algorithm="gcra")).try_acquire

    def run() -> None:
        for now in nows:
            if acquire(now):
                raise _rejected("connector.GCRA")

    return run


# aiolimiter's limiter binds to the running asyncio loop and reads loop.time()
# on every check, so even its synchronous `has_capacity()` runs inside the loop.
# Its level grows by one per acquire, so at most ``ops`` in a fresh limiter:
# far below max_rate 1e12, and `acquire()` never waits, never suspends.
def _aiolimiter(*, check: bool, take: bool) -> Callable[[int], Runner]:
    def setup(ops: int) -> Runner:
        from aiolimiter import AsyncLimiter

        nows = _nows(ops)
        limiter = AsyncLimiter(_RATE, 1)
        has_capacity, acquire = limiter.has_capacity, limiter.acquire

        # `has_capacity()` alone: the check, taking nothing.
        async def run_check() -> None:
            for _now in nows:
                if not has_capacity():
                    raise _rejected("aiolimiter")

        # `await acquire()` alone: take one unit, waiting if there is none.
        async def run_take() -> None:
            for _now in nows:
                await acquire()

        # Check, then take: aiolimiter's way to reject instead of queueing,
        # the closest match to what one `try_acquire(now)` decides.
        async def run_both() -> None:
            for _now in nows:
                if not has_capacity():
                    raise _rejected("aiolimiter")
                await acquire()

        if check and take:
            return run_both
        return run_check if check else run_take

    return setup


# -- the section -----------------------------------------------------------------


def cases() -> list[Case]:
    rate_window = Breaker(failure_threshold=None, failure_rate_threshold=0.5, window_size=100)
    return [
        Case(name="bare call", setup=_bare_call, note="noop()"),
        Case(
            name="connector CircuitBreaker",
            setup=_ours_breaker(Breaker()),
            baseline="bare call",
            note="admit, noop(), record_success; 5 consecutive failures trip",
        ),
        Case(
            name="connector CircuitBreaker rate",
            setup=_ours_breaker(rate_window),
            baseline="bare call",
            note="same; failure-rate rule over a 100-call window",
        ),
        Case(
            name="pybreaker call",
            setup=_pybreaker(listener=False),
            baseline="bare call",
            requires=("pybreaker",),
            note="call(noop); defaults: no listeners, memory storage",
        ),
        Case(
            name="pybreaker call + listener",
            setup=_pybreaker(listener=True),
            baseline="bare call",
            requires=("pybreaker",),
            note="same with one no-op listener",
        ),
        Case(
            name="connector TokenBucket",
            setup=_token_bucket,
            baseline="bare call",
            note="try_acquire(now), now precomputed",
        ),
        Case(
            name="connector TokenBucket + clock",
            setup=_token_bucket_clock,
            baseline="bare call",
            note="try_acquire(time.monotonic())",
        ),
        Case(
            name="connector GCRA",
            setup=_gcra,
            baseline="bare call",
            note="try_acquire(now), now precomputed",
        ),
        Case(
            name="aiolimiter has_capacity",
            setup=_aiolimiter(check=True, take=False),
            baseline="bare call",
            note="check only, takes nothing; reads loop.time()",
            asynchronous=True,
            requires=("aiolimiter",),
            backends=frozenset({"asyncio"}),
        ),
        Case(name="bare await", setup=_bare_await, asynchronous=True, note="await noop()"),
        Case(
            name="aiolimiter acquire",
            setup=_aiolimiter(check=False, take=True),
            baseline="bare await",
            note="await acquire(), never waits",
            asynchronous=True,
            requires=("aiolimiter",),
            backends=frozenset({"asyncio"}),
        ),
        Case(
            name="aiolimiter has_capacity + acquire",
            setup=_aiolimiter(check=True, take=True),
            baseline="bare await",
            note="reject-mode idiom, what try_acquire decides",
            asynchronous=True,
            requires=("aiolimiter",),
            backends=frozenset({"asyncio"}),
        ),
    ]


def run(settings: Settings) -> list[CaseResult]:
    return run_cases("policies", cases(), settings)


SECTION = Section(run=run, packages=("pybreaker", "aiolimiter"))
