"""`OutboxDispatcher`: the runtime's actor that delivers deferred requests.

Deferring: ``svc.defer(request)`` writes a request to the outbox at once;
``await svc.request(request, on_unavailable="defer")`` tries it live first and
writes it when the breaker is open, the supervisor stopped the service, the
limiter would wait past the deadline, the mailbox is full, the runtime is
shutting down, or every attempt failed with a retryable error. Either way the
caller gets a `Deferred` receipt, and the entry carries an idempotency key
(the caller's, or a generated one the live attempt used too) that every
redelivery reuses. With an ``order_key``, a request whose key still has
pending entries is written behind them without a live try, so one key's
requests reach the provider in the order they were made.

Delivering, in rounds: dead-letter what is past its max age, then lease up to
``batch_size`` due entries of services whose breaker admits (an open breaker's
entries stay in the store until it would go half-open). Per service the first
entry of a round goes alone (the probe); only when it got through do the
others follow, ``concurrency`` at a time, and the first failure stops the rest
of that round's group. So a recovering provider sees one request, then a
bounded stream, never the whole backlog at once. Each delivery goes through
the service's own actor (breaker, limiter, retries, logs), within its lease.
A caller's error (a 4xx) dead-letters the entry at once; any other failure
reschedules it with backoff. The store's wall-clock times are turned into
sleeps on the loop clock.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.lowlevel

from ._actor import ServiceActor, describe
from ._cell import rejection_reason
from ._errors import (
    CircuitBreakerOpen,
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    DeadlineExceeded,
    Overloaded,
    RateLimitExceeded,
    ServiceUnavailable,
    ShuttingDown,
    Timeout,
    VendorError,
)
from ._http import HttpRequest, HttpResponse
from ._idempotency import IdempotencyKey
from ._logrecord import UlidGenerator
from ._outbox import (
    DeferReason,
    Deferred,
    Outbox,
    OutboxEntry,
    OutboxPolicy,
    OutboxUnavailable,
    delivering,
    describe_target,
    open_request,
    seal_request,
)
from ._outbox_events import (
    CallDeferred,
    OutboxDeadLettered,
    OutboxDelivered,
    OutboxRetryScheduled,
)
from ._redaction import redact_text
from ._retry import Backoff, Retry

if TYPE_CHECKING:
    from ._runtime import Runtime
    from ._service import Service

__all__ = ["OutboxDispatcher", "defer_request", "request_or_defer"]

# Errors after which a deferrable request is written to the outbox: the
# provider could not be reached now, or not for long enough. A caller's error
# (VendorError) or our own bug (ActorCrashed) is raised as it is.
_DEFERRABLE = (
    CircuitBreakerOpen,
    RateLimitExceeded,
    Overloaded,
    DeadlineExceeded,
    ConnectionFailed,
    Timeout,
    ServiceUnavailable,
    ShuttingDown,
)
_LEASE_MARGIN = 0.1  # of the lease, kept free after a delivery's deadline for its store write
_MIN_WINDOW = 0.25  # of the lease: less left than this and a delivery waits for a new lease
_MIN_PAUSE = 0.01  # seconds between rounds when the store says work is due but gave none


def _reason(error: ConnectorError) -> DeferReason:
    """Why a call was deferred: the reason it was not sent, or that it failed."""
    if isinstance(error, ConnectionFailed | Timeout):
        return "failed"
    reason = rejection_reason(error)
    return "failed" if reason == "budget_exhausted" else reason


def _text(error: BaseException) -> str:
    return redact_text(describe(error))


def _blocked_for(actor: ServiceActor, key: str | None, now: float) -> float:
    """Seconds until ``actor``'s cell for ``key`` would admit a call: 0 now, inf never here."""
    if actor.rejecting:
        return math.inf
    cell = actor.cells.get(key)
    if cell is None:
        return 0.0
    wait = cell.paused_until - now
    if cell.breaker is not None:
        wait = max(wait, cell.breaker.retry_after(now))
    return max(wait, 0.0)


def _dispatcher(runtime: Runtime) -> OutboxDispatcher:
    if runtime.outbox is None:
        raise ConfigError("outbox", None, "the runtime has none: Runtime(outbox=SqliteOutbox(...))")
    return runtime.outbox


async def request_or_defer(
    runtime: Runtime,
    service: Service,
    request: HttpRequest,
    *,
    tenant_id: str | None,
    idempotency_key: str | IdempotencyKey | None,
    deadline: float | None,
    idempotent: bool | None,
    cost: float,
    on_unavailable: str,
    order_key: str | None,
    max_age: float | None,
) -> HttpResponse | Deferred:
    """`Service.request` with an ``on_unavailable``, ``order_key`` or ``max_age``."""
    if on_unavailable != "defer":
        if on_unavailable != "raise":
            raise ConfigError("on_unavailable", on_unavailable, "must be 'raise' or 'defer'")
        field, value = ("order_key", order_key) if order_key is not None else ("max_age", max_age)
        raise ConfigError(field, value, "applies only with on_unavailable='defer'")
    return await _dispatcher(runtime).request_or_defer(
        service,
        request,
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        deadline=deadline,
        idempotent=idempotent,
        cost=cost,
        order_key=order_key,
        max_age=max_age,
    )


async def defer_request(
    runtime: Runtime,
    service: Service,
    request: HttpRequest,
    *,
    tenant_id: str | None,
    idempotency_key: str | IdempotencyKey | None,
    order_key: str | None,
    max_age: float | None,
) -> Deferred:
    """`Service.defer`: write ``request`` to the runtime's outbox without trying it."""
    outbox = _dispatcher(runtime)
    plan = outbox.plan(service, request, tenant_id, idempotency_key, order_key, max_age)
    return await outbox.write(plan, "requested", None)


class _Plan:
    """A request about to be deferred, checked, with its key and expiry settled."""

    __slots__ = ("expires_at", "live_key", "order_key", "request", "service", "tenant_id")

    def __init__(
        self,
        service: str,
        request: HttpRequest,
        tenant_id: str | None,
        live_key: str | IdempotencyKey,
        order_key: str | None,
        expires_at: float,
    ) -> None:
        self.service = service
        self.request = request
        self.tenant_id = tenant_id
        self.live_key = live_key
        self.order_key = order_key
        self.expires_at = expires_at

    @property
    def key(self) -> str:
        live_key = self.live_key
        return live_key.value if isinstance(live_key, IdempotencyKey) else live_key


class OutboxDispatcher:
    """Defers requests to ``store`` and delivers them; see the module docstring.

    One per runtime (``Runtime(outbox=store, outbox_policy=...)``), which
    opens it on start and closes it on shutdown. ``owner`` names this runtime's
    leases. The counters (``deferred``, ``delivered``, ``dead_lettered``) count
    this runtime's own; ``failures`` and ``last_error`` the store's failures.
    """

    def __init__(self, runtime: Runtime, store: Outbox, policy: OutboxPolicy | None = None) -> None:
        if policy is None:
            policy = OutboxPolicy()
        elif not isinstance(policy, OutboxPolicy):
            raise ConfigError("outbox_policy", policy, "must be an OutboxPolicy")
        for method in ("add", "claim", "reschedule", "delivered", "expire"):
            if not callable(getattr(store, method, None)):
                raise ConfigError("outbox", store, "must be an Outbox (SqliteOutbox, ...)")
        self.runtime = runtime
        self.store = store
        self.policy = policy
        # Entry ids and lease owners must not repeat across processes, even when
        # the runtime's rng is seeded for a repeatable run: they come from the OS.
        self.owner = secrets.token_hex(8)
        self._ids = UlidGenerator(random.SystemRandom())
        backoff = Retry(
            initial_delay=policy.initial_delay,
            multiplier=policy.multiplier,
            max_delay=policy.max_delay,
            jitter="equal",
        )
        self._backoff = Backoff(backoff, runtime.rng)
        self._wakeup: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._stopping = False
        self._started = False
        self.deferred = 0
        self.delivered = 0
        self.dead_lettered = 0
        self.failures = 0
        self.last_error: str | None = None

    # -- deferring --------------------------------------------------------------

    def plan(
        self,
        service: Service,
        request: HttpRequest,
        tenant_id: str | None,
        idempotency_key: str | IdempotencyKey | None,
        order_key: str | None,
        max_age: float | None,
    ) -> _Plan:
        """Check a request to defer; settle its idempotency key and expiry."""
        runtime = self.runtime
        if not isinstance(request, HttpRequest):
            raise ConfigError("request", request, "must be an HttpRequest")
        if runtime.actor(service.name).transport_factory is None:
            raise ConfigError("transport", None, f"service '{service.name}' has no transport")
        if tenant_id is not None and (not isinstance(tenant_id, str) or not tenant_id):
            raise ConfigError("tenant_id", tenant_id, "must be a non-empty str or None")
        if order_key is not None and (not isinstance(order_key, str) or not order_key):
            raise ConfigError("order_key", order_key, "must be a non-empty str or None")
        if max_age is None:
            max_age = self.policy.max_age
        elif (
            isinstance(max_age, bool)
            or not isinstance(max_age, int | float)
            or not 0 < max_age < math.inf
        ):
            raise ConfigError("max_age", max_age, "must be a positive, finite number of seconds")
        if not runtime.running:
            raise ServiceUnavailable(service.name, "the runtime is not running")
        now = runtime.wall_clock()
        expires_at = now + max_age
        live_key: str | IdempotencyKey
        if idempotency_key is None:
            live_key = IdempotencyKey.generate("outbox", now=now)
        elif isinstance(idempotency_key, IdempotencyKey):
            # A redelivery after the key's life could count as a new operation.
            expires_at = min(expires_at, idempotency_key.created_at + idempotency_key.ttl)
            if expires_at <= now:
                raise ConfigError("idempotency_key", idempotency_key.value, "has expired")
            live_key = idempotency_key
        elif isinstance(idempotency_key, str) and idempotency_key:
            live_key = idempotency_key
        else:
            raise ConfigError("idempotency_key", idempotency_key, "must be a non-empty string")
        return _Plan(service.name, request, tenant_id, live_key, order_key, expires_at)

    async def request_or_defer(
        self,
        service: Service,
        request: HttpRequest,
        *,
        tenant_id: str | None,
        idempotency_key: str | IdempotencyKey | None,
        deadline: float | None,
        idempotent: bool | None,
        cost: float,
        order_key: str | None,
        max_age: float | None,
    ) -> HttpResponse | Deferred:
        """Send ``request`` now, or defer it when its service cannot take it now."""
        plan = self.plan(service, request, tenant_id, idempotency_key, order_key, max_age)
        if order_key is not None:
            try:
                behind = await self.store.has_pending(service.name, order_key)
            except Exception as error:
                raise OutboxUnavailable(service.name, _text(error)) from error
            if behind:
                return await self.write(plan, "ordered", None)
        try:
            return await service.request(
                request,
                tenant_id=tenant_id,
                idempotency_key=plan.live_key,
                deadline=deadline,
                idempotent=idempotent,
                cost=cost,
            )
        except _DEFERRABLE as error:
            if not self.runtime.running:
                raise
            return await self.write(plan, _reason(error), error)

    async def write(
        self, plan: _Plan, reason: DeferReason, error: ConnectorError | None
    ) -> Deferred:
        """Store ``plan`` as a pending entry and publish it; returns the receipt."""
        runtime = self.runtime
        now = runtime.wall_clock()
        entry_id = self._ids(now)
        request = plan.request
        payload, nonce, key_id = seal_request(request, self.store.cipher, entry_id, plan.service)
        shown = _text(error) if error is not None else None
        entry = OutboxEntry(
            id=entry_id,
            service=plan.service,
            tenant_id=plan.tenant_id,
            order_key=plan.order_key,
            idempotency_key=plan.key,
            target=describe_target(request),
            payload=payload,
            nonce=nonce,
            key_id=key_id,
            reason=reason,
            created_at=now,
            expires_at=plan.expires_at,
            next_attempt_at=min(now + self._first_delay(error), plan.expires_at),
            last_error=shown,
        )
        try:
            await self.store.add(entry)
        except Exception as failure:
            raise OutboxUnavailable(plan.service, _text(failure)) from failure
        self.deferred += 1
        bus = runtime.events
        if bus.active:
            bus.publish(
                CallDeferred(
                    service=plan.service,
                    key=None,
                    at=runtime.clock(),
                    outbox_id=entry_id,
                    reason=reason,
                    idempotency_key=entry.idempotency_key,
                    next_attempt_at=entry.next_attempt_at,
                    tenant_id=plan.tenant_id,
                    order_key=plan.order_key,
                    error=shown,
                )
            )
        self._wake()
        return Deferred(
            id=entry_id,
            service=plan.service,
            reason=reason,
            idempotency_key=entry.idempotency_key,
            next_attempt_at=entry.next_attempt_at,
            error=shown,
        )

    def _first_delay(self, error: ConnectorError | None) -> float:
        """Seconds before the first delivery: what the failure says, else one backoff step."""
        if error is None or isinstance(error, ShuttingDown):
            return 0.0
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float):
            return float(retry_after) if math.isfinite(retry_after) else self.policy.max_delay
        return self._backoff.delay(1)

    # -- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        """Open the store (the runtime does, on start)."""
        self._stopped = anyio.Event()
        await self.store.open()

    def begin_shutdown(self) -> None:
        """Start no new delivery; those in flight finish (the runtime does, on close)."""
        self._stopping = True
        self._wake()

    async def close(self, within: float) -> None:
        """Wait up to ``within`` s for the loop to settle its round, then close the store."""
        self.begin_shutdown()
        if self._started and self._stopped is not None:
            with anyio.move_on_after(within):
                await self._stopped.wait()
        await self.store.close()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self) -> None:
        """The dispatcher's loop: rounds, and sleeps between them, until `close`."""
        self._started = True
        try:
            while not self._stopping:
                # Made before the round, so a deferral or a close during it is not missed.
                wakeup = self._wakeup = anyio.Event()
                try:
                    pause = await self._round()
                except Exception as error:
                    # The store failed: keep what is leased leased (it expires), and look again.
                    self.failures += 1
                    self.last_error = _text(error)
                    pause = self.policy.poll_interval
                if pause > 0.0:
                    with anyio.move_on_after(pause):
                        await wakeup.wait()
                else:
                    await anyio.lowlevel.checkpoint()
        finally:
            if self._stopped is not None:
                self._stopped.set()

    # -- delivering -------------------------------------------------------------

    async def _round(self) -> float:
        """One round; returns the seconds to wait before the next (0: go on at once)."""
        runtime = self.runtime
        policy = self.policy
        now = runtime.wall_clock()
        for entry in await self.store.expire(now):
            self._dead(entry, "expired", entry.attempts, entry.last_error or "")
        admitting, wait = self._admitting()
        claimed = (
            await self.store.claim(
                admitting, self.owner, now, now + policy.lease, policy.batch_size
            )
            if admitting
            else []
        )
        if not claimed:
            pause = min(policy.poll_interval, wait)
            due = await self.store.next_due(admitting)
            if due is not None:
                pause = min(pause, max(due - runtime.wall_clock(), _MIN_PAUSE))
            return pause
        groups: dict[tuple[str, str | None], list[tuple[OutboxEntry, HttpRequest]]] = {}
        for entry in claimed:
            try:
                request = open_request(entry, self.store.cipher)
            except ConfigError as error:
                await self._failed(entry, entry.attempts, error)
                continue
            actor = runtime.actor(entry.service)
            key_by = actor.policy.key_by
            key = (
                None
                if key_by is None
                else entry.tenant_id
                if key_by == "tenant"
                else request.endpoint or request.url
            )
            groups.setdefault((entry.service, key), []).append((entry, request))
        async with anyio.create_task_group() as group_tasks:
            for (service, key), group in groups.items():
                group_tasks.start_soon(self._deliver_group, runtime.actor(service), key, group)
        return 0.0

    def _admitting(self) -> tuple[list[str], float]:
        """Services whose entries may be claimed now, and the seconds until another would."""
        runtime = self.runtime
        now = runtime.clock()
        admitting: list[str] = []
        wait = math.inf
        for name in runtime.services:
            actor = runtime.actor(name)
            if actor.transport_factory is None:
                continue
            # A keyed service's cells are judged per group, once claimed.
            blocked = (
                _blocked_for(actor, None, now)
                if actor.policy.key_by is None
                else (math.inf if actor.rejecting else 0.0)
            )
            if blocked <= 0.0:
                admitting.append(name)
            else:
                wait = min(wait, blocked)
        return admitting, wait

    async def _deliver_group(
        self,
        actor: ServiceActor,
        key: str | None,
        group: Sequence[tuple[OutboxEntry, HttpRequest]],
    ) -> None:
        """The first entry alone (the probe), then the rest if it got through."""
        runtime = self.runtime
        blocked = _blocked_for(actor, key, runtime.clock())
        if blocked > 0.0:
            until = runtime.wall_clock() + min(blocked, self.policy.max_delay)
            await self.store.release([entry.id for entry, _ in group], self.owner, until)
            return
        halted = await self._deliver(*group[0])
        rest = group[1:]
        if halted is not None or self._stopping:
            await self.store.release([entry.id for entry, _ in rest], self.owner, halted)
            return
        limiter = anyio.CapacityLimiter(self.policy.concurrency)
        unsent: list[str] = []

        async def deliver(entry: OutboxEntry, request: HttpRequest) -> None:
            nonlocal halted
            async with limiter:
                if halted is not None or self._stopping:
                    unsent.append(entry.id)
                    return
                failed = await self._deliver(entry, request)
                if halted is None:
                    halted = failed

        async with anyio.create_task_group() as tasks:
            for entry, request in rest:
                tasks.start_soon(deliver, entry, request)
        await self.store.release(unsent, self.owner, halted)

    async def _deliver(self, entry: OutboxEntry, request: HttpRequest) -> float | None:
        """Deliver one leased entry; None when it is settled, else when it is due again."""
        runtime = self.runtime
        lease = self.policy.lease
        window = entry.lease_until - runtime.wall_clock() - lease * _LEASE_MARGIN
        if window < lease * _MIN_WINDOW:
            # Too little of the lease is left to be sure no other runtime sends it meanwhile.
            await self.store.release([entry.id], self.owner)
            return None
        attempts = entry.attempts + 1
        token = delivering.set(entry.id)
        try:
            response = await runtime.service(entry.service).request(
                request,
                tenant_id=entry.tenant_id,
                idempotency_key=entry.idempotency_key,
                deadline=window,
                idempotent=True,
            )
        except (VendorError, ConfigError) as error:
            # The provider (or our own check) refuses this request as it is: again is no use.
            text = _text(error)
            if await self.store.dead_letter(
                entry.id, self.owner, now=runtime.wall_clock(), attempts=attempts, last_error=text
            ):
                self._dead(entry, "rejected", attempts, text)
            return None
        except Exception as error:
            return await self._failed(entry, attempts, error)
        finally:
            delivering.reset(token)
        await self.store.delivered(entry.id)
        self.delivered += 1
        bus = runtime.events
        if bus.active:
            bus.publish(
                OutboxDelivered(
                    service=entry.service,
                    key=None,
                    at=runtime.clock(),
                    outbox_id=entry.id,
                    attempts=attempts,
                    status=response.status,
                    tenant_id=entry.tenant_id,
                )
            )
        return None

    async def _failed(self, entry: OutboxEntry, attempts: int, error: Exception) -> float:
        """Reschedule ``entry`` after a failed round with backoff (or the provider's wait)."""
        runtime = self.runtime
        now = runtime.wall_clock()
        delay = self._backoff.delay(max(attempts, 1))
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float):
            delay = max(delay, retry_after if math.isfinite(retry_after) else self.policy.max_delay)
        next_at = min(now + delay, entry.expires_at)
        text = _text(error)
        await self.store.reschedule(
            entry.id, self.owner, attempts=attempts, next_attempt_at=next_at, last_error=text
        )
        bus = runtime.events
        if bus.active:
            bus.publish(
                OutboxRetryScheduled(
                    service=entry.service,
                    key=None,
                    at=runtime.clock(),
                    outbox_id=entry.id,
                    attempts=attempts,
                    next_attempt_at=next_at,
                    error=text,
                    tenant_id=entry.tenant_id,
                )
            )
        return next_at

    def _dead(
        self,
        entry: OutboxEntry,
        cause: Literal["expired", "rejected"],
        attempts: int,
        error: str,
    ) -> None:
        self.dead_lettered += 1
        bus = self.runtime.events
        if bus.active:
            bus.publish(
                OutboxDeadLettered(
                    service=entry.service,
                    key=None,
                    at=self.runtime.clock(),
                    outbox_id=entry.id,
                    cause=cause,
                    attempts=attempts,
                    error=error,
                    tenant_id=entry.tenant_id,
                )
            )
