"""Compare mode: policy variants side by side, a sweep of one parameter, K seeds each.

Every point (variant x sweep value) runs with the same K seeds, so variants
see the same arrivals and provider draws (common random numbers) and their
differences are the policies'. Each metric is reported as its mean over the
seeds with a 95 % confidence interval (Student's t; none for one seed).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from ._report import ServiceReport, rounded
from ._scenario import Scenario, ScenarioError
from ._simulate import Progress, simulate

__all__ = ["BASE", "METRICS", "Comparison", "Estimate", "Point", "compare"]

BASE = "base"

# Two-sided 95 % quantiles of Student's t by degrees of freedom; beyond the
# table the normal's 1.96 is within 2 % (from df 30 on).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def _latency(report: ServiceReport, which: str) -> float:
    summary = report.latency if which.startswith("latency") else report.queueing
    if summary is None:
        return math.nan
    return float(getattr(summary, which.rpartition("_")[2]))


def _rejected_share(report: ServiceReport) -> float:
    rejected = sum(report.rejections.values()) - report.rejections["budget_exhausted"]
    return rejected / report.offered if report.offered else 0.0


# The metrics compared, by name: how each is read off a service report.
METRICS: dict[str, Callable[[ServiceReport], float]] = {
    "goodput": lambda r: r.goodput,
    "success_rate": lambda r: r.success_rate,
    "amplification": lambda r: r.amplification,
    "latency_p50": lambda r: _latency(r, "latency_p50"),
    "latency_p99": lambda r: _latency(r, "latency_p99"),
    "queueing_p99": lambda r: _latency(r, "queueing_p99"),
    "rejected_share": _rejected_share,
    "throttled": lambda r: float(r.limiter.throttled),
    "breaker_open": lambda r: r.breaker.time_open if r.breaker is not None else 0.0,
    "mailbox_max": lambda r: float(r.mailbox.max),
}


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    """A metric over ``n`` seeds: the 95 % interval is ``mean +- half_width``."""

    mean: float | None
    half_width: float | None
    n: int


def estimate(values: Sequence[float]) -> Estimate:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Estimate(mean=None, half_width=None, n=0)
    mean = math.fsum(finite) / len(finite)
    if len(finite) == 1:
        return Estimate(mean=rounded(mean), half_width=None, n=1)
    df = len(finite) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    half = t * statistics.stdev(finite) / math.sqrt(len(finite))
    return Estimate(mean=rounded(mean), half_width=rounded(half), n=len(finite))


class Point(msgspec.Struct, frozen=True, kw_only=True):
    """One variant at one sweep value: per service, per metric, an estimate."""

    variant: str
    value: Any = None
    services: dict[str, dict[str, Estimate]]


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    scenario: str
    config_hash: str
    backend: str
    seeds: list[int]
    parameter: str | None
    values: list[Any]
    variants: list[str]
    points: list[Point]

    def to_json(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n"


# Called before each run: (run number from 0, runs in all, variant, value, seed).
RunStarted = Callable[[int, int, str, Any, int], None]


def compare(
    scenario: Scenario,
    *,
    variants: Sequence[str] | None = None,
    parameter: str | None = None,
    values: Sequence[Any] = (),
    seeds: int | None = None,
    backend: str = "asyncio",
    started: RunStarted | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Run ``scenario``'s base and ``variants`` (default: all it defines) at each of
    ``values`` of ``parameter`` (default: its ``sweep``, if any) with ``seeds`` seeds."""
    names = list(scenario.variants) if variants is None else list(variants)
    for name in names:
        if name != BASE and name not in scenario.variants:
            known = ", ".join([BASE, *scenario.variants])
            raise ScenarioError(
                "variant", name, f"is not defined (defined: {known})", source="compare"
            )
    names = [BASE, *(name for name in names if name != BASE)]
    if parameter is None and scenario.sweep is not None:
        parameter, values = scenario.sweep.parameter, scenario.sweep.values
    points_at: list[Any] = list(values) if parameter is not None else [None]
    count = scenario.seeds if seeds is None else seeds
    if count < 1:
        raise ScenarioError("seeds", count, "must be >= 1", source="compare")
    run_seeds = [scenario.seed + k for k in range(count)]
    # Every point's scenario is built (and validated) before the first run.
    planned: list[tuple[str, Any, Scenario]] = []
    for name in names:
        varied = scenario
        if name != BASE:
            varied = scenario.override(scenario.variants[name], source=f"variant {name!r}")
        for value in points_at:
            point = varied
            if parameter is not None:
                point = varied.override({parameter: value}, source=f"sweep {parameter}={value!r}")
            planned.append((name, value, point))
    total = len(planned) * len(run_seeds)
    points: list[Point] = []
    done = 0
    for name, value, point in planned:
        samples: dict[str, dict[str, list[float]]] = {
            service: {metric: [] for metric in METRICS} for service in point.services
        }
        for seed in run_seeds:
            if started is not None:
                started(done, total, name, value, seed)
            report = simulate(point, seed=seed, backend=backend, progress=progress)
            done += 1
            for service in report.services:
                for metric, read in METRICS.items():
                    samples[service.name][metric].append(read(service))
        points.append(
            Point(
                variant=name,
                value=value,
                services={
                    service: {metric: estimate(v) for metric, v in metrics.items()}
                    for service, metrics in samples.items()
                },
            )
        )
    return Comparison(
        scenario=scenario.name,
        config_hash=scenario.config_hash(),
        backend=backend,
        seeds=run_seeds,
        parameter=parameter,
        values=points_at if parameter is not None else [],
        variants=names,
        points=points,
    )
