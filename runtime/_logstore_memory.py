"""`MemoryLogStore`: integration logs in a dict, for tests, the simulator and short-lived runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Self

import anyio.lowlevel

from ._logrecord import (
    PERCENTILES,
    IntegrationLog,
    LogFilters,
    LogMetrics,
    LogStatus,
    build_metrics,
    nearest_rank,
)
from ._logstore import DEFAULT_RETENTION_DAYS, metrics_filters, page, purge_cutoff, seal

__all__ = ["MemoryLogStore"]


class MemoryLogStore:
    """A `LogStore` in process memory, with the same answers as the SQL stores."""

    def __init__(self) -> None:
        self._records: dict[str, IntegrationLog] = {}

    def __len__(self) -> int:
        return len(self._records)

    def _select(self, filters: LogFilters) -> list[IntegrationLog]:
        return [record for record in self._records.values() if filters.matches(record)]

    async def write_batch(self, records: Sequence[IntegrationLog]) -> None:
        # Sealed first, stored after: a bad record leaves nothing of its batch behind.
        for record in seal(records):
            self._records.setdefault(record.id, record)
        await anyio.lowlevel.checkpoint()

    async def query(
        self, filters: LogFilters | None = None, limit: int = 100, offset: int = 0
    ) -> list[IntegrationLog]:
        limit = page(limit, offset)
        selected = self._select(filters if filters is not None else LogFilters())
        selected.sort(key=lambda record: (record.created_at, record.id), reverse=True)
        await anyio.lowlevel.checkpoint()
        return selected[offset : offset + limit]

    async def metrics(
        self,
        service_name: str,
        date_from: datetime | None,
        date_to: datetime | None,
        tenant_id: str | None = None,
    ) -> LogMetrics:
        filters = metrics_filters(service_name, date_from, date_to, tenant_id)
        selected = self._select(filters)
        durations = sorted(r.duration_ms for r in selected if r.duration_ms is not None)
        await anyio.lowlevel.checkpoint()
        return build_metrics(
            filters,
            total=len(selected),
            successes=sum(record.status is LogStatus.SUCCESS for record in selected),
            mean_duration_ms=math.fsum(durations) / len(durations) if durations else None,
            percentiles={p: durations[nearest_rank(len(durations), p) - 1] for p in PERCENTILES}
            if durations
            else None,
        )

    async def purge(self, older_than_days: float = DEFAULT_RETENTION_DAYS, *, now: float) -> int:
        cutoff = purge_cutoff(older_than_days, now)
        expired = [key for key, record in self._records.items() if record.created_at < cutoff]
        for key in expired:
            del self._records[key]
        await anyio.lowlevel.checkpoint()
        return len(expired)

    async def close(self) -> None:
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
