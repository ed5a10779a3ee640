"""Circuit breaker: the `Breaker` policy and the pure `CircuitBreaker` state machine.

The machine never reads a clock: every method that depends on time takes
``now`` (seconds on the event loop's clock). That keeps it deterministic in the
simulator and testable with hypothesis without an event loop.

Outcomes are matched to admissions by a *generation* (as gobreaker does): every
state change starts a new generation, `admit` returns the current one as a
permit, and an outcome recorded with a stale permit is ignored. So a slow call
admitted while closed cannot close a breaker that has since opened and gone
half-open, and a half-open probe's permit is returned exactly once.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Literal

import msgspec

from . import _validate as check
from ._errors import ConfigError

__all__ = ["Breaker", "BreakerState", "CircuitBreaker", "CircuitBreakerState"]

# Outcome codes in a count window: bit 0 = failed, bit 1 = slow.
_FAILED = 1
_SLOW = 2


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


# Enum members as module constants: on CPython 3.11 each `BreakerState.X` lookup
# costs as much as a function call, and admit/record run on every guarded call.
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED


class Breaker(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a service's circuit opens and how it recovers.

    Two trip rules, either or both: ``failure_threshold`` consecutive failures
    (the original's rule, default 5), and ``failure_rate_threshold`` over a
    sliding window of the last ``window_size`` calls (``sliding_window="count"``)
    or seconds (``"time"``) once ``minimum_calls`` were seen (resilience4j's
    rule; a count window needs at most ``window_size``). A call at least
    ``slow_call_duration`` long is slow; a slow-call rate at or above
    ``slow_call_rate_threshold`` also trips. Thresholds are inclusive. Set
    ``failure_threshold=None`` for a rate-only breaker.
    """

    failure_threshold: int | None = 5
    failure_rate_threshold: float | None = None
    sliding_window: Literal["count", "time"] = "count"
    window_size: int = 100
    minimum_calls: int = 10
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float = 1.0
    open_duration: float = 60.0
    open_duration_multiplier: float = 1.0
    max_open_duration: float | None = None
    half_open_probes: int = 1
    success_threshold: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold is not None:
            check.integer("failure_threshold", self.failure_threshold, 1)
        if self.failure_rate_threshold is not None:
            check.fraction("failure_rate_threshold", self.failure_rate_threshold)
        if (
            self.failure_threshold is None
            and self.failure_rate_threshold is None
            and self.slow_call_duration is None
        ):
            raise ConfigError(
                "failure_threshold",
                None,
                "set it, failure_rate_threshold or slow_call_duration: no rule would trip",
            )
        check.one_of("sliding_window", self.sliding_window, ("count", "time"))
        check.integer("window_size", self.window_size, 1)
        check.integer("minimum_calls", self.minimum_calls, 1)
        if self.slow_call_duration is not None:
            check.positive("slow_call_duration", self.slow_call_duration)
        check.fraction("slow_call_rate_threshold", self.slow_call_rate_threshold)
        check.positive("open_duration", self.open_duration)
        check.at_least("open_duration_multiplier", self.open_duration_multiplier, 1)
        if self.max_open_duration is not None:
            check.at_least("max_open_duration", self.max_open_duration, self.open_duration)
        elif self.open_duration_multiplier > 1:
            raise ConfigError(
                "max_open_duration", None, "required when open_duration_multiplier > 1"
            )
        check.integer("half_open_probes", self.half_open_probes, 1)
        check.integer("success_threshold", self.success_threshold, 1)

    @property
    def uses_window(self) -> bool:
        return self.failure_rate_threshold is not None or self.slow_call_duration is not None

    def open_duration_for(self, open_count: int) -> float:
        """How long the circuit stays open the ``open_count``-th time in a row (1-based)."""
        if self.open_duration_multiplier == 1 or open_count <= 1:
            return self.open_duration
        cap = self.max_open_duration if self.max_open_duration is not None else self.open_duration
        try:
            grown = self.open_duration * self.open_duration_multiplier ** (open_count - 1)
        except OverflowError:
            return cap
        return min(cap, grown)


class CircuitBreakerState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A serialisable snapshot of a `CircuitBreaker`, enough to resume it elsewhere.

    ``outcomes`` is the count window, oldest first (bit 0 failed, bit 1 slow);
    ``buckets`` is the time window as ``(second, calls, failures, slow)``.
    """

    state: BreakerState = BreakerState.CLOSED
    generation: int = 0
    opened_at: float | None = None
    open_count: int = 0
    consecutive_failures: int = 0
    half_open_successes: int = 0
    half_open_in_flight: int = 0
    outcomes: list[int] = msgspec.field(default_factory=list)
    buckets: list[tuple[int, int, int, int]] = msgspec.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CircuitBreakerState:
        try:
            return msgspec.convert(data, cls)
        except msgspec.ValidationError as error:
            raise ConfigError("CircuitBreakerState", data, str(error)) from None


class _CountWindow:
    """The last ``size`` outcomes in a ring, with running totals."""

    __slots__ = ("calls", "failures", "next", "ring", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring = bytearray(size)
        self.next = 0
        self.calls = self.failures = self.slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> None:
        i = self.next
        if self.calls == self.size:
            old = self.ring[i]
            self.failures -= old & _FAILED
            self.slow -= (old & _SLOW) >> 1
        else:
            self.calls += 1
        self.ring[i] = (_FAILED if failed else 0) | (_SLOW if slow else 0)
        self.failures += failed
        self.slow += slow
        self.next = (i + 1) % self.size

    def totals(self, now: float) -> tuple[int, int, int]:
        return self.calls, self.failures, self.slow

    def export(self) -> list[int]:
        start = (self.next - self.calls) % self.size
        return [self.ring[(start + k) % self.size] for k in range(self.calls)]

    def load(self, outcomes: list[int]) -> None:
        for code in outcomes[-self.size :]:
            self.add(0.0, bool(code & _FAILED), bool(code & _SLOW))


class _TimeWindow:
    """Outcomes of the last ``size`` whole seconds, one bucket per second."""

    __slots__ = ("calls", "counts", "failures", "latest", "seconds", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.seconds = [-1] * size
        self.counts = [[0, 0, 0] for _ in range(size)]
        self.calls = self.failures = self.slow = 0
        self.latest = -1

    def _advance(self, second: int) -> None:
        # Expire every bucket that has fallen out of (second - size, second].
        if second <= self.latest:
            return
        for s in range(max(self.latest + 1, second - self.size + 1), second + 1):
            i = s % self.size
            if self.seconds[i] != -1:
                calls, failures, slow = self.counts[i]
                self.calls -= calls
                self.failures -= failures
                self.slow -= slow
            self.seconds[i] = s
            self.counts[i] = [0, 0, 0]
        self.latest = second

    def add(self, now: float, failed: bool, slow: bool) -> None:
        second = max(math.floor(now), self.latest)
        self._advance(second)
        bucket = self.counts[second % self.size]
        bucket[0] += 1
        bucket[1] += failed
        bucket[2] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        self._advance(math.floor(now))
        return self.calls, self.failures, self.slow

    def export(self) -> list[tuple[int, int, int, int]]:
        live = [
            (self.seconds[i], *self.counts[i])
            for i in range(self.size)
            if self.seconds[i] != -1 and self.counts[i][0] > 0
        ]
        return sorted((s, c, f, w) for s, c, f, w in live)

    def load(self, buckets: list[tuple[int, int, int, int]]) -> None:
        for second, calls, failures, slow in sorted(buckets):
            self._advance(second)
            counts = self.counts[second % self.size]
            counts[0] += calls
            counts[1] += failures
            counts[2] += slow
            self.calls += calls
            self.failures += failures
            self.slow += slow


class CircuitBreaker:
    """The state machine behind `Breaker`; see the module docstring for permits."""

    __slots__ = (
        "_count_window",
        "_half_open_in_flight",
        "_half_open_successes",
        "_open_count",
        "_opened_at",
        "_plain",
        "_state",
        "_time_window",
        "config",
        "consecutive_failures",
        "generation",
    )

    def __init__(self, config: Breaker, state: CircuitBreakerState | None = None) -> None:
        self.config = config
        self._count_window: _CountWindow | None = None
        self._time_window: _TimeWindow | None = None
        # Consecutive-failure rule only: a success while closed just resets the count.
        self._plain = not config.uses_window
        if config.uses_window:
            if config.sliding_window == "count":
                self._count_window = _CountWindow(config.window_size)
            else:
                self._time_window = _TimeWindow(config.window_size)
        snapshot = state if state is not None else CircuitBreakerState()
        if snapshot.state is _OPEN and snapshot.opened_at is None:
            raise ConfigError("state.opened_at", None, "an open breaker needs its opened_at")
        self._state = snapshot.state
        self.generation = snapshot.generation
        self._opened_at = snapshot.opened_at
        self._open_count = snapshot.open_count
        self.consecutive_failures = snapshot.consecutive_failures
        self._half_open_successes = snapshot.half_open_successes
        self._half_open_in_flight = snapshot.half_open_in_flight
        if self._count_window is not None:
            self._count_window.load(snapshot.outcomes)
        if self._time_window is not None:
            self._time_window.load(snapshot.buckets)

    # -- reading ---------------------------------------------------------

    @property
    def opened_at(self) -> float | None:
        return self._opened_at

    @property
    def current(self) -> BreakerState:
        """The state as last transitioned, without checking whether an open period ended."""
        return self._state

    def state(self, now: float) -> BreakerState:
        """The state at ``now``; an open circuit whose time is up reads as half-open."""
        if self._state is _OPEN and now >= self._reopen_at():
            self._transition(_HALF_OPEN)
        return self._state

    def retry_after(self, now: float) -> float:
        """Seconds until a call could be admitted: 0 when it could be now, inf when forced."""
        state = self.state(now)
        if state is _OPEN:
            return max(0.0, self._reopen_at() - now)
        if state is _FORCED_OPEN:
            return math.inf
        return 0.0

    def snapshot(self) -> CircuitBreakerState:
        return CircuitBreakerState(
            state=self._state,
            generation=self.generation,
            opened_at=self._opened_at,
            open_count=self._open_count,
            consecutive_failures=self.consecutive_failures,
            half_open_successes=self._half_open_successes,
            half_open_in_flight=self._half_open_in_flight,
            outcomes=self._count_window.export() if self._count_window is not None else [],
            buckets=self._time_window.export() if self._time_window is not None else [],
        )

    # -- admission -------------------------------------------------------

    def admit(self, now: float) -> int | None:
        """A permit (the current generation) if a call may go out now, else None.

        Half-open admits at most ``half_open_probes`` calls at once; each holds a
        probe until its outcome is recorded or it is `release`-d.
        """
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return self.generation
        if state is _OPEN:
            state = self.state(now)
        if state is _HALF_OPEN and (self._half_open_in_flight < self.config.half_open_probes):
            self._half_open_in_flight += 1
            return self.generation
        return None

    def release(self, permit: int) -> None:
        """Give back a permit whose call never produced an outcome (it was cancelled)."""
        if permit == self.generation and self._state is _HALF_OPEN:
            self._half_open_in_flight = max(0, self._half_open_in_flight - 1)

    # -- outcomes --------------------------------------------------------

    def record_success(self, permit: int, now: float, duration: float = 0.0) -> None:
        """The provider answered (a caller's own 4xx counts here too)."""
        if permit != self.generation:
            return
        if self._state is _CLOSED and self._plain:
            self.consecutive_failures = 0  # the common case: nothing else to do
            return
        slow = self._is_slow(duration)
        if self._state is _HALF_OPEN:
            self._half_open_in_flight = max(0, self._half_open_in_flight - 1)
            if slow:
                # A probe that is slow says the service is still degraded.
                self._open(now)
                return
            self._half_open_successes += 1
            if self._half_open_successes >= self.config.success_threshold:
                self._close()
        elif self._state is _CLOSED:
            self.consecutive_failures = 0
            self._add_to_window(now, failed=False, slow=slow)
            self._trip_if_needed(now)

    def record_failure(self, permit: int, now: float, duration: float = 0.0) -> None:
        """The provider failed (5xx, timeout, connection error, a 429 if so configured)."""
        if permit != self.generation:
            return
        if self._state is _HALF_OPEN:
            self._half_open_in_flight = max(0, self._half_open_in_flight - 1)
            self._open(now)
        elif self._state is _CLOSED:
            self.consecutive_failures += 1
            self._add_to_window(now, failed=True, slow=self._is_slow(duration))
            self._trip_if_needed(now)

    # -- manual control --------------------------------------------------

    def force_open(self) -> None:
        """Reject every call until `reset` (an operator's kill switch)."""
        self._transition(_FORCED_OPEN)

    def disable(self) -> None:
        """Admit every call and record nothing until `reset`."""
        self._transition(_DISABLED)

    def reset(self) -> None:
        """Back to closed with every count cleared."""
        self._close()

    # -- internals -------------------------------------------------------

    def _reopen_at(self) -> float:
        assert self._opened_at is not None
        return self._opened_at + self.config.open_duration_for(self._open_count)

    def _is_slow(self, duration: float) -> bool:
        threshold = self.config.slow_call_duration
        return threshold is not None and duration >= threshold

    def _add_to_window(self, now: float, *, failed: bool, slow: bool) -> None:
        window = self._count_window or self._time_window
        if window is not None:
            window.add(now, failed, slow)

    def _trip_if_needed(self, now: float) -> None:
        config = self.config
        if config.failure_threshold is not None and (
            self.consecutive_failures >= config.failure_threshold
        ):
            self._open(now)
            return
        window = self._count_window or self._time_window
        if window is None:
            return
        calls, failures, slow = window.totals(now)
        # As resilience4j: a count window never waits for more calls than it can hold.
        needed = config.minimum_calls
        if config.sliding_window == "count":
            needed = min(needed, config.window_size)
        if calls < needed:
            return
        rate = config.failure_rate_threshold
        # Compare ratios, not products: 3/10 is the float nearest 0.3, 0.3*10 is not 3.
        if (rate is not None and failures / calls >= rate) or (
            config.slow_call_duration is not None
            and slow / calls >= config.slow_call_rate_threshold
        ):
            self._open(now)

    def _transition(self, state: BreakerState) -> None:
        self._state = state
        self.generation += 1
        self._half_open_in_flight = 0
        self._half_open_successes = 0

    def _open(self, now: float) -> None:
        self._open_count += 1
        self._opened_at = now
        self._transition(_OPEN)

    def _close(self) -> None:
        self._transition(_CLOSED)
        self._opened_at = None
        self._open_count = 0
        self.consecutive_failures = 0
        if self._count_window is not None:
            self._count_window = _CountWindow(self.config.window_size)
        if self._time_window is not None:
            self._time_window = _TimeWindow(self.config.window_size)
