"""`WebhookSender`: signed webhooks out, delivered through a service actor.

A payload is JSON-encoded with msgspec, signed as ``t=<unix time>,v1=<hex
HMAC-SHA256 of "t.body">`` (`sign_webhook`, Stripe's scheme, so
`TimestampedHmacVerifier` or any Stripe-compatible verifier checks it) and
POSTed through the service, under its breaker, limiter and retries. The event
id is both the ``Webhook-Id`` header, for the receiver to deduplicate on, and
the call's idempotency key: retries of a POST are safe because of it, and the
same event sent again after a success is not delivered twice.

The body is signed once per `send`; the runtime's retries re-send those same
bytes with the same signature. A receiver whose verifier refuses a repeated
signature (a replay cache) must therefore not remember a delivery it then
failed to process, or it will refuse the retry; deduplicating on the event id
after processing is the robust order. A new `send` of a failed event signs
again with a fresh timestamp.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from . import _formats as check
from ._clock import WallClock, system_wall_clock
from ._errors import ConfigError
from ._http import HttpRequest, HttpResponse
from ._service import Service
from ._webhooks import _key, sign_webhook

__all__ = ["WebhookSender"]


class WebhookSender:
    """Signs payloads with ``secret`` and POSTs them through ``service``.

    ``header`` carries the signature and ``id_header`` the event id;
    ``wall_clock`` gives the signing time (Unix seconds).
    """

    __slots__ = ("_clock", "_header", "_id_header", "_secret", "_service")

    def __init__(
        self,
        service: Service,
        secret: str | bytes,
        *,
        header: str = "Webhook-Signature",
        id_header: str = "Webhook-Id",
        wall_clock: WallClock = system_wall_clock,
    ) -> None:
        if not isinstance(service, Service):
            raise ConfigError("service", service, "must be a Service")
        self._service = service
        self._secret = _key("secret", secret)
        self._header = check.header_name("header", header)
        self._id_header = check.header_name("id_header", id_header)
        if header.lower() == id_header.lower():
            raise ConfigError("id_header", id_header, "must differ from header")
        if not callable(wall_clock):
            raise ConfigError("wall_clock", wall_clock, "must be callable")
        self._clock = wall_clock

    def __repr__(self) -> str:
        return f"<WebhookSender via {self._service.name!r}>"

    def sign(self, body: bytes) -> str:
        """The signature header value for ``body`` at the wall clock's current second."""
        now = self._clock()
        if not math.isfinite(now) or now < 0:
            raise ConfigError("wall_clock", now, "must return a Unix time >= 0")
        return sign_webhook(body, self._secret, int(now))

    async def send(
        self,
        url: str,
        payload: Mapping[str, Any] | bytes,
        *,
        event_id: str,
        tenant_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> HttpResponse:
        """Deliver ``payload`` (a mapping, sent as JSON, or bytes as they are) to ``url``.

        Returns the receiver's 2xx/3xx response; a 4xx raises `VendorError`,
        and a 5xx or no answer is retried by the service's policy, then raises
        `ConnectionFailed`. ``headers`` are added, but may not replace the
        signature, id or content type.
        """
        check.http_url("url", url)
        check.identifier("event_id", event_id)
        body = _encode(payload)
        extra = check.string_map("headers", headers if headers is not None else {})
        reserved = {self._header.lower(), self._id_header.lower(), "content-type"}
        for name, value in extra.items():
            check.header_name("headers", name)
            check.header_text(f"headers[{name!r}]", value)
            if name.lower() in reserved:
                raise ConfigError("headers", name, "is set by the sender")
        parts = urlsplit(url)
        request = HttpRequest(
            method="POST",
            url=url,
            headers={
                **extra,
                "Content-Type": "application/json",
                self._id_header: event_id,
                self._header: self.sign(body),
            },
            content=body,
            # The receiver without its query string, which may carry a token.
            endpoint=f"{parts.scheme}://{parts.netloc}{parts.path}",
        )
        return await self._service.request(
            request, tenant_id=tenant_id, idempotency_key=event_id, deadline=deadline
        )


def _encode(payload: object) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if not isinstance(payload, Mapping):
        raise ConfigError("payload", type(payload).__name__, "must be a mapping or bytes")
    try:
        return msgspec.json.encode(payload)
    except (TypeError, ValueError, RecursionError, msgspec.EncodeError) as error:
        raise ConfigError("payload", "<not JSON>", str(error)) from None
