"""The actor runtime as a hypothesis state machine, on asyncio and on trio.

Concurrent callers, provider outcomes, cancellations and time advances drive
one service through a fake provider; after every step the machine checks the
runtime's promises (DESIGN.md sections 2 and 3): one reply per call, the
bulkhead, the mailbox, the breaker, the rate limit, the retry budget, the
provider's Retry-After pauses, and nothing leaked by cancelled callers.

The event loop runs in a thread behind an anyio blocking portal, its clock under
the machine's control (asyncio's `VirtualTimeLoop(autojump=False)`, trio's
`MockClock()`): time moves only when a rule lets it, every timer firing in its
turn. Every rule ends with the loop settled, every task blocked, so nothing
moves between two steps and hypothesis can replay and shrink a run.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from contextvars import Context
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVarTuple

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from trio.testing import MockClock

from connector import (
    ActorCrashed,
    Breaker,
    BreakerState,
    CircuitBreakerOpen,
    ConnectionFailed,
    DeadlineExceeded,
    HttpRequest,
    HttpResponse,
    LimiterState,
    Overloaded,
    RateLimit,
    RateLimitExceeded,
    Retry,
    RetryBudget,
    RetryBudgetLedger,
    Runtime,
    Service,
    ServiceUnavailable,
    ShuttingDown,
    Supervision,
    Timeout,
    TransportFailure,
    VendorError,
)
from connector._cell import Cell
from connector._ratelimit import Limiter
from connector.sim._loop import VirtualTimeLoop

Backend = Literal["asyncio", "trio"]
Mode = Literal["ok", "slow", "hang", "fail", "refused", "throttle", "caller", "crash"]
Kind = Literal["call", "get", "post"]
Ts = TypeVarTuple("Ts")

# Small numbers, so that every policy has something to do within a few steps.
MAX_CONCURRENCY = 2
MAILBOX = 3
BREAKER = Breaker(failure_threshold=3, open_duration=10.0, half_open_probes=1)
RATE = RateLimit.per_second(5, burst=2)
RETRY = Retry(attempts=3, initial_delay=0.1, max_delay=1.0)
BUDGET = RetryBudget(ratio=0.2, min_per_second=0.1, window=10.0)
TIMEOUT = 1.0
DEADLINES = (None, 0.7, 2.5)  # a whole call's, shorter or longer than an attempt's timeout
QUIET = 2.0  # the Retry-After of a 429, in seconds
SLOW = 0.5  # a slow answer still beats the timeout
EPSILON = 1e-9
# The limiter may admit a token up to 1e-9 early on each take (its float slack),
# and virtual timers land on whole nanoseconds: far below a real breach (a token).
RATE_SLACK = 1e-6
# What the provider does next; "ok" twice, so that calls also get through.
MODES = ("ok", "ok", "slow", "hang", "fail", "refused", "throttle", "caller", "crash")
FAILURE_MODES: frozenset[Mode] = frozenset({"hang", "fail", "refused", "throttle", "crash"})


class Declined(Exception):
    """The provider turned the caller's request down: a registered caller error."""


@dataclass(eq=False)
class Attempt:
    """One attempt that reached the fake provider, as the provider saw it."""

    call_id: int
    number: int  # 1 for the call's first attempt
    started: float
    mode: Mode
    breaker: BreakerState
    generation: int


@dataclass(eq=False)
class Caller:
    """One call a caller made, and everything it got back."""

    kind: Kind
    idempotent: bool
    deadline: float | None
    future: Future[Any] | None = None
    started: float = math.nan
    replies: list[object] = field(default_factory=list)
    replied_at: float = math.nan
    cancelled_after: int | None = None  # attempts recorded when it was cancelled


class _Cancelled:
    """The reply of a call whose caller was cancelled."""


CANCELLED = _Cancelled()


class CountingLimiter:
    """A limiter that counts the tokens taken and refunded through it."""

    def __init__(self, inner: Limiter) -> None:
        self.inner = inner
        self.limit = inner.limit
        self.taken = 0.0
        self.refunded = 0.0

    def try_acquire(self, now: float, cost: float = 1.0) -> float:
        wait = self.inner.try_acquire(now, cost)
        if wait == 0.0:
            self.taken += cost
        return wait

    def refund(self, now: float, cost: float = 1.0) -> None:
        self.refunded += cost
        self.inner.refund(now, cost)

    def snapshot(self) -> LimiterState:
        return self.inner.snapshot()

    def restore(self, state: LimiterState) -> None:
        self.inner.restore(state)

    def available(self, now: float) -> float:
        return self.inner.available(now)

    def pause_until(self, until: float) -> None:
        self.inner.pause_until(until)

    @property
    def paused_until(self) -> float:
        return self.inner.paused_until


class RecordingLedger(RetryBudgetLedger):
    """A retry budget ledger that keeps when requests and paid retries were recorded."""

    def __init__(self, budget: RetryBudget) -> None:
        super().__init__(budget)
        self.requests: list[float] = []
        self.spent: list[float] = []

    def record_request(self, now: float) -> None:
        self.requests.append(now)
        super().record_request(now)

    def try_spend(self, now: float) -> bool:
        paid = super().try_spend(now)
        if paid:
            self.spent.append(now)
        return paid


class FakeProvider:
    """The far side of the service: behaves as ``mode`` says, records every attempt."""

    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.cell: Cell | None = None
        self.attempts: list[Attempt] = []
        self.inside: list[Attempt] = []  # attempts the provider is still working on
        self.quiet: list[tuple[float, float]] = []  # Retry-After pauses it announced
        self.transports: list[FakeTransport] = []
        self.problems: list[str] = []  # breaches seen mid-step, reported by the invariant

    def new_transport(self) -> FakeTransport:
        transport = FakeTransport(self)
        self.transports.append(transport)
        return transport

    def _begin(self, call_id: int) -> Attempt:
        cell = self.cell
        assert cell is not None
        assert cell.breaker is not None
        if cell.actor.rejecting:
            self.problems.append(f"call {call_id} reached the provider after the service stopped")
        number = 1 + sum(1 for a in self.attempts if a.call_id == call_id)
        attempt = Attempt(
            call_id,
            number,
            anyio.current_time(),
            self.mode,
            cell.breaker.current,
            cell.breaker.generation,
        )
        self.attempts.append(attempt)
        self.inside.append(attempt)
        return attempt

    @contextmanager
    def attempt(self, call_id: int) -> Iterator[Attempt]:
        attempt = self._begin(call_id)
        try:
            yield attempt
        finally:
            self.inside.remove(attempt)

    async def call(self, call_id: int) -> tuple[int, int]:
        """The provider as an async function (`Service.call`)."""
        with self.attempt(call_id) as attempt:
            mode = attempt.mode
            if mode == "slow":
                await anyio.sleep(SLOW)
            elif mode == "hang":
                await anyio.sleep_forever()
            elif mode in {"fail", "throttle"}:
                raise ConnectionResetError("connection reset by peer")
            elif mode == "refused":
                raise ConnectionRefusedError("connection refused")
            elif mode == "caller":
                raise Declined("card declined")
            elif mode == "crash":
                raise RuntimeError("a bug in the connector")
            return call_id, attempt.number


class FakeTransport:
    """The provider over HTTP (`Service.request`): the call id is the URL's last part."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
        self.closed = 0

    async def send(self, request: HttpRequest, tenant_id: str | None = None) -> HttpResponse:
        provider = self.provider
        if self.closed:
            provider.problems.append(f"a request went out on a closed transport: {request.url}")
        call_id = int(request.url.rsplit("/", 1)[1])
        with provider.attempt(call_id) as attempt:
            mode = attempt.mode
            if mode == "slow":
                await anyio.sleep(SLOW)
            elif mode == "hang":
                await anyio.sleep_forever()
            elif mode == "fail":
                return HttpResponse(status=503)
            elif mode == "refused":
                raise TransportFailure("connection refused", sent=False)
            elif mode == "throttle":
                provider.quiet.append((attempt.started, attempt.started + QUIET))
                return HttpResponse(status=429, headers={"Retry-After": f"{QUIET:g}"})
            elif mode == "caller":
                return HttpResponse(status=404, content=b"no such item")
            elif mode == "crash":
                raise RuntimeError("a bug in the connector")
            return HttpResponse(status=200, content=f"{call_id}:{attempt.number}".encode())

    async def aclose(self) -> None:
        self.closed += 1


class SteppedLoop(VirtualTimeLoop):
    """`VirtualTimeLoop(autojump=False)` whose timers run only once the clock shows their time.

    asyncio runs a timer up to ``_clock_resolution`` (1 ns) early, and anyio's
    cancel scope, finding its deadline not yet reached, sets the timer again: on
    a clock that moves only when told to, it fires again at once, forever (a
    deadline of ``3.400000008 + 0.050000000000000086`` with the clock showing
    3.450000008 did). Here timers go on the clock's nanosecond grid, at or after
    the time asked for, and run once the clock reaches their tick.
    """

    def __init__(self) -> None:
        super().__init__(autojump=False)
        self._clock_resolution = 0.5e-9

    def call_at(
        self,
        when: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if math.isfinite(when):
            tick = math.ceil(when * 1e9)
            when = (tick if tick / 1e9 >= when else tick + 1) / 1e9
        return super().call_at(when, callback, *args, context=context)


async def _settle_asyncio() -> None:
    """Return once every other task waits on an unfinished future and nothing is ready.

    anyio's `wait_all_tasks_blocked` polls with ``sleep(0.1)`` on asyncio, which
    either never wakes (the clock stands still) or moves time; this polls with
    ``sleep(0)``, reading the same private fields it does.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    for _ in range(10_000):
        await asyncio.sleep(0)
        if getattr(loop, "_ready", ()):
            continue
        if all(_blocked(task) for task in asyncio.all_tasks() if task is not me):
            return
    raise AssertionError("the event loop never settled")


def _blocked(task: asyncio.Task[Any]) -> bool:
    waiter = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()


class RuntimeMachine(RuleBasedStateMachine):
    """One service (``svc``) under every policy at once, driven step by step."""

    backend: Backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.provider = FakeProvider()
        self.callers: dict[int, Caller] = {}
        self.clock = MockClock()
        self.loop: VirtualTimeLoop | None = None
        self.drain = True
        self.closing = False
        self.runtime = Runtime(rng=random.Random(0), wall_clock=lambda: 0.0)
        self.service: Service = self.runtime.register(
            "svc",
            breaker=BREAKER,
            rate_limit=RATE,
            retry=RETRY,
            retry_budget=BUDGET,
            timeout=TIMEOUT,
            max_concurrency=MAX_CONCURRENCY,
            mailbox=MAILBOX,
            idempotent=False,  # calls say it themselves; a GET is, a POST is not
            supervision=Supervision(max_restarts=3, within=30.0),
            transport=self.provider.new_transport,
            caller_errors=(Declined,),
        )
        options: dict[str, Any] = (
            {"clock": self.clock} if self.backend == "trio" else {"loop_factory": SteppedLoop}
        )
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal(
            self.backend, options
        )
        self.portal = self._portal_cm.__enter__()
        self._runtime_cm = self.portal.wrap_async_context_manager(self.runtime)
        self._runtime_cm.__enter__()
        self.cell, self.limiter, self.ledger = self.portal.call(self._open_cell)
        self.provider.cell = self.cell

    async def _open_cell(self) -> tuple[Cell, CountingLimiter, RecordingLedger]:
        if self.backend == "asyncio":
            loop = asyncio.get_running_loop()
            assert isinstance(loop, VirtualTimeLoop)
            self.loop = loop
        cell = await self.runtime.actor("svc").open_cell(None)
        assert cell.limiter is not None
        limiter = CountingLimiter(cell.limiter)
        ledger = RecordingLedger(BUDGET)
        cell.limiter, cell.ledger = limiter, ledger
        return cell, limiter, ledger

    @initialize(drain=st.booleans())
    def choose_ending(self, drain: bool) -> None:
        """Whether the run ends by letting every call finish before closing the runtime,
        or by closing it on calls still queued, in flight and in backoff."""
        self.drain = drain

    # -- driving the loop ---------------------------------------------------------

    def _autojump(self, on: bool) -> None:
        if self.loop is not None:
            self.loop.autojump = on
        else:
            self.clock.autojump_threshold = 0.0 if on else math.inf

    async def _settle(self) -> None:
        if self.backend == "trio":
            await anyio.wait_all_tasks_blocked()  # trio's own: exact, never moves time
        else:
            await _settle_asyncio()

    async def _advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, every timer firing in its turn, then settle."""
        self._autojump(True)
        try:
            await anyio.sleep(seconds)
        finally:
            self._autojump(False)
        await self._settle()

    # -- rules --------------------------------------------------------------------

    @rule(
        kind=st.sampled_from(["call", "get", "post"]),
        idempotent=st.booleans(),
        deadline=st.sampled_from(DEADLINES),
        count=st.integers(1, 3),
        after=st.sampled_from([0.0, 0.1, 0.3]),
    )
    def start_calls(
        self, kind: Kind, idempotent: bool, deadline: float | None, count: int, after: float
    ) -> None:
        """``after`` seconds from now, ``count`` callers call at the same instant."""
        if after:
            self.portal.call(self._advance, after)
        for _ in range(count):
            call_id = len(self.callers)
            caller = self.callers[call_id] = Caller(kind, idempotent, deadline)
            caller.future = self.portal.start_task_soon(self._call, call_id, caller)
        self.portal.call(self._settle)

    async def _call(self, call_id: int, caller: Caller) -> object:
        provider = self.provider
        caller.started = anyio.current_time()
        try:
            if caller.kind == "call":
                result: object = await self.service.call(
                    provider.call, call_id, deadline=caller.deadline, idempotent=caller.idempotent
                )
            else:
                method = "GET" if caller.kind == "get" else "POST"
                request = HttpRequest(
                    method=method, url=f"https://provider.test/items/{call_id}", endpoint="items"
                )
                result = await self.service.request(request, deadline=caller.deadline)
        except anyio.get_cancelled_exc_class():
            caller.replies.append(CANCELLED)
            raise
        except Exception as error:
            caller.replies.append(error)
            raise
        else:
            caller.replies.append(result)
            return result
        finally:
            caller.replied_at = anyio.current_time()

    def _pending(self) -> list[int]:
        return [i for i, c in self.callers.items() if c.future and not c.future.done()]

    @precondition(lambda self: bool(self._pending()))
    @rule(data=st.data())
    def cancel_call(self, data: st.DataObject) -> None:
        """A caller gives up on a call still going on."""
        caller = self.callers[data.draw(st.sampled_from(self._pending()), label="call")]
        assert caller.future is not None
        caller.cancelled_after = len(self.provider.attempts)
        assert caller.future.cancel()
        self.portal.call(self._settle)

    @rule(mode=st.sampled_from(MODES))
    def provider_changes(self, mode: Mode) -> None:
        """From now on the provider answers, slowly, never, fails, refuses the connection,
        throttles, rejects the caller's request, or the connector crashes on it."""
        self.provider.mode = mode

    @rule(seconds=st.sampled_from([0.05, 0.2, 0.5, 1.0, 2.5, 12.0]))
    def advance(self, seconds: float) -> None:
        self.portal.call(self._advance, seconds)

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def promises_kept(self) -> None:
        self.portal.call(self._check)

    def _check(self) -> None:
        """Everything the runtime promises, read in the loop while nothing moves."""
        provider, cell = self.provider, self.cell
        assert not provider.problems, provider.problems
        # The bulkhead counts exactly the attempts at the provider; the mailbox is bounded.
        assert cell.in_flight == len(provider.inside)
        assert cell.in_flight <= MAX_CONCURRENCY
        assert cell.queued <= MAILBOX
        self._check_breaker()
        self._check_rate(provider.attempts)
        self._check_retries()
        # No token leaks: a token is taken as its attempt goes out (DESIGN.md section 3:
        # never held while the call waits), so every token not given back went out.
        tokens = self.limiter.taken - self.limiter.refunded
        assert tokens == len(provider.attempts), (tokens, len(provider.attempts))
        for call_id, caller in self.callers.items():
            self._check_replies(call_id, caller)

    def _check_breaker(self) -> None:
        breaker = self.cell.breaker
        assert breaker is not None
        for attempt in self.provider.attempts:
            assert attempt.breaker not in {BreakerState.OPEN, BreakerState.FORCED_OPEN}, attempt
        # Half-open probes out are exactly the current generation's attempts still running.
        probes = breaker.snapshot().half_open_in_flight
        if breaker.current is BreakerState.HALF_OPEN:
            running = [a for a in self.provider.inside if a.generation == breaker.generation]
            assert probes == len(running)
            assert probes <= BREAKER.half_open_probes
        else:
            assert probes == 0

    @staticmethod
    def _check_rate(attempts: list[Attempt]) -> None:
        """At most ``burst + rate * T`` attempts start in any window of ``T`` seconds,
        and none inside a pause the provider asked for."""
        starts = sorted(a.started for a in attempts)
        for i, first in enumerate(starts):
            for j in range(i, len(starts)):
                span = starts[j] - first
                assert j - i + 1 <= RATE.capacity + RATE.tokens_per_second * span + RATE_SLACK, (
                    f"{j - i + 1} attempts in {span:g} s: {starts[i : j + 1]}"
                )

    def _check_retries(self) -> None:
        attempts = self.provider.attempts
        # The pauses a 429 asked for: no attempt starts inside one.
        for said_at, until in self.provider.quiet:
            for attempt in attempts:
                assert not said_at < attempt.started < until - EPSILON, (said_at, until, attempt)
        # Attempts per call include the first one; a call is retried only when that is
        # safe: it is idempotent, or its last attempt never reached the provider.
        per_call = Counter(a.call_id for a in attempts)
        assert max(per_call.values(), default=0) <= RETRY.attempts
        last_mode: dict[int, Mode] = {}
        for attempt in attempts:
            before = last_mode.get(attempt.call_id)
            last_mode[attempt.call_id] = attempt.mode
            if before is None:
                continue
            caller = self.callers[attempt.call_id]
            idempotent = caller.kind == "get" or (caller.kind == "call" and caller.idempotent)
            assert before in (FAILURE_MODES if idempotent else {"refused"}), (before, attempt)
        # Every retry that reached the provider was paid from the budget, and a call
        # records at most one request (its first admission).
        ledger = self.ledger
        assert sum(1 for a in attempts if a.number > 1) <= len(ledger.spent)
        assert sum(1 for a in attempts if a.number == 1) <= len(ledger.requests)
        assert len(ledger.requests) <= len(self.callers)
        # The budget: the ledger's window at t (ten buckets, the last one holding t)
        # spans between 0.9 W and W seconds back, so a retry paid at t needs
        # retries paid in (t - 0.9 W, t] <= ratio * requests in (t - W, t] + floor * W.
        window, floor = BUDGET.window, BUDGET.min_per_second * BUDGET.window
        for paid in ledger.spent:
            recent = sum(1 for t in ledger.spent if paid - 0.9 * window + EPSILON < t <= paid)
            asked = sum(1 for t in ledger.requests if paid - window - EPSILON < t <= paid)
            assert recent <= BUDGET.ratio * asked + floor + EPSILON, (paid, recent, asked)

    def _check_replies(self, call_id: int, caller: Caller) -> None:
        """One reply once the call is over, none before, and the reply the attempts earned."""
        future = caller.future
        assert future is not None
        assert len(caller.replies) == (1 if future.done() else 0), (call_id, caller)
        if not caller.replies:
            return
        reply = caller.replies[0]
        attempts = [a for a in self.provider.attempts if a.call_id == call_id]
        if caller.cancelled_after is not None:
            # A cancelled caller starts nothing more; at the same instant its call may
            # still have ended with its own reply instead of the cancellation.
            late = [a for a in self.provider.attempts[caller.cancelled_after :] if a in attempts]
            assert not late, late
            if reply is CANCELLED:
                return
        assert reply is not CANCELLED, (call_id, caller)
        if caller.deadline is not None:
            # The deadline bounds the whole call: queueing, attempts and backoff.
            assert caller.replied_at <= caller.started + caller.deadline + RATE_SLACK, caller
        last = attempts[-1] if attempts else None
        mode = last.mode if last is not None else None
        if not isinstance(reply, BaseException):
            assert last is not None
            assert mode in {"ok", "slow"}, (reply, last)
            if caller.kind == "call":
                assert reply == (call_id, last.number)
            else:
                assert isinstance(reply, HttpResponse)
                assert reply.content == f"{call_id}:{last.number}".encode()
        elif isinstance(reply, Declined | VendorError):
            # The provider's answer to the caller: raised as it is, or as a 404's VendorError.
            assert mode == "caller", (reply, last)
            assert isinstance(reply, Declined if caller.kind == "call" else VendorError)
            assert not isinstance(reply, VendorError) or reply.status == 404
        elif isinstance(reply, ActorCrashed):
            assert mode == "crash", (reply, last)
        elif isinstance(reply, ConnectionFailed | Timeout):
            assert mode in FAILURE_MODES, (reply, last)
            assert not isinstance(reply, ConnectionFailed) or reply.attempts == len(attempts)
        elif isinstance(reply, RateLimitExceeded):
            assert caller.deadline is not None, reply  # the token was due after it
        elif isinstance(reply, DeadlineExceeded):
            assert caller.deadline is not None, reply
            assert caller.replied_at >= caller.started + caller.deadline - RATE_SLACK, caller
        elif isinstance(reply, ServiceUnavailable):
            assert self.runtime.actor("svc").stop_reason is not None
        elif isinstance(reply, ShuttingDown):
            assert self.closing
        else:
            assert isinstance(reply, CircuitBreakerOpen | Overloaded), repr(reply)

    # -- the end ------------------------------------------------------------------

    def teardown(self) -> None:
        """Let every call finish (or not: see `choose_ending`), then close the runtime on
        whatever is left; either way every call gets its one reply."""
        try:
            if self.drain:
                self.portal.call(self._drain)
            self.portal.call(self._autojump, True)  # from here time runs by itself
            self.closing = True
            self._runtime_cm.__exit__(None, None, None)
            self.portal.call(self._closed)
        finally:
            self.portal.call(self.portal.stop, True)  # a failed run may leave calls hanging
            self._portal_cm.__exit__(None, None, None)

    async def _drain(self) -> None:
        """Long enough for every retry, pause, open circuit and restart: all is over."""
        await self._advance(1000.0)
        self._check()
        assert all(c.future is not None and c.future.done() for c in self.callers.values())
        cell = self.cell
        assert cell.in_flight == 0
        assert cell.queued == 0
        assert cell.breaker is not None
        assert cell.breaker.snapshot().half_open_in_flight == 0

    async def _closed(self) -> None:
        """The runtime is closed: callers still in backoff wake to `ShuttingDown`, and
        every call has had its reply; no slot, probe or token is left out."""
        await anyio.sleep(1000.0)
        await self._settle()
        self._check()
        assert all(c.future is not None and c.future.done() for c in self.callers.values())
        assert self.cell.in_flight == 0
        assert self.cell.queued == 0
        for transport in self.provider.transports:
            assert transport.closed == 1, transport.closed


class TrioRuntimeMachine(RuntimeMachine):
    backend: Backend = "trio"


@pytest.mark.parametrize("machine", [RuntimeMachine, TrioRuntimeMachine], ids=["asyncio", "trio"])
def test_runtime_keeps_its_promises(machine: type[RuntimeMachine]) -> None:
    run_state_machine_as_test(machine, settings=settings(stateful_step_count=30))


def test_a_call_granted_as_the_service_stops_does_not_go_out() -> None:
    """The pump grants a queued call its slot, and the service stops before that call
    runs: it must fail as a queued call does, without an attempt (it used to make one,
    and over HTTP, with no transport left, crash). asyncio runs the tasks in this order
    every time; the state machine cannot get between a grant and its wake-up."""
    sent: list[str] = []

    async def provider(name: str) -> str:
        sent.append(name)
        await anyio.sleep(SLOW if name.startswith("slow") else 0.0)
        return name

    async def main() -> None:
        async with Runtime(rng=random.Random(0)) as runtime:
            service = runtime.register("svc", max_concurrency=2)
            actor = runtime.actor("svc")
            replies: dict[str, object] = {}

            async def call(name: str) -> None:
                try:
                    replies[name] = await service.call(provider, name)
                except ServiceUnavailable as error:
                    replies[name] = error

            async def supervisor() -> None:
                await anyio.sleep(SLOW)  # wakes with the slow calls, runs after the pump
                await anyio.lowlevel.checkpoint()
                cell = actor.cells[None]
                assert (cell.queued, cell.in_flight) == (0, 1)  # granted, not yet running
                actor.stop("crashed too often")

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(call, "slow-1")
                tasks.start_soon(call, "slow-2")
                tasks.start_soon(supervisor)
                await anyio.sleep(0.1)
                tasks.start_soon(call, "queued")
            assert isinstance(replies["queued"], ServiceUnavailable)
            assert sent == ["slow-1", "slow-2"]
            assert actor.cells[None].in_flight == 0

    anyio.run(main, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop})
