"""`SqliteLogStore`: integration logs in one SQLite file, the embedded default.

It runs on `connector._sqlite` (stdlib ``sqlite3`` in anyio worker threads, WAL
mode, so it works under asyncio and trio alike; aiosqlite needs asyncio).
``created_at`` is stored as UTC text, ``YYYY-MM-DD HH:MM:SS.ffffff``: fixed
width, so it sorts and compares as time, and SQLite's date functions read it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

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
from ._sqlite import SqliteDatabase, in_transaction

__all__ = ["SqliteLogStore"]

_STATUSES = ", ".join(f"'{status.value}'" for status in LogStatus)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS integration_logs (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT,
    service_name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({_STATUSES})),
    http_status_code INTEGER,
    duration_ms REAL,
    request_data TEXT,
    response_data TEXT,
    error_message TEXT,
    attempt_number INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
""" + "".join(
    f"CREATE INDEX IF NOT EXISTS integration_logs_{name}_idx "
    f"ON integration_logs ({', '.join(columns)});\n"
    for name, columns in INDEXES.items()
)
_INSERT = (
    f"INSERT INTO integration_logs ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in COLUMNS)}) ON CONFLICT (id) DO NOTHING"
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM integration_logs"


def _text_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _where(filters: LogFilters, *extra: str) -> tuple[str, list[Any]]:
    pairs = conditions(filters)
    clauses = [f"{column} ?" for column, _ in pairs] + list(extra)
    params = [_text_time(v) if isinstance(v, datetime) else v for _, v in pairs]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class SqliteLogStore:
    """A `LogStore` in the SQLite file at ``path``, created with its schema on open.

    Use it as an async context manager, or ``await open()`` and ``await
    close()``; an operation on a store not yet opened opens it. A store belongs
    to the event loop that first uses it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._db = SqliteDatabase(path, _SCHEMA, owner="SqliteLogStore")

    @property
    def path(self) -> str:
        return self._db.path

    async def open(self) -> None:
        """Connect, switch to WAL and create the table and indexes if missing."""
        await self._db.connection()

    async def write_batch(self, records: Sequence[IntegrationLog]) -> None:
        rows = [_sqlite_row(record) for record in seal(records)]
        if not rows:
            return

        def write(connection: sqlite3.Connection) -> None:
            in_transaction(connection, lambda: connection.executemany(_INSERT, rows))

        await self._db.run(write)

    async def query(
        self, filters: LogFilters | None = None, limit: int = 100, offset: int = 0
    ) -> list[IntegrationLog]:
        limit = page(limit, offset)
        where, params = _where(filters if filters is not None else LogFilters())
        sql = f"{_SELECT}{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"

        def select(connection: sqlite3.Connection) -> list[Any]:
            return connection.execute(sql, [*params, limit, offset]).fetchall()

        return [_record(row) for row in await self._db.run(select)]

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
            "SELECT COUNT(*), COALESCE(SUM(status = 'success'), 0), "
            f"COUNT(duration_ms), AVG(duration_ms) FROM integration_logs{where}"
        )
        ranked_sql = (
            "SELECT rank, duration_ms FROM (SELECT duration_ms, "
            "ROW_NUMBER() OVER (ORDER BY duration_ms) AS rank "
            f"FROM integration_logs{timed}) WHERE rank IN (?, ?, ?)"
        )

        def aggregate(connection: sqlite3.Connection) -> tuple[Any, ...]:
            # One read transaction: the counts and the ranked durations see one snapshot.
            def work() -> tuple[Any, ...]:
                total, successes, timed_count, mean = connection.execute(
                    totals_sql, params
                ).fetchone()
                if not timed_count:
                    return total, successes, mean, None
                ranks = [nearest_rank(timed_count, p) for p in PERCENTILES]
                by_rank = dict(connection.execute(ranked_sql, [*params, *ranks]).fetchall())
                values = {p: by_rank[rank] for p, rank in zip(PERCENTILES, ranks, strict=True)}
                return total, successes, mean, values

            return in_transaction(connection, work, begin="BEGIN")

        total, successes, mean, percentiles = await self._db.run(aggregate)
        return build_metrics(
            filters,
            total=total,
            successes=successes,
            mean_duration_ms=mean,
            percentiles=percentiles,
        )

    async def purge(self, older_than_days: float = DEFAULT_RETENTION_DAYS, *, now: float) -> int:
        cutoff = _text_time(purge_cutoff(older_than_days, now))

        def delete(connection: sqlite3.Connection) -> int:
            return in_transaction(
                connection,
                lambda: (
                    connection.execute(
                        "DELETE FROM integration_logs WHERE created_at < ?", (cutoff,)
                    ).rowcount
                ),
            )

        return await self._db.run(delete)

    async def close(self) -> None:
        """Close the connection; later operations fail. Closing twice is fine."""
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


def _sqlite_row(record: IntegrationLog) -> tuple[Any, ...]:
    *row, created_at = row_from_record(record)
    return (*row, _text_time(created_at))


def _record(row: Sequence[Any]) -> IntegrationLog:
    *values, created_at = row
    return record_from_row((*values, _parse_time(created_at)))
