"""`Service`: the handle callers hold, and the life of one guarded call.

A call goes: deadline check, admission (breaker, retry budget, limiter,
bulkhead; `Cell.try_admit`), queueing in the mailbox only when it must wait,
the attempt (with a cancel scope only when a timeout or deadline bounds it:
a scope is the most expensive part of a guarded call), classification and
recording, then a reply or a retry after backoff. Every call gets exactly one
reply: a result, or one typed error.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, overload

import anyio

from ._cell import QUEUE, Cell, _BudgetExhausted
from ._classify import Verdict
from ._errors import (
    ActorCrashed,
    ConfigError,
    ConnectionFailed,
    DeadlineExceeded,
    ServiceUnavailable,
    Timeout,
    VendorError,
)
from ._events import AttemptFinished, AttemptOutcome, RetryScheduled
from ._http import HttpRequest, HttpResponse
from ._idempotency import DEFAULT_IDEMPOTENCY_TTL, IdempotencyKey
from ._outbox import Deferred, delivering
from ._outbox_dispatcher import defer_request, request_or_defer
from ._provider_signals import quiet_period
from ._redaction import redact_text

if TYPE_CHECKING:
    from ._actor import Instance, ServiceActor
    from ._shared_gate import SharedGate

__all__ = ["Service"]

T = TypeVar("T")

_OUTCOMES: dict[Verdict, AttemptOutcome] = {
    Verdict.SUCCESS: "success",
    Verdict.CALLER_ERROR: "caller_error",
    Verdict.FAILURE: "failure",
    Verdict.FAILURE_NOT_SENT: "failure",
    Verdict.CRASH: "crash",
}
# Verdicts as module constants: an enum member lookup costs a call on CPython 3.11.
_SUCCESS = Verdict.SUCCESS
_CALLER_ERROR = Verdict.CALLER_ERROR
_FAILURE = Verdict.FAILURE
_FAILURE_NOT_SENT = Verdict.FAILURE_NOT_SENT
_CRASH = Verdict.CRASH

_BODY_CAP = 8192  # bytes of a provider's error body kept in a VendorError


def _is_async_callable(fn: object) -> bool:
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & inspect.CO_COROUTINE:
        return True  # the common case, without inspect's slower walk
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


class _ProviderStatus(Exception):
    """A provider's failing HTTP answer, as the cause of the `ConnectionFailed` it ends in."""


def _describe(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, _ProviderStatus):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Service:
    """A registered service; `call` and `request` go through all of its policies."""

    __slots__ = ("_actor", "name")

    def __init__(self, actor: ServiceActor) -> None:
        self._actor = actor
        self.name = actor.name

    def __repr__(self) -> str:
        return f"<Service {self.name!r}>"

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        tenant_id: str | None = None,
        idempotency_key: str | IdempotencyKey | None = None,
        deadline: float | None = None,
        idempotent: bool | None = None,
        endpoint: str | None = None,
        cost: float = 1.0,
    ) -> T:
        """``await fn(*args)`` under every policy of this service.

        ``deadline`` bounds the whole call in seconds (queueing, attempts and
        backoff). ``idempotent`` overrides the service's setting for this call;
        an ``idempotency_key`` makes it safe to repeat and deduplicates it.
        Exceptions are sorted by the classifier the service was registered with.
        """
        actor = self._actor
        if (
            deadline is None
            and idempotency_key is None
            and actor.plain
            and actor.shared_state is None
            and actor.runtime.running
        ):
            cell = actor.cells.get(None)
            code = getattr(fn, "__code__", None)
            if cell is not None and code is not None and code.co_flags & inspect.CO_COROUTINE:
                return await self._fast(cell, fn, args, tenant_id, idempotent, endpoint, cost)
        if not _is_async_callable(fn):
            raise ConfigError("fn", fn, "must be an async function")
        result: T = await self._guard(
            fn, args, None, tenant_id, idempotency_key, deadline, idempotent, endpoint, cost
        )
        return result

    async def _fast(
        self,
        cell: Cell,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        tenant_id: str | None,
        idempotent: bool | None,
        endpoint: str | None,
        cost: float,
    ) -> T:
        """The common call, inline: admitted at once, no deadline, timeout or key.

        A guarded call's cost is mostly its structure (frames, an object per
        call), not its decisions: this path makes the same decisions as `_Call`
        with neither, and hands over to `_Call` whatever is not a plain success
        (a queued call, an exception to classify and perhaps retry).
        """
        actor = self._actor
        clock = actor.clock
        now = clock()
        permit = cell.try_admit(now, cost, False, None, tenant_id, endpoint)
        call: _Call
        if permit == QUEUE:
            call = _Call(actor, fn, args, None, tenant_id, None, None, idempotent)
            queued: T = await call.run(endpoint, cost, now, first=(QUEUE, None))
            return queued
        outcome = _Outcome(now)
        try:
            result = await fn(*args)
        except Exception as error:
            outcome.error = error
            call = _Call(actor, fn, args, None, tenant_id, None, None, idempotent)
            recovered: T = await call.run(endpoint, cost, now, first=(permit, outcome))
            return recovered
        except BaseException:
            cell.abort(permit)
            raise
        end = clock()
        cell.finish()
        cell.record(permit, end, end - now, False)
        bus = actor.runtime.events
        if bus.active:
            bus.publish(
                AttemptFinished(
                    service=actor.name,
                    key=None,
                    at=end,
                    attempt=1,
                    outcome="success",
                    duration=end - now,
                    tenant_id=tenant_id,
                    endpoint=endpoint,
                )
            )
        return result

    @overload
    async def request(
        self,
        request: HttpRequest,
        *,
        tenant_id: str | None = None,
        idempotency_key: str | IdempotencyKey | None = None,
        deadline: float | None = None,
        idempotent: bool | None = None,
        cost: float = 1.0,
        on_unavailable: Literal["raise"] = "raise",
    ) -> HttpResponse: ...
    @overload
    async def request(
        self,
        request: HttpRequest,
        *,
        tenant_id: str | None = None,
        idempotency_key: str | IdempotencyKey | None = None,
        deadline: float | None = None,
        idempotent: bool | None = None,
        cost: float = 1.0,
        on_unavailable: Literal["defer"],
        order_key: str | None = None,
        max_age: float | None = None,
    ) -> HttpResponse | Deferred: ...
    async def request(
        self,
        request: HttpRequest,
        *,
        tenant_id: str | None = None,
        idempotency_key: str | IdempotencyKey | None = None,
        deadline: float | None = None,
        idempotent: bool | None = None,
        cost: float = 1.0,
        on_unavailable: Literal["raise", "defer"] = "raise",
        order_key: str | None = None,
        max_age: float | None = None,
    ) -> HttpResponse | Deferred:
        """Send ``request`` through this service's transport under every policy.

        2xx and 3xx come back as the response; another 4xx raises `VendorError`;
        a 5xx or a retryable status is a provider failure, retried when safe
        (an idempotent method, ``idempotent=True``, or an idempotency key), then
        `ConnectionFailed`.

        With ``on_unavailable="defer"`` (and the runtime's outbox), a request
        the service cannot take now (breaker open, service stopped, rate limit
        past the deadline, every retry failed) is written to the outbox and a
        `Deferred` receipt comes back instead; the outbox delivers it later
        with the same idempotency key (generated if none is given). Requests
        with one ``order_key`` reach the provider in the order they were made.
        ``max_age`` bounds an entry's wait (default: the outbox policy's).
        """
        if on_unavailable != "raise" or order_key is not None or max_age is not None:
            return await request_or_defer(
                self._actor.runtime,
                self,
                request,
                tenant_id=tenant_id,
                idempotency_key=idempotency_key,
                deadline=deadline,
                idempotent=idempotent,
                cost=cost,
                on_unavailable=on_unavailable,
                order_key=order_key,
                max_age=max_age,
            )
        if not isinstance(request, HttpRequest):
            raise ConfigError("request", request, "must be an HttpRequest")
        if self._actor.transport_factory is None:
            raise ConfigError("transport", None, f"service '{self.name}' has no transport")
        endpoint = request.endpoint or request.url
        response: HttpResponse = await self._guard(
            None, (), request, tenant_id, idempotency_key, deadline, idempotent, endpoint, cost
        )
        return response

    async def defer(
        self,
        request: HttpRequest,
        *,
        tenant_id: str | None = None,
        idempotency_key: str | IdempotencyKey | None = None,
        order_key: str | None = None,
        max_age: float | None = None,
    ) -> Deferred:
        """Write ``request`` to the runtime's outbox without trying it now.

        The outbox delivers it in the background through this service, with
        ``idempotency_key`` (generated if None) on every attempt, in order
        with other requests of its ``order_key``, until ``max_age`` seconds.
        Only HTTP requests defer: an entry must be re-executable from stored
        data after a restart, which a Python callable is not.
        """
        return await defer_request(
            self._actor.runtime,
            self,
            request,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            order_key=order_key,
            max_age=max_age,
        )

    async def _guard(
        self,
        fn: Callable[..., Awaitable[Any]] | None,
        args: tuple[Any, ...],
        request: HttpRequest | None,
        tenant_id: str | None,
        idempotency_key: str | IdempotencyKey | None,
        deadline: float | None,
        idempotent: bool | None,
        endpoint: str | None,
        cost: float,
    ) -> Any:
        actor = self._actor
        runtime = actor.runtime
        if not runtime.running:
            raise ServiceUnavailable(self.name, "the runtime is not running")
        now = actor.clock()
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, int | float):
                raise ConfigError("deadline", deadline, "must be a number of seconds")
            if not deadline >= 0:
                raise ConfigError("deadline", deadline, "must be >= 0")
            deadline_at: float | None = now + deadline
        elif actor.policy.retry.deadline is not None:
            deadline_at = now + actor.policy.retry.deadline
        else:
            deadline_at = None
        if idempotency_key is None:
            call = _Call(actor, fn, args, request, tenant_id, None, deadline_at, idempotent)
            return await call.run(endpoint, cost, now)
        if isinstance(idempotency_key, IdempotencyKey):
            key_text, ttl = idempotency_key.value, idempotency_key.ttl
        elif isinstance(idempotency_key, str) and idempotency_key:
            key_text, ttl = idempotency_key, DEFAULT_IDEMPOTENCY_TTL
        else:
            raise ConfigError("idempotency_key", idempotency_key, "must be a non-empty string")

        def operation() -> Awaitable[Any]:
            call = _Call(actor, fn, args, request, tenant_id, key_text, deadline_at, True)
            return call.run(endpoint, cost, actor.clock())

        return await runtime.idempotency.run((self.name, tenant_id, key_text), ttl, now, operation)


def _attempt_error(error: BaseException | None, response: HttpResponse | None) -> str | None:
    """What went wrong with one attempt, for its event and log record."""
    if error is not None:
        return _describe(error)
    if response is not None and response.status >= 400:
        return f"HTTP {response.status}: {_body_text(response)[:200]}"
    return None


def _body_text(response: HttpResponse) -> str:
    # Providers echo what they were sent, keys included: never put that in an error.
    return redact_text(response.content[:_BODY_CAP].decode("utf-8", errors="replace"))


class _Call:
    """One guarded call from admission to its single reply."""

    __slots__ = (
        "actor",
        "args",
        "cell",
        "deadline_at",
        "fn",
        "idempotency_key",
        "idempotent",
        "key",
        "request",
        "tenant_id",
    )

    def __init__(
        self,
        actor: ServiceActor,
        fn: Callable[..., Awaitable[Any]] | None,
        args: tuple[Any, ...],
        request: HttpRequest | None,
        tenant_id: str | None,
        idempotency_key: str | None,
        deadline_at: float | None,
        idempotent: bool | None,
    ) -> None:
        self.actor = actor
        self.fn = fn
        self.args = args
        self.request = request
        self.tenant_id = tenant_id
        self.idempotency_key = idempotency_key
        self.deadline_at = deadline_at
        if idempotent is None:
            idempotent = actor.policy.idempotent or (request is not None and request.is_idempotent)
        self.idempotent = idempotent

    async def run(
        self,
        endpoint: str | None,
        cost: float,
        now: float,
        first: tuple[int, _Outcome | None] | None = None,
    ) -> Any:
        """The call to its one reply. ``first`` resumes a call `Service._fast` began:
        admitted already (its permit, or `QUEUE` to wait), and perhaps attempted."""
        actor = self.actor
        policy = actor.policy
        key_by = policy.key_by
        key = None if key_by is None else self.tenant_id if key_by == "tenant" else endpoint
        cell = actor.cells.get(key)
        clock = actor.clock
        if cell is None:
            cell = await actor.open_cell(key)
            now = clock()
        deadline_at = self.deadline_at
        tenant_id = self.tenant_id
        attempt = 0
        previous_delay: float | None = None
        last_error: BaseException | None = None
        while True:
            attempt += 1
            done: _Outcome | None = None
            if first is not None:
                (permit, done), first = first, None
            else:
                if deadline_at is not None and now >= deadline_at:
                    raise cell.reject(now, DeadlineExceeded(actor.name), tenant_id, endpoint)
                try:
                    permit = cell.try_admit(
                        now, cost, attempt > 1, deadline_at, tenant_id, endpoint
                    )
                except _BudgetExhausted:
                    assert last_error is not None
                    raise ConnectionFailed(
                        actor.name, endpoint or "", attempt - 1, _describe(last_error)
                    ) from last_error
            if permit == QUEUE:
                permit = await cell.wait_turn(cost, deadline_at, tenant_id, endpoint)
                now = clock()
            gate = cell.gate
            if gate is None:
                outcome = done if done is not None else await self._attempt(cell, permit, now)
                now = clock()
                verdict, error, response, _, final = self._settle(
                    cell, permit, outcome, now, attempt, endpoint, key
                )
            else:
                outcome, (verdict, error, response, _, final) = await self._shared_attempt(
                    cell, gate, permit, cost, attempt, endpoint, key
                )
                now = clock()
            if final is not None:
                raise final
            if verdict is _SUCCESS:
                return outcome.value
            quiet = (
                await self._quiet(cell, gate, response, now)
                if response is not None and verdict is not _CALLER_ERROR
                else None
            )
            last_error = error
            delay = self._retry_delay(verdict, error, attempt, previous_delay, quiet, endpoint)
            self._announce_retry(now, delay, error, attempt, endpoint, key)
            previous_delay = delay
            await anyio.sleep(delay)
            now = clock()

    async def _quiet(
        self, cell: Cell, gate: SharedGate | None, response: HttpResponse, now: float
    ) -> float | None:
        """Pause the service as long as the provider asked, if it did; how long."""
        quiet = quiet_period(response, self.actor.runtime.wall_clock())
        if quiet is not None:
            cell.pause(now + quiet)
            if gate is not None:
                await gate.pause(quiet)  # the provider's quiet holds for every process
        return quiet

    async def _shared_attempt(
        self,
        cell: Cell,
        gate: SharedGate,
        permit: int,
        cost: float,
        attempt: int,
        endpoint: str | None,
        key: str | None,
    ) -> tuple[_Outcome, _Settled]:
        """An attempt whose breaker and token are shared: admit, run, record, each remote."""
        try:
            shared_permit = await gate.admit(cost, self.deadline_at, self.tenant_id, endpoint)
        except BaseException:
            cell.abort(permit)
            raise
        clock = self.actor.clock
        try:
            outcome = await self._attempt(cell, permit, clock())
        except BaseException:
            with anyio.CancelScope(shield=True):
                await gate.release(shared_permit)
            raise
        now = clock()
        settled = self._settle(cell, permit, outcome, now, attempt, endpoint, key)
        if settled.failed is None:
            await gate.release(shared_permit)
        else:
            await gate.record(shared_permit, settled.failed, now - outcome.started)
        return outcome, settled

    def _announce_retry(
        self,
        now: float,
        delay: float,
        error: Exception,
        attempt: int,
        endpoint: str | None,
        key: str | None,
    ) -> None:
        """Raise when the retry would end past the deadline; else publish it."""
        actor = self.actor
        if self.deadline_at is not None and now + delay >= self.deadline_at:
            raise ConnectionFailed(actor.name, endpoint or "", attempt, _describe(error)) from error
        bus = actor.runtime.events
        if bus.active:
            bus.publish(
                RetryScheduled(
                    service=actor.name,
                    key=key,
                    at=now,
                    attempt=attempt,
                    delay=delay,
                    tenant_id=self.tenant_id,
                    endpoint=endpoint,
                )
            )

    async def _attempt(self, cell: Cell, permit: int, started: float) -> _Outcome:
        """Run one attempt; a cancellation frees its slot and probe and propagates."""
        actor = self.actor
        timeout = actor.policy.timeout
        deadline_at = self.deadline_at
        request = self.request
        instance = actor.instance if request is not None else None
        if instance is not None:
            instance.users += 1
        outcome = _Outcome(started)
        try:
            if timeout is None and deadline_at is None:
                fn = self.fn
                if fn is not None:  # the common case, awaited without another frame
                    outcome.value = await fn(*self.args)
                else:
                    outcome.value = await self._send(instance)
            else:
                limit = started + timeout if timeout is not None else math.inf
                if deadline_at is not None and deadline_at < limit:
                    limit = deadline_at
                with anyio.CancelScope(deadline=limit) as scope:
                    outcome.value = await self._send(instance)
                if scope.cancelled_caught:
                    # Ours or the caller's deadline: which one decides what it says.
                    by_deadline = timeout is None or (
                        deadline_at is not None and deadline_at < started + timeout
                    )
                    outcome.cut = "deadline" if by_deadline else "timeout"
        except Exception as error:
            outcome.error = error
        except BaseException:
            cell.abort(permit)
            raise
        finally:
            if instance is not None:
                instance.users -= 1
                if instance.retired and instance.users == 0:
                    actor.runtime.spawn(instance.transport.aclose)
        return outcome

    async def _send(self, instance: Instance | None) -> Any:
        if instance is None:
            assert self.fn is not None
            return await self.fn(*self.args)
        assert self.request is not None
        return await instance.transport.send(self.request, self.tenant_id)

    def _settle(
        self,
        cell: Cell,
        permit: int,
        outcome: _Outcome,
        now: float,
        attempt: int,
        endpoint: str | None,
        key: str | None,
    ) -> _Settled:
        """Classify the attempt, record it in the local breaker and publish it."""
        actor = self.actor
        name = actor.name
        error = outcome.error
        response: HttpResponse | None = None
        if outcome.cut == "deadline":
            # The caller's deadline, not the provider, ended it: no verdict on the provider.
            cell.abort(permit)
            final = cell.reject(now, DeadlineExceeded(name), self.tenant_id, endpoint)
            return _Settled(_CRASH, final, None, None, final)
        if outcome.cut == "timeout":
            timeout = actor.policy.timeout
            assert timeout is not None
            verdict = _FAILURE
            error = Timeout(name, timeout)
        elif error is not None:
            verdict = actor.classifier.classify(error)
        elif self.request is not None:
            response = outcome.value
            assert response is not None
            verdict = _judge(response, actor.policy.retry.retryable_statuses)
        else:
            verdict = _SUCCESS
        cell.finish()
        duration = now - outcome.started
        failed: bool | None = None
        if verdict is _CRASH:
            cell.give_back(permit)  # our bug says nothing about the provider
        else:
            failed = verdict >= _FAILURE
            if failed and response is not None and response.status == 429:
                failed = actor.policy.breaker_counts_429
            cell.record(permit, now, duration, failed)
        bus = actor.runtime.events
        if bus.active:
            bus.publish(
                AttemptFinished(
                    service=name,
                    key=key,
                    at=now,
                    attempt=attempt,
                    outcome="timeout" if outcome.cut else _OUTCOMES[verdict],
                    duration=duration,
                    tenant_id=self.tenant_id,
                    endpoint=endpoint,
                    method=self.request.method if self.request is not None else None,
                    status=response.status if response is not None else None,
                    error=_attempt_error(error, response),
                    idempotency_key=self.idempotency_key,
                    request=self.request,
                    response=response,
                    outbox_id=delivering.get() if self.request is not None else None,
                )
            )
        if verdict is _SUCCESS:
            return _Settled(verdict, _NO_ERROR, response, failed, None)
        if verdict is _CALLER_ERROR:
            if error is None:
                assert response is not None
                error = VendorError(name, response.status, _body_text(response))
            return _Settled(verdict, error, response, failed, error)
        if error is None:
            assert response is not None
            body = _body_text(response)[:200]
            error = _ProviderStatus(
                f"HTTP {response.status}: {body}" if body else f"HTTP {response.status}"
            )
        return _Settled(verdict, error, response, failed, None)

    def _retry_delay(
        self,
        verdict: Verdict,
        error: Exception,
        attempt: int,
        previous: float | None,
        quiet: float | None,
        endpoint: str | None,
    ) -> float:
        """The wait before the next attempt, or raise when this failure is final."""
        actor = self.actor
        attempts = actor.policy.retry.attempts
        if verdict is _CRASH:
            actor.crash(error)
            if not (self.idempotent and attempt < attempts):
                raise ActorCrashed(actor.name, _describe(error)) from error
        elif attempt >= attempts or not (self.idempotent or verdict is _FAILURE_NOT_SENT):
            raise ConnectionFailed(actor.name, endpoint or "", attempt, _describe(error)) from error
        delay = actor.backoff.delay(attempt, previous)
        return quiet if quiet is not None and quiet > delay else delay


class _Settled(NamedTuple):
    """What one attempt came to: ``failed`` is None when the breaker learnt nothing
    (a crash, a deadline); ``final`` is raised at once (a caller's error, a deadline)."""

    verdict: Verdict
    error: Exception
    response: HttpResponse | None
    failed: bool | None
    final: Exception | None


class _Outcome:
    __slots__ = ("cut", "error", "started", "value")

    def __init__(self, started: float) -> None:
        self.started = started
        self.value: Any = None
        self.error: Exception | None = None
        self.cut: str | None = None


_NO_ERROR = Exception("no error")


def _judge(response: HttpResponse, retryable: frozenset[int]) -> Verdict:
    status = response.status
    if status < 400:
        return _SUCCESS
    if status >= 500 or status in retryable:
        return _FAILURE
    return _CALLER_ERROR
