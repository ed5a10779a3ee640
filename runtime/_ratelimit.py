"""Rate limiting: the `RateLimit` policy and two pure limiters, `TokenBucket` and `GCRA`.

Both answer `try_acquire(now, cost)` with 0.0 when the cost was taken, or the
exact number of seconds until it could be (nothing taken). Both start full,
both honour `pause_until` (a provider's Retry-After), and both admit at most
``capacity + rate * T`` cost in any interval of length ``T``. They differ in
state: the bucket keeps (tokens, updated), GCRA keeps one theoretical arrival
time, which is what a shared store wants (one key, one atomic compare).
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import msgspec

from . import _validate as check
from ._errors import ConfigError

__all__ = ["GCRA", "Limiter", "LimiterState", "RateLimit", "TokenBucket"]

# Float slack, in seconds: a caller told to wait w seconds must be admitted at
# now + w even when the sum rounds short. Slack is time, not tokens (1e-9 tokens
# is 3.6 us of a one-per-hour limit), and grows with the clock's ulp: asyncio's
# clock is the uptime, and after a year 1e-9 s is below its resolution.
_EPSILON = 1e-9


class RateLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``rate`` calls per ``period`` seconds, with ``burst`` (default: ``rate``) at once.

    ``mode="wait"`` queues a call until its token is due (up to the caller's
    deadline); ``mode="reject"`` fails it at once with `RateLimitExceeded`.
    """

    rate: float
    period: float = 1.0
    burst: int | None = None
    mode: Literal["wait", "reject"] = "wait"
    algorithm: Literal["token_bucket", "gcra"] = "token_bucket"

    def __post_init__(self) -> None:
        check.positive("rate", self.rate)
        check.positive("period", self.period)
        if self.burst is not None:
            check.integer("burst", self.burst, 1)
        check.one_of("mode", self.mode, ("wait", "reject"))
        check.one_of("algorithm", self.algorithm, ("token_bucket", "gcra"))

    @classmethod
    def per_second(
        cls, n: float, *, burst: int | None = None, mode: Literal["wait", "reject"] = "wait"
    ) -> RateLimit:
        return cls(rate=n, period=1.0, burst=burst, mode=mode)

    @classmethod
    def per_minute(
        cls, n: float, *, burst: int | None = None, mode: Literal["wait", "reject"] = "wait"
    ) -> RateLimit:
        return cls(rate=n, period=60.0, burst=burst, mode=mode)

    @classmethod
    def per_hour(
        cls, n: float, *, burst: int | None = None, mode: Literal["wait", "reject"] = "wait"
    ) -> RateLimit:
        return cls(rate=n, period=3600.0, burst=burst, mode=mode)

    @property
    def capacity(self) -> float:
        """Most cost admitted at once: ``burst``, else one period's worth (at least 1)."""
        return float(self.burst) if self.burst is not None else max(1.0, self.rate)

    @property
    def tokens_per_second(self) -> float:
        return self.rate / self.period

    def new_limiter(self) -> Limiter:
        if self.algorithm == "gcra":
            return GCRA(self)
        return TokenBucket(self)


class LimiterState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A limiter's state, to resume it after its actor was passivated.

    ``level`` is the bucket's tokens or GCRA's theoretical arrival time, and
    None, like ``updated`` and ``paused_until``, means "never used": full.
    """

    level: float | None
    updated: float | None = None
    paused_until: float | None = None


def _finite_or_none(value: float) -> float | None:
    return None if math.isinf(value) else value


class Limiter(Protocol):
    """What the service actor needs from a limiter."""

    limit: RateLimit

    def try_acquire(self, now: float, cost: float = 1.0) -> float: ...
    def refund(self, now: float, cost: float = 1.0) -> None: ...
    def snapshot(self) -> LimiterState: ...
    def restore(self, state: LimiterState) -> None: ...
    def available(self, now: float) -> float: ...
    def pause_until(self, until: float) -> None: ...
    @property
    def paused_until(self) -> float: ...


def _seconds_until(now: float, then: float) -> float:
    """``then - now``, rounded up if need be so that ``now + result >= then`` in floats.

    A caller told to wait until a pause ends must not come back a few ulps early
    and find the limiter still paused: a pause admits nothing before its end.
    """
    wait = then - now
    while now + wait < then:
        wait = math.nextafter(wait, math.inf)
    return wait


def _check_cost(limit: RateLimit, cost: float) -> None:
    if not 0 < cost <= limit.capacity:
        raise ConfigError(
            "cost", cost, f"must be in (0, {limit.capacity:g}], the limiter's capacity"
        )


class TokenBucket:
    """A bucket of ``capacity`` tokens refilled at ``rate / period`` per second; starts full."""

    __slots__ = ("_paused_until", "_tokens", "_updated", "capacity", "limit", "refill_rate")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.capacity = limit.capacity
        self.refill_rate = limit.tokens_per_second
        self._tokens = self.capacity
        self._updated = -math.inf
        self._paused_until = -math.inf

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def _tokens_at(self, now: float) -> float:
        if now <= self._updated:
            return self._tokens
        return min(self.capacity, self._tokens + (now - self._updated) * self.refill_rate)

    def available(self, now: float) -> float:
        return 0.0 if now < self._paused_until else self._tokens_at(now)

    def try_acquire(self, now: float, cost: float = 1.0) -> float:
        # The hot path of every rate-limited call: plain comparisons, no min/max
        # builtins and no helper calls when the bucket simply has the tokens.
        if not 0 < cost <= self.capacity:
            _check_cost(self.limit, cost)
        if now < self._paused_until:
            resume = self._paused_until
            deficit = max(0.0, cost - self._tokens_at(resume))
            return _seconds_until(now, resume) + deficit / self.refill_rate
        updated = self._updated
        tokens = self._tokens
        if now > updated:
            tokens += (now - updated) * self.refill_rate
            if tokens > self.capacity:  # noqa: PLR1730 - a comparison is cheaper than min()
                tokens = self.capacity
        if tokens >= cost:
            self._tokens = tokens - cost
            if now > updated:
                self._updated = now
            return 0.0
        wait = (cost - tokens) / self.refill_rate
        if wait <= _EPSILON + math.ulp(now):
            self._tokens = 0.0
            if now > updated:
                self._updated = now
            return 0.0
        return wait

    def refund(self, now: float, cost: float = 1.0) -> None:
        """Give back ``cost`` taken by a call that was never sent (it was cancelled)."""
        self._tokens = min(self.capacity, self._tokens_at(now) + cost)
        self._updated = max(now, self._updated)

    def snapshot(self) -> LimiterState:
        return LimiterState(
            level=self._tokens,
            updated=_finite_or_none(self._updated),
            paused_until=_finite_or_none(self._paused_until),
        )

    def restore(self, state: LimiterState) -> None:
        level = self.capacity if state.level is None else state.level
        self._tokens = min(self.capacity, max(0.0, level))
        self._updated = -math.inf if state.updated is None else state.updated
        self._paused_until = -math.inf if state.paused_until is None else state.paused_until

    def pause_until(self, until: float) -> None:
        """Admit nothing before ``until``; tokens keep accruing meanwhile."""
        self._paused_until = max(self._paused_until, until)


class GCRA:
    """Generic cell rate algorithm: one theoretical arrival time (TAT) per limit."""

    __slots__ = ("_paused_until", "_tat", "capacity", "interval", "limit", "tolerance")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.capacity = limit.capacity
        self.interval = 1.0 / limit.tokens_per_second
        self.tolerance = self.interval * self.capacity
        self._tat = -math.inf
        self._paused_until = -math.inf

    @property
    def paused_until(self) -> float:
        return self._paused_until

    @property
    def tat(self) -> float:
        return self._tat

    def available(self, now: float) -> float:
        if now < self._paused_until:
            return 0.0
        backlog = max(self._tat, now) - now
        # Not (tolerance - backlog) / interval: that rounds above the capacity when idle.
        return max(0.0, self.capacity - backlog / self.interval)

    def _wait(self, now: float, cost: float) -> float:
        tat = self._tat
        start = tat if tat > now else now
        allow_at = start + self.interval * cost - self.tolerance
        # Every admission rounds the TAT by up to half an ulp, and a burst is up to
        # `capacity` admissions: without this, a full burst at a large clock
        # value falls a few nanoseconds short of its last token.
        slack = _EPSILON + self.capacity * math.ulp(start)
        return 0.0 if now + slack >= allow_at else allow_at - now

    def try_acquire(self, now: float, cost: float = 1.0) -> float:
        if not 0 < cost <= self.capacity:
            _check_cost(self.limit, cost)
        if now < self._paused_until:
            resume = self._paused_until
            return _seconds_until(now, resume) + self._wait(resume, cost)
        wait = self._wait(now, cost)
        if wait == 0.0:
            tat = self._tat
            self._tat = (tat if tat > now else now) + self.interval * cost
        return wait

    def refund(self, now: float, cost: float = 1.0) -> None:
        """Give back ``cost`` taken by a call that was never sent (it was cancelled)."""
        self._tat = max(now, self._tat - self.interval * cost)

    def snapshot(self) -> LimiterState:
        return LimiterState(
            level=_finite_or_none(self._tat), paused_until=_finite_or_none(self._paused_until)
        )

    def restore(self, state: LimiterState) -> None:
        self._tat = -math.inf if state.level is None else state.level
        self._paused_until = -math.inf if state.paused_until is None else state.paused_until

    def pause_until(self, until: float) -> None:
        """Admit nothing before ``until``."""
        self._paused_until = max(self._paused_until, until)
