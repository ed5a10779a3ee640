"""`HttpxTransport`: the runtime's `Transport` over one `httpx.AsyncClient`.

It converts our `HttpRequest` to httpx's at the edge and the answer back to an
`HttpResponse`; status codes are judged by the runtime, not here. What it adds:

- credentials attached to each attempt by an `Authenticator`, and on a 401 to
  OAuth2 credentials one refresh and one resend, inside the same attempt;
- httpx's errors sorted by whether the provider may have seen the request:
  `TransportFailure(sent=False)` when it certainly did not (connection refused,
  DNS, connect timeout, no pooled connection), so even a POST may be retried,
  and ``sent=True`` when it may have (read/write timeout, reset, a response cut
  short), which only an idempotent request may survive;
- a cap on the response body (`ResponseTooLarge`), read as a stream so a huge
  body is never held; an undecodable body is `MalformedResponse`;
- error bodies (status >= 400) capped and scrubbed of the credentials just
  sent and of anything that looks like one, since they end up in `VendorError`
  and in logs.

One client per instance: the runtime calls `factory`'s result again on each
restart, so a crash replaces the client and its connection pool.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import anyio
import httpx

from . import _validate as check
from ._auth import Authenticator
from ._credentials import Credentials
from ._errors import ConfigError, MalformedResponse, ResponseTooLarge
from ._http import HttpRequest, HttpResponse, TransportFailure
from ._redaction import redact_text

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "ERROR_BODY_LIMIT", "HttpxTransport"]

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
ERROR_BODY_LIMIT = 8192  # bytes of an error body kept, after redaction

# httpx raised these before the request left: retrying cannot repeat it.
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,  # refused, unreachable, DNS, TLS handshake
    httpx.ConnectTimeout,
    httpx.PoolTimeout,  # no connection came free
    httpx.ProxyError,  # the proxy refused the tunnel: the origin saw nothing
)
# Our request was not one httpx can send: the caller's mistake, not the provider's.
_UNSENDABLE: tuple[type[Exception], ...] = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.InvalidURL,
)


class HttpxTransport:
    """Sends `HttpRequest`s with one `httpx.AsyncClient`; see the module docstring.

    ``name`` (the service's) is named in errors. ``max_connections`` should be
    the service's bulkhead (``max_concurrency``): a call the bulkhead admitted
    never waits for a connection. ``timeout`` bounds each phase (connect, read,
    write, pool wait) and ``connect_timeout`` the connect phase alone; the
    runtime's per-attempt timeout bounds the whole attempt, so a connect
    timeout shorter than it is what turns a dead host into a safe-to-retry
    "not sent". ``ssl_context`` is shared by every client given it: building
    one (loading the CA bundle) takes tens of milliseconds, which a restart
    should not spend on the event loop. ``http_transport`` replaces httpx's
    network transport (tests).
    """

    __slots__ = ("_auth", "_client", "_max_response_bytes", "name")

    def __init__(
        self,
        *,
        name: str | None = None,
        base_url: str = "",
        max_connections: int = 100,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        auth: Authenticator | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        _check(max_connections, timeout, connect_timeout, auth, max_response_bytes)
        self.name = name
        self._auth = auth
        self._max_response_bytes = max_response_bytes
        try:
            self._client = httpx.AsyncClient(
                base_url=base_url,
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
                timeout=httpx.Timeout(
                    timeout, connect=connect_timeout if connect_timeout is not None else timeout
                ),
                verify=ssl_context if ssl_context is not None else True,
                transport=http_transport,
            )
        except (TypeError, httpx.InvalidURL) as error:
            shown = redact_text(base_url) if isinstance(base_url, str) else base_url
            raise ConfigError("base_url", shown, str(error)) from None

    @classmethod
    def factory(
        cls,
        *,
        name: str | None = None,
        base_url: str = "",
        max_connections: int = 100,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        auth: Authenticator | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> Callable[[], HttpxTransport]:
        """A factory for `Runtime.register(..., transport=)`: a fresh client per call.

        The arguments are checked now, so a bad one fails at registration, not
        at the first call; the SSL context (httpx's default, unless given) is
        built now too, once for every client the factory makes.
        """
        _check(max_connections, timeout, connect_timeout, auth, max_response_bytes)
        if ssl_context is None:
            ssl_context = httpx.create_ssl_context()

        def make() -> HttpxTransport:
            return cls(
                name=name,
                base_url=base_url,
                max_connections=max_connections,
                timeout=timeout,
                connect_timeout=connect_timeout,
                auth=auth,
                max_response_bytes=max_response_bytes,
                ssl_context=ssl_context,
                http_transport=http_transport,
            )

        return make

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, request: HttpRequest, tenant_id: str | None = None) -> HttpResponse:
        auth = self._auth
        if auth is None:
            return await self._send(request, None, None)
        credentials = await auth.credentials(tenant_id)
        response = await self._send(request, auth, credentials)
        if response.status == 401:
            fresh = await auth.after_unauthorized(tenant_id, credentials)
            if fresh is not None:
                response = await self._send(request, auth, fresh)
        return response

    async def _send(
        self, request: HttpRequest, auth: Authenticator | None, credentials: Credentials | None
    ) -> HttpResponse:
        secrets: tuple[str, ...] = ()
        status = 0
        try:
            outgoing = self._client.build_request(
                request.method, request.url, headers=request.headers, content=request.content
            )
            if auth is not None and credentials is not None:
                secrets = auth.apply(outgoing, credentials)
            response = await self._client.send(outgoing, stream=True)
            try:
                status = response.status_code
                content = await self._read(response, status)
            finally:
                await response.aclose()
        except _NOT_SENT as error:
            raise TransportFailure(_describe(error, secrets), sent=False) from None
        except _UNSENDABLE as error:
            raise ConfigError(
                "request",
                f"{request.method} {redact_text(request.url)}",
                f"httpx cannot send it: {_describe(error, secrets)}",
            ) from None
        except httpx.TransportError as error:
            # Read/write timeouts, resets, a body cut short: the provider may have it.
            raise TransportFailure(_describe(error, secrets), sent=True) from None
        except httpx.DecodingError as error:
            raise MalformedResponse(self.name, status, _describe(error, secrets)) from None
        headers = dict(response.headers.items())
        if status >= 400:
            text = content[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace")
            content = redact_text(text, secrets).encode()
        return HttpResponse(status=status, headers=headers, content=content)

    async def _read(self, response: httpx.Response, status: int) -> bytes:
        """The body, decoded (gzip, ...), or `ResponseTooLarge` past the cap."""
        limit = self._max_response_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(self.name, status, limit)
        chunks: list[bytes] = []
        size = 0
        # Past the cap, the read is cancelled rather than the loop left: httpx's
        # stream is a stack of async generators, and only an exception raised at
        # its innermost read closes every one of them (an abandoned one is
        # finalised late, with a ResourceWarning on trio).
        with anyio.CancelScope() as scope:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    scope.cancel()
                else:
                    chunks.append(chunk)
        if size > limit:
            raise ResponseTooLarge(self.name, status, limit)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _describe(error: Exception, secrets: tuple[str, ...]) -> str:
    """httpx's error by type and message, with any credential scrubbed from it."""
    text = redact_text(str(error), secrets)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check(
    max_connections: int,
    timeout: float | None,
    connect_timeout: float | None,
    auth: Authenticator | None,
    max_response_bytes: int,
) -> None:
    check.integer("max_connections", max_connections, 1)
    if timeout is not None:
        check.positive("timeout", timeout)
    if connect_timeout is not None:
        check.positive("connect_timeout", connect_timeout)
    if auth is not None and not isinstance(auth, Authenticator):
        raise ConfigError("auth", auth, "must be an Authenticator or None")
    check.integer("max_response_bytes", max_response_bytes, 1)
