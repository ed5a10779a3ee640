"""Section "overhead": what one guarded call adds to a sequential awaited call.

Every case awaits an empty coroutine function ``ops // 10`` times per sample,
one call after the other (a guarded call costs microseconds, not the policy
section's nanoseconds, so a tenth of its count keeps a full run short). The
empty provider never suspends, so the cases time only the guard's own work.

Our service has a breaker, a rate limit that always admits, the default retry
and retry budget, and a bulkhead: everything a call pays on its fast path.
Each sample makes a fresh `Runtime` and enters and leaves it inside the timed
region: about 150 us with the first call, 15 ns a call over a full run's sample.
The peers guard the same call with what each does on a successful call; the
composed stack is retry around rate limit around breaker, as a user of the
three would nest them (it has no bulkhead, which would only make it slower).
The hand-rolled guard makes the same decisions as our service, written inline
with our pure state machines: the floor for a guard built on them.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import anyio
import msgspec

from connector import (
    Backoff,
    Breaker,
    CircuitBreaker,
    RateLimit,
    Retry,
    RetryBudget,
    RetryBudgetLedger,
    Runtime,
    TokenBucket,
)
from connector._clock import loop_clock  # the clock the runtime reads, resolved as it does

from ._harness import Case, CaseResult, Figure, Runner, Section, Settings, run_cases

__all__ = ["COMPOSED", "COMPOSED_REQUIRES", "SECTION", "cases", "composed_stack", "figures", "run"]

_RATE = 1e9  # calls per second: the limiter always admits
_BULKHEAD = 100  # the runtime's default max_concurrency
_ASYNCIO = frozenset({"asyncio"})
COMPOSED = "tenacity + aiobreaker + aiolimiter"
COMPOSED_REQUIRES = ("tenacity", "aiobreaker", "aiolimiter")

# The goals, in microseconds added over a bare await, and the least
# factor by which the composed peer stack should be slower than our call.
_GOAL_CALL_US = 3.0
_GOAL_TIMEOUT_US = 6.0
_GOAL_PEER_RATIO = 15.0

Guarded = Callable[[], Awaitable[Any]]


async def _noop() -> None:
    """The provider: returns at once, without suspending."""


def _rejected(case: str) -> RuntimeError:
    return RuntimeError(f"{case} rejected a call: the benchmark would time the wrong path")


def _calls_per_sample(settings: Settings) -> int:
    return max(1, settings.ops // 10)


def _bare(ops: int) -> Runner:
    call = _noop

    async def run() -> None:
        for _ in range(ops):
            await call()

    return run


# -- ours ----------------------------------------------------------------------------


def _connector(
    *, timeout: float | None = None, subscriber: bool = False
) -> Callable[[int], Runner]:
    # The subscriber's events are left to drop: the provider never suspends, so
    # a task draining them would not run before the sample ends anyway.
    def setup(ops: int) -> Runner:
        runtime = Runtime()
        service = runtime.register(
            "bench",
            breaker=Breaker(),
            rate_limit=RateLimit.per_second(_RATE),
            timeout=timeout,
            max_concurrency=_BULKHEAD,
        )
        if subscriber:
            runtime.events.subscribe(max_buffer=1_000)
        call, fn = service.call, _noop

        async def run() -> None:
            async with runtime:
                for _ in range(ops):
                    await call(fn)

        return run

    return setup


def _hand_rolled(ops: int) -> Runner:
    # Our service's decisions, inline: breaker admit, budget, token, bulkhead,
    # the attempt, the outcome recorded; a failure would retry with backoff.
    breaker = CircuitBreaker(Breaker())
    bucket = TokenBucket(RateLimit.per_second(_RATE))
    ledger = RetryBudgetLedger(RetryBudget())
    retry = Retry()
    backoff = Backoff(retry, random.Random(0))
    admit, record_success, record_failure = (
        breaker.admit,
        breaker.record_success,
        breaker.record_failure,
    )
    acquire, record_request, try_spend = bucket.try_acquire, ledger.record_request, ledger.try_spend
    attempts, call = retry.attempts, _noop

    async def run() -> None:
        clock = loop_clock()
        in_flight = 0
        for _ in range(ops):
            attempt = 1
            now = clock()
            record_request(now)
            while True:
                permit = admit(now)
                if permit is None or acquire(now) or in_flight >= _BULKHEAD:
                    raise _rejected("hand-rolled guard")
                in_flight += 1
                try:
                    await call()
                except OSError:
                    in_flight -= 1
                    now = clock()
                    record_failure(permit, now)
                    if attempt >= attempts or not try_spend(now):
                        raise
                    await anyio.sleep(backoff.delay(attempt))
                    attempt += 1
                    now = clock()
                    continue
                in_flight -= 1
                record_success(permit, clock())
                break

    return run


# -- peers (asyncio) ------------------------------------------------------------------
# Each builder returns the guarded no-op; it runs inside the loop, as some
# peers bind to it when they are made.


def _aiolimiter() -> Guarded:
    from aiolimiter import AsyncLimiter

    limiter, call = AsyncLimiter(_RATE, 1), _noop

    async def guarded() -> None:
        async with limiter:
            await call()

    return guarded


def _aiobreaker_call() -> Callable[..., Awaitable[Any]]:
    """A fresh aiobreaker's `call_async`: 5 failures in a row open it for 60 s, as ours."""
    from aiobreaker import CircuitBreaker  # type: ignore[import-untyped]

    breaker = CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=60))
    call_async: Callable[..., Awaitable[Any]] = breaker.call_async
    return call_async


def _aiobreaker() -> Guarded:
    call_async, call = _aiobreaker_call(), _noop

    async def guarded() -> None:
        await call_async(call)

    return guarded


def _purgatory() -> Guarded:
    from purgatory import AsyncCircuitBreakerFactory

    # Its decorator looks the breaker up in its unit of work on every call.
    factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=60)
    guarded: Guarded = factory("bench")(_noop)
    return guarded


def _tenacity_retry() -> Callable[[Guarded], Guarded]:
    import tenacity

    # Our Retry's numbers: 3 attempts, exponential backoff from 1 s capped at 30 s, jittered.
    decorate: Callable[[Guarded], Guarded] = tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_random_exponential(multiplier=1, max=30),
        retry=tenacity.retry_if_exception_type(OSError),
        reraise=True,
    )
    return decorate


def _tenacity() -> Guarded:
    # The decorator copies its AsyncRetrying per call, so concurrent calls are safe.
    return _tenacity_retry()(_noop)


def _stamina() -> Guarded:
    import stamina

    guarded: Guarded = stamina.retry(on=OSError, attempts=3)(_noop)
    return guarded


def composed_stack(call: Guarded) -> Guarded:
    """``call`` behind tenacity's retry, aiolimiter's limiter and aiobreaker's breaker."""
    from aiolimiter import AsyncLimiter

    limiter, call_async = AsyncLimiter(_RATE, 1), _aiobreaker_call()

    async def attempt() -> None:
        async with limiter:
            await call_async(call)

    return _tenacity_retry()(attempt)


def _composed() -> Guarded:
    return composed_stack(_noop)


def _peer(build: Callable[[], Guarded]) -> Callable[[int], Runner]:
    def setup(ops: int) -> Runner:
        guarded = build()

        async def run() -> None:
            for _ in range(ops):
                await guarded()

        return run

    return setup


# -- the section -----------------------------------------------------------------


def cases() -> list[Case]:
    def peer(name: str, build: Callable[[], Guarded], requires: tuple[str, ...], note: str) -> Case:
        return Case(
            name=name,
            setup=_peer(build),
            asynchronous=True,
            baseline="bare await",
            note=note,
            requires=requires,
            backends=_ASYNCIO,
        )

    return [
        Case(name="bare await", setup=_bare, asynchronous=True, note="await noop()"),
        Case(
            name="connector call",
            setup=_connector(),
            asynchronous=True,
            baseline="bare await",
            note="breaker, limiter, retry + budget, bulkhead; no timeout",
        ),
        Case(
            name="connector call + timeout",
            setup=_connector(timeout=30.0),
            asynchronous=True,
            baseline="bare await",
            note="same, timeout=30 per attempt (a cancel scope)",
        ),
        Case(
            name="connector call + subscriber",
            setup=_connector(subscriber=True),
            asynchronous=True,
            baseline="bare await",
            note="same as connector call, one event subscriber (drops)",
        ),
        Case(
            name="hand-rolled guard",
            setup=_hand_rolled,
            asynchronous=True,
            baseline="bare await",
            note="the same decisions inline on our state machines",
        ),
        peer("aiolimiter", _aiolimiter, ("aiolimiter",), "async with AsyncLimiter"),
        peer("aiobreaker", _aiobreaker, ("aiobreaker",), "await CircuitBreaker.call_async(noop)"),
        peer("purgatory", _purgatory, ("purgatory",), "@AsyncCircuitBreakerFactory()(name)"),
        peer("tenacity", _tenacity, ("tenacity",), "@retry, 3 attempts, one succeeds"),
        peer("stamina", _stamina, ("stamina",), "@stamina.retry(on=OSError, attempts=3)"),
        peer(
            COMPOSED,
            _composed,
            COMPOSED_REQUIRES,
            "@retry around limiter around breaker",
        ),
    ]


def _added(result: CaseResult | None) -> float | None:
    """ns the case adds over its baseline, when it was timed."""
    return result.overhead if result is not None else None


def figures(results: list[CaseResult]) -> list[Figure]:
    """The issue's goals against what was measured, per backend."""
    by_key = {(r.name, r.backend): r for r in results}
    found: list[Figure] = []

    def figure(name: str, backend: str | None, value: float, unit: str, note: str) -> None:
        found.append(
            Figure(
                section="overhead", name=name, backend=backend, value=value, unit=unit, note=note
            )
        )

    for backend in dict.fromkeys(r.backend for r in results):
        ours = _added(by_key.get(("connector call", backend)))
        scoped = _added(by_key.get(("connector call + timeout", backend)))
        floor = _added(by_key.get(("hand-rolled guard", backend)))
        composed = _added(by_key.get((COMPOSED, backend)))
        if ours is not None:
            figure(
                "connector call, added",
                backend,
                ours / 1e3,
                "us/call",
                f"goal <= {_GOAL_CALL_US:g} us",
            )
        if scoped is not None:
            figure(
                "connector call + timeout, added",
                backend,
                scoped / 1e3,
                "us/call",
                f"goal <= {_GOAL_TIMEOUT_US:g} us",
            )
        if ours is not None and floor is not None and floor > 0:
            figure(
                "connector call / hand-rolled guard",
                backend,
                ours / floor,
                "x added",
                "added cost against the same decisions made inline",
            )
        if ours is not None and composed is not None and ours > 0:
            figure(
                f"{COMPOSED} / connector call",
                backend,
                composed / ours,
                "x added",
                f"goal >= {_GOAL_PEER_RATIO:g}x",
            )
    return found


def run(settings: Settings) -> list[CaseResult | Figure]:
    sized = msgspec.structs.replace(settings, ops=_calls_per_sample(settings))
    results = run_cases("overhead", cases(), sized)
    return [*results, *figures(results)]


SECTION = Section(
    run=run, packages=("aiolimiter", "aiobreaker", "purgatory", "tenacity", "stamina")
)
