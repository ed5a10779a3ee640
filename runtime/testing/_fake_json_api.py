"""`FakeJsonApi`: a scriptable JSON API (a Starlette app) that records what it received.

Serve it with `serve_asgi` and point a client at it. Every request is recorded
(`Received`: method, path, query, headers, body, arrival time) before it is
answered, so a test can assert on what the provider saw, not only on what
came back. Answers come from per-path scripts of `Reply` values, consumed in
order; with none left, the API echoes the request as JSON with a 200. Replies
can be slow, rate-limited (429 with Retry-After), failures, bodies that are not
JSON, chunked, or broken off: the connection closed after the request was
read, before (`Reply.drop`) or during (`Reply.truncated`) the body.

The server runs in its own thread (`serve_asgi`); the recording is guarded by
a lock so the test's thread reads a consistent copy. Needs starlette (the
``testing`` extra).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgspec

if TYPE_CHECKING:
    from ._server import ASGIApp

__all__ = ["FakeJsonApi", "Received", "Reply"]

_CHUNK = 16 * 1024


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """One scripted answer.

    The server waits ``delay`` seconds after recording the request, then
    answers ``status`` with ``headers`` and ``body``; ``chunked`` sends the
    body in pieces with no Content-Length. ``fault`` breaks the answer off:
    ``"drop"`` closes the connection after the status line and headers,
    ``"truncate"`` after half the body, so the client cannot know whether the
    request was processed (it was).
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    chunked: bool = False
    fault: Literal["drop", "truncate"] | None = None

    @classmethod
    def json(
        cls,
        data: Any,
        status: int = 200,
        *,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        chunked: bool = False,
    ) -> Reply:
        return cls(
            status=status,
            body=msgspec.json.encode(data),
            headers=(("content-type", "application/json"), *(headers or {}).items()),
            delay=delay,
            chunked=chunked,
        )

    @classmethod
    def text(
        cls,
        text: str,
        status: int = 200,
        *,
        content_type: str = "text/plain; charset=utf-8",
        delay: float = 0.0,
    ) -> Reply:
        """A text body; give ``content_type="application/json"`` for a lying provider."""
        return cls(
            status=status,
            body=text.encode(),
            headers=(("content-type", content_type),),
            delay=delay,
        )

    @classmethod
    def too_many_requests(cls, retry_after: str | None = None, *, status: int = 429) -> Reply:
        """A 429 (or ``status``) with ``Retry-After`` (seconds or an HTTP-date) when given."""
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return cls.json({"error": "too many requests"}, status, headers=headers)

    @classmethod
    def drop(cls, *, delay: float = 0.0) -> Reply:
        """Close the connection after the headers, before the promised body."""
        return cls(body=b'{"ok": true}', delay=delay, fault="drop")

    @classmethod
    def truncated(cls, data: Any, *, delay: float = 0.0) -> Reply:
        """Close the connection halfway through ``data``'s JSON body."""
        return cls.json(data, delay=delay).with_fault("truncate")

    def with_fault(self, fault: Literal["drop", "truncate"]) -> Reply:
        return msgspec.structs.replace(self, fault=fault)


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """A request as the server read it; ``headers`` have lower-case names.

    ``path`` is decoded; ``target`` is the path and query exactly as sent
    (what an HMAC signature covers). ``at`` is the server loop's clock
    (seconds, monotonic) at arrival: compare it with other arrivals, not with
    the client's clock.
    """

    method: str
    path: str
    query: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


class FakeJsonApi:
    """The fake API's state; `app` is the ASGI app to serve."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Reply]] = {}
        self._received: list[Received] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._app: ASGIApp | None = None

    @property
    def app(self) -> ASGIApp:
        """The Starlette app: any method, any path."""
        if self._app is None:
            from starlette.applications import Starlette  # noqa: PLC0415 - optional extra
            from starlette.routing import Route  # noqa: PLC0415

            # An endpoint that is not a function is served as a raw ASGI app,
            # which is what lets a reply break the connection off.
            self._app = Starlette(routes=[Route("/{path:path}", _RawEndpoint(self))])
        return self._app

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies``, in order."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(replies)

    def reset(self) -> None:
        """Forget scripts and recordings (between tests sharing one server)."""
        with self._lock:
            self._scripts.clear()
            self._received.clear()
            self._max_in_flight = self._in_flight

    @property
    def received(self) -> list[Received]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._received)

    def requests_to(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    @property
    def max_in_flight(self) -> int:
        """The most requests the server was answering at once since the last `reset`."""
        with self._lock:
            return self._max_in_flight

    async def serve(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """Record one request and answer it from its path's script."""
        from starlette.requests import Request  # noqa: PLC0415 - optional extra

        request = Request(scope, receive)
        body = await request.body()
        received = Received(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            target=_target(scope),
            headers=dict(request.headers.items()),
            body=body,
            at=anyio.current_time(),
        )
        with self._lock:
            self._received.append(received)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            script = self._scripts.get(received.path)
            reply = script.popleft() if script else _echo(received)
        try:
            if reply.delay:
                await anyio.sleep(reply.delay)
            await _answer(reply, send)
        finally:
            with self._lock:
                self._in_flight -= 1


class _RawEndpoint:
    __slots__ = ("api",)

    def __init__(self, api: FakeJsonApi) -> None:
        self.api = api

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await self.api.serve(scope, receive, send)


def _target(scope: MutableMapping[str, Any]) -> str:
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return (path + b"?" + query if query else path).decode("latin-1")


def _echo(received: Received) -> Reply:
    try:
        payload = received.json() if received.body else None
    except msgspec.DecodeError:
        payload = None
    return Reply.json(
        {
            "method": received.method,
            "path": received.path,
            "query": received.query,
            "json": payload,
        }
    )


async def _answer(reply: Reply, send: Any) -> None:
    headers = [(name.lower().encode(), value.encode()) for name, value in reply.headers]
    body = reply.body
    if not reply.chunked:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if reply.fault == "drop":
        return  # uvicorn closes a connection whose response was left incomplete
    if reply.fault == "truncate":
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        return
    pieces = (
        [body[i : i + _CHUNK] for i in range(0, len(body), _CHUNK)] if reply.chunked else [body]
    )
    for piece in pieces[:-1]:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": pieces[-1] if pieces else b""})
