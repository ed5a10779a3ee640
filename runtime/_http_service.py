"""`HttpService`: call any JSON API through the runtime, one `Endpoint` at a time.

``api = HttpService(rt, "billing", base_url="https://api.example.com")`` registers
one runtime service, ``billing``, over an `HttpxTransport`; then
``await api.request(CHARGE, json={...}, tenant_id="t1", idempotency_key=key)``
sends a request through its breaker, limiter, retries and bulkhead.

Endpoints that set their own timeout, retry, rate limit or auth get a runtime
service of their own, ``billing POST /v1/charges``, registered on first use
with the service's policy and those fields replaced. The runtime keeps one
policy per service, so this is what lets an endpoint's timeout differ, and it
gives the endpoint its own limiter, as ``with_rate_limit`` promises (a service
per distinct policy set would make two endpoints that happen to have the same
limit share one bucket). Its breaker and connection pool are its own too. Every
other endpoint shares the service's.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, overload
from urllib.parse import quote, urlencode

import httpx
import msgspec

from ._actor import TransportFactory
from ._auth import Auth, Authenticator, check_header
from ._credential_manager import CredentialManager
from ._endpoint import Endpoint
from ._errors import ConfigError, MalformedResponse
from ._http import HttpRequest
from ._httpx_transport import DEFAULT_MAX_RESPONSE_BYTES, HttpxTransport
from ._idempotency import IdempotencyKey
from ._policy import ServicePolicy
from ._redaction import redact_text
from ._runtime import Runtime
from ._service import Service
from ._shared_state import SharedPolicyState

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_HTTP_TIMEOUT", "ApiResponse", "HttpService"]

T = TypeVar("T")

DEFAULT_HTTP_TIMEOUT = 30.0  # seconds per attempt, unless the policy says otherwise
DEFAULT_CONNECT_TIMEOUT = 5.0
_ROUTES_CACHED = 1024  # endpoints whose headers and service are kept resolved

QueryValue = str | int | float
Params = Mapping[str, QueryValue | Sequence[QueryValue]]


class ApiResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's answer (2xx or 3xx: errors are raised, not returned).

    ``headers`` have lower-case names. `json` decodes the body, optionally into
    a type (``response.json(Charge)``), and raises `MalformedResponse` for a
    body that is not JSON or not of that type.
    """

    status: int
    headers: dict[str, str]
    content: bytes
    service: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    @overload
    def json(self) -> Any: ...
    @overload
    def json(self, type: type[T]) -> T: ...
    def json(self, type: Any = Any) -> Any:
        try:
            return msgspec.json.decode(self.content, type=type)
        except msgspec.ValidationError as error:
            raise MalformedResponse(
                self.service, self.status, f"unexpected JSON: {error}"
            ) from None
        except msgspec.DecodeError as error:
            declared = self.header("content-type") or "no Content-Type"
            reason = f"body is not JSON ({declared}): {error}" if self.content else "empty body"
            raise MalformedResponse(self.service, self.status, reason) from None


class _Route:
    """An endpoint resolved: its service and the headers every call of it sends."""

    __slots__ = ("headers", "name", "service", "template", "url")

    def __init__(self, endpoint: Endpoint, service: Service, headers: dict[str, str]) -> None:
        self.service = service
        self.headers = headers
        self.url = endpoint.url
        self.template = "{" in endpoint.url
        self.name = endpoint.name


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


class HttpService:
    """A JSON API behind the runtime: see the module docstring.

    ``policy`` (or its fields by keyword, as `Runtime.register` takes them) is
    the service's; ``timeout`` defaults to `DEFAULT_HTTP_TIMEOUT` here, since an
    HTTP call with no bound can hang for good. ``headers`` go on every request.
    ``credentials`` (a `CredentialManager`) with ``auth`` (default `Auth()`)
    attach each tenant's stored credentials to each attempt. An idempotency key
    is sent in ``idempotency_header``. Bodies over ``max_response_bytes`` raise
    `ResponseTooLarge`. ``connect_timeout`` bounds connecting alone; by default
    half the attempt's timeout, at most `DEFAULT_CONNECT_TIMEOUT`, so a host
    that never accepts fails as "not sent" (safe to retry, even a POST) before
    the attempt's own timeout would leave it "maybe sent". ``shared_state``
    puts the breaker and rate limit of every service here in shared state
    (see `Runtime.register`).
    """

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        policy: ServicePolicy | None = None,
        *,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        credentials: CredentialManager | None = None,
        auth: Auth | None = None,
        idempotency_header: str = "Idempotency-Key",
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        connect_timeout: float | None = None,
        shared_state: SharedPolicyState | None = None,
        **policy_fields: Any,
    ) -> None:
        if not isinstance(runtime, Runtime):
            raise ConfigError("runtime", runtime, "must be a Runtime")
        if policy is None:
            policy_fields.setdefault("timeout", DEFAULT_HTTP_TIMEOUT)
            try:
                policy = ServicePolicy(**policy_fields)
            except TypeError as error:
                raise ConfigError("policy", sorted(policy_fields), str(error)) from None
        elif policy_fields:
            raise ConfigError(
                "policy", policy, "give a ServicePolicy or its fields by keyword, not both"
            )
        elif not isinstance(policy, ServicePolicy):
            raise ConfigError("policy", policy, "must be a ServicePolicy")
        try:
            httpx.URL(base_url)
        except (TypeError, httpx.InvalidURL) as error:
            shown = redact_text(base_url) if isinstance(base_url, str) else base_url
            raise ConfigError("base_url", shown, str(error)) from None
        if headers is not None and not isinstance(headers, Mapping):
            raise ConfigError("headers", type(headers).__name__, "must be a mapping of str to str")
        for header, value in (headers or {}).items():
            check_header("headers", header, value)
        check_header("idempotency_header", idempotency_header)
        if credentials is not None and not isinstance(credentials, CredentialManager):
            raise ConfigError("credentials", credentials, "must be a CredentialManager")
        if auth is not None and not isinstance(auth, Auth):
            raise ConfigError("auth", auth, "must be an Auth")
        if auth is not None and credentials is None:
            raise ConfigError("auth", auth, "needs credentials: a CredentialManager")
        if credentials is not None and auth is None:
            auth = Auth()
        self.name = name
        self.policy = policy
        self._runtime = runtime
        self._base_url = base_url
        self._headers = dict(headers or {})
        self._credentials = credentials
        self._auth = auth
        self._idempotency_header = idempotency_header
        self._max_response_bytes = max_response_bytes
        self._connect_timeout = connect_timeout
        # One SSL context for every client, restarts included: building one costs
        # tens of milliseconds of blocked event loop.
        self._ssl_context = _shared_ssl_context()
        self._shared_state = shared_state
        self.service = runtime.register(
            name, policy, transport=self._transport(name, policy, auth), shared_state=shared_state
        )
        # Services of endpoints with their own policies, by name, with those policies.
        self._own: dict[str, tuple[Service, tuple[Any, ...]]] = {}
        self._routes: dict[Endpoint, _Route] = {}

    def __repr__(self) -> str:
        return f"<HttpService {self.name!r}>"

    async def request(
        self,
        endpoint: Endpoint,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Params | None = None,
        path_params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        tenant_id: str | None = None,
        idempotency_key: str | IdempotencyKey | None = None,
        deadline: float | None = None,
        idempotent: bool | None = None,
    ) -> ApiResponse:
        """Send one request to ``endpoint`` under its service's policies.

        ``json`` (unless None) is encoded as the body, with ``Content-Type:
        application/json``; or ``content`` is sent as it is. ``path_params`` fill the URL template's
        ``{name}`` parts (URL-quoted), ``params`` make the query string.
        ``headers`` add to or replace the service's and the endpoint's. An
        ``idempotency_key`` is sent in the idempotency header, makes a POST safe
        to retry and deduplicates it. ``idempotent=True`` marks a request safe
        to repeat without a key (a token request, a validation POST); by default
        the method says. ``deadline`` bounds the whole call.
        2xx and 3xx come back; errors are raised (`VendorError` for the caller's
        own 4xx, `ConnectionFailed` once retries are spent, ...).
        """
        route = self._routes.get(endpoint)
        if route is None:
            route = self._resolve(endpoint)
        url = _fill(route, path_params) if route.template or path_params else route.url
        if params:
            try:
                query = urlencode(params, doseq=True)
            except TypeError as error:
                raise ConfigError("params", type(params).__name__, str(error)) from None
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        sent = dict(route.headers)
        if json is not None:
            if content is not None:
                raise ConfigError(
                    "content", type(content).__name__, "give json or content, not both"
                )
            try:
                content = msgspec.json.encode(json)
            except (TypeError, msgspec.EncodeError) as error:
                # Name the type only: the value may hold secrets.
                raise ConfigError("json", type(json).__name__, str(error)) from None
            if not any(name.lower() == "content-type" for name in sent):
                sent["Content-Type"] = "application/json"
        elif content is not None and not isinstance(content, bytes):
            raise ConfigError("content", type(content).__name__, "must be bytes")
        if headers:
            _merge(sent, headers, check=True)
        if idempotency_key is not None:
            if isinstance(idempotency_key, IdempotencyKey):
                key = idempotency_key.value
            elif isinstance(idempotency_key, str) and idempotency_key:
                key = idempotency_key
            else:
                raise ConfigError("idempotency_key", idempotency_key, "must be a non-empty str")
            _merge(sent, {self._idempotency_header: key}, check=True)
        request = HttpRequest(
            method=endpoint.method, url=url, headers=sent, content=content, endpoint=route.name
        )
        response = await route.service.request(
            request,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            deadline=deadline,
            idempotent=idempotent,
        )
        return ApiResponse(
            status=response.status,
            headers=response.headers,
            content=response.content,
            service=route.service.name,
        )

    def service_for(self, endpoint: Endpoint) -> Service:
        """The runtime service ``endpoint``'s calls go through (registered if need be)."""
        route = self._routes.get(endpoint)
        return (route or self._resolve(endpoint)).service

    # -- internals ------------------------------------------------------------

    def _resolve(self, endpoint: Endpoint) -> _Route:
        if not isinstance(endpoint, Endpoint):
            raise ConfigError("endpoint", endpoint, "must be an Endpoint")
        service = self.service if not endpoint.has_policies else self._own_service(endpoint)
        headers = dict(self._headers)
        _merge(headers, dict(endpoint.headers), check=False)
        route = _Route(endpoint, service, headers)
        if len(self._routes) >= _ROUTES_CACHED:
            # Endpoints are meant to be constants; a caller making one per call
            # costs a resolution each time, not unbounded memory.
            self._routes.clear()
        self._routes[endpoint] = route
        return route

    def _own_service(self, endpoint: Endpoint) -> Service:
        name = f"{self.name} {endpoint.name}"
        own = (endpoint.timeout, endpoint.retry, endpoint.rate_limit, endpoint.auth)
        found = self._own.get(name)
        if found is not None:
            service, policies = found
            if policies != own:
                raise ConfigError(
                    "endpoint",
                    endpoint.name,
                    "is already in use with other policies: one endpoint, one set of policies",
                )
            return service
        auth = endpoint.auth or self._auth
        if endpoint.auth is not None and self._credentials is None:
            raise ConfigError("auth", endpoint.auth, "needs credentials: a CredentialManager")
        base = self.policy
        policy = msgspec.structs.replace(
            base,
            timeout=endpoint.timeout if endpoint.timeout is not None else base.timeout,
            retry=endpoint.retry if endpoint.retry is not None else base.retry,
            rate_limit=endpoint.rate_limit if endpoint.rate_limit is not None else base.rate_limit,
        )
        service = self._runtime.register(
            name,
            policy,
            transport=self._transport(name, policy, auth),
            shared_state=self._shared_state,
        )
        self._own[name] = (service, own)
        return service

    def _transport(self, name: str, policy: ServicePolicy, auth: Auth | None) -> TransportFactory:
        connect_timeout = self._connect_timeout
        if connect_timeout is None and policy.timeout is not None:
            connect_timeout = min(DEFAULT_CONNECT_TIMEOUT, policy.timeout / 2)
        authenticator = None
        if auth is not None:
            assert self._credentials is not None  # checked with auth
            authenticator = Authenticator(
                auth, self._credentials, self.name, self._runtime.wall_clock
            )
        return HttpxTransport.factory(
            name=name,
            base_url=self._base_url,
            max_connections=policy.max_concurrency,
            timeout=policy.timeout,
            connect_timeout=connect_timeout,
            auth=authenticator,
            max_response_bytes=self._max_response_bytes,
            ssl_context=self._ssl_context,
        )


def _merge(headers: dict[str, str], extra: Mapping[str, str], *, check: bool) -> None:
    """Add ``extra`` to ``headers``, replacing a header of the same name in any case."""
    if not isinstance(extra, Mapping):
        raise ConfigError("headers", type(extra).__name__, "must be a mapping of str to str")
    for name, value in extra.items():
        if check:
            check_header("headers", name, value)
        lowered = name.lower()
        for existing in [key for key in headers if key.lower() == lowered and key != name]:
            del headers[existing]
        headers[name] = value


def _fill(route: _Route, path_params: Mapping[str, str | int] | None) -> str:
    """The route's URL template with ``path_params`` quoted into its ``{name}`` parts."""
    if not route.template:
        raise ConfigError("path_params", sorted(path_params or {}), "the URL has no {name} parts")
    values = {name: quote(str(value), safe="") for name, value in (path_params or {}).items()}
    try:
        return route.url.format_map(values)
    except KeyError as error:
        raise ConfigError("path_params", sorted(values), f"{error} is missing") from None
    except (ValueError, IndexError) as error:
        raise ConfigError("url", route.url, f"is not a valid template: {error}") from None
