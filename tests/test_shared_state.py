"""Shared breaker and limiter state: in memory, in Redis (Lua), and behind the fallback.

The memory implementation and `FallbackSharedState` (over a primary that can
be made to fail) run on asyncio and trio. Everything that talks to Redis runs
on asyncio only, since redis-py's asyncio client needs an asyncio loop: those
tests pin ``anyio_backend`` to asyncio, or drive their own asyncio loop (the
hypothesis and multiprocessing ones). They are not skipped on trio; they do not
exist there. The Redis scripts are held to the memory implementation by
property tests: same operations, same answers, same final state.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import anyio
import pytest
from _servers import OwnRedis, free_port, redis_prefix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector._breaker import Breaker, BreakerState, CircuitBreakerState
from connector._errors import ConfigError
from connector._events import Event
from connector._ratelimit import GCRA, RateLimit
from connector._redis_state import RedisSharedState
from connector._shared_events import SharedStateRestored, SharedStateUnavailable
from connector._shared_state import (
    Admission,
    FallbackSharedState,
    MemorySharedState,
    SharedPolicyState,
    SharedStateError,
)

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])

T0 = 1_700_000_000.0  # a wall-clock reading, Unix seconds
LIMIT = RateLimit.per_second(10, burst=2)
BREAKER = Breaker(failure_threshold=2, open_duration=30.0)


# -- a primary that fails on demand ------------------------------------------


class Flaky:
    """A `SharedPolicyState` (memory underneath) that raises while ``down``.

    ``calls`` counts the operations that reached it; with ``gate`` set, each
    one waits for it first.
    """

    def __init__(self) -> None:
        self.state = MemorySharedState()
        self.down = False
        self.calls: list[str] = []
        self.gate: anyio.Event | None = None

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.state, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.gate is not None:
                await self.gate.wait()
            if self.down:
                raise SharedStateError("flaky", "connection refused")
            return await method(*args, **kwargs)

        return call


def fallback(
    mode: str = "fail_open", **options: Any
) -> tuple[FallbackSharedState, Flaky, list[Event]]:
    primary = Flaky()
    events: list[Event] = []
    store = FallbackSharedState(
        cast(SharedPolicyState, primary),
        mode=cast(Any, mode),
        on_event=events.append,
        retry_initial=options.pop("retry_initial", 1.0),
        retry_max=options.pop("retry_max", 4.0),
        **options,
    )
    return store, primary, events


def approx(expected: float) -> Any:
    """Equal to within a microsecond: around T0 a float's step is 2.4e-7 s."""
    return pytest.approx(expected, abs=1e-6)


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


# -- memory -------------------------------------------------------------------


@pytest.mark.anyio
async def test_memory_acquire_without_limit_checks_only_the_pause() -> None:
    state = MemorySharedState()
    assert await state.acquire("svc", None, T0) == 0.0
    await state.pause("svc", T0 + 5, T0)
    assert await state.acquire("svc", None, T0 + 1) == 4.0
    assert await state.acquire("svc", None, T0 + 5) == 0.0  # the pause ends at its instant
    assert await state.acquire("other", None, T0 + 1) == 0.0


@pytest.mark.anyio
async def test_memory_pause_holds_a_limit_and_then_its_tokens_are_due() -> None:
    state = MemorySharedState()
    limit = RateLimit.per_second(2, burst=1)
    assert await state.acquire("svc", limit, T0) == 0.0
    await state.pause("svc", T0 + 0.25, T0)
    # Paused until 0.25, and the next token is due at 0.5: wait for the later.
    assert await state.acquire("svc", limit, T0) == approx(0.5)
    await state.pause("svc", T0 + 3, T0)  # a pause only ever grows
    await state.pause("svc", T0 + 1, T0)
    assert await state.acquire("svc", limit, T0 + 2) == approx(1.0)
    assert await state.acquire("svc", limit, T0 + 3) == 0.0


@pytest.mark.anyio
async def test_memory_refund_gives_a_token_back() -> None:
    state = MemorySharedState()
    limit = RateLimit.per_second(1, burst=1)
    assert await state.acquire("svc", limit, T0) == 0.0
    assert await state.acquire("svc", limit, T0) == approx(1.0)
    await state.refund("svc", limit, T0)
    assert await state.acquire("svc", limit, T0) == 0.0


@pytest.mark.anyio
async def test_memory_keeps_a_limiter_through_a_change_of_limit() -> None:
    state = MemorySharedState()
    assert await state.acquire("svc", RateLimit.per_second(1, burst=1), T0) == 0.0
    # GCRA's state is an instant, kept: a fresh limiter would admit at once.
    assert await state.acquire("svc", RateLimit.per_second(2, burst=1), T0) == 1.0


@pytest.mark.anyio
async def test_a_shared_limit_starts_full_at_wall_clock_instants() -> None:
    state = MemorySharedState()
    limit = RateLimit.per_second(3, burst=7)
    waits = [await state.acquire("svc", limit, T0 + 0.1) for _ in range(8)]
    assert waits[:7] == [0.0] * 7
    assert waits[7] == 0.333334  # 1/3 s, rounded up to the microsecond: never faster


# Instants on a 1/64 s grid and rates whose interval is whole microseconds: both
# sides are exact there, so the integer limit must decide as the float one does.
GRID = 1 / 64


@pytest.mark.anyio
@given(
    rate=st.sampled_from([1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 40, 50, 64]),
    burst=st.sampled_from([None, 1, 2, 5]),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["acquire"] * 5 + ["refund", "pause"]),
            st.integers(0, 40),
            st.integers(1, 3),
        ),
        max_size=60,
    ),
)
async def test_the_shared_limit_is_the_local_gcra(
    rate: int, burst: int | None, steps: list[tuple[str, int, int]]
) -> None:
    limit = RateLimit.per_second(rate, burst=burst)
    shared, local = MemorySharedState(), GCRA(limit)
    now = 0.0
    for action, ticks, amount in steps:
        now += ticks * GRID
        if amount > limit.capacity:
            continue
        if action == "acquire":
            expected = local.try_acquire(now, amount)
            assert await shared.acquire("svc", limit, now, amount) == pytest.approx(
                expected, abs=1e-9
            )
        elif action == "refund":
            local.refund(now, amount)
            await shared.refund("svc", limit, now, amount)
        else:
            local.pause_until(now + amount * 7 * GRID)
            await shared.pause("svc", now + amount * 7 * GRID, now)


@pytest.mark.anyio
@given(
    limit=st.builds(
        RateLimit,
        rate=st.sampled_from([1.0, 3.0, 7.5, 50.0, 1000.0]),
        period=st.sampled_from([1.0, 60.0, 0.25]),
        burst=st.sampled_from([None, 1, 3, 10]),
    ),
    start=st.floats(0, 1e6),
    steps=st.lists(
        st.tuples(st.floats(0, 0.5), st.sampled_from([1.0, 0.5, 2.0]), st.booleans()),
        max_size=80,
    ),
)
async def test_a_shared_limit_at_wall_clock_instants_is_exact_and_never_over_admits(
    limit: RateLimit, start: float, steps: list[tuple[float, float, bool]]
) -> None:
    state = MemorySharedState()
    now, told, refused = T0 + start, 0.0, 1.0
    admitted: list[tuple[float, float]] = []
    for gap, size, obey in steps:
        # Either retry the refused cost after exactly the wait it was told (then it
        # must be admitted), or try a cost after some gap.
        retry = obey and told > 0
        cost = refused if retry else size
        if cost > limit.capacity:
            continue
        now += told if retry else gap
        wait = await state.acquire("svc", limit, now, cost)
        if retry:
            assert wait == 0.0
        if wait == 0.0:
            admitted.append((now, cost))
        told, refused = wait, cost
    rate = limit.tokens_per_second
    for i, (first, _) in enumerate(admitted):
        taken = 0.0
        for last, cost in admitted[i:]:
            taken += cost
            # A microsecond of slack on each end, and the rounding of the instants.
            assert taken <= limit.capacity + rate * (last - first + 3e-6) + 1e-9


@pytest.mark.anyio
@pytest.mark.parametrize("cost", [0, -1, 3, math.nan, True, "1"])
async def test_a_cost_outside_the_capacity_is_a_config_error(cost: Any) -> None:
    state = MemorySharedState()
    with pytest.raises(ConfigError, match="cost"):
        await state.acquire("svc", LIMIT, T0, cost)
    with pytest.raises(ConfigError, match="cost"):
        await state.refund("svc", LIMIT, T0, cost)


@pytest.mark.anyio
@pytest.mark.parametrize("state", [BreakerState.OPEN, BreakerState.HALF_OPEN])
async def test_only_operator_states_can_be_forced(state: BreakerState) -> None:
    with pytest.raises(ConfigError, match="forced_open, disabled or closed"):
        await MemorySharedState().breaker_force("svc", BREAKER, state, T0)


@pytest.mark.anyio
async def test_memory_breaker_permits_follow_generations() -> None:
    state = MemorySharedState()
    slow = await state.breaker_admit("svc", BREAKER, T0)
    assert slow.admitted
    assert slow.permit == slow.generation == 0
    for _ in range(2):
        admission = await state.breaker_admit("svc", BREAKER, T0)
        assert admission.permit is not None
        status = await state.breaker_record("svc", BREAKER, admission.permit, T0 + 1, failed=True)
    assert status.state is BreakerState.OPEN
    assert status.opened_at == T0 + 1
    rejected = await state.breaker_admit("svc", BREAKER, T0 + 11)
    assert rejected.permit is None
    assert rejected.retry_after == approx(20.0)
    # The slow call admitted while closed is from an older generation: ignored.
    after = await state.breaker_record("svc", BREAKER, 0, T0 + 12, failed=False)
    assert after.state is BreakerState.OPEN
    assert after.generation == status.generation


@pytest.mark.anyio
async def test_memory_half_open_admits_its_probe_budget() -> None:
    breaker = Breaker(failure_threshold=1, open_duration=5.0, half_open_probes=2)
    state = MemorySharedState()
    first = await state.breaker_admit("svc", breaker, T0)
    assert first.permit is not None
    await state.breaker_record("svc", breaker, first.permit, T0, failed=True)
    probes = [await state.breaker_admit("svc", breaker, T0 + 5) for _ in range(3)]
    assert [probe.admitted for probe in probes] == [True, True, False]
    assert probes[2].state is BreakerState.HALF_OPEN
    assert probes[2].retry_after == 0.0
    permit = probes[0].permit
    assert permit is not None
    await state.breaker_release("svc", breaker, permit, T0 + 5)
    assert (await state.breaker_admit("svc", breaker, T0 + 5)).admitted


def open_observed(
    opened_at: float, generation: int = 7, open_count: int = 1
) -> CircuitBreakerState:
    return CircuitBreakerState(
        state=BreakerState.OPEN,
        generation=generation,
        opened_at=opened_at,
        open_count=open_count,
        consecutive_failures=2,
    )


@pytest.mark.anyio
async def test_sync_an_open_circuit_wins_over_closed() -> None:
    state = MemorySharedState()
    status = await state.breaker_sync("svc", BREAKER, open_observed(T0 - 10), T0)
    assert status.state is BreakerState.OPEN
    assert status.opened_at == T0 - 10
    assert status.generation == 8  # past both sides'
    admission = await state.breaker_admit("svc", BREAKER, T0)
    assert admission.retry_after == approx(20.0)


@pytest.mark.anyio
async def test_sync_keeps_what_it_should() -> None:
    state = MemorySharedState()
    # An open period that has ended by now is not pushed.
    ended = await state.breaker_sync("svc", BREAKER, open_observed(T0 - 30), T0)
    assert ended.state is BreakerState.CLOSED
    # Closed and half-open observations never override anything.
    closed = CircuitBreakerState(state=BreakerState.CLOSED, generation=99)
    assert (await state.breaker_sync("svc", BREAKER, closed, T0)).generation == 0
    # An operator's forced-open circuit stays forced.
    await state.breaker_force("svc", BREAKER, BreakerState.FORCED_OPEN, T0)
    kept = await state.breaker_sync("svc", BREAKER, open_observed(T0), T0)
    assert kept.state is BreakerState.FORCED_OPEN
    rejected = await state.breaker_admit("svc", BREAKER, T0)
    assert rejected.retry_after == math.inf
    reset = await state.breaker_force("svc", BREAKER, BreakerState.CLOSED, T0)
    assert reset.state is BreakerState.CLOSED


# -- the fallback ----------------------------------------------------------------


@pytest.mark.anyio
async def test_fallback_answers_locally_and_probes_with_backoff() -> None:
    store, primary, events = fallback(retry_initial=1.0, retry_max=4.0)
    assert await store.acquire("svc", LIMIT, T0) == 0.0
    primary.down = True
    reached: list[float] = []
    now = T0
    while now <= T0 + 11:
        before = len(primary.calls)
        # No store error ever reaches the caller: every call is answered.
        assert await store.acquire("svc", LIMIT, now) >= 0.0
        if len(primary.calls) > before:
            reached.append(now - T0)
        now += 0.5
    # The failure at 0 opens the outage; probes follow after 1, 2, 4, 4 (the cap).
    assert reached == [0.0, 1.0, 3.0, 7.0, 11.0]
    assert kinds(events) == ["SharedStateUnavailable"]
    unavailable_event = events[0]
    assert isinstance(unavailable_event, SharedStateUnavailable)
    assert unavailable_event.service == "svc"
    assert unavailable_event.at == T0
    assert unavailable_event.mode == "fail_open"
    assert "connection refused" in unavailable_event.error
    assert not store.available

    primary.down = False
    assert await store.acquire("svc", LIMIT, T0 + 13) == 0.0  # not due yet: local
    assert not store.available
    assert await store.acquire("svc", LIMIT, T0 + 15) == 0.0
    assert kinds(events) == ["SharedStateUnavailable", "SharedStateRestored"]
    assert store.available
    restored = events[1]
    assert isinstance(restored, SharedStateRestored)
    assert restored.down_for == 15.0
    # A second outage is reported again, once.
    primary.down = True
    await store.acquire("svc", LIMIT, T0 + 16)
    await store.acquire("svc", LIMIT, T0 + 16)
    assert kinds(events)[2:] == ["SharedStateUnavailable"]


@pytest.mark.anyio
async def test_fail_open_uses_the_local_limiter() -> None:
    store, primary, _ = fallback()
    primary.down = True
    waits = [await store.acquire("svc", LIMIT, T0) for _ in range(3)]
    assert waits[:2] == [0.0, 0.0]  # the local bucket starts full: burst 2
    assert waits[2] == approx(0.1)


@pytest.mark.anyio
async def test_fail_open_opens_locally_and_pushes_it_on_restore() -> None:
    store, primary, events = fallback()
    assert (await store.breaker_admit("svc", BREAKER, T0)).admitted
    primary.down = True
    for _ in range(2):
        admission = await store.breaker_admit("svc", BREAKER, T0 + 1)
        assert admission.permit is not None
        await store.breaker_record("svc", BREAKER, admission.permit, T0 + 1, failed=True)
    assert not (await store.breaker_admit("svc", BREAKER, T0 + 1.5)).admitted
    primary.down = False
    # The probe pushes the local open circuit before answering: rejected.
    admission = await store.breaker_admit("svc", BREAKER, T0 + 2)
    assert not admission.admitted
    assert admission.state is BreakerState.OPEN
    assert admission.opened_at == T0 + 1
    shared = await primary.state.breaker_state("svc", BREAKER, T0 + 2)
    assert shared.state is BreakerState.OPEN
    assert shared.opened_at == T0 + 1
    restored = events[-1]
    assert isinstance(restored, SharedStateRestored)
    assert restored.resynced == 1


@pytest.mark.anyio
async def test_an_outage_starts_from_the_shared_phase() -> None:
    store, primary, _ = fallback()
    # Another process opened the shared circuit.
    other = primary.state
    for _ in range(2):
        admission = await other.breaker_admit("svc", BREAKER, T0)
        assert admission.permit is not None
        await other.breaker_record("svc", BREAKER, admission.permit, T0, failed=True)
    assert not (await store.breaker_admit("svc", BREAKER, T0 + 1)).admitted
    primary.down = True
    during = await store.breaker_admit("svc", BREAKER, T0 + 2)
    assert not during.admitted
    assert during.retry_after == approx(28.0)
    # The mirrored open circuit is not news to the store: nothing is pushed back.
    primary.down = False
    await store.breaker_admit("svc", BREAKER, T0 + 10)
    assert store.available
    assert (await other.breaker_state("svc", BREAKER, T0 + 10)).generation == 1


@pytest.mark.anyio
async def test_fail_closed_rejects_until_the_store_is_back() -> None:
    store, primary, events = fallback("fail_closed", retry_initial=2.0, retry_max=2.0)
    primary.down = True
    assert await store.acquire("svc", LIMIT, T0) == 2.0
    assert await store.acquire("svc", None, T0 + 0.5) == 1.5
    admission = await store.breaker_admit("svc", BREAKER, T0 + 1)
    assert admission.permit is None
    assert admission.retry_after == 1.0
    # Outcomes of calls admitted before the outage are still taken, locally.
    status = await store.breaker_record("svc", BREAKER, 0, T0 + 1, failed=True)
    assert status.state is BreakerState.CLOSED
    assert kinds(events) == ["SharedStateUnavailable"]
    assert isinstance(events[0], SharedStateUnavailable)
    assert events[0].mode == "fail_closed"
    primary.down = False
    assert await store.acquire("svc", LIMIT, T0 + 2) == 0.0
    assert (await store.breaker_admit("svc", BREAKER, T0 + 2)).admitted
    primary.down = True
    with pytest.raises(ConfigError, match="cost"):
        await store.acquire("svc", LIMIT, T0 + 3, cost=5)


@pytest.mark.anyio
async def test_a_pause_set_during_an_outage_reaches_the_store() -> None:
    store, primary, events = fallback()
    primary.down = True
    await store.pause("svc", T0 + 60, T0)
    assert await store.acquire("svc", None, T0 + 0.5) == 59.5  # held locally meanwhile
    primary.down = False
    await store.acquire("svc", None, T0 + 1)
    assert await primary.state.acquire("svc", None, T0 + 10) == 50.0
    restored = events[-1]
    assert isinstance(restored, SharedStateRestored)
    assert restored.resynced == 1


@pytest.mark.anyio
async def test_one_probe_at_a_time() -> None:
    store, primary, _ = fallback()
    primary.down = True
    await store.acquire("svc", LIMIT, T0)
    primary.down = False
    primary.gate = anyio.Event()
    answers: list[float] = []

    async def probe() -> None:
        answers.append(await store.acquire("svc", LIMIT, T0 + 1))

    async with anyio.create_task_group() as group:
        group.start_soon(probe)
        await anyio.wait_all_tasks_blocked()
        reached = len(primary.calls)
        # The probe is out: this call is answered locally, without waiting for it.
        assert await store.acquire("svc", LIMIT, T0 + 1) == 0.0
        assert len(primary.calls) == reached
        assert not store.available
        primary.gate.set()
    assert store.available
    assert answers == [0.0]


@pytest.mark.anyio
async def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    store, primary, _ = fallback()
    primary.down = True
    await store.acquire("svc", LIMIT, T0)
    primary.down = False
    primary.gate = anyio.Event()
    with anyio.move_on_after(0.01):
        await store.acquire("svc", LIMIT, T0 + 1)
    primary.gate = None
    await store.acquire("svc", LIMIT, T0 + 1)
    assert store.available


def test_fallback_options_are_checked() -> None:
    primary = cast(SharedPolicyState, MemorySharedState())
    with pytest.raises(ConfigError, match="mode"):
        FallbackSharedState(primary, mode=cast(Any, "fail_sometimes"))
    with pytest.raises(ConfigError, match="retry_initial"):
        FallbackSharedState(primary, retry_initial=0)
    with pytest.raises(ConfigError, match="retry_max"):
        FallbackSharedState(primary, retry_initial=2, retry_max=1)


operations = st.lists(
    st.tuples(
        st.sampled_from(["down", "up", "acquire", "admit", "record", "release", "pause"]),
        st.sampled_from([0.0, 0.1, 0.7, 3.0]),
    ),
    max_size=40,
)


@pytest.mark.anyio
@given(steps=operations, mode=st.sampled_from(["fail_open", "fail_closed"]))
async def test_no_store_failure_reaches_a_caller(steps: list[tuple[str, float]], mode: str) -> None:
    store, primary, events = fallback(mode, retry_initial=0.5, retry_max=2.0)
    now = T0
    permits: list[int] = []
    for action, dt in steps:
        now += dt
        if action == "down":
            primary.down = True
        elif action == "up":
            primary.down = False
        elif action == "acquire":
            wait = await store.acquire("svc", LIMIT, now)
            if mode == "fail_closed" and not store.available:
                assert wait > 0
        elif action == "admit":
            admission = await store.breaker_admit("svc", BREAKER, now)
            if admission.permit is not None:
                assert store.available or mode == "fail_open"
                permits.append(admission.permit)
        elif action == "record" and permits:
            await store.breaker_record("svc", BREAKER, permits.pop(), now, failed=True)
        elif action == "release" and permits:
            await store.breaker_release("svc", BREAKER, permits.pop(), now)
        elif action == "pause":
            await store.pause("svc", now + 1, now)
    # Outages and recoveries alternate, starting with an outage.
    names = kinds(events)
    assert names == ["SharedStateUnavailable", "SharedStateRestored"] * (len(names) // 2) + [
        "SharedStateUnavailable"
    ] * (len(names) % 2)
    assert store.available == (len(names) % 2 == 0)


# -- Redis: the scripts against memory -----------------------------------------


@pytest.fixture(scope="module")
def redis_env() -> Iterator[tuple[str, str]]:
    with redis_prefix() as env:
        yield env


@st.composite
def breakers(draw: st.DrawFn) -> Breaker:
    slow = draw(st.sampled_from([None, 1.0]))
    rate = draw(st.sampled_from([None, 0.25, 0.5, 1.0]))
    threshold = draw(st.sampled_from([None, 1, 2, 4]))
    if threshold is None and rate is None and slow is None:
        threshold = 3
    multiplier = draw(st.sampled_from([1.0, 2.0]))
    return Breaker(
        failure_threshold=threshold,
        failure_rate_threshold=rate,
        sliding_window=draw(st.sampled_from(["count", "time"])),
        window_size=draw(st.integers(1, 6)),
        minimum_calls=draw(st.integers(1, 4)),
        slow_call_duration=slow,
        slow_call_rate_threshold=draw(st.sampled_from([0.5, 1.0])),
        open_duration=draw(st.sampled_from([1.0, 2.5])),
        open_duration_multiplier=multiplier,
        max_open_duration=7.0 if multiplier > 1 else None,
        half_open_probes=draw(st.integers(1, 3)),
        success_threshold=draw(st.integers(1, 2)),
    )


BREAKER_STEPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["admit"] * 6
            + ["success"] * 3
            + ["failure"] * 4
            + ["slow", "release", "state", "force", "sync", "stale"]
        ),
        st.sampled_from([0.0, 0.3, 0.5, 1.0, 2.5, 4.0]),
        st.integers(0, 30),
    ),
    max_size=60,
)


async def _same_breaker(
    url: str, prefix: str, breaker: Breaker, steps: list[tuple[str, float, int]]
) -> None:
    redis = RedisSharedState.from_url(url, prefix=f"{prefix}{uuid.uuid4().hex}:", probe_lease=1e9)
    memory = MemorySharedState()
    now = T0 + 0.25
    permits: list[int] = []
    shared: object
    local: object
    try:
        for action, dt, pick in steps:
            now += dt
            stores = (redis, memory)
            if action == "admit":
                admitted = [await s.breaker_admit("svc", breaker, now) for s in stores]
                shared, local = admitted
                if admitted[1].permit is not None:
                    permits.append(admitted[1].permit)
            elif action in {"success", "failure", "slow", "stale"}:
                if action == "stale":
                    permit = pick % 3
                elif permits:
                    permit = permits.pop(pick % len(permits))
                else:
                    continue
                failed, duration = action == "failure", 2.0 if action == "slow" else 0.0
                shared, local = [
                    await s.breaker_record(
                        "svc", breaker, permit, now, failed=failed, duration=duration
                    )
                    for s in stores
                ]
            elif action == "release":
                if not permits:
                    continue
                permit = permits.pop(pick % len(permits))
                for s in stores:
                    await s.breaker_release("svc", breaker, permit, now)
                continue
            elif action == "force":
                target = [BreakerState.FORCED_OPEN, BreakerState.DISABLED, BreakerState.CLOSED]
                shared, local = [
                    await s.breaker_force("svc", breaker, target[pick % 3], now) for s in stores
                ]
            elif action == "sync":
                observed = open_observed(now - pick / 10, generation=pick, open_count=1 + pick % 3)
                shared, local = [
                    await s.breaker_sync("svc", breaker, observed, now) for s in stores
                ]
            else:
                shared, local = [await s.breaker_state("svc", breaker, now) for s in stores]
            assert shared == local, (action, now)
        final = [await s.breaker_state("svc", breaker, now + 0.5) for s in (redis, memory)]
        assert final[0] == final[1]
    finally:
        await redis.aclose()


@given(breaker=breakers(), steps=BREAKER_STEPS)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_redis_breaker_is_the_local_machine(
    redis_env: tuple[str, str], breaker: Breaker, steps: list[tuple[str, float, int]]
) -> None:
    asyncio.run(_same_breaker(*redis_env, breaker, steps))


@st.composite
def limits(draw: st.DrawFn) -> RateLimit:
    return RateLimit(
        rate=draw(st.sampled_from([1.0, 3.0, 7.5, 10.0, 120.0])),
        period=draw(st.sampled_from([1.0, 0.5, 60.0])),
        burst=draw(st.sampled_from([None, 1, 2, 5])),
    )


LIMIT_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["acquire"] * 6 + ["unlimited", "refund", "pause"]),
        st.sampled_from([0.0, 0.001, 0.05, 0.1, 0.37, 2.0]),
        st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    ),
    max_size=60,
)


async def _same_limiter(
    url: str, prefix: str, limit: RateLimit, steps: list[tuple[str, float, float]]
) -> None:
    redis = RedisSharedState.from_url(url, prefix=f"{prefix}{uuid.uuid4().hex}:")
    memory = MemorySharedState()
    now = T0 + 0.125
    try:
        for action, dt, amount in steps:
            now += dt
            answers: list[object] = []
            for store in (redis, memory):
                answer: object = None
                try:
                    if action == "acquire":
                        answer = await store.acquire("svc", limit, now, amount)
                    elif action == "unlimited":
                        answer = await store.acquire("svc", None, now)
                    elif action == "refund":
                        await store.refund("svc", limit, now, amount)
                    else:
                        await store.pause("svc", now + amount - 1, now)
                except ConfigError as error:
                    answer = error.field
                answers.append(answer)
            assert answers[0] == answers[1], (action, now, amount)
    finally:
        await redis.aclose()


@given(limit=limits(), steps=LIMIT_STEPS)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_redis_limiter_is_the_memory_limiter(
    redis_env: tuple[str, str], limit: RateLimit, steps: list[tuple[str, float, float]]
) -> None:
    asyncio.run(_same_limiter(*redis_env, limit, steps))


# -- Redis: sharing between clients ----------------------------------------------


async def _clients(url: str, prefix: str, n: int, **options: Any) -> list[RedisSharedState]:
    return [RedisSharedState.from_url(url, prefix=prefix, **options) for _ in range(n)]


@pytest.mark.anyio
@asyncio_only
async def test_concurrent_clients_never_over_admit(redis_env: tuple[str, str]) -> None:
    url, prefix = redis_env
    clients = await _clients(url, f"{prefix}quota:", 4)
    limit = RateLimit.per_second(5, burst=10)
    try:
        waits = await asyncio.gather(
            *(client.acquire("svc", limit, T0) for client in clients for _ in range(30))
        )
        assert sum(wait == 0.0 for wait in waits) == 10
        # The refusals name the exact waits for the next tokens: 0.2 s apart.
        assert min(wait for wait in waits if wait > 0) == approx(0.2)
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_the_probe_budget_holds_across_clients(redis_env: tuple[str, str]) -> None:
    url, prefix = redis_env
    breaker = Breaker(failure_threshold=1, open_duration=5.0, half_open_probes=2)
    one, two = await _clients(url, f"{prefix}probes:", 2)
    try:
        first = await one.breaker_admit("svc", breaker, T0)
        assert first.permit is not None
        opened = await one.breaker_record("svc", breaker, first.permit, T0, failed=True)
        # Opened by one client, open for the other.
        seen = await two.breaker_admit("svc", breaker, T0 + 1)
        assert not seen.admitted
        assert seen.state is BreakerState.OPEN
        assert seen.generation == opened.generation
        assert seen.retry_after == approx(4.0)
        probes: list[Admission] = await asyncio.gather(
            *(c.breaker_admit("svc", breaker, T0 + 5) for c in (one, two) for _ in range(10))
        )
        admitted = [probe for probe in probes if probe.admitted]
        assert len(admitted) == 2
        permit = admitted[0].permit
        assert permit is not None
        await two.breaker_release("svc", breaker, permit, T0 + 5)
        assert (await one.breaker_admit("svc", breaker, T0 + 5)).admitted
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_a_probe_lease_frees_the_slot_of_a_dead_process(redis_env: tuple[str, str]) -> None:
    url, prefix = redis_env
    breaker = Breaker(failure_threshold=1, open_duration=5.0)
    (store,) = await _clients(url, f"{prefix}lease:", 1, probe_lease=10.0)
    try:
        first = await store.breaker_admit("svc", breaker, T0)
        assert first.permit is not None
        await store.breaker_record("svc", breaker, first.permit, T0, failed=True)
        assert (await store.breaker_admit("svc", breaker, T0 + 5)).admitted  # then it dies
        assert not (await store.breaker_admit("svc", breaker, T0 + 14.9)).admitted
        state = await store.breaker_state("svc", breaker, T0 + 14.9)
        assert state.half_open_in_flight == 1
        assert (await store.breaker_admit("svc", breaker, T0 + 15)).admitted
    finally:
        await store.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_keys_expire_unless_an_operator_holds_them(redis_env: tuple[str, str]) -> None:
    url, prefix = redis_env
    scope_prefix = f"{prefix}ttl:"
    store = RedisSharedState.from_url(url, prefix=scope_prefix, state_ttl=100.0)
    client = store.client
    try:
        await store.acquire("svc", RateLimit.per_second(1, burst=5), T0)
        # One token of five used: full again in 1 s, then kept 60 s more.
        assert 60_000 < await client.pttl(f"{scope_prefix}limit:{{svc}}") <= 61_000
        admission = await store.breaker_admit("svc", BREAKER, T0)
        assert admission.permit is not None
        await store.breaker_record("svc", BREAKER, admission.permit, T0, failed=True)
        core = f"{scope_prefix}breaker:{{svc}}"
        assert 0 < await client.pttl(core) <= 100_000
        await store.breaker_force("svc", BREAKER, BreakerState.FORCED_OPEN, T0)
        assert await client.pttl(core) == -1
        await store.breaker_force("svc", BREAKER, BreakerState.CLOSED, T0)
        assert 0 < await client.pttl(core) <= 100_000
    finally:
        await store.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_scripts_are_loaded_again_after_the_server_lost_them(
    redis_env: tuple[str, str],
) -> None:
    url, prefix = redis_env
    store = RedisSharedState.from_url(url, prefix=f"{prefix}flush:")
    try:
        assert await store.acquire("svc", LIMIT, T0) == 0.0
        await store.client.script_flush()
        assert await store.acquire("svc", LIMIT, T0) == 0.0
        assert await store.acquire("svc", LIMIT, T0) == approx(0.1)
    finally:
        await store.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_a_changed_window_starts_empty(redis_env: tuple[str, str]) -> None:
    url, prefix = redis_env
    store = RedisSharedState.from_url(url, prefix=f"{prefix}window:")
    wide = Breaker(failure_threshold=None, failure_rate_threshold=0.5, window_size=4)
    narrow = Breaker(failure_threshold=None, failure_rate_threshold=0.5, window_size=2)
    try:
        for failed in (True, False, False):
            admission = await store.breaker_admit("svc", wide, T0)
            assert admission.permit is not None
            await store.breaker_record("svc", wide, admission.permit, T0, failed=failed)
        assert (await store.breaker_state("svc", wide, T0)).outcomes == [1, 0, 0]
        assert (await store.breaker_state("svc", narrow, T0)).outcomes == []
    finally:
        await store.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_an_unreachable_server_is_a_shared_state_error() -> None:
    store = RedisSharedState.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    try:
        with pytest.raises(SharedStateError, match="redis") as caught:
            await store.acquire("svc", LIMIT, T0)
        assert caught.value.store == "redis"
    finally:
        await store.aclose()


# -- Redis: processes, and a server that dies ----------------------------------------


def _share(
    url: str,
    prefix: str,
    index: int,
    ready: Any,
    go: Any,
    start: Any,
    opened: Any,
    results: Any,
) -> None:
    asyncio.run(_share_async(url, prefix, index, ready, go, start, opened, results))


async def _share_async(
    url: str,
    prefix: str,
    index: int,
    ready: Any,
    go: Any,
    start: Any,
    opened: Any,
    results: Any,
) -> None:
    store = RedisSharedState.from_url(url, prefix=prefix)
    limit = RateLimit.per_second(50, burst=10)
    breaker = Breaker(failure_threshold=3, open_duration=60.0)
    await store.acquire("warm-up", None, time.time())  # connect and load before the clock runs
    ready.put(index)
    await asyncio.to_thread(go.wait, 30)
    begin = start.value
    end = begin + 3.0
    await asyncio.sleep(max(0.0, begin - time.time()))
    admitted = 0
    while (now := time.time()) < end:
        wait = await store.acquire("quota", limit, now)
        if wait == 0.0:
            admitted += 1
        else:
            await asyncio.sleep(min(wait, end - now))
    seen: tuple[int | None, str] | None = None
    if index == 0:
        for _ in range(3):
            admission = await store.breaker_admit("circuit", breaker, time.time())
            assert admission.permit is not None
            await store.breaker_record(
                "circuit", breaker, admission.permit, time.time(), failed=True
            )
        opened.set()
    else:
        await asyncio.to_thread(opened.wait, 30)
        admission = await store.breaker_admit("circuit", breaker, time.time())
        seen = (admission.permit, admission.state.value)
    await store.aclose()
    results.put((index, admitted, seen))


def test_two_processes_share_one_quota_and_one_circuit(redis_env: tuple[str, str]) -> None:
    url, prefix = redis_env
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go, opened = context.Event(), context.Event()
    start = context.Value("d", 0.0)
    workers = [
        context.Process(
            target=_share,
            args=(url, f"{prefix}procs:", index, ready, go, start, opened, results),
        )
        for index in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=60)
        start.value = time.time() + 0.2
        go.set()
        outcome = sorted(results.get(timeout=60) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    assert all(worker.exitcode == 0 for worker in workers)
    total = sum(admitted for _, admitted, _ in outcome)
    # GCRA admits at most capacity + rate * T in any window of T seconds; every
    # admission's `now` lies in one 3 s window, so no allowance is needed.
    bound = 50 * 3 + 10
    assert 0.8 * bound < total <= bound
    assert all(admitted > 0 for _, admitted, _ in outcome)
    assert outcome[1][2] == (None, "open")


@pytest.mark.anyio
@asyncio_only
@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_calls_keep_flowing_while_redis_is_killed(own_redis: OwnRedis, mode: str) -> None:
    events: list[Event] = []
    primary = RedisSharedState.from_url(own_redis.url, timeout=0.5)
    store = FallbackSharedState(
        primary,
        mode=cast(Any, mode),
        on_event=events.append,
        retry_initial=1.0,
        retry_max=1.0,
        store="redis",
    )
    limit = RateLimit.per_second(100, burst=5)
    breaker = Breaker(failure_threshold=3, open_duration=100.0)
    now = T0

    async def call(failed: bool) -> tuple[bool, bool]:
        """One guarded call: (got a token, got a permit); records its outcome."""
        token = await store.acquire("svc", limit, now) == 0.0
        admission = await store.breaker_admit("svc", breaker, now)
        if admission.permit is not None:
            await store.breaker_record("svc", breaker, admission.permit, now, failed=failed)
        return token, admission.permit is not None

    try:
        for _ in range(10):
            now += 0.01
            assert await call(failed=False) == (True, True)
        assert store.available
        assert await primary.acquire("svc", limit, now) == 0.0  # Redis holds the quota

        own_redis.kill()
        outcomes = []
        for _ in range(40):
            now += 0.01
            outcomes.append(await call(failed=True))
        assert kinds(events) == ["SharedStateUnavailable"]
        if mode == "fail_open":
            # Admitted by local state: a local breaker, opened by three failures.
            assert sum(permit for _, permit in outcomes) == 3
            assert all(token for token, _ in outcomes[:5])
        else:
            assert not any(token or permit for token, permit in outcomes)

        own_redis.start()
        now += 1.0
        token, permit = await call(failed=False)
        assert store.available
        assert kinds(events) == ["SharedStateUnavailable", "SharedStateRestored"]
        restored = events[1]
        assert isinstance(restored, SharedStateRestored)
        shared = await primary.breaker_state("svc", breaker, now)
        if mode == "fail_open":
            # The circuit opened during the outage was pushed to the fresh server.
            assert restored.resynced == 1
            assert shared.state is BreakerState.OPEN
            assert not permit
        else:
            assert restored.resynced == 0
            assert shared.state is BreakerState.CLOSED
            assert token
            assert permit
    finally:
        await store.aclose()
