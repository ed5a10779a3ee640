"""The log-writer actor: runtime events in, batched integration log records out.

The call path only appends an event to a bounded buffer (a listener on the
runtime's `EventBus`); this actor's task turns events into `IntegrationLog`
records and writes them in batches, so no caller ever awaits the database.
When the store fails, the batch is kept and retried with backoff while the
buffer keeps filling; when the buffer is full, further records are counted in
``dropped`` and a `LogBufferFull` event says so, instead of blocking callers.
On shutdown everything buffered is written; what cannot be (the store is still
down when the shutdown timeout ends) is reported with `LogsNotWritten`.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import msgspec

from . import _validate as check
from ._errors import ConnectorError
from ._events import AttemptFinished, CallRejected, Event, EventBus, LogBufferFull
from ._http import HttpRequest, HttpResponse
from ._logrecord import IntegrationLog, LogStatus, UlidGenerator
from ._logstore import LogStore

__all__ = ["LogWriter", "LogsNotWritten"]

_BODY_CAP = 4096  # characters of a request or response body kept in a record

_REJECTION_STATUS = {
    "circuit_open": LogStatus.CIRCUIT_OPEN,
    "rate_limited": LogStatus.RATE_LIMITED,
}


class LogsNotWritten(ConnectorError):
    """Shutdown ended with integration log records the store would not take."""

    count: int
    last_error: str

    def __init__(self, count: int, last_error: str) -> None:
        super().__init__(
            f"{count} integration log records could not be written: {last_error}",
            count=count,
            last_error=last_error,
        )


def _body(content: bytes | None, headers: dict[str, str]) -> Any:
    if not content:
        return None
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if "json" in content_type and len(content) <= _BODY_CAP:
        try:
            return msgspec.json.decode(content)
        except msgspec.DecodeError:
            pass
    return content[:_BODY_CAP].decode("utf-8", errors="replace")


def _request_data(request: HttpRequest | None, outbox_id: str | None) -> dict[str, Any] | None:
    if request is None:
        return None
    data = {
        "method": request.method,
        "url": request.url,
        "headers": dict(request.headers),
        "body": _body(request.content, request.headers),
    }
    if outbox_id is not None:
        data["outbox_id"] = outbox_id  # links the attempt to the outbox entry it delivers
    return data


def _response_data(response: HttpResponse | None) -> dict[str, Any] | None:
    if response is None:
        return None
    return {
        "status": response.status,
        "headers": dict(response.headers),
        "body": _body(response.content, response.headers),
    }


class LogWriter:
    """Buffers the runtime's attempt and rejection events and writes them to ``store``."""

    def __init__(
        self,
        store: LogStore,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_buffer: int = 100_000,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.batch_size = check.integer("batch_size", batch_size, 1)
        self.flush_interval = check.positive("flush_interval", flush_interval)
        self.max_buffer = check.integer("max_buffer", max_buffer, 1)
        self.retry_initial = check.positive("retry_initial", retry_initial)
        self.retry_max = check.at_least("retry_max", retry_max, retry_initial)
        self._ids = UlidGenerator(rng if rng is not None else random.Random())
        self._events: deque[Event] = deque()
        self._unwritten: list[IntegrationLog] = []  # a batch the store refused, kept
        self._wakeup: anyio.Event | None = None
        self._stop_listening: Callable[[], None] | None = None
        self._bus: EventBus | None = None
        self._writing: anyio.Lock | None = None
        self._wall_offset = 0.0
        self._full = False
        self._closing = False
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None

    @property
    def buffered(self) -> int:
        return len(self._events) + len(self._unwritten)

    def attach(
        self, bus: EventBus, clock: Callable[[], float], wall_clock: Callable[[], float]
    ) -> None:
        """Start listening; record times are the loop clock shifted onto the wall clock."""
        self._bus = bus
        self._writing = anyio.Lock()
        self._wall_offset = wall_clock() - clock()
        self._stop_listening = bus.listen(self._on_event)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, AttemptFinished | CallRejected):
            return
        if self.buffered >= self.max_buffer:
            self.dropped += 1
            if not self._full and self._bus is not None:
                self._full = True  # said once per episode, not once per record
                self._bus.publish(
                    LogBufferFull(
                        service=event.service, key=None, at=event.at, dropped=self.dropped
                    )
                )
            return
        self._events.append(event)
        if len(self._events) >= self.batch_size:
            self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _record(self, event: Event) -> IntegrationLog:
        now = event.at + self._wall_offset
        if isinstance(event, AttemptFinished):
            if event.status == 429:
                status = LogStatus.RATE_LIMITED
            elif event.outcome == "success":
                status = LogStatus.SUCCESS
            elif event.outcome == "timeout":
                status = LogStatus.TIMEOUT
            else:
                status = LogStatus.FAILED
            return IntegrationLog.create(
                service_name=event.service,
                endpoint=event.endpoint or "",
                method=event.method or "CALL",
                status=status,
                now=now,
                ids=self._ids,
                tenant_id=event.tenant_id,
                http_status_code=event.status,
                duration_ms=event.duration * 1000.0,
                request_data=_request_data(event.request, event.outbox_id),
                response_data=_response_data(event.response),
                error_message=event.error,
                attempt_number=event.attempt,
            )
        assert isinstance(event, CallRejected)
        message = f"not sent: {event.reason.replace('_', ' ')}"
        if event.retry_after is not None and math.isfinite(event.retry_after):
            message += f", retry after {event.retry_after:.3f} s"
        return IntegrationLog.create(
            service_name=event.service,
            endpoint=event.endpoint or "",
            method="CALL",
            status=_REJECTION_STATUS.get(event.reason, LogStatus.REJECTED),
            now=now,
            ids=self._ids,
            tenant_id=event.tenant_id,
            error_message=message,
        )

    def _next_batch(self) -> list[IntegrationLog]:
        if self._unwritten:
            return self._unwritten
        events = self._events
        count = min(len(events), self.batch_size)
        return [self._record(events.popleft()) for _ in range(count)]

    async def _write_once(self) -> bool:
        """Write one batch; False (and the batch kept) when the store failed."""
        assert self._writing is not None, "attach() first"
        async with self._writing:  # the loop and close() never write at once
            return await self._write_batch()

    async def _write_batch(self) -> bool:
        batch = self._next_batch()
        if not batch:
            return True
        try:
            await self.store.write_batch(batch)
        except Exception as error:
            self._unwritten = batch
            self.failures += 1
            self.last_error = f"{type(error).__name__}: {error}"
            return False
        self._unwritten = []
        self.written += len(batch)
        if self._full and self.buffered < self.max_buffer:
            self._full = False
        return True

    async def run(self) -> None:
        """The actor's loop; runs until cancelled (the runtime cancels it after `close`)."""
        backoff = self.retry_initial
        while True:
            if len(self._events) < self.batch_size and not self._unwritten:
                self._wakeup = anyio.Event()
                with anyio.move_on_after(self.flush_interval):
                    await self._wakeup.wait()
                self._wakeup = None
            if self._closing:
                return
            if await self._write_once():
                backoff = self.retry_initial
            else:
                await anyio.sleep(backoff)
                backoff = min(self.retry_max, backoff * 2)

    async def close(self, within: float) -> None:
        """Stop listening and write everything buffered, trying for up to ``within`` s."""
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        self._closing = True
        self._wake()
        backoff = self.retry_initial
        with anyio.move_on_after(within):
            while self.buffered:
                if await self._write_once():
                    backoff = self.retry_initial
                else:
                    await anyio.sleep(backoff)
                    backoff = min(self.retry_max, backoff * 2)
        if self.buffered:
            raise LogsNotWritten(self.buffered, self.last_error or "the shutdown timeout ended")
