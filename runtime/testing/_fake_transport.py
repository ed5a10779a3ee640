"""`FakeTransport`: the runtime's `Transport`, answered in memory, every request recorded."""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import msgspec

from .._errors import ConfigError
from .._http import HttpRequest, HttpResponse
from .._validate import non_negative

__all__ = ["FakeTransport", "TransportCall"]

Handler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]


class TransportCall(msgspec.Struct, frozen=True):
    """One request the transport was asked to send, and for whom."""

    request: HttpRequest
    tenant_id: str | None = None


class FakeTransport:
    """Answers from ``script`` first (a response, or an exception to raise), then from
    ``handler`` (plain or async), else with an empty 200.

    ``delay`` seconds pass (on the event loop's clock) before each answer, so
    timeouts and deadlines can be tested. Register it with
    ``rt.register(name, transport=lambda: fake)``; the same instance then
    serves every restart, and `closed` says whether the runtime closed it.
    """

    def __init__(
        self,
        *script: HttpResponse | BaseException,
        handler: Handler | None = None,
        delay: float = 0.0,
    ) -> None:
        self.calls: list[TransportCall] = []
        self.script: deque[HttpResponse | BaseException] = deque()
        self.add(*script)
        if handler is not None and not callable(handler):
            raise ConfigError("handler", handler, "must be callable")
        self.handler = handler
        self.delay = non_negative("delay", delay)
        self.closed = False

    def add(self, *outcomes: HttpResponse | BaseException) -> None:
        """Queue more scripted answers."""
        for outcome in outcomes:
            if not isinstance(outcome, HttpResponse | BaseException):
                raise ConfigError("script", outcome, "must be an HttpResponse or an exception")
        self.script.extend(outcomes)

    @property
    def requests(self) -> list[HttpRequest]:
        """Every request received, in order."""
        return [call.request for call in self.calls]

    async def send(self, request: HttpRequest, tenant_id: str | None = None) -> HttpResponse:
        self.calls.append(TransportCall(request, tenant_id))
        if self.delay:
            await anyio.sleep(self.delay)
        if self.script:
            outcome = self.script.popleft()
            if isinstance(outcome, BaseException):
                raise outcome.with_traceback(None)
            return outcome
        if self.handler is not None:
            answer = self.handler(request)
            if inspect.isawaitable(answer):
                answer = await answer
            return answer
        return HttpResponse(status=200)

    async def aclose(self) -> None:
        self.closed = True
