"""A cell's breaker and limiter decided on shared state (Redis) instead of locally.

With ``shared_state=`` a service's breaker and rate limit live in a
`SharedPolicyState` that every process uses, so N processes sharing one quota
never over-admit together and only the configured number of half-open probes
goes out across all of them. Each decision is one atomic round trip, made
before the local part of admission (retry budget, bulkhead, mailbox), which
stays per process. Waiting for a shared token is a sleep in the caller's task,
not a place in the mailbox: shared tokens are not served first-in first-out
across processes anyway. Times are the injected wall clock's (Unix seconds),
the only clock processes share; wrap the state in `FallbackSharedState` so an
unreachable Redis never reaches a caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ._breaker import Breaker, BreakerState
from ._errors import CircuitBreakerOpen, RateLimitExceeded
from ._events import BreakerTransition
from ._ratelimit import RateLimit
from ._shared_state import SharedPolicyState

if TYPE_CHECKING:
    from ._cell import Cell

__all__ = ["SharedGate"]


class SharedGate:
    """Shared admission and outcome recording for one cell (see the module docstring)."""

    __slots__ = ("breaker", "cell", "limit", "scope", "seen", "state")

    def __init__(
        self,
        state: SharedPolicyState,
        scope: str,
        breaker: Breaker | None,
        limit: RateLimit | None,
        cell: Cell,
    ) -> None:
        self.state = state
        self.scope = scope
        self.breaker = breaker
        self.limit = limit
        self.cell = cell
        self.seen: BreakerState | None = None

    def _observe(self, current: BreakerState, now: float) -> None:
        previous, self.seen = self.seen, current
        actor = self.cell.actor
        bus = actor.runtime.events
        if bus.active and previous is not None and previous != current:
            bus.publish(
                BreakerTransition(
                    service=actor.name,
                    key=self.cell.key,
                    at=now,
                    previous=previous,
                    current=current,
                )
            )

    async def admit(
        self, cost: float, deadline_at: float | None, tenant_id: str | None, endpoint: str | None
    ) -> int:
        """A shared breaker permit (0 without a breaker) with a shared token taken, or raise."""
        actor = self.cell.actor
        runtime = actor.runtime
        permit = 0
        if self.breaker is not None:
            admission = await self.state.breaker_admit(
                self.scope, self.breaker, runtime.wall_clock()
            )
            now = actor.clock()
            self._observe(admission.state, now)
            if admission.permit is None:
                error = CircuitBreakerOpen(actor.name, admission.retry_after)
                raise self.cell.reject(now, error, tenant_id, endpoint)
            permit = admission.permit
        try:
            await self._take_token(cost, deadline_at, tenant_id, endpoint)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.release(permit)
            raise
        return permit

    async def _take_token(
        self, cost: float, deadline_at: float | None, tenant_id: str | None, endpoint: str | None
    ) -> None:
        actor = self.cell.actor
        limit = self.limit
        while True:
            wait = await self.state.acquire(self.scope, limit, actor.runtime.wall_clock(), cost)
            if wait <= 0.0:
                return
            now = actor.clock()
            if (limit is not None and limit.mode == "reject") or (
                deadline_at is not None and now + wait >= deadline_at
            ):
                error = RateLimitExceeded(
                    actor.name,
                    limit.rate if limit is not None else 0.0,
                    limit.period if limit is not None else 0.0,
                    wait,
                )
                raise self.cell.reject(now, error, tenant_id, endpoint)
            await anyio.sleep(wait)

    async def record(self, permit: int, failed: bool, duration: float) -> None:
        if self.breaker is None:
            return
        runtime = self.cell.actor.runtime
        status = await self.state.breaker_record(
            self.scope,
            self.breaker,
            permit,
            runtime.wall_clock(),
            failed=failed,
            duration=duration,
        )
        self._observe(status.state, self.cell.actor.clock())

    async def release(self, permit: int) -> None:
        """Give back a permit whose call produced no outcome."""
        if self.breaker is not None:
            wall = self.cell.actor.runtime.wall_clock()
            await self.state.breaker_release(self.scope, self.breaker, permit, wall)

    async def pause(self, seconds: float) -> None:
        wall = self.cell.actor.runtime.wall_clock()
        await self.state.pause(self.scope, wall + seconds, wall)
