"""`Endpoint`: one logical endpoint of an HTTP API, with the policies its calls get.

``Endpoint.create("/v1/charges/{id}/capture").with_timeout(5).with_rate_limit(
RateLimit.per_second(100))``: immutable, so endpoints are built once, as module
constants, and shared; each ``with_*`` returns a new endpoint. The URL is a
template whose ``{name}`` parts are filled per call (`HttpService.request`'s
``path_params``), so one endpoint covers every id it is called with and its
policies apply to all those calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Self

import httpx
import msgspec

from . import _validate as check
from ._auth import Auth, check_header
from ._errors import ConfigError
from ._ratelimit import RateLimit
from ._redaction import redact_text
from ._retry import Retry

__all__ = ["Endpoint"]

_METHOD = re.compile(r"[A-Z]+")


class Endpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An HTTP method and URL (absolute, or relative to the service's base URL).

    ``headers`` are sent with every call. ``timeout`` (per attempt), ``retry``,
    ``rate_limit`` and ``auth``, when set, replace the service's own for this
    endpoint; None keeps the service's.
    """

    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    retry: Retry | None = None
    rate_limit: RateLimit | None = None
    auth: Auth | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url or self.url != self.url.strip():
            raise ConfigError("url", self.url, "must be a non-empty URL without surrounding space")
        # A URL may carry a token (user info, a query parameter): errors show it redacted.
        try:
            parsed = httpx.URL(self.url)
        except httpx.InvalidURL as error:
            raise ConfigError("url", redact_text(self.url), str(error)) from None
        if parsed.is_absolute_url and parsed.scheme not in ("http", "https"):
            raise ConfigError("url", redact_text(self.url), "must be an http(s) URL or a path")
        if not isinstance(self.method, str) or _METHOD.fullmatch(self.method) is None:
            raise ConfigError("method", self.method, "must be an upper-case HTTP method")
        if not isinstance(self.headers, tuple):
            raise ConfigError("headers", self.headers, "must be a tuple of (name, value) pairs")
        for pair in self.headers:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ConfigError("headers", pair, "must be (name, value) pairs")
            check_header("headers", *pair)
        if self.timeout is not None:
            check.positive("timeout", self.timeout)
        _check_type("retry", self.retry, Retry)
        _check_type("rate_limit", self.rate_limit, RateLimit)
        _check_type("auth", self.auth, Auth)

    @classmethod
    def create(cls, url: str, method: str = "POST") -> Endpoint:
        """An endpoint with no headers and the service's policies."""
        if not isinstance(method, str):
            raise ConfigError("method", method, "must be an HTTP method")
        return cls(url=url, method=method.upper())

    @property
    def name(self) -> str:
        """``METHOD url``: how logs, events and errors name this endpoint."""
        return f"{self.method} {self.url}"

    @property
    def has_policies(self) -> bool:
        """True when the endpoint replaces any of the service's policies or its auth."""
        return (
            self.timeout is not None
            or self.retry is not None
            or self.rate_limit is not None
            or self.auth is not None
        )

    def with_headers(self, headers: Mapping[str, str]) -> Self:
        """These headers added; one already set under the same name (any case) is replaced."""
        if not isinstance(headers, Mapping):
            raise ConfigError("headers", type(headers).__name__, "must be a mapping of str to str")
        for name, value in headers.items():
            check_header("headers", name, value)
        merged = {name.lower(): (name, value) for name, value in self.headers}
        for name, value in headers.items():
            merged[name.lower()] = (name, value)
        return msgspec.structs.replace(self, headers=tuple(merged.values()))

    def with_timeout(self, seconds: float) -> Self:
        """Each attempt bounded to ``seconds``."""
        return msgspec.structs.replace(self, timeout=seconds)

    def with_retry(self, retry: Retry) -> Self:
        return msgspec.structs.replace(self, retry=retry)

    def with_rate_limit(self, limit: RateLimit) -> Self:
        """Calls of this endpoint limited on their own, apart from the service's other calls."""
        return msgspec.structs.replace(self, rate_limit=limit)

    def with_auth(self, auth: Auth) -> Self:
        return msgspec.structs.replace(self, auth=auth)


def _check_type(field: str, value: Any, kind: type) -> None:
    if value is not None and not isinstance(value, kind):
        raise ConfigError(field, value, f"must be a {kind.__name__} or None")
