"""`SqliteCredentialStore`: credentials in one SQLite file, secrets encrypted.

Per (service, tenant) one row: the secret part (``data`` and ``refresh_token``)
is one AES-GCM blob bound to that (service, tenant); the metadata `list`
returns (auth method, expiry, active flag) stays plain. The key comes from
``key=`` or `CONNECTOR_SECRET_KEY`. Opening checks it against the key ids of
the stored rows, so a missing or wrong key fails at startup with a clear
`ConfigError`, not at the first call with a decryption traceback.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import msgspec

from ._credential_crypto import SECRET_KEY_ENV, CredentialCipher, Sealed
from ._credentials import (
    AuthMethod,
    CredentialInfo,
    Credentials,
    check_credentials,
    check_key,
    check_tenant,
)
from ._errors import ConfigError
from ._sqlite import SqliteDatabase, in_transaction

__all__ = ["SqliteCredentialStore"]

_T = TypeVar("_T")

# tenant_id is NOT NULL and '' stands for the default tenant (None): SQLite
# lets NULLs repeat in a primary key, which would allow two default rows.
_SCHEMA = """
PRAGMA secure_delete = ON;
CREATE TABLE IF NOT EXISTS credentials (
    service TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    auth_method TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    nonce BLOB NOT NULL,
    key_id TEXT NOT NULL,
    expires_at REAL,
    is_active INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (service, tenant_id)
);
CREATE INDEX IF NOT EXISTS credentials_tenant ON credentials (tenant_id);
"""

_UPSERT = """
INSERT INTO credentials (service, tenant_id, auth_method, ciphertext, nonce, key_id,
                         expires_at, is_active, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (service, tenant_id) DO UPDATE SET
    auth_method = excluded.auth_method, ciphertext = excluded.ciphertext,
    nonce = excluded.nonce, key_id = excluded.key_id, expires_at = excluded.expires_at,
    is_active = excluded.is_active, updated_at = excluded.updated_at
"""


class _Secrets(msgspec.Struct, frozen=True):
    data: dict[str, str]
    refresh_token: str | None


class SqliteCredentialStore:
    """A `CredentialStore` in a SQLite file; use ``async with`` or `open`/`close`.

    ``clock`` gives the Unix time stamped into ``created_at``/``updated_at``.
    Without a key (neither ``key=`` nor `CONNECTOR_SECRET_KEY`), an empty store
    opens and lists, but storing raises `ConfigError`. Freed pages are zeroed
    (``secure_delete``), so ciphertext under a rotated-away key does not linger.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float],
        key: str | bytes | None = None,
    ) -> None:
        self._path = os.fspath(path)
        self._clock = clock
        self._cipher = None if key is None else CredentialCipher(key)
        self._db = SqliteDatabase(self._path, _SCHEMA, owner="SqliteCredentialStore")
        self._opened = False

    async def open(self) -> Self:
        """Connect, create the table, and check the key against the stored rows."""
        if self._opened:
            return self
        if self._cipher is None:
            self._cipher = CredentialCipher.from_env()

        def key_ids(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT key_id, COUNT(*) FROM credentials GROUP BY key_id")
            return {str(key_id): int(count) for key_id, count in rows}

        try:
            self._check_key_ids(await self._db.run(key_ids))
        except BaseException:
            await self._db.close()
            raise
        self._opened = True
        return self

    async def close(self) -> None:
        self._opened = False
        await self._db.close()
        self._db = SqliteDatabase(self._path, _SCHEMA, owner="SqliteCredentialStore")

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if not self._opened:
            raise anyio.ClosedResourceError(
                f"the credential store {self._path!r} is not open: use 'async with' or open()"
            )
        return await self._db.run(work)

    async def get(self, service: str, tenant_id: str | None) -> Credentials | None:
        check_key(service, tenant_id)

        def read(db: sqlite3.Connection) -> Credentials | None:
            row = db.execute(
                "SELECT auth_method, ciphertext, nonce, key_id, expires_at, is_active "
                "FROM credentials WHERE service = ? AND tenant_id = ?",
                (service, _column(tenant_id)),
            ).fetchone()
            if row is None:
                return None
            auth_method, ciphertext, nonce, key_id, expires_at, is_active = row
            plaintext = self._require_cipher(1).decrypt(
                Sealed(ciphertext, nonce, key_id), service, tenant_id
            )
            secrets = msgspec.json.decode(plaintext, type=_Secrets)
            return Credentials(
                auth_method=AuthMethod(auth_method),
                data=secrets.data,
                expires_at=expires_at,
                refresh_token=secrets.refresh_token,
                is_active=bool(is_active),
            )

        return await self._run(read)

    async def put(self, service: str, tenant_id: str | None, credentials: Credentials) -> None:
        check_key(service, tenant_id)
        check_credentials(credentials)
        cipher = self._cipher
        if cipher is None:
            raise ConfigError(
                SECRET_KEY_ENV,
                None,
                "is not set, and storing credentials needs a key to encrypt them "
                "(make one with generate_key())",
            )
        secrets = _Secrets(dict(credentials.data), credentials.refresh_token)
        sealed = cipher.encrypt(msgspec.json.encode(secrets), service, tenant_id)
        now = self._clock()
        row = (
            service,
            _column(tenant_id),
            str(credentials.auth_method),
            sealed.ciphertext,
            sealed.nonce,
            sealed.key_id,
            credentials.expires_at,
            int(credentials.is_active),
            now,
            now,
        )
        await self._run(lambda db: db.execute(_UPSERT, row))

    async def delete(self, service: str, tenant_id: str | None) -> bool:
        check_key(service, tenant_id)

        def remove(db: sqlite3.Connection) -> int:
            return db.execute(
                "DELETE FROM credentials WHERE service = ? AND tenant_id = ?",
                (service, _column(tenant_id)),
            ).rowcount

        return await self._run(remove) > 0

    async def list(self, tenant_id: str | None = None) -> builtins.list[CredentialInfo]:
        check_tenant(tenant_id)
        query = "SELECT service, tenant_id, auth_method, expires_at, is_active FROM credentials"
        parameters: tuple[Any, ...] = ()
        if tenant_id is not None:
            query += " WHERE tenant_id = ?"
            parameters = (tenant_id,)
        rows = await self._run(
            lambda db: db.execute(query + " ORDER BY tenant_id, service", parameters).fetchall()
        )
        return [
            CredentialInfo(
                service=service,
                tenant_id=tenant or None,
                auth_method=AuthMethod(auth_method),
                expires_at=expires_at,
                is_active=bool(is_active),
            )
            for service, tenant, auth_method, expires_at, is_active in rows
        ]

    async def rotate_key(self, new_key: str | bytes) -> int:
        """Re-encrypt every row under ``new_key`` in one transaction; then use it.

        If any row fails to decrypt nothing changes. Afterwards the old key no
        longer opens the store: set `CONNECTOR_SECRET_KEY` to the new one.
        """
        new = CredentialCipher(new_key, source="new_key")
        now = self._clock()

        def reencrypt(db: sqlite3.Connection) -> int:
            rows = db.execute(
                "SELECT service, tenant_id, ciphertext, nonce, key_id FROM credentials"
            ).fetchall()
            updates = []
            for service, tenant, ciphertext, nonce, key_id in rows:
                tenant_id = tenant or None
                plaintext = self._require_cipher(len(rows)).decrypt(
                    Sealed(ciphertext, nonce, key_id), service, tenant_id
                )
                sealed = new.encrypt(plaintext, service, tenant_id)
                updates.append(
                    (sealed.ciphertext, sealed.nonce, sealed.key_id, now, service, tenant)
                )
            db.executemany(
                "UPDATE credentials SET ciphertext = ?, nonce = ?, key_id = ?, "
                "updated_at = ? WHERE service = ? AND tenant_id = ?",
                updates,
            )
            return len(rows)

        count = await self._run(lambda db: in_transaction(db, lambda: reencrypt(db)))
        self._cipher = new
        return count

    def _require_cipher(self, stored: int) -> CredentialCipher:
        if self._cipher is None:
            raise ConfigError(
                SECRET_KEY_ENV,
                None,
                f"is not set, but the credential store {self._path!r} holds {stored} "
                "encrypted credentials: set it to the key they were encrypted with",
            )
        return self._cipher

    def _check_key_ids(self, counts: dict[str, int]) -> None:
        if not counts:
            return
        cipher = self._require_cipher(sum(counts.values()))
        foreign = {key_id: count for key_id, count in counts.items() if key_id != cipher.key_id}
        if foreign:
            raise ConfigError(
                SECRET_KEY_ENV,
                "***",
                f"does not decrypt the stored credentials in {self._path!r}: "
                f"{sum(foreign.values())} were encrypted with key id "
                f"{', '.join(sorted(foreign))}, this key's id is {cipher.key_id}",
            )


def _column(tenant_id: str | None) -> str:
    return "" if tenant_id is None else tenant_id
