"""Typed runtime events and the bus that fans them out to subscribers.

The log writer, metrics, the dashboard and the simulator's report all consume
these. Publishing never waits: each subscription has a bounded buffer, and a
subscriber that falls behind loses its oldest events (counted in `dropped`)
rather than slowing a call. With no subscriber, no event object is even built
(the actor checks `EventBus.active` first).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Literal

import anyio
import msgspec

from ._breaker import BreakerState
from ._errors import ConfigError
from ._http import HttpRequest, HttpResponse

__all__ = [
    "ActorRestarted",
    "AttemptFinished",
    "AttemptOutcome",
    "BreakerTransition",
    "CallRejected",
    "Event",
    "EventBus",
    "LogBufferFull",
    "RejectReason",
    "RetryScheduled",
    "ServiceStopped",
    "Subscription",
]

RejectReason = Literal[
    "circuit_open",
    "rate_limited",
    "overloaded",
    "deadline",
    "budget_exhausted",
    "unavailable",
    "shutting_down",
]
AttemptOutcome = Literal["success", "caller_error", "failure", "timeout", "crash", "cancelled"]


class Event(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Common fields: which service (and key, for keyed services) and when (loop clock)."""

    service: str
    key: str | None
    at: float


class BreakerTransition(Event, frozen=True, kw_only=True):
    previous: BreakerState
    current: BreakerState


class CallRejected(Event, frozen=True, kw_only=True):
    """A call that never reached the provider, and why."""

    reason: RejectReason
    tenant_id: str | None = None
    endpoint: str | None = None
    retry_after: float | None = None


class AttemptFinished(Event, frozen=True, kw_only=True):
    """One attempt at the provider; ``duration`` excludes time spent queued.

    On the HTTP path ``request`` and ``response`` are the objects themselves
    (unredacted: a consumer that stores them must redact, as the log writer does).
    ``outbox_id`` names the outbox entry the attempt delivers, if it does.
    """

    attempt: int
    outcome: AttemptOutcome
    duration: float
    tenant_id: str | None = None
    endpoint: str | None = None
    method: str | None = None
    status: int | None = None
    error: str | None = None
    idempotency_key: str | None = None
    request: HttpRequest | None = None
    response: HttpResponse | None = None
    outbox_id: str | None = None


class RetryScheduled(Event, frozen=True, kw_only=True):
    """Attempt ``attempt`` failed and attempt ``attempt + 1`` follows after ``delay``."""

    attempt: int
    delay: float
    tenant_id: str | None = None
    endpoint: str | None = None


class ActorRestarted(Event, frozen=True, kw_only=True):
    restarts: int
    reason: str


class ServiceStopped(Event, frozen=True, kw_only=True):
    reason: str


class LogBufferFull(Event, frozen=True, kw_only=True):
    """The log writer's buffer is full: ``dropped`` records were not kept so far."""

    dropped: int


class Subscription:
    """A bounded, non-blocking feed of events; iterate it with ``async for``."""

    def __init__(self, bus: EventBus, max_buffer: int) -> None:
        self._bus = bus
        self._buffer: deque[Event] = deque()
        self._max_buffer = max_buffer
        self._wakeup: anyio.Event | None = None
        self._closed = False
        self.dropped = 0

    def push(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._buffer) >= self._max_buffer:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(event)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def drain(self) -> list[Event]:
        """Every buffered event, at once, without waiting."""
        events = list(self._buffer)
        self._buffer.clear()
        return events

    async def receive(self) -> Event:
        """The next event; raises `anyio.EndOfStream` once closed and drained."""
        while not self._buffer:
            if self._closed:
                raise anyio.EndOfStream
            self._wakeup = anyio.Event()
            await self._wakeup.wait()
        return self._buffer.popleft()

    def close(self) -> None:
        """Stop receiving; what is buffered can still be read."""
        if not self._closed:
            self._closed = True
            self._bus.unsubscribe(self)
            if self._wakeup is not None:
                self._wakeup.set()
                self._wakeup = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.receive()
            except anyio.EndOfStream:
                return

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """Fans events out to every open `Subscription` and every listener.

    A listener is a plain callable run inside `publish`, on the caller's path:
    it must only hand the event over (append it to a buffer), never block.
    """

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._listeners: list[Callable[[Event], None]] = []
        self.active = False

    def listen(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every event; returns the function that stops it."""
        self._listeners.append(listener)
        self.active = True

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
            self._update()

        return stop

    def _update(self) -> None:
        self.active = bool(self._subscriptions or self._listeners)

    def subscribe(self, max_buffer: int = 10_000) -> Subscription:
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ConfigError("max_buffer", max_buffer, "must be an integer >= 1")
        subscription = Subscription(self, max_buffer)
        self._subscriptions.append(subscription)
        self.active = True
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        self._update()

    def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        for subscription in self._subscriptions:
            subscription.push(event)

    def close(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.close()
