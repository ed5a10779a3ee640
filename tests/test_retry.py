"""Retry policy defaults and backoff delays: jitter bounds, the cap, seeded repeats."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import DEFAULT_RETRYABLE_STATUSES, Backoff, ConfigError, Retry


@st.composite
def policies(draw: st.DrawFn) -> Retry:
    initial = draw(st.sampled_from([0.0, 0.001, 1.0]) | st.floats(0.0, 10.0))
    return Retry(
        attempts=draw(st.integers(1, 10)),
        initial_delay=initial,
        multiplier=draw(st.sampled_from([1.0, 2.0, 1.5]) | st.floats(1.0, 10.0)),
        max_delay=initial + draw(st.sampled_from([0.0, 30.0]) | st.floats(0.0, 1000.0)),
        jitter=draw(st.sampled_from(["full", "equal", "decorrelated", "none"])),
    )


def _undelayed(policy: Retry, retry: int) -> float:
    """``initial * multiplier ** (retry - 1)`` capped, with exact arithmetic for the cap test."""
    if policy.initial_delay == 0:
        return 0.0
    grown = policy.initial_delay
    for _ in range(retry - 1):
        grown *= policy.multiplier
        if grown >= policy.max_delay:
            return policy.max_delay
    return min(grown, policy.max_delay)


@given(policy=policies(), seed=st.integers(0, 2**32), retries=st.integers(1, 40))
def test_delays_lie_within_their_jitter_bounds(policy: Retry, seed: int, retries: int) -> None:
    backoff = Backoff(policy, random.Random(seed))
    previous: float | None = None
    for retry in range(1, retries + 1):
        delay = backoff.delay(retry, previous)
        d = backoff.base(retry)
        assert d == pytest.approx(_undelayed(policy, retry), rel=1e-12)
        assert 0.0 <= delay <= policy.max_delay
        if policy.jitter == "full":
            assert 0.0 <= delay <= d
        elif policy.jitter == "equal":
            assert d / 2 <= delay <= d
        elif policy.jitter == "decorrelated":
            last = previous if previous is not None else policy.initial_delay
            assert policy.initial_delay <= delay <= min(policy.max_delay, 3 * last)
        else:
            assert delay == d
        previous = delay


@given(policy=policies(), seed=st.integers(0, 2**32))
def test_same_seed_same_delays(policy: Retry, seed: int) -> None:
    def run() -> list[float]:
        backoff = Backoff(policy, random.Random(seed))
        delays: list[float] = []
        previous: float | None = None
        for retry in range(1, 12):
            previous = backoff.delay(retry, previous)
            delays.append(previous)
        return delays

    assert run() == run()


@given(policy=policies(), retry=st.sampled_from([1_100, 10**6, 10**18, 10**30]))
def test_huge_retry_numbers_do_not_overflow(policy: Retry, retry: int) -> None:
    backoff = Backoff(policy, random.Random(0))
    if policy.initial_delay == 0:
        expected = 0.0  # zero grows to zero, however often it is multiplied
    else:
        log_grown = math.log(policy.initial_delay) + (retry - 1) * math.log(policy.multiplier)
        expected = min(policy.max_delay, math.exp(min(log_grown, 700.0)))
    assert backoff.base(retry) == pytest.approx(expected, rel=1e-6)
    assert 0.0 <= backoff.delay(retry, policy.max_delay) <= policy.max_delay


def test_original_delays_without_jitter() -> None:
    """1000, 2000, 4000 ms ... doubling, capped at 30000 ms: the 6th retry would be 32 s."""
    backoff = Backoff(Retry(jitter="none"), random.Random(0))
    assert [backoff.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_defaults() -> None:
    policy = Retry()
    assert policy.attempts == 3  # the first call and two retries
    assert policy.initial_delay == 1.0
    assert policy.multiplier == 2.0
    assert policy.max_delay == 30.0
    assert policy.jitter == "full"
    assert policy.deadline is None
    assert policy.retryable_statuses == {408, 425, 429, 500, 502, 503, 504}
    assert policy.retryable_statuses == DEFAULT_RETRYABLE_STATUSES
    assert Retry.none().attempts == 1


def test_retry_numbers_start_at_one() -> None:
    backoff = Backoff(Retry(), random.Random(0))
    with pytest.raises(ConfigError, match="retry") as caught:
        backoff.base(0)
    assert caught.value.field == "retry"
    assert caught.value.value == 0


def test_decorrelated_grows_from_the_previous_delay() -> None:
    policy = Retry(jitter="decorrelated", initial_delay=1.0, max_delay=100.0)
    rng = random.Random(7)
    backoff = Backoff(policy, rng)
    twin = random.Random(7)
    assert backoff.delay(1) == twin.uniform(1.0, 3.0)
    assert backoff.delay(2, 10.0) == twin.uniform(1.0, 30.0)
    assert backoff.delay(3, 50.0) == min(100.0, twin.uniform(1.0, 150.0))
