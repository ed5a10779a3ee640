"""A cell: the policy state of one service, or of one key of a keyed service.

The cell owns the breaker, the limiter (and a provider's pause), the retry
budget, the bulkhead count and the mailbox. Admission is decided synchronously
on that state (`try_admit`): in one event loop a decision with no ``await`` in
it cannot interleave with another, so an admitted call goes on in the caller's
own task with no message hop. Only a call that must wait (for a token, a
bulkhead slot or a restart) is queued in the mailbox (`wait_turn`); a pump task,
alive only while the mailbox is not empty, serves it strictly first in, first
out.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import anyio

from ._breaker import BreakerState, CircuitBreaker
from ._errors import (
    CircuitBreakerOpen,
    ConnectorError,
    DeadlineExceeded,
    Overloaded,
    RateLimitExceeded,
    ShuttingDown,
)
from ._events import BreakerTransition, CallRejected, RejectReason
from ._shared_gate import SharedGate
from ._state_store import CellState

if TYPE_CHECKING:
    from ._actor import ServiceActor
    from ._ratelimit import Limiter

__all__ = ["QUEUE", "Cell", "rejection_reason"]

# `try_admit` returns a breaker permit (>= 0), or this: the call must queue.
QUEUE = -1


class _Waiter:
    """A call queued in the mailbox, woken holding a slot and a token, or with an error."""

    __slots__ = ("cost", "deadline", "done", "error", "event")

    def __init__(self, cost: float, deadline: float | None) -> None:
        self.cost = cost
        self.deadline = deadline
        self.event = anyio.Event()
        self.error: ConnectorError | None = None
        self.done = False

    def grant(self) -> None:
        self.done = True
        self.event.set()

    def fail(self, error: ConnectorError) -> None:
        self.error = error
        self.done = True
        self.event.set()


class Cell:
    __slots__ = (
        "_changed",
        "_seen_generation",
        "_seen_state",
        "actor",
        "breaker",
        "gate",
        "in_flight",
        "key",
        "last_used",
        "ledger",
        "limiter",
        "paused_until",
        "pump_running",
        "queue",
        "restored",
    )

    def __init__(self, actor: ServiceActor, key: str | None, state: CellState | None) -> None:
        policy = actor.policy
        self.actor = actor
        self.key = key
        self.gate: SharedGate | None = None
        self.breaker: CircuitBreaker | None = None
        self.limiter: Limiter | None = None
        shared = actor.shared_state
        if shared is not None:
            # Breaker and limiter live in the shared state; this cell keeps the rest.
            scope = actor.name if key is None else f"{actor.name}:{key}"
            self.gate = SharedGate(shared, scope, policy.breaker, policy.rate_limit, self)
        else:
            if policy.breaker is not None:
                self.breaker = CircuitBreaker(
                    policy.breaker, state.breaker if state is not None else None
                )
            if policy.rate_limit is not None:
                self.limiter = policy.rate_limit.new_limiter()
                if state is not None and state.limiter is not None:
                    self.limiter.restore(state.limiter)
        # One retry budget per service, shared by its keyed cells: the budget
        # protects the provider, which every tenant's calls reach alike.
        self.ledger = actor.ledger
        self.paused_until = state.paused_until if state is not None else float("-inf")
        self.restored = state is not None
        self.in_flight = 0
        # Made on the first wait: most cells never queue, and an empty deque is
        # 600 bytes, a third of an idle keyed actor.
        self.queue: deque[_Waiter] | None = None
        self.pump_running = False
        self.last_used = actor.clock()
        self._changed: anyio.Event | None = None
        self._seen_generation = self.breaker.generation if self.breaker is not None else 0
        self._seen_state = self.breaker.current if self.breaker is not None else None

    # -- state for passivation ------------------------------------------------

    @property
    def queued(self) -> int:
        """Calls waiting in the mailbox."""
        return len(self.queue) if self.queue is not None else 0

    @property
    def idle(self) -> bool:
        return self.in_flight == 0 and not self.queue

    def pristine(self, now: float) -> bool:
        """True when a fresh cell would behave the same: nothing worth keeping."""
        breaker = self.breaker
        if breaker is not None:
            state = breaker.snapshot()
            if (
                state.state is not BreakerState.CLOSED
                or state.consecutive_failures
                or state.outcomes
                or state.buckets
            ):
                return False
        limiter = self.limiter
        if limiter is not None and limiter.available(now) < limiter.limit.capacity:
            return False
        return self.paused_until <= now

    def snapshot(self) -> CellState:
        return CellState(
            breaker=self.breaker.snapshot() if self.breaker is not None else None,
            limiter=self.limiter.snapshot() if self.limiter is not None else None,
            paused_until=self.paused_until,
        )

    # -- admission ------------------------------------------------------------

    def try_admit(
        self,
        now: float,
        cost: float,
        is_retry: bool,
        deadline: float | None,
        tenant_id: str | None,
        endpoint: str | None,
    ) -> int:
        """A breaker permit with a bulkhead slot and a token taken, `QUEUE`, or raise
        the rejection (after publishing it)."""
        actor = self.actor
        self.last_used = now
        if actor.rejecting:
            raise self.reject(now, actor.rejection(), tenant_id, endpoint)
        breaker = self.breaker
        if breaker is None:
            permit = 0
        else:
            admitted = breaker.admit(now)
            if breaker.generation != self._seen_generation:
                self._transitioned(now)
            if admitted is None:
                error = CircuitBreakerOpen(actor.name, breaker.retry_after(now))
                raise self.reject(now, error, tenant_id, endpoint)
            permit = admitted
        ledger = self.ledger
        if ledger is not None:
            if not is_retry:
                ledger.record_request(now)
            elif not ledger.try_spend(now):
                self.give_back(permit)
                raise self.reject(now, _BudgetExhausted(actor.name), tenant_id, endpoint)
        # Queue when someone already waits (first in, first out), during a
        # restart, or when the bulkhead is full. The token is taken last, with
        # the slot, so a token is never held while its call waits for a slot:
        # tokens are spent when requests leave, as the provider counts them.
        if self.queue or actor.restarting or self.in_flight >= actor.policy.max_concurrency:
            self.give_back(permit)
            return QUEUE
        if now < self.paused_until:
            wait = self.paused_until - now
        elif self.limiter is not None:
            wait = self.limiter.try_acquire(now, cost)
        else:
            wait = 0.0
        if wait > 0.0:
            self.give_back(permit)
            self._check_wait(now, wait, deadline, tenant_id, endpoint)
            return QUEUE
        self.in_flight += 1
        return permit

    async def wait_turn(
        self,
        cost: float,
        deadline: float | None,
        tenant_id: str | None,
        endpoint: str | None,
    ) -> int:
        """Queue in the mailbox until a slot and a token are ours; then take the breaker's
        permit, here, right before the attempt goes out."""
        actor = self.actor
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        if deadline is not None and self.limiter is not None:
            self._check_backlog(queue, cost, deadline, tenant_id, endpoint)
        if len(queue) >= actor.policy.mailbox:
            error = Overloaded(actor.name, actor.policy.mailbox)
            raise self.reject(actor.clock(), error, tenant_id, endpoint)
        waiter = _Waiter(cost, deadline)
        queue.append(waiter)
        if not self.pump_running:
            self.pump_running = True
            actor.runtime.spawn(self._pump)
        try:
            if deadline is None:
                await waiter.event.wait()
            else:
                with anyio.CancelScope(deadline=deadline):
                    await waiter.event.wait()
        except BaseException:
            # Cancelled while queued, or just after being granted: give everything back.
            if waiter.done and waiter.error is None:
                self._abandon(cost)
            elif not waiter.done:
                self._withdraw(waiter)
            raise
        now = actor.clock()
        if not waiter.done:
            self._withdraw(waiter)
            raise self.reject(now, DeadlineExceeded(actor.name), tenant_id, endpoint)
        if waiter.error is not None:
            raise waiter.error
        if actor.rejecting:
            # Stopped or closing since the grant: this call has not left, so it does not.
            self._abandon(cost)
            raise self.reject(now, actor.rejection(), tenant_id, endpoint)
        breaker = self.breaker
        if breaker is None:
            return 0
        permit = breaker.admit(now)
        if breaker.generation != self._seen_generation:
            self._transitioned(now)
        if permit is None:
            # The circuit opened while this call waited: it does not go out.
            self._abandon(cost)
            rejected = CircuitBreakerOpen(actor.name, breaker.retry_after(now))
            raise self.reject(now, rejected, tenant_id, endpoint)
        return permit

    def finish(self) -> None:
        """The attempt holding a bulkhead slot is over."""
        self.in_flight -= 1
        if self.queue:
            self.notify()
        elif self.in_flight == 0 and self.actor.rejecting:
            self.actor.runtime.cell_drained()

    def abort(self, permit: int) -> None:
        """An attempt that may have reached the provider ended with no outcome to record
        (cancelled, or cut by the caller's deadline): free its slot and probe, keep its token."""
        self.give_back(permit)
        self.finish()

    def record(self, permit: int, now: float, duration: float, failed: bool) -> None:
        breaker = self.breaker
        if breaker is None:
            return
        if failed:
            breaker.record_failure(permit, now, duration)
        else:
            breaker.record_success(permit, now, duration)
        if breaker.generation != self._seen_generation:
            self._transitioned(now)

    def pause(self, until: float) -> None:
        """The provider asked for quiet until ``until``: no attempt leaves before it."""
        self.paused_until = max(self.paused_until, until)

    def notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    def fail_all(self) -> None:
        """Fail every queued call with the actor's rejection (stopped, or closing)."""
        now = self.actor.clock()
        queue = self.queue
        while queue:
            waiter = queue.popleft()
            waiter.fail(self.reject(now, self.actor.rejection(), None, None))
        self.notify()

    # -- internals ------------------------------------------------------------

    def _gate(self, now: float, cost: float) -> float:
        """Seconds until the provider's pause and the limiter let ``cost`` go; takes it at 0."""
        if now < self.paused_until:
            return self.paused_until - now
        limiter = self.limiter
        return 0.0 if limiter is None else limiter.try_acquire(now, cost)

    def _check_wait(
        self,
        now: float,
        wait: float,
        deadline: float | None,
        tenant_id: str | None,
        endpoint: str | None,
    ) -> None:
        """Raise when the call may not wait ``wait`` seconds for its token."""
        limit = self.actor.policy.rate_limit
        if (limit is not None and limit.mode == "reject") or (
            deadline is not None and now + wait >= deadline
        ):
            error = RateLimitExceeded(
                self.actor.name,
                limit.rate if limit is not None else 0.0,
                limit.period if limit is not None else 0.0,
                wait,
            )
            raise self.reject(now, error, tenant_id, endpoint)

    def _check_backlog(
        self,
        queue: deque[_Waiter],
        cost: float,
        deadline: float,
        tenant_id: str | None,
        endpoint: str | None,
    ) -> None:
        """Refuse at once a call whose token, behind everyone queued, is due past its deadline.

        Under sustained overload a first-in-first-out mailbox otherwise fills
        with calls that reach its head with no time left, and are cut at the
        provider: goodput collapses. An estimate (a waiter ahead may yet leave),
        erring towards admitting: the rate's full refill counts from now.
        """
        limiter = self.limiter
        assert limiter is not None
        now = self.actor.clock()
        ahead = cost + sum(waiter.cost for waiter in queue)
        wait = (ahead - limiter.available(now)) / limiter.limit.tokens_per_second
        if now < self.paused_until:
            wait += self.paused_until - now
        if wait > 0.0:
            self._check_wait(now, wait, deadline, tenant_id, endpoint)

    def give_back(self, permit: int) -> None:
        if self.breaker is not None:
            self.breaker.release(permit)

    def _abandon(self, cost: float) -> None:
        """A granted call will not be sent after all: its slot and token go back."""
        if self.limiter is not None:
            self.limiter.refund(self.actor.clock(), cost)
        self.finish()

    def _withdraw(self, waiter: _Waiter) -> None:
        queue = self.queue
        if queue is not None and waiter in queue:
            was_head = queue[0] is waiter
            queue.remove(waiter)
            if was_head:
                self.notify()

    def _transitioned(self, now: float) -> None:
        breaker = self.breaker
        assert breaker is not None
        previous, current = self._seen_state, breaker.current
        self._seen_generation = breaker.generation
        self._seen_state = current
        bus = self.actor.runtime.events
        if bus.active and previous is not None and previous != current:
            bus.publish(
                BreakerTransition(
                    service=self.actor.name,
                    key=self.key,
                    at=now,
                    previous=previous,
                    current=current,
                )
            )

    def reject(
        self,
        now: float,
        error: ConnectorError,
        tenant_id: str | None,
        endpoint: str | None,
    ) -> ConnectorError:
        bus = self.actor.runtime.events
        if bus.active:
            bus.publish(
                CallRejected(
                    service=self.actor.name,
                    key=self.key,
                    at=now,
                    reason=rejection_reason(error),
                    tenant_id=tenant_id,
                    endpoint=endpoint,
                    retry_after=getattr(error, "retry_after", None),
                )
            )
        return error

    async def _wait_for_change(self, at_most: float | None) -> None:
        changed = self._changed = anyio.Event()
        if at_most is None:
            await changed.wait()
        else:
            with anyio.move_on_after(at_most):
                await changed.wait()

    def _head_token(self, now: float, head: _Waiter) -> float | None:
        """Take the head's token (None), fail it when it may not wait (0), else the wait."""
        wait = self._gate(now, head.cost)
        if wait > 0.0:
            try:
                self._check_wait(now, wait, head.deadline, None, None)
            except ConnectorError as error:
                assert self.queue is not None
                self.queue.popleft()
                head.fail(error)
                return 0.0
            return wait
        return None

    async def _pump(self) -> None:
        """Serve the mailbox head first; ends when the mailbox is empty."""
        actor = self.actor
        clock = actor.clock
        queue = self.queue
        try:
            while queue:
                head = queue[0]
                now = clock()
                if head.deadline is not None and now >= head.deadline:
                    queue.popleft()
                    head.fail(self.reject(now, DeadlineExceeded(actor.name), None, None))
                    continue
                if actor.rejecting:
                    self.fail_all()
                    return
                if actor.restarting:
                    await self._wait_for_change(None)
                    continue
                if self.in_flight >= actor.policy.max_concurrency:
                    await self._wait_for_change(None)  # a finishing attempt wakes us
                    continue
                wait = self._head_token(now, head)
                if wait is not None:
                    if wait > 0.0:
                        await self._wait_for_change(wait)
                    continue
                # Slot and token are the head's; its breaker permit it takes itself,
                # when it wakes, with no await before its attempt goes out.
                queue.popleft()
                self.in_flight += 1
                head.grant()
        finally:
            self.pump_running = False


class _BudgetExhausted(ConnectorError):
    """Internal marker: a retry was refused by the retry budget (never reaches callers)."""

    def __init__(self, service: str) -> None:
        super().__init__(f"Retry budget exhausted for service '{service}'", service=service)


def rejection_reason(error: ConnectorError) -> RejectReason:
    """Why a call was not sent, as events and the integration log name it."""
    if isinstance(error, CircuitBreakerOpen):
        return "circuit_open"
    if isinstance(error, RateLimitExceeded):
        return "rate_limited"
    if isinstance(error, Overloaded):
        return "overloaded"
    if isinstance(error, DeadlineExceeded):
        return "deadline"
    if isinstance(error, _BudgetExhausted):
        return "budget_exhausted"
    return "shutting_down" if isinstance(error, ShuttingDown) else "unavailable"
