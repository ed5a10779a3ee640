"""`PostgresOutbox`: the outbox in PostgreSQL, shared by every runtime that uses it.

Claims lock their rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` and lease
them in the same statement, so runtimes claiming at once each get other
entries, and one that claims later sees the lease and skips the row until
it ends. Needs the ``postgres`` extra (asyncpg), imported on open, so this
module imports without it; asyncpg runs on asyncio only (under trio, opening
is a `ConfigError` that says so). The ``outbox`` table lives in ``schema``.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from msgspec.structs import replace

from . import _validate as check
from ._credential_crypto import CredentialCipher
from ._errors import ConfigError, ConnectorError
from ._outbox import COLUMNS, EXPIRED_UNTRIED, OutboxEntry, check_page, entry_from_row
from ._postgres import open_pool

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresOutbox"]

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_INSERTED = COLUMNS[:1] + COLUMNS[2:]  # all but seq, which the table assigns


def _changed(status: str) -> int:
    """The row count in a command status such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresOutbox:
    """An `Outbox` in the PostgreSQL database at ``dsn``, over an asyncpg pool.

    Use it as an async context manager, or ``await open()`` and ``await
    close()``. ``schema`` must exist. Payloads are sealed with ``key`` (or
    `CONNECTOR_SECRET_KEY` when it is set), and stored plain without either.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        key: str | bytes | None = None,
        min_size: int = 1,
        max_size: int = 4,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise ConfigError("dsn", "<hidden>", "must be a non-empty string")
        if not isinstance(schema, str) or _IDENTIFIER.fullmatch(schema) is None:
            raise ConfigError("schema", schema, "must be a lower-case SQL identifier")
        check.integer("min_size", min_size, 0)
        check.integer("max_size", max_size, max(1, min_size))
        # The DSN may hold a password: it is kept for connecting, never shown.
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._schema = schema
        self._table = f'"{schema}".outbox'
        self.cipher = CredentialCipher(key) if key is not None else CredentialCipher.from_env()
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._closed = False
        self._opening = anyio.Lock()

    def __repr__(self) -> str:
        return f"PostgresOutbox(schema={self._schema!r})"

    async def open(self) -> None:
        """Create the connection pool, and the table and its indexes if missing."""
        await self._connected()

    async def _connected(self) -> asyncpg.Pool[asyncpg.Record]:
        async with self._opening:
            if self._closed:
                raise ConnectorError("PostgresOutbox is closed")
            if self._pool is None:
                self._pool = await self._connect()
            return self._pool

    async def _connect(self) -> asyncpg.Pool[asyncpg.Record]:
        return await open_pool(
            "PostgresOutbox",
            self._dsn,
            self._min_size,
            self._max_size,
            "connector.outbox",
            self._schema_sql(),
        )

    def _schema_sql(self) -> str:
        table = self._table
        return f"""
CREATE TABLE IF NOT EXISTS {table} (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    service text NOT NULL,
    tenant_id text,
    order_key text,
    idempotency_key text NOT NULL,
    target text NOT NULL,
    payload bytea NOT NULL,
    nonce bytea,
    key_id text,
    reason text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'dead')),
    attempts integer NOT NULL,
    last_error text,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    next_attempt_at double precision NOT NULL,
    dead_at double precision,
    lease_owner text,
    lease_until double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due_idx ON {table} (status, service, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_order_idx ON {table} (service, order_key, status, seq)
    WHERE order_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_expiry_idx ON {table} (status, expires_at);
"""

    def _head(self) -> str:
        """An entry no earlier pending entry of its order key holds back."""
        return (
            "(o.order_key IS NULL OR NOT EXISTS ("
            f"SELECT 1 FROM {self._table} p WHERE p.service = o.service "
            "AND p.order_key = o.order_key AND p.status = 'pending' AND p.seq < o.seq))"
        )

    def _returning(self) -> str:
        return ", ".join(f"{self._table}.{column}" for column in COLUMNS)

    async def close(self) -> None:
        """Close the pool; later operations fail. Closing twice is fine."""
        async with self._opening:
            self._closed = True
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _execute(self, sql: str, *values: Any) -> int:
        pool = await self._connected()
        return _changed(await pool.execute(sql, *values))

    async def _fetch(self, sql: str, *values: Any) -> builtins.list[OutboxEntry]:
        pool = await self._connected()
        rows = await pool.fetch(sql, *values)
        return sorted((entry_from_row(tuple(row)) for row in rows), key=lambda e: e.seq)

    async def add(self, entry: OutboxEntry) -> OutboxEntry:
        marks = ", ".join(f"${n}" for n in range(1, len(_INSERTED) + 1))
        sql = f"INSERT INTO {self._table} ({', '.join(_INSERTED)}) VALUES ({marks}) RETURNING seq"
        pool = await self._connected()
        seq = await pool.fetchval(sql, *(getattr(entry, column) for column in _INSERTED))
        return replace(entry, seq=int(seq))

    async def has_pending(self, service: str, order_key: str) -> bool:
        sql = (
            f"SELECT EXISTS (SELECT 1 FROM {self._table} "
            "WHERE service = $1 AND order_key = $2 AND status = 'pending')"
        )
        pool = await self._connected()
        return bool(await pool.fetchval(sql, service, order_key))

    async def claim(
        self, services: Sequence[str], owner: str, now: float, lease_until: float, limit: int
    ) -> builtins.list[OutboxEntry]:
        if not services:
            return []
        table = self._table
        sql = f"""
WITH due AS (
    SELECT o.seq FROM {table} o
    WHERE o.status = 'pending' AND o.service = ANY($1::text[])
      AND o.next_attempt_at <= $2 AND o.lease_until <= $2 AND o.expires_at > $2
      AND {self._head()}
    ORDER BY o.seq LIMIT $3
    FOR UPDATE OF o SKIP LOCKED)
UPDATE {table} SET lease_owner = $4, lease_until = $5 FROM due WHERE {table}.seq = due.seq
RETURNING {self._returning()}"""
        return await self._fetch(sql, list(services), now, limit, owner, lease_until)

    async def release(
        self, entry_ids: Sequence[str], owner: str, next_attempt_at: float | None = None
    ) -> None:
        if not entry_ids:
            return
        await self._execute(
            f"UPDATE {self._table} SET lease_owner = NULL, lease_until = 0, "
            "next_attempt_at = COALESCE($1, next_attempt_at) "
            "WHERE lease_owner = $2 AND status = 'pending' AND id = ANY($3::text[])",
            next_attempt_at,
            owner,
            list(entry_ids),
        )

    async def reschedule(
        self,
        entry_id: str,
        owner: str,
        *,
        attempts: int,
        next_attempt_at: float,
        last_error: str | None,
    ) -> bool:
        changed = await self._execute(
            f"UPDATE {self._table} SET attempts = $1, next_attempt_at = $2, last_error = $3, "
            "lease_owner = NULL, lease_until = 0 "
            "WHERE id = $4 AND lease_owner = $5 AND status = 'pending'",
            attempts,
            next_attempt_at,
            last_error,
            entry_id,
            owner,
        )
        return changed > 0

    async def delivered(self, entry_id: str) -> bool:
        return await self._execute(f"DELETE FROM {self._table} WHERE id = $1", entry_id) > 0

    async def dead_letter(
        self, entry_id: str, owner: str, *, now: float, attempts: int, last_error: str
    ) -> bool:
        changed = await self._execute(
            f"UPDATE {self._table} SET status = 'dead', dead_at = $1, attempts = $2, "
            "last_error = $3, lease_owner = NULL, lease_until = 0 "
            "WHERE id = $4 AND lease_owner = $5 AND status = 'pending'",
            now,
            attempts,
            last_error,
            entry_id,
            owner,
        )
        return changed > 0

    async def expire(self, now: float) -> builtins.list[OutboxEntry]:
        return await self._fetch(
            f"UPDATE {self._table} SET status = 'dead', dead_at = $1, "
            "last_error = COALESCE(last_error, $2), lease_owner = NULL, lease_until = 0 "
            "WHERE status = 'pending' AND expires_at <= $1 AND lease_until <= $1 "
            f"RETURNING {self._returning()}",
            now,
            EXPIRED_UNTRIED,
        )

    async def next_due(self, services: Sequence[str]) -> float | None:
        if not services:
            return None
        sql = (
            f"SELECT MIN(GREATEST(o.next_attempt_at, o.lease_until)) FROM {self._table} o "
            f"WHERE o.status = 'pending' AND o.service = ANY($1::text[]) AND {self._head()}"
        )
        pool = await self._connected()
        due = await pool.fetchval(sql, list(services))
        return None if due is None else float(due)

    async def entries(
        self,
        *,
        dead: bool = False,
        service: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[OutboxEntry]:
        check_page(limit, offset)
        return await self._fetch(
            f"SELECT {', '.join(COLUMNS)} FROM {self._table} "
            "WHERE status = $1 AND ($2::text IS NULL OR service = $2) "
            "ORDER BY seq LIMIT $3 OFFSET $4",
            "dead" if dead else "pending",
            service,
            limit,
            offset,
        )

    async def get(self, entry_id: str) -> OutboxEntry | None:
        found = await self._fetch(
            f"SELECT {', '.join(COLUMNS)} FROM {self._table} WHERE id = $1", entry_id
        )
        return found[0] if found else None

    async def retry(self, entry_id: str, now: float) -> bool:
        changed = await self._execute(
            f"UPDATE {self._table} SET next_attempt_at = $1, expires_at = CASE "
            "WHEN status = 'dead' THEN $1 + (expires_at - created_at) ELSE expires_at END, "
            "status = 'pending', dead_at = NULL WHERE id = $2",
            now,
            entry_id,
        )
        return changed > 0

    async def drop(self, entry_id: str) -> bool:
        return await self._execute(f"DELETE FROM {self._table} WHERE id = $1", entry_id) > 0

    async def count(self, *, dead: bool = False) -> int:
        pool = await self._connected()
        total = await pool.fetchval(
            f"SELECT count(*) FROM {self._table} WHERE status = $1", "dead" if dead else "pending"
        )
        return int(total)
