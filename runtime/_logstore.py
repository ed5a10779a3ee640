"""The integration log store seam: the `LogStore` protocol, its argument rules, `TenantLogView`.

Rules every store follows (each implementation calls the helpers below):
- ``write_batch`` writes a batch in one transaction and ignores a record whose
  id is already stored, so a batch retried after a lost acknowledgement is
  neither lost nor doubled;
- ``query`` returns newest first (``created_at`` desc, then ``id`` desc);
  ``limit`` above `MAX_QUERY_LIMIT` is capped to it, below 1 is a
  `ConfigError`, as is a negative ``offset``;
- ``purge`` deletes records created strictly before ``now`` minus
  ``older_than_days`` (default `DEFAULT_RETENTION_DAYS`); ``now`` is a wall
  clock reading in Unix seconds, passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec

from . import _validate as check
from ._errors import ConfigError
from ._logrecord import IntegrationLog, LogFilters, LogMetrics

__all__ = [
    "COLUMNS",
    "DEFAULT_RETENTION_DAYS",
    "INDEXES",
    "MAX_QUERY_LIMIT",
    "LogStore",
    "TenantLogView",
    "conditions",
    "metrics_filters",
    "page",
    "purge_cutoff",
    "record_from_row",
    "row_from_record",
    "seal",
]

MAX_QUERY_LIMIT = 500
DEFAULT_RETENTION_DAYS = 90


class LogStore(Protocol):
    """Where integration log records go; an async context manager that closes the store."""

    async def write_batch(self, records: Sequence[IntegrationLog]) -> None: ...

    async def query(
        self, filters: LogFilters | None = None, limit: int = 100, offset: int = 0
    ) -> list[IntegrationLog]: ...

    async def metrics(
        self,
        service_name: str,
        date_from: datetime | None,
        date_to: datetime | None,
        tenant_id: str | None = None,
    ) -> LogMetrics: ...

    async def purge(
        self, older_than_days: float = DEFAULT_RETENTION_DAYS, *, now: float
    ) -> int: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# The SQL stores' layout: the original's columns, in its order, and its indexes.
COLUMNS = (
    "id",
    "tenant_id",
    "service_name",
    "endpoint",
    "method",
    "status",
    "http_status_code",
    "duration_ms",
    "request_data",
    "response_data",
    "error_message",
    "attempt_number",
    "created_at",
)
INDEXES = {
    "service_name": ("service_name",),
    "status": ("status",),
    "tenant_id": ("tenant_id",),
    "created_at": ("created_at",),
    "service_created": ("service_name", "created_at"),
    "service_status_created": ("service_name", "status", "created_at"),
}


def row_from_record(record: IntegrationLog) -> tuple[Any, ...]:
    """``record`` in `COLUMNS` order, data as JSON text; ``created_at`` left to the store."""
    return (
        record.id,
        record.tenant_id,
        record.service_name,
        record.endpoint,
        record.method,
        record.status.value,
        record.http_status_code,
        record.duration_ms,
        _json(record.request_data),
        _json(record.response_data),
        record.error_message,
        record.attempt_number,
        record.created_at,
    )


def record_from_row(row: Sequence[Any]) -> IntegrationLog:
    """The inverse of `row_from_record`, given ``created_at`` back as a UTC datetime."""
    values = dict(zip(COLUMNS, row, strict=True))
    for field in ("request_data", "response_data"):
        if values[field] is not None:
            values[field] = msgspec.json.decode(values[field])
    return IntegrationLog(**values)


def _json(data: dict[str, Any] | None) -> str | None:
    return None if data is None else msgspec.json.encode(data).decode()


def conditions(filters: LogFilters) -> list[tuple[str, Any]]:
    """``filters`` as (column and operator, parameter) pairs for a parameterised WHERE."""
    pairs: list[tuple[str, Any]] = []
    if filters.service_name is not None:
        pairs.append(("service_name =", filters.service_name))
    if filters.status is not None:
        pairs.append(("status =", filters.status.value))
    if filters.tenant_id is not None:
        pairs.append(("tenant_id =", filters.tenant_id))
    if filters.date_from is not None:
        pairs.append(("created_at >=", filters.date_from))
    if filters.date_to is not None:
        pairs.append(("created_at <=", filters.date_to))
    return pairs


def seal(records: Sequence[IntegrationLog]) -> list[IntegrationLog]:
    """Re-validated and re-redacted copies where needed: what a store actually writes.

    A record is frozen, so only its data dicts can change after it was built
    (and redacted): those records are copied, which runs the checks again; the
    others are written as they are.
    """
    sealed = []
    for record in records:
        if not isinstance(record, IntegrationLog):
            raise ConfigError("records", type(record).__name__, "must be IntegrationLog records")
        if record.request_data is None and record.response_data is None:
            sealed.append(record)
        else:
            sealed.append(msgspec.structs.replace(record))
    return sealed


def page(limit: Any, offset: Any) -> int:
    """The effective limit after checking both; see the module docstring for the rules."""
    check.integer("limit", limit, 1)
    check.integer("offset", offset, 0)
    return min(int(limit), MAX_QUERY_LIMIT)


def purge_cutoff(older_than_days: Any, now: Any) -> datetime:
    """The instant before which records are purged."""
    days = check.non_negative("older_than_days", older_than_days)
    instant = check.number("now", now)
    try:
        return datetime.fromtimestamp(instant, UTC) - timedelta(days=days)
    except (OverflowError, OSError, ValueError):
        raise ConfigError("older_than_days", older_than_days, "reaches before year 1") from None


def metrics_filters(
    service_name: Any, date_from: Any, date_to: Any, tenant_id: Any = None
) -> LogFilters:
    """The filters a metrics call covers, checked like a query's."""
    if service_name is None:
        raise ConfigError("service_name", service_name, "must be a non-empty string")
    return LogFilters(
        service_name=service_name, tenant_id=tenant_id, date_from=date_from, date_to=date_to
    )


class TenantLogView:
    """One tenant's read-only window on a store: it cannot name another tenant.

    Hand this, not the store, to code acting for a tenant. A filter naming a
    different tenant is a `ConfigError` rather than a silently empty answer.
    """

    __slots__ = ("_store", "_tenant_id")

    def __init__(self, store: LogStore, tenant_id: str) -> None:
        if not isinstance(tenant_id, str) or not tenant_id:
            raise ConfigError("tenant_id", tenant_id, "must be a non-empty string")
        self._store = store
        self._tenant_id = tenant_id

    @property
    def tenant_id(self) -> str:
        return self._tenant_id

    async def query(
        self, filters: LogFilters | None = None, limit: int = 100, offset: int = 0
    ) -> list[IntegrationLog]:
        filters = filters if filters is not None else LogFilters()
        if filters.tenant_id not in (None, self._tenant_id):
            raise ConfigError("tenant_id", filters.tenant_id, "this view reads its own tenant only")
        pinned = msgspec.structs.replace(filters, tenant_id=self._tenant_id)
        return await self._store.query(pinned, limit, offset)

    async def metrics(
        self, service_name: str, date_from: datetime | None, date_to: datetime | None
    ) -> LogMetrics:
        return await self._store.metrics(service_name, date_from, date_to, self._tenant_id)
