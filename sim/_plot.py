"""PNG plots of reports and comparisons (matplotlib, the ``plot`` extra).

Figures are drawn with matplotlib's object API on an Agg canvas, never through
pyplot, so plotting neither needs a display nor changes the backend of a
program that imports this. matplotlib is imported by name when a plot is
drawn: the package, and type-checking it, do not need the extra.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path
from typing import Any

from ._compare import Comparison, Point
from ._report import Report, ServiceReport, breaker_spans

__all__ = ["PlotUnavailable", "plot_comparison", "plot_report"]

_SHADES = {
    "open": ("#d62728", 0.16, "breaker open"),
    "forced_open": ("#9467bd", 0.16, "breaker forced open"),
    "half_open": ("#ff7f0e", 0.30, "breaker half-open"),
}
_INCIDENT = "#444444"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""

    def __init__(self) -> None:
        super().__init__("plots need matplotlib: pip install 'nexus-connector[plot]'")


def _matplotlib(module: str) -> Any:
    try:
        return importlib.import_module(f"matplotlib.{module}")
    except ImportError:
        raise PlotUnavailable from None


def _figure(width: float, height: float) -> Any:
    return _matplotlib("figure").Figure(figsize=(width, height), layout="constrained")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "plot"


def _time_unit(duration: float) -> tuple[float, str]:
    if duration > 3 * 3600:
        return 3600.0, "h"
    if duration > 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def plot_report(report: Report, directory: str | Path) -> list[Path]:
    """One PNG per service in ``directory``; returns their paths."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for service in report.services:
        figure = _service_figure(report, service)
        path = folder / f"{_slug(report.provenance.scenario)}-{_slug(service.name)}.png"
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def _service_figure(report: Report, service: ServiceReport) -> Any:
    figure = _figure(11, 9)
    patch = _matplotlib("patches").Patch
    throughput, success, latency = figure.subplots(3, 1, sharex=True)
    scale, unit = _time_unit(report.duration)
    series = service.series
    width = report.bucket
    edges = [t / scale for t in series.start] + [
        (series.start[-1] + width) / scale if series.start else 0.0
    ]

    def per_second(counts: list[int]) -> list[float]:
        values = [count / width for count in counts]
        return values + values[-1:]

    lines = (
        ("offered", series.offered, "#7f7f7f", "--"),
        ("goodput (succeeded)", series.succeeded, "#2ca02c", "-"),
        ("attempts at the provider", series.attempts, "#1f77b4", ":"),
        ("failed", series.failed, "#d62728", "-"),
        ("rejected by policy", series.rejected, "#ff7f0e", "-"),
    )
    for label, counts, color, style in lines:
        throughput.step(
            edges, per_second(counts), where="post", label=label, color=color, linestyle=style
        )
    throughput.set_ylabel("calls per second")
    peak = max((count / width for _, counts, _, _ in lines for count in counts), default=0.0)
    throughput.set_ylim(0, max(peak, 1e-9) * 1.12)  # room for the incident strip on top

    rates: list[float] = []
    for ok, failed, rejected in zip(series.succeeded, series.failed, series.rejected, strict=True):
        ended = ok + failed + rejected
        rates.append(100.0 * ok / ended if ended else math.nan)
    success.step(edges, rates + rates[-1:], where="post", color="#2ca02c", label="success rate")
    success.set_ylabel("success rate (%)")
    success.set_ylim(-2, 105)

    for label, values, color in (
        ("p50", series.p50, "#1f77b4"),
        ("p95", series.p95, "#ff7f0e"),
        ("p99", series.p99, "#d62728"),
    ):
        points = [math.nan if v is None else v for v in values]
        latency.step(edges, points + points[-1:], where="post", label=label, color=color)
    latency.set_ylabel("latency of successes (s)")
    latency.set_xlabel(f"virtual time ({unit})")
    known = [v for v in series.p99 if v is not None and v > 0]
    if known and max(known) / max(min(known), 1e-9) > 50:
        latency.set_yscale("log")
    else:
        latency.set_ylim(bottom=0)

    end = report.duration
    spans = breaker_spans(service.breaker.timeline, end) if service.breaker is not None else []
    shown: set[str] = set()
    for axes in (throughput, success, latency):
        for start, stop, state in spans:
            color, alpha, _ = _SHADES.get(state, _SHADES["open"])
            axes.axvspan(start / scale, stop / scale, color=color, alpha=alpha, linewidth=0)
            shown.add(state)
        for incident in service.incidents:
            axes.axvspan(
                incident.start / scale,
                min(incident.end, end) / scale,
                ymin=0.97,
                ymax=1.0,
                color=_INCIDENT,
                linewidth=0,
            )
        axes.set_xlim(0, end / scale)
        axes.grid(True, alpha=0.3)

    extra = [
        patch(color=color, alpha=alpha, label=label)
        for state, (color, alpha, label) in _SHADES.items()
        if state in shown
    ]
    if service.incidents:
        kinds = sorted({incident.kind for incident in service.incidents})
        extra.append(patch(color=_INCIDENT, label="provider " + ", ".join(kinds)))
    handles, _ = throughput.get_legend_handles_labels()
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": "small"}
    throughput.legend(handles=handles + extra, **outside)
    success.legend(**outside)
    latency.legend(**outside)
    p = report.provenance
    figure.suptitle(
        f"{p.scenario}: {service.name}  (goodput {service.goodput:.2f}/s, "
        f"success {service.success_rate:.1%}, amplification {service.amplification:.2f}; "
        f"seed {p.seed}, {p.backend})"
    )
    return figure


_COMPARED = (
    ("goodput", "goodput (calls/s)", 1.0),
    ("success_rate", "success rate (%)", 100.0),
    ("amplification", "attempts per call", 1.0),
    ("latency_p99", "p99 latency of successes (s)", 1.0),
)


def plot_comparison(comparison: Comparison, directory: str | Path) -> list[Path]:
    """One PNG per service: the headline metrics by variant (and sweep value)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for service in comparison.points[0].services:
        figure = _figure(11, 8)
        grid = figure.subplots(2, 2)
        for axes, (metric, label, scale) in zip(grid.flat, _COMPARED, strict=True):
            if comparison.parameter is None:
                _bars(axes, comparison.points, service, metric, scale)
            else:
                _curves(axes, comparison, service, metric, scale)
                axes.set_xlabel(comparison.parameter)
            axes.set_ylabel(label)
            axes.grid(True, alpha=0.3)
        seeds = len(comparison.seeds)
        figure.suptitle(
            f"{comparison.scenario}: {service}  (mean and 95 % interval over {seeds} "
            f"seed{'s' if seeds != 1 else ''})"
        )
        path = folder / f"{_slug(comparison.scenario)}-compare-{_slug(service)}.png"
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def _bars(axes: Any, points: list[Point], service: str, metric: str, scale: float) -> None:
    names = [point.variant for point in points]
    means, errors = [], []
    for point in points:
        value = point.services[service][metric]
        means.append((value.mean if value.mean is not None else math.nan) * scale)
        errors.append((value.half_width or 0.0) * scale)
    axes.bar(names, means, yerr=errors, capsize=4, color="#1f77b4")


def _curves(axes: Any, comparison: Comparison, service: str, metric: str, scale: float) -> None:
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in comparison.values)
    for variant in comparison.variants:
        points = [p for p in comparison.points if p.variant == variant]
        xs = [p.value if numeric else i for i, p in enumerate(points)]
        means, errors = [], []
        for point in points:
            value = point.services[service][metric]
            means.append((value.mean if value.mean is not None else math.nan) * scale)
            errors.append((value.half_width or 0.0) * scale)
        axes.errorbar(xs, means, yerr=errors, capsize=3, marker="o", label=variant)
    if not numeric:
        axes.set_xticks(range(len(comparison.values)), [repr(v) for v in comparison.values])
    axes.legend(fontsize="small")
