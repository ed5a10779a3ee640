"""`Runtime`: owns the task group, the service actors, their events and their stores.

``async with Runtime() as rt`` starts it; leaving the block stops it
gracefully: new calls fail with `ShuttingDown`, queued ones too, in-flight
attempts get ``shutdown_timeout`` seconds to finish, then keyed actors' state
is kept in the state store and transports are closed (an attempt still running
then fails with its transport's error, in its caller's task).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVarTuple

import anyio
from anyio.abc import TaskGroup

from . import _validate as check
from ._actor import ServiceActor, TransportFactory
from ._classify import ExceptionClassifier
from ._clock import Clock, WallClock, loop_clock, system_wall_clock
from ._errors import ConfigError
from ._events import EventBus
from ._idempotency_store import IdempotencyStore, MemoryIdempotencyStore
from ._log_writer import LogsNotWritten, LogWriter
from ._logstore import LogStore
from ._outbox import Outbox, OutboxPolicy
from ._outbox_dispatcher import OutboxDispatcher
from ._policy import ServicePolicy
from ._service import Service
from ._shared_state import SharedPolicyState
from ._state_store import MemoryStateStore, StateStore

if TYPE_CHECKING:
    import os

    from ._configured import ConfiguredRuntime

__all__ = ["Runtime"]

PosArgs = TypeVarTuple("PosArgs")


def _not_started() -> float:
    raise RuntimeError("the runtime's clock is read before the runtime started")


class Runtime:
    """The actor runtime: register services, then call through them.

    ``rng`` feeds every jitter (seed it for a repeatable run); ``wall_clock``
    stamps logs and reads HTTP-date headers. Both default to the system's.
    With a ``log_store``, a `LogWriter` records every attempt and rejection.
    With an ``outbox`` (a `SqliteOutbox`, ...), requests made with
    ``on_unavailable="defer"`` or `Service.defer` wait there and an
    `OutboxDispatcher` (``rt.outbox``) delivers them, as ``outbox_policy`` says.
    """

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        wall_clock: WallClock = system_wall_clock,
        state_store: StateStore | None = None,
        idempotency: IdempotencyStore | None = None,
        log_store: LogStore | None = None,
        shutdown_timeout: float = 30.0,
        outbox: Outbox | None = None,
        outbox_policy: OutboxPolicy | None = None,
    ) -> None:
        check.non_negative("shutdown_timeout", shutdown_timeout)
        self.rng = rng if rng is not None else random.Random()
        self.wall_clock = wall_clock
        self.state_store: StateStore = (
            state_store if state_store is not None else (MemoryStateStore())
        )
        self.idempotency: IdempotencyStore = (
            idempotency if idempotency is not None else MemoryIdempotencyStore()
        )
        self.shutdown_timeout = shutdown_timeout
        self.events = EventBus()
        self.log_writer = LogWriter(log_store, rng=self.rng) if log_store is not None else None
        self.clock: Clock = _not_started
        self.running = False
        self._closed = False
        self._actors: dict[str, ServiceActor] = {}
        self._task_group: TaskGroup | None = None
        self._sweeping = False
        self._drained: anyio.Event | None = None
        if outbox is None and outbox_policy is not None:
            raise ConfigError("outbox_policy", outbox_policy, "needs an outbox")
        self.outbox = OutboxDispatcher(self, outbox, outbox_policy) if outbox is not None else None

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **options: Any) -> ConfiguredRuntime:
        """A runtime wired from a config file: ``async with Runtime.from_config(path) as app``.

        The file is read and checked now (`ConfigFileError` names the key);
        entering opens its stores and starts its services, ``app.services[name]``.
        ``options`` are `ConfiguredRuntime`'s (``environ=``, ``rng=``, stores).
        """
        from ._configured import ConfiguredRuntime  # noqa: PLC0415 - it imports this module

        return ConfiguredRuntime.from_file(path, **options)

    # -- services ---------------------------------------------------------------

    def register(
        self,
        name: str,
        policy: ServicePolicy | None = None,
        *,
        transport: TransportFactory | None = None,
        failures: tuple[type[BaseException], ...] = (),
        caller_errors: tuple[type[BaseException], ...] = (),
        shared_state: SharedPolicyState | None = None,
        **policy_fields: Any,
    ) -> Service:
        """Add a service and return its handle.

        Policies come as a `ServicePolicy` or as its fields by keyword
        (``breaker=``, ``rate_limit=``, ``retry=``, ``timeout=``, ...).
        ``transport`` makes a fresh `Transport` for the HTTP path (called again
        on each restart). ``failures`` and ``caller_errors`` add exception types
        to the provider-failure and caller-error classes (see `ExceptionClassifier`).
        With ``shared_state`` (e.g. a `FallbackSharedState` over `RedisSharedState`)
        the breaker and rate limit are shared by every process using it.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("name", name, "must be a non-empty string")
        if name in self._actors:
            raise ConfigError("name", name, "is already registered")
        if self._closed:
            raise ConfigError("name", name, "cannot be registered: the runtime is closed")
        if policy is not None and policy_fields:
            raise ConfigError(
                "policy", policy, "give a ServicePolicy or its fields by keyword, not both"
            )
        if policy is None:
            try:
                policy = ServicePolicy(**policy_fields)
            except TypeError as error:
                raise ConfigError("policy", sorted(policy_fields), str(error)) from None
        elif not isinstance(policy, ServicePolicy):
            raise ConfigError("policy", policy, "must be a ServicePolicy")
        if transport is not None and not callable(transport):
            raise ConfigError("transport", transport, "must be a callable returning a Transport")
        for field, kinds in (("failures", failures), ("caller_errors", caller_errors)):
            if not isinstance(kinds, tuple) or not all(
                isinstance(kind, type) and issubclass(kind, BaseException) for kind in kinds
            ):
                raise ConfigError(field, kinds, "must be a tuple of exception types")
        actor = ServiceActor(
            self,
            name,
            policy,
            ExceptionClassifier(failures, caller_errors),
            transport,
            shared_state,
        )
        self._actors[name] = actor
        if self.running:
            actor.start()
            self._start_sweeper()
        return Service(actor)

    def service(self, name: str) -> Service:
        """The handle of a registered service."""
        actor = self._actors.get(name)
        if actor is None:
            raise ConfigError("service", name, "is not registered")
        return Service(actor)

    @property
    def services(self) -> list[str]:
        return list(self._actors)

    def actor(self, name: str) -> ServiceActor:
        """The actor behind a service, for inspection (dashboards, tests)."""
        actor = self._actors.get(name)
        if actor is None:
            raise ConfigError("service", name, "is not registered")
        return actor

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if self.running or self._closed:
            raise RuntimeError("a Runtime can be entered once")
        self.clock = loop_clock()
        if self.outbox is not None:
            await self.outbox.open()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self.running = True
        if self.log_writer is not None:
            self.log_writer.attach(self.events, self.clock, self.wall_clock)
            task_group.start_soon(self.log_writer.run)
        for actor in self._actors.values():
            actor.start()
        self._start_sweeper()
        if self.outbox is not None:
            task_group.start_soon(self.outbox.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def spawn(self, fn: Callable[[*PosArgs], Coroutine[Any, Any, Any]], *args: *PosArgs) -> None:
        """Run ``fn(*args)`` as a task of the runtime."""
        if self._task_group is None:
            raise RuntimeError("the runtime is not running")
        self._task_group.start_soon(fn, *args)

    async def aclose(self) -> None:
        """Stop gracefully (see the module docstring). Safe to call twice."""
        task_group = self._task_group
        if task_group is None or self._closed:
            return
        self._closed = True
        if self.outbox is not None:
            self.outbox.begin_shutdown()
        actors = list(self._actors.values())
        for actor in actors:
            actor.begin_shutdown()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.shutdown_timeout):
                while not self.drained():
                    self._drained = anyio.Event()
                    await self._drained.wait()
            self.running = False
            for actor in actors:
                await actor.flush()
                await actor.close()
            if self.outbox is not None:
                await self.outbox.close(self.shutdown_timeout)
            unwritten: LogsNotWritten | None = None
            if self.log_writer is not None:
                try:
                    await self.log_writer.close(self.shutdown_timeout)
                except LogsNotWritten as error:
                    unwritten = error
            self.events.close()
        # The task group was entered outside the shield, so it is left outside it.
        task_group.cancel_scope.cancel()
        await task_group.__aexit__(None, None, None)
        self._task_group = None
        if unwritten is not None:
            raise unwritten

    def drained(self) -> bool:
        """True when no attempt is in flight in any service."""
        return not any(
            cell.in_flight for actor in self._actors.values() for cell in actor.cells.values()
        )

    def cell_drained(self) -> None:
        """A cell's last attempt finished during shutdown: look again."""
        if self._drained is not None:
            self._drained.set()

    # -- passivation ------------------------------------------------------------

    def _start_sweeper(self) -> None:
        if not self._sweeping and any(a.policy.key_by for a in self._actors.values()):
            self._sweeping = True
            self.spawn(self._sweep)

    async def _sweep(self) -> None:
        """Passivate idle keyed actors, checking twice per shortest idle timeout."""
        while True:
            keyed = [actor for actor in self._actors.values() if actor.policy.key_by]
            interval = min((actor.policy.idle_timeout for actor in keyed), default=math.inf)
            await anyio.sleep(interval / 2)
            now = self.clock()
            for actor in keyed:
                await actor.passivate_idle(now)
