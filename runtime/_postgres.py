"""Opening a PostgreSQL pool for a store: the PostgreSQL stores' common part.

asyncpg is the optional ``postgres`` extra, imported here on open so that the
stores' modules import without it; it runs on asyncio only, so under trio
opening a store is a `ConfigError` that says so. The schema is created on
open under an advisory lock: two processes creating one table at once would
race in the catalog.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._errors import ConfigError

if TYPE_CHECKING:
    import asyncpg

__all__ = ["open_pool"]


async def open_pool(
    owner: str, dsn: str, min_size: int, max_size: int, lock: str, schema_sql: str
) -> asyncpg.Pool[asyncpg.Record]:
    """A pool on ``dsn`` with ``schema_sql`` run once, under the advisory lock ``lock``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigError("backend", "not asyncio", f"{owner} needs asyncio (asyncpg)") from None
    try:
        import asyncpg  # noqa: PLC0415  # the optional extra, needed only here
    except ImportError as error:
        raise ImportError(
            f"{owner} needs asyncpg: pip install 'nexus-connector[postgres]'"
        ) from error
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    try:
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
            await connection.execute(schema_sql)
    except BaseException:
        await pool.close()
        raise
    return pool
