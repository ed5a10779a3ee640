"""`SqliteIdempotencyStore`: idempotency keys and their results in one SQLite file.

One row per key: while an operation runs, its runner's token and the lease's
end; once done, the encoded result and its expiry. A claim is one ``BEGIN
IMMEDIATE`` transaction, which takes the file's write lock, so two processes
never both find a key free. See `DurableIdempotencyStore` for what results may
be and how time is kept.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import msgspec

from ._clock import WallClock, system_wall_clock
from ._idempotency_durable import Claim, DurableIdempotencyStore
from ._sqlite import SqliteDatabase, in_transaction

__all__ = ["SqliteIdempotencyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY NOT NULL,
    owner TEXT,
    result BLOB,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_expires_at ON idempotency (expires_at);
"""


class SqliteIdempotencyStore(DurableIdempotencyStore):
    """A durable `IdempotencyStore` in the SQLite file at ``path``; ``async with`` closes it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: WallClock = system_wall_clock,
        lease: float = 300.0,
        poll_interval: float = 0.05,
        types: Iterable[type[msgspec.Struct]] = (),
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            clock=clock, lease=lease, poll_interval=poll_interval, types=types, rng=rng
        )
        self._db = SqliteDatabase(path, _SCHEMA, owner=type(self).__name__)

    @property
    def path(self) -> str:
        return self._db.path

    async def _claim(self, name: str, token: str, now: float) -> tuple[Claim, bytes | None]:
        lease_end = now + self._lease

        def claim(connection: sqlite3.Connection) -> tuple[Claim, bytes | None]:
            def work() -> tuple[Claim, bytes | None]:
                row = connection.execute(
                    "SELECT owner, result, expires_at FROM idempotency WHERE key = ?", (name,)
                ).fetchone()
                if row is not None and row[2] > now:
                    return (Claim.BUSY, None) if row[0] is not None else (Claim.DONE, row[1])
                # Free, expired, or held by a runner whose lease ran out: ours now.
                connection.execute(
                    "INSERT OR REPLACE INTO idempotency (key, owner, result, expires_at) "
                    "VALUES (?, ?, NULL, ?)",
                    (name, token, lease_end),
                )
                return Claim.MINE, None

            return in_transaction(connection, work)

        return await self._db.run(claim)

    async def _complete(self, name: str, token: str, data: bytes, expires_at: float) -> None:
        def complete(connection: sqlite3.Connection) -> None:
            def work() -> None:
                updated = connection.execute(
                    "UPDATE idempotency SET owner = NULL, result = ?, expires_at = ? "
                    "WHERE key = ? AND owner = ?",
                    (data, expires_at, name, token),
                ).rowcount
                if not updated:
                    # Our lease ran out: keep whatever the key holds now, else store ours.
                    connection.execute(
                        "INSERT OR IGNORE INTO idempotency (key, owner, result, expires_at) "
                        "VALUES (?, NULL, ?, ?)",
                        (name, data, expires_at),
                    )

            in_transaction(connection, work)

        await self._db.run(complete)

    async def _abandon(self, name: str, token: str) -> None:
        def abandon(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM idempotency WHERE key = ? AND owner = ?", (name, token))

        await self._db.run(abandon)

    async def purge(self) -> int:
        """Delete expired results and dead leases; returns how many rows went."""
        now = self._clock()

        def purge(connection: sqlite3.Connection) -> int:
            cursor = connection.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,))
            return cursor.rowcount

        return await self._db.run(purge)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Self:
        await self._db.connection()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
