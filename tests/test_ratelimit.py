"""Token bucket and GCRA: the bound on admitted cost, exact waits, pauses, a full start."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import GCRA, ConfigError, RateLimit, RateLimitExceeded, TokenBucket
from connector._ratelimit import Limiter

Algorithm = Literal["token_bucket", "gcra"]
ALGORITHMS: list[Algorithm] = ["token_bucket", "gcra"]
# At least 200 runs whatever the profile; never fewer than the profile asks for.
MANY = settings(max_examples=max(200, settings().max_examples))


@st.composite
def limits(draw: st.DrawFn) -> RateLimit:
    period = draw(st.sampled_from([1.0, 60.0, 3600.0, 0.1]))
    return RateLimit(
        # From one call per hour to ten thousand per second.
        rate=draw(st.sampled_from([1.0, 2.0, 5.0, 0.5, 100.0]) | st.floats(0.25, 1000.0)),
        period=period,
        burst=draw(st.none() | st.integers(1, 20)),
        algorithm=draw(st.sampled_from(ALGORITHMS)),
    )


# Clock readings: the simulator starts at 0, trio's clock 1e4-2e5 s in, asyncio's
# at the machine's uptime (see test_large_clock_values for days and years).
STARTS = st.sampled_from([0.0, 12_345.678, 199_999.9])


@dataclass
class Arrival:
    gap: float  # in units of one token's refill time
    cost: float  # as a fraction of the capacity, or exactly 1 when None
    on_time: bool  # if refused, come back exactly when told to


@dataclass
class Pause:
    for_: float  # in units of one token's refill time


def _cost(limit: RateLimit, fraction: float | None) -> float:
    return 1.0 if fraction is None else max(fraction * limit.capacity, 1e-3)


OPS = st.lists(
    st.one_of(
        st.builds(
            Arrival,
            gap=st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0.0, 3.0),
            cost=st.none() | st.floats(0.01, 1.0),
            on_time=st.booleans(),
        ),
        st.builds(Pause, for_=st.floats(0.0, 5.0)),
    ),
    max_size=50,
)


@MANY
@given(limit=limits(), start=STARTS, ops=OPS)
def test_limiter_properties(limit: RateLimit, start: float, ops: list[Arrival | Pause]) -> None:
    limiter = limit.new_limiter()
    unit = 1.0 / limit.tokens_per_second
    now = start
    paused_until = -math.inf
    admitted: list[tuple[float, float]] = []
    for op in ops:
        if isinstance(op, Pause):
            paused_until = max(paused_until, now + op.for_ * unit)
            limiter.pause_until(now + op.for_ * unit)
            continue
        now += op.gap * unit
        cost = _cost(limit, op.cost)
        wait = limiter.try_acquire(now, cost)
        assert limiter.available(now) >= 0
        if wait == 0.0:
            assert now >= paused_until, "admitted during a pause"
            admitted.append((now, cost))
            continue
        assert 0 < wait < math.inf
        _check_wait(limiter, now, cost, wait)
        if op.on_time:
            now += wait
            assert limiter.try_acquire(now, cost) == 0.0
            assert now >= paused_until
            admitted.append((now, cost))

    # In every interval [t, t + T], at most capacity + rate * T was admitted, give or
    # take the float slack each admission may use: 1e-9 s plus an ulp per burst token.
    rate = limit.tokens_per_second
    early = 1e-9 + limit.capacity * math.ulp(now)
    slack = rate * len(admitted) * 2 * early + 1e-9
    for i, (begin, _) in enumerate(admitted):
        total = 0.0
        for end, cost in admitted[i:]:
            total += cost
            assert total <= limit.capacity + rate * (end - begin) + slack


def _check_wait(limiter: Limiter, now: float, cost: float, wait: float) -> None:
    """Refused with ``wait``: still refused a microsecond early, admitted exactly on time."""
    twin = copy.deepcopy(limiter)
    if wait > 1e-6:
        assert twin.try_acquire(now + wait - 1e-6, cost) > 0
    assert twin.try_acquire(now + wait, cost) == 0.0


@MANY
@given(limit=limits(), start=STARTS)
def test_starts_full(limit: RateLimit, start: float) -> None:
    whole = limit.new_limiter()
    assert whole.available(start) == limit.capacity
    assert whole.try_acquire(start, limit.capacity) == 0.0
    assert whole.try_acquire(start, min(1.0, limit.capacity)) > 0

    one_by_one = limit.new_limiter()
    for _ in range(math.floor(limit.capacity)):
        assert one_by_one.try_acquire(start) == 0.0
    if limit.capacity == math.floor(limit.capacity):
        assert one_by_one.try_acquire(start) > 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_per_second_two_then_wait_half_a_second(algorithm: Algorithm) -> None:
    limiter = RateLimit(rate=2, algorithm=algorithm).new_limiter()
    assert limiter.try_acquire(0.0) == 0.0
    assert limiter.try_acquire(0.0) == 0.0
    wait = limiter.try_acquire(0.0)
    # The original reported whole seconds ("waits 1 s"); we know the exact wait, and
    # only the message rounds it up to whole seconds, as the original's did.
    assert wait == 0.5
    error = RateLimitExceeded("sendgrid", 2, 1, wait)
    assert error.retry_after == 0.5
    assert "Retry in 1 seconds" in str(error)
    assert limiter.try_acquire(0.5) == 0.0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_five_per_minute_sixth_waits_twelve_seconds(algorithm: Algorithm) -> None:
    limit = RateLimit.per_minute(5)
    limiter = RateLimit(rate=5, period=60.0, algorithm=algorithm).new_limiter()
    assert limit.capacity == 5
    for _ in range(5):
        assert limiter.try_acquire(100.0) == 0.0
    assert limiter.try_acquire(100.0) == pytest.approx(12.0, abs=1e-9)
    assert limiter.try_acquire(112.0) == 0.0


@pytest.mark.parametrize("limiter_type", [TokenBucket, GCRA])
def test_pause_holds_every_call_until_it_ends(limiter_type: type[TokenBucket | GCRA]) -> None:
    limiter = limiter_type(RateLimit.per_second(10))
    limiter.pause_until(30.0)
    limiter.pause_until(20.0)  # an earlier end never shortens a pause
    assert limiter.paused_until == 30.0
    assert limiter.available(29.0) == 0.0
    assert limiter.try_acquire(25.0) == 5.0
    assert limiter.try_acquire(math.nextafter(30.0, 0.0)) > 0
    assert limiter.try_acquire(30.0) == 0.0


@pytest.mark.parametrize("limiter_type", [TokenBucket, GCRA])
def test_wait_for_a_pause_is_rounded_up(limiter_type: type[TokenBucket | GCRA]) -> None:
    """``now + (end - now)`` can round below ``end``; the wait must still be enough."""
    end, now = 0.5750000000000001, 0.04223263854973386
    assert now + (end - now) < end
    limiter = limiter_type(RateLimit.per_second(5))
    limiter.pause_until(end)
    wait = limiter.try_acquire(now)
    assert now + wait >= end
    assert limiter.try_acquire(now + wait) == 0.0


def test_capacity_recovers_during_a_pause() -> None:
    for limiter in (TokenBucket(RateLimit.per_second(2)), GCRA(RateLimit.per_second(2))):
        limiter.try_acquire(0.0, 2.0)
        limiter.pause_until(10.0)
        assert limiter.available(10.0) == 2.0
        assert limiter.try_acquire(10.0, 2.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "capacity", "per_second"),
    [
        ({"rate": 10}, 10.0, 10.0),
        ({"rate": 0.5}, 1.0, 0.5),
        ({"rate": 100, "period": 60.0, "burst": 5}, 5.0, 100 / 60),
        ({"rate": 3600, "period": 3600.0}, 3600.0, 1.0),
    ],
)
def test_capacity_and_refill(kwargs: dict[str, float], capacity: float, per_second: float) -> None:
    limit = RateLimit(**kwargs)  # type: ignore[arg-type]
    assert limit.capacity == capacity
    assert limit.tokens_per_second == per_second


def test_constructors() -> None:
    assert RateLimit.per_second(3) == RateLimit(rate=3, period=1.0)
    assert RateLimit.per_minute(3, burst=1) == RateLimit(rate=3, period=60.0, burst=1)
    assert RateLimit.per_hour(3, mode="reject") == RateLimit(rate=3, period=3600.0, mode="reject")
    assert RateLimit(rate=1).mode == "wait"
    assert isinstance(RateLimit(rate=1).new_limiter(), TokenBucket)
    assert isinstance(RateLimit(rate=1, algorithm="gcra").new_limiter(), GCRA)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("cost", [0.0, -1.0, 3.5, math.nan, math.inf])
def test_cost_outside_the_capacity_is_refused(algorithm: Algorithm, cost: float) -> None:
    limiter = RateLimit(rate=3, algorithm=algorithm).new_limiter()
    with pytest.raises(ConfigError, match="cost") as caught:
        limiter.try_acquire(0.0, cost)
    assert caught.value.field == "cost"
    assert limiter.available(0.0) == 3.0  # and nothing was taken


@MANY
@given(
    limit=limits(),
    start=st.sampled_from([8_640_000.3, 31_536_000.7, 1_700_000_000.1]),
    cost=st.sampled_from([1.0, 0.3]),
)
def test_large_clock_values(limit: RateLimit, start: float, cost: float) -> None:
    """After 100 days or a year of uptime (or on a Unix clock), 1e-9 s is below the
    clock's resolution: a full burst still passes and a wait is still exact."""
    limiter = limit.new_limiter()
    for _ in range(math.floor(limit.capacity)):
        assert limiter.try_acquire(start) == 0.0
    if limit.capacity % 1:
        assert limiter.try_acquire(start, limit.capacity % 1) == 0.0
    cost = min(cost, limit.capacity)
    wait = limiter.try_acquire(start, cost)
    # Early by more than the float slack is refused: the caller's own rounding
    # for the bucket, half an ulp per admission of a full burst for GCRA.
    rounding = math.ulp(start + wait) * (limit.capacity if limit.algorithm == "gcra" else 1)
    if wait == 0.0:
        assert cost / limit.tokens_per_second <= 2 * rounding + 1e-9
        return
    if wait > 2e-6 + 2 * rounding:
        assert limiter.try_acquire(start + wait - 1e-6 - 2 * rounding, cost) > 0
    assert limiter.try_acquire(start + wait, cost) == 0.0
