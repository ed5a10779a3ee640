"""`MemoryCredentialStore`: credentials in a dict, for tests and short-lived processes.

Nothing is at rest, so nothing is encrypted. Entries are copied in and out, so
a caller who mutates the ``data`` it passed or received changes nothing stored.
"""

from __future__ import annotations

import builtins
from types import TracebackType
from typing import Self

import msgspec

from ._credential_crypto import CredentialCipher
from ._credentials import CredentialInfo, Credentials, check_credentials, check_key, check_tenant

__all__ = ["MemoryCredentialStore"]


class MemoryCredentialStore:
    """A `CredentialStore` in process memory."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str | None], Credentials] = {}

    async def get(self, service: str, tenant_id: str | None) -> Credentials | None:
        check_key(service, tenant_id)
        stored = self._entries.get((service, tenant_id))
        return None if stored is None else _copy(stored)

    async def put(self, service: str, tenant_id: str | None, credentials: Credentials) -> None:
        check_key(service, tenant_id)
        self._entries[service, tenant_id] = _copy(check_credentials(credentials))

    async def delete(self, service: str, tenant_id: str | None) -> bool:
        check_key(service, tenant_id)
        return self._entries.pop((service, tenant_id), None) is not None

    async def list(self, tenant_id: str | None = None) -> builtins.list[CredentialInfo]:
        check_tenant(tenant_id)
        return [
            CredentialInfo(
                service=service,
                tenant_id=tenant,
                auth_method=stored.auth_method,
                expires_at=stored.expires_at,
                is_active=stored.is_active,
            )
            for (service, tenant), stored in sorted(self._entries.items(), key=_order)
            if tenant_id is None or tenant == tenant_id
        ]

    async def rotate_key(self, new_key: str | bytes) -> int:
        """Checks ``new_key`` and re-encrypts nothing: memory is not at rest."""
        CredentialCipher(new_key, source="new_key")
        return 0

    async def close(self) -> None:
        self._entries.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _copy(credentials: Credentials) -> Credentials:
    return msgspec.structs.replace(credentials, data=dict(credentials.data))


def _order(item: tuple[tuple[str, str | None], Credentials]) -> tuple[str, str]:
    (service, tenant_id), _ = item
    return (tenant_id or "", service)
