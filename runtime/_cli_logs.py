"""``connector logs`` and ``connector metrics``: read the integration log from any store."""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import msgspec
from rich.console import Console
from rich.table import Table

from ._clock import system_wall_clock
from ._errors import ConfigError
from ._logrecord import IntegrationLog, LogFilters, LogMetrics, LogStatus
from ._logstore import MAX_QUERY_LIMIT
from ._store_urls import log_store_from_url

__all__ = ["DEFAULT_LOG_STORE", "add_commands", "parse_since"]

DEFAULT_LOG_STORE = "sqlite:///connector.sqlite3"
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float) -> datetime:
    """``30m``, ``24h``, ``7d`` ago, or an ISO date or time (UTC unless it says)."""
    match = _AGO.fullmatch(text.strip())
    if match is not None:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return datetime.fromtimestamp(now, UTC) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            "--since", text, "must be like 30m, 24h, 7d or an ISO date (2026-11-01)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=os.environ.get("CONNECTOR_LOG_STORE", DEFAULT_LOG_STORE),
        help="the log store URL (default: $CONNECTOR_LOG_STORE or %(default)s)",
    )


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    logs = subparsers.add_parser(
        "logs",
        help="list integration log records, newest first",
        description="List integration log records, newest first.",
        epilog="example: connector logs --service stripe --status failed --since 1h --json",
    )
    _store_argument(logs)
    logs.add_argument("--service", help="only this service")
    logs.add_argument("--status", choices=[s.value for s in LogStatus], help="only this outcome")
    logs.add_argument("--tenant", help="only this tenant")
    logs.add_argument("--since", help="only records this recent: 30m, 24h, 7d or a date")
    logs.add_argument(
        "--limit", type=int, default=100, help=f"at most this many (1-{MAX_QUERY_LIMIT})"
    )
    logs.add_argument("--offset", type=int, default=0, help="skip this many first")
    logs.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    logs.set_defaults(handler=_logs)

    metrics = subparsers.add_parser(
        "metrics",
        help="success rate and latency percentiles of one service",
        description="Success rate and latency percentiles of one service over a period.",
        epilog="example: connector metrics sendgrid --since 24h",
    )
    _store_argument(metrics)
    metrics.add_argument("service", help="the service's name")
    metrics.add_argument("--since", default="24h", help="the period: 30m, 24h, 7d or a date")
    metrics.add_argument("--tenant", help="only this tenant")
    metrics.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    metrics.set_defaults(handler=_metrics)


def _logs(args: argparse.Namespace) -> int:
    since = parse_since(args.since, system_wall_clock()) if args.since else None
    filters = LogFilters(
        service_name=args.service, status=args.status, tenant_id=args.tenant, date_from=since
    )

    async def read() -> list[IntegrationLog]:
        async with log_store_from_url(args.store, field="--store") as store:
            return await store.query(filters, limit=args.limit, offset=args.offset)

    records = anyio.run(read)
    if args.json:
        sys.stdout.write(msgspec.json.encode(records).decode() + "\n")
        return 0
    table = Table("created (UTC)", "service", "tenant", "endpoint", "status", "HTTP", "ms", "try")
    for record in records:
        table.add_row(
            record.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            record.service_name,
            record.tenant_id or "",
            record.endpoint,
            record.status.value,
            str(record.http_status_code or ""),
            f"{record.duration_ms:.1f}" if record.duration_ms is not None else "",
            str(record.attempt_number),
        )
    Console().print(table)
    return 0


def _metrics(args: argparse.Namespace) -> int:
    now = system_wall_clock()
    since = parse_since(args.since, now)

    async def read() -> LogMetrics:
        async with log_store_from_url(args.store, field="--store") as store:
            return await store.metrics(
                args.service, since, datetime.fromtimestamp(now, UTC), tenant_id=args.tenant
            )

    result = anyio.run(read)
    if args.json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        return 0
    table = Table("metric", "value", title=f"{args.service} since {since:%Y-%m-%d %H:%M} UTC")
    rows: list[tuple[str, Any]] = [
        ("successes", result.success_count),
        ("failures", result.failure_count),
        ("success rate", "-" if result.success_rate is None else f"{result.success_rate} %"),
        ("mean latency", _ms(result.avg_duration_ms)),
        ("p50 latency", _ms(result.p50_duration_ms)),
        ("p95 latency", _ms(result.p95_duration_ms)),
        ("p99 latency", _ms(result.p99_duration_ms)),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
