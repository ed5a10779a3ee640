"""`ServiceActor`: one registered service, its cells and its supervised instance.

An actor is a stable part (name, policy, cells with their breaker, limiter and
mailbox) and a replaceable instance (the transport: an HTTP client and its
connection pool). A crash replaces the instance only; breaker and limiter
state and queued calls survive it. Restarts back off with jitter; more than
``max_restarts`` within ``within`` seconds stops the service, and from then on
queued and new calls fail with `ServiceUnavailable` (one_for_one, as Erlang).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._budget import RetryBudgetLedger
from ._cell import Cell
from ._classify import ExceptionClassifier
from ._errors import ConnectorError, ServiceUnavailable, ShuttingDown
from ._events import ActorRestarted, ServiceStopped
from ._http import Transport
from ._policy import ServicePolicy
from ._retry import Backoff
from ._shared_state import SharedPolicyState
from ._state_store import CellState

if TYPE_CHECKING:
    from ._clock import Clock
    from ._runtime import Runtime

__all__ = ["Instance", "ServiceActor", "TransportFactory"]

TransportFactory = Callable[[], Transport]


class Instance:
    """One generation of a service's transport, closed once retired and unused."""

    __slots__ = ("retired", "transport", "users")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.users = 0
        self.retired = False


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class ServiceActor:
    def __init__(
        self,
        runtime: Runtime,
        name: str,
        policy: ServicePolicy,
        classifier: ExceptionClassifier,
        transport_factory: TransportFactory | None,
        shared_state: SharedPolicyState | None = None,
    ) -> None:
        self.runtime = runtime
        self.shared_state = shared_state
        self.name = name
        self.policy = policy
        self.classifier = classifier
        self.backoff = Backoff(policy.retry, runtime.rng)
        # Calls of a plain service (one cell, nothing that bounds an attempt in
        # time) may take `Service.call`'s inline path.
        self.plain = (
            policy.key_by is None and policy.timeout is None and policy.retry.deadline is None
        )
        self.ledger = (
            RetryBudgetLedger(policy.retry_budget) if policy.retry_budget is not None else None
        )
        self.transport_factory = transport_factory
        self.instance: Instance | None = None
        self.cells: dict[str | None, Cell] = {}
        self.restarting = False
        self.rejecting = False
        self.restarts = 0
        self.stop_reason: str | None = None
        self._restart_times: deque[float] = deque()
        # Passivated states not yet confirmed written to the store.
        self._parked: dict[str | None, CellState] = {}

    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        if self.transport_factory is not None:
            self.instance = Instance(self.transport_factory())

    def rejection(self) -> ConnectorError:
        """The error for a call made while the actor is rejecting everything."""
        if self.stop_reason is None:
            return ShuttingDown(self.name)
        return ServiceUnavailable(self.name, self.stop_reason)

    def begin_shutdown(self) -> None:
        self.rejecting = True
        for cell in self.cells.values():
            cell.fail_all()

    async def close(self) -> None:
        instance, self.instance = self.instance, None
        if instance is not None:
            await instance.transport.aclose()

    # -- cells ------------------------------------------------------------------

    async def open_cell(self, key: str | None) -> Cell:
        """The cell for ``key``, created on first use from any state it left behind."""
        state = self._parked.get(key)
        if state is None and self.policy.key_by is not None:
            state = await self.runtime.state_store.load(self.name, key)
        cell = self.cells.get(key)  # another caller may have made it meanwhile
        if cell is None:
            cell = self.cells[key] = Cell(self, key, state)
        return cell

    async def passivate_idle(self, now: float) -> int:
        """Drop cells idle for ``idle_timeout``, keeping their state in the store."""
        idle_timeout = self.policy.idle_timeout
        stale = [
            (key, cell)
            for key, cell in self.cells.items()
            if cell.idle and now - cell.last_used >= idle_timeout
        ]
        for key, cell in stale:
            del self.cells[key]
            # An idle tenant whose state is a fresh cell's (nearly all of them)
            # costs the store nothing, unless an older state must be overwritten.
            if cell.restored or not cell.pristine(now):
                self._parked[key] = cell.snapshot()
        await self.save_parked()
        return len(stale)

    async def save_parked(self) -> None:
        store = self.runtime.state_store
        for key, state in list(self._parked.items()):
            await store.save(self.name, key, state)
            if self._parked.get(key) is state:
                del self._parked[key]

    async def flush(self) -> None:
        """Keep every keyed cell's state in the store (on shutdown)."""
        if self.policy.key_by is None:
            return
        for key, cell in self.cells.items():
            self._parked[key] = cell.snapshot()
        await self.save_parked()

    # -- supervision ------------------------------------------------------------

    def crash(self, error: BaseException) -> None:
        """A bug surfaced in this service: replace its instance (once, however many saw it)."""
        if self.restarting or self.rejecting:
            return
        self.restarting = True
        self.runtime.spawn(self._restart, describe(error))

    async def _restart(self, reason: str) -> None:
        supervision = self.policy.supervision
        while True:
            now = self.clock()
            times = self._restart_times
            times.append(now)
            while times[0] <= now - supervision.within:
                times.popleft()
            if len(times) > supervision.max_restarts:
                self.stop(
                    f"crashed {len(times)} times within {supervision.within:g} s (last: {reason})"
                )
                return
            base = min(supervision.backoff_max, supervision.backoff_initial * 2 ** (len(times) - 1))
            await anyio.sleep(self.runtime.rng.uniform(base / 2, base))
            try:
                self._replace_instance()
            except Exception as error:  # the factory itself failed: that is a crash too
                reason = describe(error)
                continue
            break
        self.restarts += 1
        self.restarting = False
        bus = self.runtime.events
        if bus.active:
            bus.publish(
                ActorRestarted(
                    service=self.name,
                    key=None,
                    at=self.clock(),
                    restarts=self.restarts,
                    reason=reason,
                )
            )
        for cell in self.cells.values():
            cell.notify()

    def _replace_instance(self) -> None:
        if self.transport_factory is None:
            return
        fresh = Instance(self.transport_factory())
        old, self.instance = self.instance, fresh
        if old is not None:
            self.retire(old)

    def retire(self, instance: Instance) -> None:
        instance.retired = True
        if instance.users == 0:
            self.runtime.spawn(instance.transport.aclose)

    def stop(self, reason: str) -> None:
        """Stop for good: queued and new calls fail with `ServiceUnavailable`."""
        self.stop_reason = reason
        self.rejecting = True
        self.restarting = False
        for cell in self.cells.values():
            cell.fail_all()
        bus = self.runtime.events
        if bus.active:
            bus.publish(ServiceStopped(service=self.name, key=None, at=self.clock(), reason=reason))
        if self.instance is not None:
            self.retire(self.instance)
            self.instance = None
