"""`PostgresLogStore`: integration logs in PostgreSQL, for deployments that outgrow one file.

Needs the ``postgres`` extra (asyncpg), imported on open so that this module
imports without it. asyncpg runs on asyncio only: under trio, opening the
store is a `ConfigError` that says so. Data columns are ``jsonb``,
``created_at`` is ``timestamptz``; the table lives in ``schema`` (default
``public``), created with its indexes on open.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio

from . import _validate as check
from ._errors import ConfigError, ConnectorError
from ._logrecord import (
    PERCENTILES,
    IntegrationLog,
    LogFilters,
    LogMetrics,
    LogStatus,
    build_metrics,
    nearest_rank,
)
from ._logstore import (
    COLUMNS,
    DEFAULT_RETENTION_DAYS,
    INDEXES,
    conditions,
    metrics_filters,
    page,
    purge_cutoff,
    record_from_row,
    row_from_record,
    seal,
)
from ._postgres import open_pool

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresLogStore"]

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_STATUSES = ", ".join(f"'{status.value}'" for status in LogStatus)


def _where(filters: LogFilters, *extra: str) -> tuple[str, list[Any]]:
    pairs = conditions(filters)
    clauses = [f"{column} ${number}" for number, (column, _) in enumerate(pairs, 1)]
    clauses += extra
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), [v for _, v in pairs]


class PostgresLogStore:
    """A `LogStore` in the PostgreSQL database at ``dsn``, over an asyncpg pool.

    Use it as an async context manager, or ``await open()`` and ``await
    close()``; an operation on a store not yet opened opens it. ``schema``
    must already exist; the ``integration_logs`` table is created in it.
    """

    def __init__(
        self, dsn: str, *, schema: str = "public", min_size: int = 1, max_size: int = 4
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
        self._table = f'"{schema}".integration_logs'
        self._schema = schema
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._closed = False
        self._opening = anyio.Lock()

    @property
    def schema(self) -> str:
        return self._schema

    async def open(self) -> None:
        """Create the connection pool, and the table and its indexes if missing."""
        await self._connected()

    async def _connected(self) -> asyncpg.Pool[asyncpg.Record]:
        async with self._opening:
            if self._closed:
                raise ConnectorError("PostgresLogStore is closed")
            if self._pool is None:
                self._pool = await self._connect()
            return self._pool

    async def _connect(self) -> asyncpg.Pool[asyncpg.Record]:
        return await open_pool(
            "PostgresLogStore",
            self._dsn,
            self._min_size,
            self._max_size,
            "connector.integration_logs",
            self._schema_sql(),
        )

    def _schema_sql(self) -> str:
        indexes = "".join(
            f"CREATE INDEX IF NOT EXISTS integration_logs_{name}_idx "
            f"ON {self._table} ({', '.join(columns)});\n"
            for name, columns in INDEXES.items()
        )
        return f"""
CREATE TABLE IF NOT EXISTS {self._table} (
    id text PRIMARY KEY,
    tenant_id text,
    service_name text NOT NULL,
    endpoint text NOT NULL,
    method text NOT NULL,
    status text NOT NULL CHECK (status IN ({_STATUSES})),
    http_status_code integer,
    duration_ms double precision,
    request_data jsonb,
    response_data jsonb,
    error_message text,
    attempt_number integer NOT NULL,
    created_at timestamptz NOT NULL
);
{indexes}"""

    async def write_batch(self, records: Sequence[IntegrationLog]) -> None:
        rows = [row_from_record(record) for record in seal(records)]
        if not rows:
            return
        placeholders = ", ".join(f"${n}" for n in range(1, len(COLUMNS) + 1))
        sql = (
            f"INSERT INTO {self._table} ({', '.join(COLUMNS)}) "
            f"VALUES ({placeholders}) ON CONFLICT (id) DO NOTHING"
        )
        pool = await self._connected()
        async with pool.acquire() as connection, connection.transaction():
            await connection.executemany(sql, rows)

    async def query(
        self, filters: LogFilters | None = None, limit: int = 100, offset: int = 0
    ) -> list[IntegrationLog]:
        limit = page(limit, offset)
        where, params = _where(filters if filters is not None else LogFilters())
        n = len(params)
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM {self._table}{where} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${n + 1} OFFSET ${n + 2}"
        )
        pool = await self._connected()
        rows = await pool.fetch(sql, *params, limit, offset)
        return [record_from_row(tuple(row)) for row in rows]

    async def metrics(
        self,
        service_name: str,
        date_from: datetime | None,
        date_to: datetime | None,
        tenant_id: str | None = None,
    ) -> LogMetrics:
        filters = metrics_filters(service_name, date_from, date_to, tenant_id)
        where, params = _where(filters)
        timed, _ = _where(filters, "duration_ms IS NOT NULL")
        totals_sql = (
            "SELECT count(*), count(*) FILTER (WHERE status = 'success'), "
            f"count(duration_ms), avg(duration_ms) FROM {self._table}{where}"
        )
        # Ranks from the shared nearest_rank, not percentile_disc, so that every
        # store picks its percentiles by literally the same arithmetic.
        ranked_sql = (
            "SELECT row_rank, duration_ms FROM (SELECT duration_ms, "
            "row_number() OVER (ORDER BY duration_ms) AS row_rank "
            f"FROM {self._table}{timed}) AS ranked WHERE row_rank = ANY(${len(params) + 1})"
        )
        pool = await self._connected()
        async with (
            pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            totals = await connection.fetchrow(totals_sql, *params)
            assert totals is not None  # an aggregate always returns one row
            total, successes, timed_count, mean = totals
            percentiles = None
            if timed_count:
                ranks = [nearest_rank(timed_count, p) for p in PERCENTILES]
                by_rank = dict(
                    tuple(row) for row in await connection.fetch(ranked_sql, *params, ranks)
                )
                percentiles = {p: by_rank[rank] for p, rank in zip(PERCENTILES, ranks, strict=True)}
        return build_metrics(
            filters,
            total=total,
            successes=successes,
            mean_duration_ms=mean,
            percentiles=percentiles,
        )

    async def purge(self, older_than_days: float = DEFAULT_RETENTION_DAYS, *, now: float) -> int:
        cutoff = purge_cutoff(older_than_days, now)
        pool = await self._connected()
        status = await pool.execute(f"DELETE FROM {self._table} WHERE created_at < $1", cutoff)
        return int(status.rsplit(" ", 1)[-1])

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
