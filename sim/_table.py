"""Reports as terminal tables (rich): one column per service, or per variant."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._compare import Comparison, Estimate
from ._report import REJECTED, Percentiles, Report, ServiceReport

__all__ = ["comparison_tables", "report_table"]


def _seconds(value: float) -> str:
    if value == 0:
        return "0"
    if value < 0.01:
        return f"{value * 1000:.2f} ms"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value:,.0f} s"


def _percentiles(summary: Percentiles | None) -> str:
    if summary is None:
        return "-"
    parts = (summary.p50, summary.p95, summary.p99, summary.p999)
    return " / ".join(_seconds(p) for p in parts)


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{name} {count:,}" for name, count in counts.items() if count]
    return ", ".join(shown) or "none"


def _breaker(service: ServiceReport) -> str:
    breaker = service.breaker
    if breaker is None:
        return "off"
    if not breaker.trips and not breaker.time_open:
        return "never opened"
    text = f"{breaker.trips} trips"
    if breaker.reopens:
        text += f", {breaker.reopens} reopens"
    return (
        f"{text}; open {_seconds(breaker.time_open)}, half-open {_seconds(breaker.time_half_open)}"
    )


def _limiter(service: ServiceReport) -> str:
    limiter = service.limiter
    parts = []
    if limiter.rate is not None:
        parts.append(f"{limiter.rate:g}/s")
    if limiter.quota_rate is not None:
        parts.append(f"quota {limiter.quota_rate:g}/s")
    if limiter.headroom is not None:
        parts.append(f"headroom {limiter.headroom:.0%}")
    if limiter.tokens_min is not None:
        parts.append(f"min tokens {limiter.tokens_min:.1f}")
    parts.append(f"peak {limiter.peak_rate}/s at the provider")
    if limiter.quota_rate is not None:
        parts.append(f"{limiter.throttled:,} throttled")
    return ", ".join(parts)


def _retries(service: ServiceReport) -> str:
    histogram = ", ".join(
        f"{attempts}x {calls:,}" for attempts, calls in service.retries.histogram.items() if calls
    )
    refused = service.retries.budget_exhausted
    return histogram + (f"; budget refused {refused:,}" if refused else "")


_ROWS: tuple[tuple[str, Any], ...] = (
    ("offered", lambda s: f"{s.offered:,} calls ({s.offered_rate:.2f}/s)"),
    ("goodput", lambda s: f"{s.succeeded:,} succeeded ({s.goodput:.2f}/s)"),
    ("success rate", lambda s: f"{s.success_rate:.2%}"),
    ("amplification", lambda s: f"{s.amplification:.3f} attempts per call"),
    ("latency p50/p95/p99/p99.9", lambda s: _percentiles(s.latency)),
    ("  of which queueing", lambda s: _percentiles(s.queueing)),
    ("mailbox depth max / p99", lambda s: f"{s.mailbox.max:,} / {s.mailbox.p99:,}"),
    (
        "other outcomes",
        lambda s: _counts(
            {k: v for k, v in s.outcomes.items() if k not in REJECTED and k != "success"}
        ),
    ),
    ("rejections", lambda s: _counts(s.rejections)),
    ("breaker", _breaker),
    ("limiter", _limiter),
    ("retries (attempts x calls)", _retries),
    ("restarts", lambda s: f"{s.restarts}" + (f" (stopped: {s.stopped})" if s.stopped else "")),
    ("provider answers", lambda s: _counts(s.provider.answers)),
)


def report_table(report: Report) -> RenderableType:
    """The report: provenance, then one column per service."""
    p = report.provenance
    title = Text.assemble(
        (p.scenario, "bold"),
        f"  {report.duration:g} s simulated, seed {p.seed}, {p.backend}, "
        f"config {p.config_hash}, nexus-connector {p.version}",
    )
    table = Table(show_lines=False, header_style="bold")
    table.add_column("")
    for service in report.services:
        table.add_column(service.name, overflow="fold")
    for label, read in _ROWS:
        table.add_row(label, *(read(service) for service in report.services))
    return Group(title, table)


def _estimate(value: Estimate, metric: str) -> str:
    if value.mean is None:
        return "-"
    percent = metric in ("success_rate", "rejected_share")
    scale = 100 if percent else 1
    unit = " %" if percent else ""
    mean = value.mean * scale
    text = f"{mean:,.0f}{unit}" if abs(mean) >= 1000 else f"{mean:.4g}{unit}"
    if value.half_width is not None:
        text += f" ± {value.half_width * scale:.2g}"
    return text


def comparison_tables(comparison: Comparison) -> RenderableType:
    """Per service, metrics by variant (and by sweep value, one table per metric)."""
    seeds = len(comparison.seeds)
    heading = Text.assemble(
        (comparison.scenario, "bold"),
        f"  {seeds} seed{'s' if seeds != 1 else ''} per point, {comparison.backend}; "
        "mean ± 95 % interval",
    )
    parts: list[RenderableType] = [heading]
    services = list(comparison.points[0].services)
    for service in services:
        if comparison.parameter is None:
            table = Table(title=service, header_style="bold")
            table.add_column("metric")
            for point in comparison.points:
                table.add_column(point.variant)
            for metric in comparison.points[0].services[service]:
                table.add_row(
                    metric,
                    *(_estimate(p.services[service][metric], metric) for p in comparison.points),
                )
            parts.append(table)
            continue
        for metric in ("goodput", "success_rate", "amplification", "latency_p99"):
            title = f"{service}: {metric} by {comparison.parameter}"
            table = Table(title=title, header_style="bold")
            table.add_column("value")
            for variant in comparison.variants:
                table.add_column(variant)
            for value in comparison.values:
                row = [
                    _estimate(p.services[service][metric], metric)
                    for variant in comparison.variants
                    for p in comparison.points
                    if p.variant == variant and p.value == value
                ]
                table.add_row(repr(value), *row)
            parts.append(table)
    return Group(*parts)
