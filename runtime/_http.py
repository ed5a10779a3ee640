"""The runtime's HTTP seam: its own small request and response types, and `Transport`.

The actor speaks these, not httpx objects: building an `httpx.Request` costs
more than a guarded call should, and the simulator plugs a fake provider in
right here. The httpx-backed transport converts at the edge.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["IDEMPOTENT_METHODS", "HttpRequest", "HttpResponse", "Transport", "TransportFailure"]

# RFC 9110 section 9.2.2: repeating these has the effect of sending them once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


class HttpRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request; ``endpoint`` is the logical name logged and keyed on (a path template)."""

    method: str
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    content: bytes | None = None
    endpoint: str | None = None

    @property
    def is_idempotent(self) -> bool:
        return self.method.upper() in IDEMPOTENT_METHODS


class HttpResponse(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    content: bytes = b""

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


class TransportFailure(Exception):
    """The request did not complete. ``sent`` says whether the provider may have seen it.

    False (connection refused, DNS failure) makes any request safe to retry;
    True (read timeout, reset after sending) only an idempotent one.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class Transport(Protocol):
    """Sends one request; raises `TransportFailure` when no response came back.

    ``tenant_id`` says whose credentials to attach (None: the default tenant's).
    """

    async def send(self, request: HttpRequest, tenant_id: str | None = None) -> HttpResponse: ...

    async def aclose(self) -> None: ...
