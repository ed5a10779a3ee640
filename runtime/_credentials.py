"""Credentials per (service, tenant): the `Credentials` value and the `CredentialStore` seam.

A `Credentials` holds secrets (``data`` and ``refresh_token``) next to plain
metadata. Its repr shows the names of the secrets, never their values, so a
credential that ends up in a log line, a traceback or a failed assertion does
not leak. Stores hand out metadata alone as `CredentialInfo` for listing.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec

from . import _validate as check
from ._errors import ConfigError

__all__ = ["AuthMethod", "CredentialInfo", "CredentialStore", "Credentials"]

_HIDDEN = "***"


class AuthMethod(enum.StrEnum):
    API_KEY = "api_key"
    BEARER_TOKEN = "bearer_token"
    BASIC_AUTH = "basic_auth"
    OAUTH2 = "oauth2"
    HMAC = "hmac"


class Credentials(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to authenticate to one service for one tenant.

    ``data`` holds the secret values by name (``api_key``, ``access_token``,
    ``username``/``password``, ...); ``refresh_token`` lets an OAuth2 token be
    renewed. ``expires_at`` is a Unix time, or None for credentials that do not
    expire. Inactive credentials are kept but never used.
    """

    auth_method: AuthMethod
    data: Mapping[str, str] = msgspec.field(default_factory=dict)
    expires_at: float | None = None
    refresh_token: str | None = None
    is_active: bool = True

    def __post_init__(self) -> None:
        check.one_of("auth_method", self.auth_method, [method.value for method in AuthMethod])
        if not isinstance(self.data, Mapping):
            raise ConfigError("data", type(self.data).__name__, "must be a mapping of str to str")
        for name, value in self.data.items():
            if not isinstance(name, str) or not name:
                raise ConfigError("data", name, "keys must be non-empty strings")
            if not isinstance(value, str):
                # The value may be a secret of the wrong type: name its type only.
                raise ConfigError(
                    f"data[{name!r}]", _HIDDEN, f"must be a str, not {type(value).__name__}"
                )
        if self.expires_at is not None:
            check.number("expires_at", self.expires_at)
        if self.refresh_token is not None and (
            not isinstance(self.refresh_token, str) or not self.refresh_token
        ):
            raise ConfigError("refresh_token", _HIDDEN, "must be a non-empty str or None")
        if not isinstance(self.is_active, bool):
            raise ConfigError("is_active", self.is_active, "must be a bool")

    def is_expired(self, now: float) -> bool:
        """True from ``expires_at`` on; never for credentials without an expiry."""
        return self.expires_at is not None and now >= self.expires_at

    def expires_within(self, margin: float, now: float) -> bool:
        """True once ``now`` is ``margin`` seconds or less before ``expires_at``."""
        return self.expires_at is not None and self.expires_at - margin <= now

    def __repr__(self) -> str:
        data = ", ".join(f"{name!r}: '{_HIDDEN}'" for name in self.data)
        refresh = "None" if self.refresh_token is None else f"'{_HIDDEN}'"
        return (
            f"Credentials(auth_method={str(self.auth_method)!r}, data={{{data}}}, "
            f"expires_at={self.expires_at!r}, refresh_token={refresh}, "
            f"is_active={self.is_active!r})"
        )

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # msgspec's default would hand rich (pretty tracebacks, `rich.print`) the secrets.
        return [
            ("auth_method", str(self.auth_method)),
            ("data", dict.fromkeys(self.data, _HIDDEN)),
            ("expires_at", self.expires_at),
            ("refresh_token", None if self.refresh_token is None else _HIDDEN),
            ("is_active", self.is_active),
        ]


class CredentialInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a store lists about stored credentials: metadata, no secret."""

    service: str
    tenant_id: str | None
    auth_method: AuthMethod
    expires_at: float | None
    is_active: bool


class CredentialStore(Protocol):
    """Where credentials live, one entry per (service, tenant_id).

    ``tenant_id=None`` is the default tenant of a single-tenant application.
    Every read is keyed by the tenant, so no call returns another tenant's
    secrets; `list` returns metadata only.
    """

    async def get(self, service: str, tenant_id: str | None) -> Credentials | None:
        """The stored credentials (active or not), or None."""
        ...

    async def put(self, service: str, tenant_id: str | None, credentials: Credentials) -> None:
        """Store or replace the credentials of (service, tenant_id)."""
        ...

    async def delete(self, service: str, tenant_id: str | None) -> bool:
        """Remove them; True if there were any."""
        ...

    async def list(self, tenant_id: str | None = None) -> builtins.list[CredentialInfo]:
        """Metadata of one tenant's credentials, or of every tenant's when ``tenant_id`` is None."""
        ...

    async def rotate_key(self, new_key: str | bytes) -> int:
        """Re-encrypt every stored secret under ``new_key``; the number re-encrypted."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


def check_key(service: Any, tenant_id: Any) -> None:
    """Raise `ConfigError` unless ``service`` is a non-empty str and ``tenant_id`` one or None."""
    if not isinstance(service, str) or not service:
        raise ConfigError("service", service, "must be a non-empty str")
    check_tenant(tenant_id)


def check_tenant(tenant_id: Any) -> None:
    if tenant_id is not None and (not isinstance(tenant_id, str) or not tenant_id):
        raise ConfigError("tenant_id", tenant_id, "must be a non-empty str or None")


def check_credentials(credentials: Any) -> Credentials:
    if not isinstance(credentials, Credentials):
        raise ConfigError("credentials", type(credentials).__name__, "must be a Credentials")
    return credentials
