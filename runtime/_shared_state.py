"""Breaker and limiter state shared by processes: the protocol, in memory, and with a fallback.

A cell decides admission on its own machines. When N processes must share one
quota or one circuit, the decision goes to a `SharedPolicyState` instead, one
round trip each (one atomic Lua script in Redis, `RedisSharedState`).

Time is wall-clock time, Unix seconds, passed in as ``now``: loop clocks
differ from process to process. Taking ``now`` rather than reading the store's
own clock (Redis' ``TIME``) keeps every decision deterministic in the simulator
and in tests; the price is that hosts need synchronised clocks (a host whose
clock runs ``d`` seconds ahead can take up to ``d * rate`` more than a limit).

The semantics are the local machines'. For circuits, by construction in
memory (it drives `CircuitBreaker` itself) and by a line-for-line port in Lua,
checked against each other by property tests: the consecutive-failure rule,
count and time windows, slow calls, growing open durations, generations as
permits and the half-open probe budget. The shared limiter is GCRA (one key,
one compare) whatever ``RateLimit.algorithm`` says, on integer microseconds
(see `limit_steps`): it starts full, admits at most ``capacity + rate * T`` in
any ``T`` seconds, and answers exact waits. A scope's pause (a provider's
Retry-After) lives with its limit and gates `acquire` even with no limit.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol, TypeVar

import msgspec

from . import _validate as check
from ._breaker import Breaker, BreakerState, CircuitBreaker, CircuitBreakerState
from ._errors import ConfigError, ConnectorError
from ._events import Event
from ._ratelimit import RateLimit
from ._redaction import redact_text
from ._shared_events import FallbackMode, SharedStateRestored, SharedStateUnavailable

__all__ = [
    "MICROSECONDS",
    "Admission",
    "BreakerStatus",
    "FallbackSharedState",
    "LimitSteps",
    "MemorySharedState",
    "SharedPolicyState",
    "SharedStateError",
    "check_cost",
    "check_force",
    "instant_us",
    "limit_steps",
]

T = TypeVar("T")


class SharedStateError(ConnectorError):
    """The shared store could not be reached, or failed; `FallbackSharedState` absorbs it."""

    store: str

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(f"Shared state store {store} failed: {reason}", store=store)


class BreakerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A shared circuit's phase: a new ``generation`` marks every state change."""

    state: BreakerState
    generation: int
    opened_at: float | None = None
    open_count: int = 0


class Admission(BreakerStatus, frozen=True, kw_only=True):
    """The answer to `breaker_admit`: a ``permit`` (the generation) or ``retry_after``.

    ``retry_after`` is 0 when admitted and for a half-open circuit whose probes
    are all out, the seconds left open otherwise, inf when forced open.
    """

    permit: int | None
    retry_after: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.permit is not None


def check_cost(limit: RateLimit, cost: float) -> None:
    """Raise `ConfigError` unless ``0 < cost <= limit.capacity`` (as the local limiters)."""
    if (
        isinstance(cost, bool)
        or not isinstance(cost, int | float)
        or not 0 < cost <= limit.capacity
    ):
        raise ConfigError(
            "cost", cost, f"must be in (0, {limit.capacity:g}], the limiter's capacity"
        )


# Shared limits count integer microseconds. Wall-clock instants are large
# (1.7e9 s), where a double resolves only 2.4e-7 s: float GCRA would round a
# little on every admission and, across a burst, miss its 1e-9 slack. Integers
# below 2**53 (until the year 2255) are exact in a double, so Lua computes
# exactly what Python does, and nothing accumulates.
MICROSECONDS = 1_000_000
# Admit up to 1 us early, so a caller who waits the exact wait it was told is
# admitted even when its own clock arithmetic rounds a microsecond short.
_SLACK_US = 1


def instant_us(instant: float, field: str = "now") -> int:
    """Unix seconds to the nearest microsecond; ``field`` names it in a `ConfigError`."""
    check.number(field, instant)
    return round(instant * MICROSECONDS)


class LimitSteps(NamedTuple):
    """A `RateLimit` in microseconds: GCRA's emission interval and tolerance."""

    interval: int  # per unit of cost, rounded up (so never faster; at least 1 us)
    tolerance: int  # how far ahead of now the theoretical arrival time may run

    def increment(self, cost: float) -> int:
        return math.ceil(self.interval * cost)


@functools.lru_cache(maxsize=256)
def limit_steps(limit: RateLimit) -> LimitSteps:
    """``limit`` in microseconds (so at most a million per second)."""
    interval = max(1, math.ceil(MICROSECONDS / limit.tokens_per_second))
    return LimitSteps(interval, math.floor(interval * limit.capacity))


def _wait_us(tat: int | None, at: int, increment: int, tolerance: int) -> int:
    """GCRA: microseconds from ``at`` until ``increment`` fits, 0 if it does now."""
    allow_at = max(at if tat is None else tat, at) + increment - tolerance
    return 0 if at + _SLACK_US >= allow_at else allow_at - at


class SharedPolicyState(Protocol):
    """Breaker and limiter decisions on state shared by every process using one scope.

    A scope names one cell (a service, or a service's tenant or endpoint); every
    process must use the same `Breaker` and `RateLimit` for it. ``now`` is Unix
    seconds. Permits are generations: an outcome recorded with a permit from an
    older generation is ignored.
    """

    async def acquire(
        self, scope: str, limit: RateLimit | None, now: float, cost: float = 1.0
    ) -> float:
        """0.0 when ``cost`` was taken, else the seconds until it could be (nothing taken).

        A pause holds everything until it ends; ``limit=None`` checks only the pause.
        """
        ...

    async def refund(self, scope: str, limit: RateLimit, now: float, cost: float = 1.0) -> None:
        """Give back ``cost`` taken by a call that was never sent."""
        ...

    async def pause(self, scope: str, until: float, now: float) -> None:
        """Admit nothing for ``scope`` before ``until`` (a provider's Retry-After)."""
        ...

    async def breaker_admit(self, scope: str, breaker: Breaker, now: float) -> Admission: ...

    async def breaker_record(
        self,
        scope: str,
        breaker: Breaker,
        permit: int,
        now: float,
        *,
        failed: bool,
        duration: float = 0.0,
    ) -> BreakerStatus:
        """Record an admitted call's outcome; slow is ``duration >= slow_call_duration``."""
        ...

    async def breaker_release(self, scope: str, breaker: Breaker, permit: int, now: float) -> None:
        """Give back a permit whose call produced no outcome (a half-open probe's slot)."""
        ...

    async def breaker_state(self, scope: str, breaker: Breaker, now: float) -> CircuitBreakerState:
        """The full state at ``now`` (an open circuit whose time is up reads half-open)."""
        ...

    async def breaker_force(
        self, scope: str, breaker: Breaker, state: BreakerState, now: float
    ) -> BreakerStatus:
        """Operator control: FORCED_OPEN, DISABLED, or CLOSED (a reset)."""
        ...

    async def breaker_sync(
        self, scope: str, breaker: Breaker, observed: CircuitBreakerState, now: float
    ) -> BreakerStatus:
        """Merge a circuit seen elsewhere: one still open wins over closed or half-open.

        Forced-open and disabled circuits are kept; the merged open circuit takes
        the observed ``opened_at`` and ``open_count`` and a generation past both.
        """
        ...

    async def aclose(self) -> None: ...


def check_force(state: BreakerState) -> None:
    """Raise `ConfigError` unless ``state`` is one `breaker_force` can set."""
    if state not in {BreakerState.FORCED_OPEN, BreakerState.DISABLED, BreakerState.CLOSED}:
        raise ConfigError("state", state, "must be forced_open, disabled or closed (a reset)")


def _still_open(breaker: Breaker, observed: CircuitBreakerState, now: float) -> bool:
    """Whether ``observed`` is an open circuit whose open period has not ended at ``now``."""
    return (
        observed.state is BreakerState.OPEN
        and observed.opened_at is not None
        and now < observed.opened_at + breaker.open_duration_for(observed.open_count)
    )


def _status(machine: CircuitBreaker) -> BreakerStatus:
    snapshot = machine.snapshot()
    return BreakerStatus(
        state=snapshot.state,
        generation=snapshot.generation,
        opened_at=snapshot.opened_at,
        open_count=snapshot.open_count,
    )


class MemorySharedState:
    """`SharedPolicyState` within one process: the local machines, one per scope.

    What `FallbackSharedState` answers from while the shared store is down, and
    the reference the shared implementations are tested against.
    """

    def __init__(self) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}
        # Per scope, as the Redis hash: [theoretical arrival time, paused until], in us.
        self._limits: dict[str, list[int | None]] = {}

    def _breaker(self, scope: str, breaker: Breaker) -> CircuitBreaker:
        machine = self._breakers.get(scope)
        if machine is None or (machine.config is not breaker and machine.config != breaker):
            snapshot = machine.snapshot() if machine is not None else None
            machine = self._breakers[scope] = CircuitBreaker(breaker, snapshot)
        return machine

    async def acquire(
        self, scope: str, limit: RateLimit | None, now: float, cost: float = 1.0
    ) -> float:
        at = instant_us(now)
        state = self._limits.setdefault(scope, [None, None])
        tat, paused = state
        if limit is None:
            return (paused - at) / MICROSECONDS if paused is not None and at < paused else 0.0
        check_cost(limit, cost)
        steps = limit_steps(limit)
        increment = steps.increment(cost)
        if paused is not None and at < paused:
            return (paused - at + _wait_us(tat, paused, increment, steps.tolerance)) / MICROSECONDS
        wait = _wait_us(tat, at, increment, steps.tolerance)
        if wait == 0:
            state[0] = max(at if tat is None else tat, at) + increment
        return wait / MICROSECONDS

    async def refund(self, scope: str, limit: RateLimit, now: float, cost: float = 1.0) -> None:
        check_cost(limit, cost)
        at = instant_us(now)
        state = self._limits.setdefault(scope, [None, None])
        tat = state[0]
        state[0] = at if tat is None else max(at, tat - limit_steps(limit).increment(cost))

    async def pause(self, scope: str, until: float, now: float) -> None:
        end = instant_us(until, "until")
        state = self._limits.setdefault(scope, [None, None])
        paused = state[1]
        state[1] = end if paused is None else max(paused, end)

    async def breaker_admit(self, scope: str, breaker: Breaker, now: float) -> Admission:
        machine = self._breaker(scope, breaker)
        permit = machine.admit(now)
        status = _status(machine)
        return Admission(
            state=status.state,
            generation=status.generation,
            opened_at=status.opened_at,
            open_count=status.open_count,
            permit=permit,
            retry_after=0.0 if permit is not None else machine.retry_after(now),
        )

    async def breaker_record(
        self,
        scope: str,
        breaker: Breaker,
        permit: int,
        now: float,
        *,
        failed: bool,
        duration: float = 0.0,
    ) -> BreakerStatus:
        machine = self._breaker(scope, breaker)
        if failed:
            machine.record_failure(permit, now, duration)
        else:
            machine.record_success(permit, now, duration)
        return _status(machine)

    async def breaker_release(self, scope: str, breaker: Breaker, permit: int, now: float) -> None:
        self._breaker(scope, breaker).release(permit)

    async def breaker_state(self, scope: str, breaker: Breaker, now: float) -> CircuitBreakerState:
        machine = self._breaker(scope, breaker)
        machine.state(now)
        return machine.snapshot()

    async def breaker_force(
        self, scope: str, breaker: Breaker, state: BreakerState, now: float
    ) -> BreakerStatus:
        check_force(state)
        machine = self._breaker(scope, breaker)
        if state is BreakerState.FORCED_OPEN:
            machine.force_open()
        elif state is BreakerState.DISABLED:
            machine.disable()
        else:
            machine.reset()
        return _status(machine)

    async def breaker_sync(
        self, scope: str, breaker: Breaker, observed: CircuitBreakerState, now: float
    ) -> BreakerStatus:
        machine = self._breaker(scope, breaker)
        current = machine.state(now)
        if current in {BreakerState.CLOSED, BreakerState.HALF_OPEN} and _still_open(
            breaker, observed, now
        ):
            merged = msgspec.structs.replace(
                machine.snapshot(),
                state=BreakerState.OPEN,
                generation=max(machine.generation, observed.generation) + 1,
                opened_at=observed.opened_at,
                open_count=observed.open_count,
                half_open_in_flight=0,
                half_open_successes=0,
            )
            machine = self._breakers[scope] = CircuitBreaker(breaker, merged)
        return _status(machine)

    async def aclose(self) -> None:
        """Nothing to release; here for the protocol."""

    # -- what FallbackSharedState needs beyond the protocol -------------------

    def status(self, scope: str, breaker: Breaker) -> BreakerStatus:
        return _status(self._breaker(scope, breaker))

    def mirror(self, scope: str, breaker: Breaker, status: BreakerStatus) -> None:
        """Follow the shared circuit's phase, so an outage starts where it was.

        Counts within a phase (failures, windows, probes out) are the shared
        store's business and start from zero here.
        """
        machine = self._breakers.get(scope)
        if (
            machine is not None
            and machine.generation == status.generation
            and machine.current is status.state
        ):
            return
        self._breakers[scope] = CircuitBreaker(
            breaker,
            CircuitBreakerState(
                state=status.state,
                generation=status.generation,
                opened_at=status.opened_at,
                open_count=status.open_count,
            ),
        )

    def opened_since(
        self, since: float, now: float
    ) -> list[tuple[str, Breaker, CircuitBreakerState]]:
        """Circuits that opened here at or after ``since`` and are still open at ``now``."""
        return [
            (scope, machine.config, machine.snapshot())
            for scope, machine in self._breakers.items()
            if machine.state(now) is BreakerState.OPEN
            and machine.opened_at is not None
            and machine.opened_at >= since
        ]

    def pauses(self, now: float) -> list[tuple[str, float]]:
        """Pauses that have not ended at ``now``."""
        at = instant_us(now)
        return [
            (scope, paused / MICROSECONDS)
            for scope, (_, paused) in self._limits.items()
            if paused is not None and paused > at
        ]


# What fail_closed answers while another call's probe is out: the store may be back soon.
_PROBE_IN_FLIGHT_WAIT = 0.01


class _Down(enum.Enum):
    DOWN = enum.auto()


class FallbackSharedState:
    """A shared store with a local fallback, so no store failure reaches a caller.

    While ``primary`` fails (`SharedStateError`), ``mode`` decides: ``fail_open``
    answers from ``local`` (each process then enforces limits and circuits on its
    own, so N processes may admit up to N times a shared limit); ``fail_closed``
    rejects, with the time to the next probe as ``retry_after`` or wait. Records,
    releases and pauses go to ``local`` in either mode. ``on_event`` gets one
    `SharedStateUnavailable` per outage and one `SharedStateRestored` after it.

    The primary is probed again after ``retry_initial`` seconds, doubling up to
    ``retry_max``, by the first call due (the others keep answering locally).
    On its return, before that call is answered, it is resynchronised: circuits
    that opened here during the outage and are still open are pushed (an open
    circuit wins, see `SharedPolicyState.breaker_sync`) and pauses still running
    are re-applied; limiter state is the primary's (what was taken locally
    during the outage is not replayed). While the primary answers, ``local``
    follows each circuit's phase, so an outage starts from the shared state.
    Operator control (`breaker_force`) during an outage stays local.
    """

    def __init__(
        self,
        primary: SharedPolicyState,
        local: MemorySharedState | None = None,
        *,
        mode: FallbackMode = "fail_open",
        on_event: Callable[[Event], None] | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        store: str | None = None,
    ) -> None:
        check.one_of("mode", mode, ("fail_open", "fail_closed"))
        check.positive("retry_initial", retry_initial)
        check.at_least("retry_max", retry_max, retry_initial)
        self.primary = primary
        self.local = local if local is not None else MemorySharedState()
        self.mode: FallbackMode = mode
        self._on_event = on_event
        self._retry_initial = float(retry_initial)
        self._retry_max = float(retry_max)
        self._store = store if store is not None else type(primary).__name__
        self._down_since: float | None = None
        self._next_probe = -math.inf
        self._probes = 0
        self._probing = False

    @property
    def available(self) -> bool:
        """False from a failure of the primary until it answers again."""
        return self._down_since is None

    # -- the primary, guarded -------------------------------------------------

    async def _primary(
        self, scope: str, now: float, operation: Callable[[], Awaitable[T]]
    ) -> T | _Down:
        """The primary's answer, or DOWN when it is known to be down or just failed."""
        if self._down_since is None:
            try:
                return await operation()
            except SharedStateError as error:
                self._failed(scope, now, error, probe=False)
                return _Down.DOWN
        if self._probing or now < self._next_probe:
            return _Down.DOWN
        self._probing = True
        try:
            resynced = await self._resync(self._down_since, now)
            result = await operation()
        except SharedStateError as error:
            self._failed(scope, now, error, probe=True)
            return _Down.DOWN
        finally:
            self._probing = False
        self._restored(scope, now, resynced)
        return result

    async def _resync(self, since: float, now: float) -> int:
        resynced = 0
        for scope, breaker, observed in self.local.opened_since(since, now):
            status = await self.primary.breaker_sync(scope, breaker, observed, now)
            self.local.mirror(scope, breaker, status)
            resynced += 1
        for scope, until in self.local.pauses(now):
            await self.primary.pause(scope, until, now)
            resynced += 1
        return resynced

    def _failed(self, scope: str, now: float, error: SharedStateError, *, probe: bool) -> None:
        if self._down_since is None:
            self._down_since = now
            self._probes = 0
            self._emit(
                SharedStateUnavailable(
                    service=scope,
                    key=None,
                    at=now,
                    store=self._store,
                    mode=self.mode,
                    error=redact_text(error.message),
                )
            )
        elif not probe:
            return  # a call that raced the first failure: the outage is already timed
        delay = min(self._retry_max, self._retry_initial * 2.0 ** min(self._probes, 64))
        self._probes += 1
        self._next_probe = now + delay

    def _restored(self, scope: str, now: float, resynced: int) -> None:
        assert self._down_since is not None
        down_for = max(0.0, now - self._down_since)
        self._down_since = None
        self._next_probe = -math.inf
        self._emit(
            SharedStateRestored(
                service=scope,
                key=None,
                at=now,
                store=self._store,
                down_for=down_for,
                resynced=resynced,
            )
        )

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _closed_wait(self, now: float) -> float:
        # Until the next probe; while one is out already, a short while.
        return max(self._next_probe - now, _PROBE_IN_FLIGHT_WAIT)

    # -- SharedPolicyState ------------------------------------------------------

    async def acquire(
        self, scope: str, limit: RateLimit | None, now: float, cost: float = 1.0
    ) -> float:
        answer = await self._primary(
            scope, now, lambda: self.primary.acquire(scope, limit, now, cost)
        )
        if not isinstance(answer, _Down):
            return answer
        if self.mode == "fail_open":
            return await self.local.acquire(scope, limit, now, cost)
        if limit is not None:
            check_cost(limit, cost)
        return self._closed_wait(now)

    async def refund(self, scope: str, limit: RateLimit, now: float, cost: float = 1.0) -> None:
        answer = await self._primary(
            scope, now, lambda: self.primary.refund(scope, limit, now, cost)
        )
        if isinstance(answer, _Down):
            await self.local.refund(scope, limit, now, cost)

    async def pause(self, scope: str, until: float, now: float) -> None:
        # Kept locally too: a pause must hold through an outage that starts later.
        await self.local.pause(scope, until, now)
        await self._primary(scope, now, lambda: self.primary.pause(scope, until, now))

    async def breaker_admit(self, scope: str, breaker: Breaker, now: float) -> Admission:
        answer = await self._primary(
            scope, now, lambda: self.primary.breaker_admit(scope, breaker, now)
        )
        if not isinstance(answer, _Down):
            self.local.mirror(scope, breaker, answer)
            return answer
        if self.mode == "fail_open":
            return await self.local.breaker_admit(scope, breaker, now)
        status = self.local.status(scope, breaker)
        return Admission(
            state=status.state,
            generation=status.generation,
            opened_at=status.opened_at,
            open_count=status.open_count,
            permit=None,
            retry_after=self._closed_wait(now),
        )

    async def breaker_record(
        self,
        scope: str,
        breaker: Breaker,
        permit: int,
        now: float,
        *,
        failed: bool,
        duration: float = 0.0,
    ) -> BreakerStatus:
        answer = await self._primary(
            scope,
            now,
            lambda: self.primary.breaker_record(
                scope, breaker, permit, now, failed=failed, duration=duration
            ),
        )
        if not isinstance(answer, _Down):
            self.local.mirror(scope, breaker, answer)
            return answer
        return await self.local.breaker_record(
            scope, breaker, permit, now, failed=failed, duration=duration
        )

    async def breaker_release(self, scope: str, breaker: Breaker, permit: int, now: float) -> None:
        answer = await self._primary(
            scope, now, lambda: self.primary.breaker_release(scope, breaker, permit, now)
        )
        if isinstance(answer, _Down):
            await self.local.breaker_release(scope, breaker, permit, now)

    async def breaker_state(self, scope: str, breaker: Breaker, now: float) -> CircuitBreakerState:
        answer = await self._primary(
            scope, now, lambda: self.primary.breaker_state(scope, breaker, now)
        )
        if not isinstance(answer, _Down):
            return answer
        return await self.local.breaker_state(scope, breaker, now)

    async def breaker_force(
        self, scope: str, breaker: Breaker, state: BreakerState, now: float
    ) -> BreakerStatus:
        check_force(state)
        answer = await self._primary(
            scope, now, lambda: self.primary.breaker_force(scope, breaker, state, now)
        )
        if not isinstance(answer, _Down):
            self.local.mirror(scope, breaker, answer)
            return answer
        return await self.local.breaker_force(scope, breaker, state, now)

    async def breaker_sync(
        self, scope: str, breaker: Breaker, observed: CircuitBreakerState, now: float
    ) -> BreakerStatus:
        answer = await self._primary(
            scope, now, lambda: self.primary.breaker_sync(scope, breaker, observed, now)
        )
        if not isinstance(answer, _Down):
            self.local.mirror(scope, breaker, answer)
            return answer
        return await self.local.breaker_sync(scope, breaker, observed, now)

    async def aclose(self) -> None:
        await self.primary.aclose()
