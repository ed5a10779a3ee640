"""One SQLite file, driven from anyio worker threads: the embedded stores' common part.

aiosqlite needs an asyncio loop; the runtime also runs under trio. So each
store runs the standard library's ``sqlite3`` in anyio worker threads, one
operation at a time (the connection is shared by the threads, never used by
two at once). An operation is one function run in one thread, a whole
transaction when it writes, so a cancelled caller waits for its transaction to
commit or roll back rather than leaving it half done.

The file is opened in WAL mode (readers never block the writer) with
``synchronous=NORMAL``: a committed transaction survives a crash of the
process; an operating-system crash may lose the last ones.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from ._errors import ConnectorError

__all__ = ["SqliteDatabase", "in_transaction"]

T = TypeVar("T")


def in_transaction(
    connection: sqlite3.Connection, work: Callable[[], T], begin: str = "BEGIN IMMEDIATE"
) -> T:
    """Run ``work`` in one transaction: all of it commits, or none of it."""
    connection.execute(begin)
    try:
        result = work()
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return result


class SqliteDatabase:
    """A lazily opened connection to ``path`` whose ``schema`` script runs on open."""

    def __init__(self, path: str | os.PathLike[str], schema: str, *, owner: str) -> None:
        self.path = os.fspath(path)
        self._schema = schema
        self._owner = owner
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        self._opening = anyio.Lock()
        self._serial = anyio.CapacityLimiter(1)

    async def connection(self) -> sqlite3.Connection:
        async with self._opening:
            if self._closed:
                raise ConnectorError(f"{self._owner}({self.path!r}) is closed")
            if self._connection is None:
                try:
                    self._connection = await anyio.to_thread.run_sync(
                        self._connect, limiter=self._serial
                    )
                except sqlite3.Error as error:
                    raise ConnectorError(
                        f"{self._owner} cannot open the SQLite file {self.path!r}: {error}"
                    ) from error
            return self._connection

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=5000")
            connection.executescript(self._schema)
        except BaseException:
            connection.close()
            raise
        return connection

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` in a worker thread, alone on the connection."""
        connection = await self.connection()
        return await anyio.to_thread.run_sync(work, connection, limiter=self._serial)

    async def close(self) -> None:
        async with self._opening:
            self._closed = True
            connection, self._connection = self._connection, None
            if connection is not None:
                await anyio.to_thread.run_sync(connection.close, limiter=self._serial)
