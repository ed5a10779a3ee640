"""`SqliteOutbox`: the outbox in one SQLite file, the embedded default.

Claims run as one ``UPDATE ... RETURNING`` in a ``BEGIN IMMEDIATE``
transaction, so two runtimes on one file (two processes, or two connections
in one) never lease one entry at once: the second sees the first's lease
(``lease_until`` in the future) and skips the row. A committed entry survives
a crash of the process (WAL, see `SqliteDatabase`); a runtime started on the
file later resumes it once any lease the dead one held has run out. Deleted
rows are zeroed (``secure_delete``): payloads may carry personal data.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from msgspec.structs import replace

from ._credential_crypto import CredentialCipher
from ._outbox import COLUMNS, EXPIRED_UNTRIED, OutboxEntry, check_page, entry_from_row
from ._sqlite import SqliteDatabase, in_transaction

__all__ = ["SqliteOutbox"]

_SCHEMA = """
PRAGMA secure_delete = ON;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    tenant_id TEXT,
    order_key TEXT,
    idempotency_key TEXT NOT NULL,
    target TEXT NOT NULL,
    payload BLOB NOT NULL,
    nonce BLOB,
    key_id TEXT,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'dead')),
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    dead_at REAL,
    lease_owner TEXT,
    lease_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, service, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (service, order_key, status, seq)
    WHERE order_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_expiry ON outbox (status, expires_at);
"""

_SELECTED = ", ".join(COLUMNS)
_INSERTED = COLUMNS[:1] + COLUMNS[2:]  # all but seq, which the table assigns

# An entry no earlier pending entry of its order key holds back.
_HEAD = """(o.order_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM outbox p WHERE p.service = o.service AND p.order_key = o.order_key
    AND p.status = 'pending' AND p.seq < o.seq))"""


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SqliteOutbox:
    """An `Outbox` in the SQLite file at ``path``; use ``async with`` or `open`/`close`.

    Payloads are sealed with ``key`` (or `CONNECTOR_SECRET_KEY` when it is set),
    and stored plain when there is neither.
    """

    def __init__(self, path: str | os.PathLike[str], *, key: str | bytes | None = None) -> None:
        self.path = os.fspath(path)
        self.cipher = CredentialCipher(key) if key is not None else CredentialCipher.from_env()
        self._db = SqliteDatabase(self.path, _SCHEMA, owner="SqliteOutbox")

    def __repr__(self) -> str:
        return f"SqliteOutbox({self.path!r})"

    async def open(self) -> None:
        """Open the file and create the table if it is missing."""
        await self._db.connection()

    async def close(self) -> None:
        await self._db.close()

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

    async def add(self, entry: OutboxEntry) -> OutboxEntry:
        values = [getattr(entry, column) for column in _INSERTED]
        sql = (
            f"INSERT INTO outbox ({', '.join(_INSERTED)}) VALUES ({_marks(len(values))}) "
            "RETURNING seq"
        )

        def insert(db: sqlite3.Connection) -> int:
            # fetchall: a RETURNING statement must finish before its transaction commits.
            return int(in_transaction(db, lambda: db.execute(sql, values).fetchall()[0][0]))

        return replace(entry, seq=await self._db.run(insert))

    async def has_pending(self, service: str, order_key: str) -> bool:
        sql = (
            "SELECT 1 FROM outbox WHERE service = ? AND order_key = ? AND status = 'pending' "
            "LIMIT 1"
        )
        row = await self._db.run(lambda db: db.execute(sql, (service, order_key)).fetchone())
        return row is not None

    async def claim(
        self, services: Sequence[str], owner: str, now: float, lease_until: float, limit: int
    ) -> builtins.list[OutboxEntry]:
        if not services:
            return []
        sql = f"""
UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE seq IN (
    SELECT o.seq FROM outbox o
    WHERE o.status = 'pending' AND o.service IN ({_marks(len(services))})
      AND o.next_attempt_at <= ? AND o.lease_until <= ? AND o.expires_at > ? AND {_HEAD}
    ORDER BY o.seq LIMIT ?)
RETURNING {_SELECTED}"""
        values = (owner, lease_until, *services, now, now, now, limit)

        def update(db: sqlite3.Connection) -> list[Any]:
            return in_transaction(db, lambda: db.execute(sql, values).fetchall())

        rows = await self._db.run(update)
        return sorted((entry_from_row(row) for row in rows), key=lambda e: e.seq)

    async def _write(self, sql: str, values: Sequence[Any]) -> int:
        """Run one writing statement in a transaction; returns the rows it changed."""

        def write(db: sqlite3.Connection) -> int:
            return in_transaction(db, lambda: db.execute(sql, values).rowcount)

        return await self._db.run(write)

    async def release(
        self, entry_ids: Sequence[str], owner: str, next_attempt_at: float | None = None
    ) -> None:
        if not entry_ids:
            return
        await self._write(
            "UPDATE outbox SET lease_owner = NULL, lease_until = 0, "
            "next_attempt_at = COALESCE(?, next_attempt_at) "
            f"WHERE lease_owner = ? AND status = 'pending' AND id IN ({_marks(len(entry_ids))})",
            (next_attempt_at, owner, *entry_ids),
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
        changed = await self._write(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, "
            "lease_owner = NULL, lease_until = 0 "
            "WHERE id = ? AND lease_owner = ? AND status = 'pending'",
            (attempts, next_attempt_at, last_error, entry_id, owner),
        )
        return changed > 0

    async def delivered(self, entry_id: str) -> bool:
        return await self._write("DELETE FROM outbox WHERE id = ?", (entry_id,)) > 0

    async def dead_letter(
        self, entry_id: str, owner: str, *, now: float, attempts: int, last_error: str
    ) -> bool:
        changed = await self._write(
            "UPDATE outbox SET status = 'dead', dead_at = ?, attempts = ?, last_error = ?, "
            "lease_owner = NULL, lease_until = 0 "
            "WHERE id = ? AND lease_owner = ? AND status = 'pending'",
            (now, attempts, last_error, entry_id, owner),
        )
        return changed > 0

    async def expire(self, now: float) -> builtins.list[OutboxEntry]:
        sql = (
            "UPDATE outbox SET status = 'dead', dead_at = ?, "
            "last_error = COALESCE(last_error, ?), lease_owner = NULL, lease_until = 0 "
            "WHERE status = 'pending' AND expires_at <= ? AND lease_until <= ? "
            f"RETURNING {_SELECTED}"
        )
        values = (now, EXPIRED_UNTRIED, now, now)

        def update(db: sqlite3.Connection) -> list[Any]:
            return in_transaction(db, lambda: db.execute(sql, values).fetchall())

        rows = await self._db.run(update)
        return sorted((entry_from_row(row) for row in rows), key=lambda e: e.seq)

    async def next_due(self, services: Sequence[str]) -> float | None:
        if not services:
            return None
        sql = (
            "SELECT MIN(MAX(o.next_attempt_at, o.lease_until)) FROM outbox o "
            f"WHERE o.status = 'pending' AND o.service IN ({_marks(len(services))}) AND {_HEAD}"
        )
        row = await self._db.run(lambda db: db.execute(sql, tuple(services)).fetchone())
        return None if row is None or row[0] is None else float(row[0])

    async def entries(
        self,
        *,
        dead: bool = False,
        service: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[OutboxEntry]:
        check_page(limit, offset)
        where = "status = ?" + ("" if service is None else " AND service = ?")
        values: list[Any] = ["dead" if dead else "pending"]
        if service is not None:
            values.append(service)
        sql = f"SELECT {_SELECTED} FROM outbox WHERE {where} ORDER BY seq LIMIT ? OFFSET ?"
        rows = await self._db.run(lambda db: db.execute(sql, (*values, limit, offset)).fetchall())
        return [entry_from_row(row) for row in rows]

    async def get(self, entry_id: str) -> OutboxEntry | None:
        sql = f"SELECT {_SELECTED} FROM outbox WHERE id = ?"
        row = await self._db.run(lambda db: db.execute(sql, (entry_id,)).fetchone())
        return None if row is None else entry_from_row(row)

    async def retry(self, entry_id: str, now: float) -> bool:
        changed = await self._write(
            "UPDATE outbox SET next_attempt_at = ?, expires_at = CASE WHEN status = 'dead' "
            "THEN ? + (expires_at - created_at) ELSE expires_at END, "
            "status = 'pending', dead_at = NULL WHERE id = ?",
            (now, now, entry_id),
        )
        return changed > 0

    async def drop(self, entry_id: str) -> bool:
        return await self._write("DELETE FROM outbox WHERE id = ?", (entry_id,)) > 0

    async def count(self, *, dead: bool = False) -> int:
        sql = "SELECT COUNT(*) FROM outbox WHERE status = ?"
        status = "dead" if dead else "pending"
        row = await self._db.run(lambda db: db.execute(sql, (status,)).fetchone())
        return int(row[0])
