"""Credentials on every attempt: `Auth` says where they go, `Authenticator` puts them there.

The method comes from the stored `Credentials` of (service, tenant): an API key
goes in a header or a query parameter, a bearer or OAuth2 token in
``Authorization: Bearer``, a username and password in ``Authorization: Basic``,
and an HMAC secret signs the request (`hmac_signature`). Credentials are read
for each attempt, not once per client, so a rotated key or a refreshed token is
used from the next attempt on, and a request never carries another tenant's
secret. Secret values are returned to the transport only to be scrubbed from
what the provider echoes back; they are never logged or put in an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

import httpx
import msgspec

from ._clock import WallClock, system_wall_clock
from ._credential_manager import CredentialManager
from ._credentials import AuthMethod, Credentials
from ._errors import ConfigError

__all__ = ["Auth", "Authenticator", "check_header", "hmac_signature"]

# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_header(field: str, name: Any, value: Any = "") -> None:
    """Raise `ConfigError` unless ``name`` is a header name and ``value`` a one-line str."""
    if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
        raise ConfigError(field, name, "must be an HTTP header name (letters, digits, -_.!#...)")
    if not isinstance(value, str):
        raise ConfigError(f"{field}[{name!r}]", type(value).__name__, "must be a str")
    if "\r" in value or "\n" in value or "\0" in value:
        # A header value could be a secret: name the header only.
        raise ConfigError(f"{field}[{name!r}]", "***", "must not contain CR, LF or NUL")


def hmac_signature(secret: str, method: str, target: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``METHOD\\ntarget\\ntimestamp\\n`` followed by the body.

    ``target`` is the request's path with its query string, as sent. A
    provider (or a fake one) verifies a request by computing the same.
    """
    message = f"{method.upper()}\n{target}\n{timestamp}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class Auth(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the stored credentials of ``service`` go on a request.

    ``service`` names the credentials in the store (None: the HTTP service's
    own name). An API key goes in ``api_key_header``, or in the query parameter
    ``api_key_query`` when that is set. An HMAC signature goes in
    ``hmac_signature_header``, its Unix timestamp in ``hmac_timestamp_header``
    and the credentials' ``key_id`` (if stored) in ``hmac_key_id_header``.
    """

    service: str | None = None
    api_key_header: str = "X-API-Key"
    api_key_query: str | None = None
    hmac_signature_header: str = "X-Signature"
    hmac_timestamp_header: str = "X-Timestamp"
    hmac_key_id_header: str = "X-Key-Id"

    def __post_init__(self) -> None:
        if self.service is not None and (not isinstance(self.service, str) or not self.service):
            raise ConfigError("service", self.service, "must be a non-empty str or None")
        check_header("api_key_header", self.api_key_header)
        if self.api_key_query is not None and (
            not isinstance(self.api_key_query, str) or not self.api_key_query
        ):
            raise ConfigError("api_key_query", self.api_key_query, "must be a non-empty str")
        check_header("hmac_signature_header", self.hmac_signature_header)
        check_header("hmac_timestamp_header", self.hmac_timestamp_header)
        check_header("hmac_key_id_header", self.hmac_key_id_header)


class Authenticator:
    """Reads a tenant's credentials from a `CredentialManager` and attaches them to a request.

    ``wall_clock`` stamps HMAC signatures (a Unix time); inject the runtime's.
    """

    __slots__ = ("auth", "manager", "service", "wall_clock")

    def __init__(
        self,
        auth: Auth,
        credentials: CredentialManager,
        service: str,
        wall_clock: WallClock = system_wall_clock,
    ) -> None:
        if not isinstance(auth, Auth):
            raise ConfigError("auth", auth, "must be an Auth")
        if not isinstance(credentials, CredentialManager):
            raise ConfigError("credentials", credentials, "must be a CredentialManager")
        self.auth = auth
        self.manager = credentials
        self.service = auth.service or service
        self.wall_clock = wall_clock

    async def credentials(self, tenant_id: str | None) -> Credentials:
        """The tenant's usable credentials (refreshed first when due)."""
        return await self.manager.get(self.service, tenant_id)

    async def after_unauthorized(
        self, tenant_id: str | None, rejected: Credentials
    ) -> Credentials | None:
        """Fresh credentials after a 401, or None when ``rejected`` cannot be refreshed."""
        if rejected.auth_method != AuthMethod.OAUTH2:
            return None
        return await self.manager.refresh_after_unauthorized(self.service, tenant_id, rejected)

    def apply(self, request: httpx.Request, credentials: Credentials) -> tuple[str, ...]:
        """Put ``credentials`` on ``request``; returns the secret values it carries now."""
        auth = self.auth
        method = credentials.auth_method
        if method == AuthMethod.API_KEY:
            key = self._field(credentials, "api_key")
            if auth.api_key_query is not None:
                request.url = request.url.copy_merge_params({auth.api_key_query: key})
            else:
                request.headers[auth.api_key_header] = key
            return (key,)
        if method in (AuthMethod.BEARER_TOKEN, AuthMethod.OAUTH2):
            names = ("access_token",) if method == AuthMethod.OAUTH2 else ("token", "access_token")
            token = self._field(credentials, *names)
            request.headers["Authorization"] = f"Bearer {token}"
            return (token,)
        if method == AuthMethod.BASIC_AUTH:
            username = self._field(credentials, "username")
            password = self._field(credentials, "password")
            encoded = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            request.headers["Authorization"] = f"Basic {encoded}"
            return (password, encoded)
        secret = self._field(credentials, "secret")
        timestamp = str(int(self.wall_clock()))
        target = request.url.raw_path.decode("ascii")
        signature = hmac_signature(secret, request.method, target, timestamp, request.content)
        request.headers[auth.hmac_timestamp_header] = timestamp
        request.headers[auth.hmac_signature_header] = signature
        key_id = credentials.data.get("key_id")
        if key_id:
            request.headers[auth.hmac_key_id_header] = key_id
        return (secret,)

    def _field(self, credentials: Credentials, *names: str) -> str:
        for name in names:
            value = credentials.data.get(name)
            if value:
                return value
        raise ConfigError(
            f"credentials.data[{names[0]!r}]",
            None,
            f"is missing from the {credentials.auth_method} credentials of '{self.service}'",
        )
