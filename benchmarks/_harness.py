"""Timing machinery shared by every benchmark section.

A section builds `Case`s and hands them to `run_cases`. Cases are timed
interleaved: each repetition runs every case once, round-robin, starting one
case further along each time, so machine drift (frequency scaling, a noisy
neighbour) hits all cases alike instead of whichever ran last. With several
backends, each repetition runs one round per backend, for the same reason.

A sample is one run of ``ops`` operations timed with `time.perf_counter_ns`;
the report gives the median and the minimum of ns per operation over the
samples, and the median's ratio to the case's named baseline. A section may
also report `Figure`s: numbers that are not timings (a rate derived from them,
bytes of memory, a count), each with its unit.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import NamedTuple

import anyio
import msgspec

__all__ = [
    "BACKENDS",
    "Case",
    "CaseResult",
    "Figure",
    "Machine",
    "Report",
    "Runner",
    "Section",
    "Settings",
    "format_report",
    "machine_info",
    "new_report",
    "run_cases",
]

BACKENDS = ("asyncio", "trio")

# A runner does the operations its setup prepared for; an async one is awaited.
Runner = Callable[[], None] | Callable[[], Awaitable[None]]

# Distributions every report names, whatever sections ran.
_CORE_PACKAGES = ("nexus-connector", "anyio", "msgspec", "trio")


@dataclass(frozen=True, kw_only=True)
class Case:
    """One thing to time.

    ``setup(ops)`` builds fresh state outside the timed region and returns a
    runner doing ``ops`` operations; it is called again before every sample, so
    every sample starts from the same state. A synchronous case does not depend
    on the event loop and is timed once, under the first backend; an
    ``asynchronous`` one is timed under each backend it supports. ``requires``
    names modules (peers) without which the case is skipped, not failed.
    """

    name: str
    setup: Callable[[int], Runner]
    asynchronous: bool = False
    baseline: str | None = None
    note: str = ""
    requires: tuple[str, ...] = ()
    backends: frozenset[str] = frozenset(BACKENDS)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    repetitions: int
    ops: int
    backends: tuple[str, ...]
    quick: bool = False


class CaseResult(msgspec.Struct, frozen=True, kw_only=True):
    """Every sample of one case under one backend (None: a synchronous case), summarised.

    ``sample_ns`` are whole samples of ``ops`` operations each; ``median`` and
    ``min`` are ns per operation; ``ratio`` is ``median`` over the baseline's
    median and ``overhead`` their difference in ns. A skipped case has no
    samples and says why in ``skipped``.
    """

    section: str
    name: str
    backend: str | None
    note: str
    baseline: str | None
    ops: int
    sample_ns: list[int]
    median: float | None
    min: float | None
    ratio: float | None
    overhead: float | None
    skipped: str | None = None


class Figure(msgspec.Struct, frozen=True, kw_only=True):
    """A number a section reports that is not a timing: a rate, a ratio, bytes, a count.

    ``backend`` None: the figure does not depend on the event loop.
    """

    section: str
    name: str
    backend: str | None
    value: float
    unit: str
    note: str = ""


class Machine(msgspec.Struct, frozen=True, kw_only=True):
    platform: str
    python: str
    implementation: str
    cpu_count: int | None
    packages: dict[str, str | None]
    # The 1-minute load average when the run began: on a shared machine, a load
    # above the CPU count means samples were preempted and medians are inflated.
    load: float | None = None


class Report(msgspec.Struct, frozen=True, kw_only=True):
    started_at: str
    machine: Machine
    settings: Settings
    results: list[CaseResult]
    figures: list[Figure] = msgspec.field(default_factory=list)


class Section(NamedTuple):
    """A named part of the run: what it measures and which peers' versions it reports."""

    run: Callable[[Settings], Sequence[CaseResult | Figure]]
    packages: tuple[str, ...] = ()


def machine_info(packages: Iterable[str] = ()) -> Machine:
    """Where the numbers came from; a package not installed has version None."""
    versions: dict[str, str | None] = {}
    for name in dict.fromkeys((*_CORE_PACKAGES, *packages)):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return Machine(
        platform=platform.platform(),
        python=sys.version.split()[0],
        implementation=platform.python_implementation(),
        cpu_count=os.cpu_count(),
        packages=versions,
        load=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    )


def new_report(
    machine: Machine,
    settings: Settings,
    results: list[CaseResult],
    figures: list[Figure] | None = None,
) -> Report:
    return Report(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine,
        settings=settings,
        results=results,
        figures=figures or [],
    )


# -- running -------------------------------------------------------------------

_Key = tuple[str, str | None]


def _key(case: Case, backend: str) -> _Key:
    return (case.name, backend if case.asynchronous else None)


def _skip_reason(case: Case, backend: str) -> str | None:
    for module in case.requires:
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed (pip install 'nexus-connector[bench]')"
    if backend not in case.backends:
        return f"{' / '.join(sorted(case.backends))} only"
    return None


def _check_baselines(cases: Sequence[Case]) -> dict[str, Case]:
    by_name = {case.name: case for case in cases}
    if len(by_name) != len(cases):
        raise ValueError("case names must be unique within a section")
    for case in cases:
        if case.baseline is not None and case.baseline not in by_name:
            raise ValueError(f"case {case.name!r} names an unknown baseline {case.baseline!r}")
    return by_name


async def _round(
    cases: list[Case], backend: str, ops: int, samples: dict[_Key, list[int]] | None, turn: int
) -> None:
    """Time every case once, starting at ``turn``; ``samples`` None is a warm-up."""
    start = turn % len(cases)
    for case in cases[start:] + cases[:start]:
        runner = case.setup(ops)
        # As timeit does: no cyclic collection inside a sample, whoever allocated last.
        collecting = gc.isenabled()
        gc.disable()
        try:
            began = time.perf_counter_ns()
            pending = runner()
            if pending is not None:
                await pending
            elapsed = time.perf_counter_ns() - began
        finally:
            if collecting:
                gc.enable()
        if samples is not None:
            samples[_key(case, backend)].append(elapsed)


def run_cases(section: str, cases: Sequence[Case], settings: Settings) -> list[CaseResult]:
    """Time ``cases`` interleaved under ``settings`` and summarise them in case order."""
    by_name = _check_baselines(cases)
    skipped: dict[_Key, str] = {}
    plan: dict[str, list[Case]] = {}
    for index, backend in enumerate(settings.backends):
        timed: list[Case] = []
        for case in cases:
            if not case.asynchronous and index > 0:
                continue
            reason = _skip_reason(case, backend)
            if reason is None:
                timed.append(case)
            else:
                skipped[_key(case, backend)] = reason
        if timed:
            plan[backend] = timed

    samples: dict[_Key, list[int]] = {
        _key(case, backend): [] for backend, timed in plan.items() for case in timed
    }
    for backend, timed in plan.items():
        anyio.run(_round, timed, backend, settings.ops, None, 0, backend=backend)
    for turn in range(settings.repetitions):
        for backend, timed in plan.items():
            anyio.run(_round, timed, backend, settings.ops, samples, turn, backend=backend)

    def per_op(key: _Key) -> float | None:
        taken = samples.get(key)
        return statistics.median(taken) / settings.ops if taken else None

    results: list[CaseResult] = []
    for case in cases:
        backends = settings.backends if case.asynchronous else settings.backends[:1]
        for backend in backends:
            key = _key(case, backend)
            median = per_op(key)
            base = None
            if case.baseline is not None and median is not None:
                base = per_op(_key(by_name[case.baseline], backend))
            taken = samples.get(key, [])
            results.append(
                CaseResult(
                    section=section,
                    name=case.name,
                    backend=key[1],
                    note=case.note,
                    baseline=case.baseline,
                    ops=settings.ops,
                    sample_ns=taken,
                    median=median,
                    min=min(taken) / settings.ops if taken else None,
                    ratio=median / base if median is not None and base else None,
                    overhead=median - base if median is not None and base else None,
                    skipped=skipped.get(key),
                )
            )
    return results


# -- printing ------------------------------------------------------------------

_HEADERS = ("case", "backend", "ns/op", "min", "ratio", "+ns/op", "baseline / note")
_NUMERIC = frozenset({2, 3, 4, 5})
_FIGURE_HEADERS = ("figure", "backend", "value", "unit", "note")
_FIGURE_NUMERIC = frozenset({2})


def _row(result: CaseResult) -> tuple[str, ...]:
    backend = result.backend or "-"
    if result.skipped is not None:
        return (result.name, backend, "skipped", "", "", "", result.skipped)
    if result.median is None or result.min is None:
        raise ValueError(f"case {result.name!r} has neither samples nor a skip reason")
    ratio = f"{result.ratio:.2f}x" if result.ratio is not None else ""
    overhead = f"{result.overhead:+.1f}" if result.overhead is not None else ""
    note = f"vs {result.baseline}" if result.baseline is not None else "baseline"
    if result.note:
        note = f"{note}; {result.note}"
    return (
        result.name,
        backend,
        f"{result.median:.1f}",
        f"{result.min:.1f}",
        ratio,
        overhead,
        note,
    )


def _value(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _figure_row(figure: Figure) -> tuple[str, ...]:
    return (figure.name, figure.backend or "-", _value(figure.value), figure.unit, figure.note)


def _table(rows: list[tuple[str, ...]], numeric: frozenset[int] = _NUMERIC) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines


def format_report(report: Report) -> str:
    """The report as aligned plain text: a header, then one table per section."""
    machine, settings = report.machine, report.settings
    versions = ", ".join(
        f"{name} {version}" for name, version in machine.packages.items() if version is not None
    )
    lines = [
        f"{machine.implementation} {machine.python} on {machine.platform}, "
        f"{machine.cpu_count} CPUs"
        + (f", load {machine.load:.2f} at start" if machine.load is not None else ""),
        versions,
        f"{settings.repetitions} repetitions x {settings.ops} ops, interleaved; "
        f"median and min ns per operation; ratio = median / baseline median",
    ]
    sections = dict.fromkeys(
        [*(r.section for r in report.results), *(f.section for f in report.figures)]
    )
    for section in sections:
        results = [r for r in report.results if r.section == section]
        figures = [f for f in report.figures if f.section == section]
        title = f"== {section} =="
        sizes = {r.ops for r in results}
        if sizes and sizes != {settings.ops}:
            title += f" ({' / '.join(str(size) for size in sorted(sizes))} ops per sample)"
        lines += ["", title]
        if results:
            lines += _table([_HEADERS] + [_row(r) for r in results])
        if figures:
            if results:
                lines.append("")
            lines += _table([_FIGURE_HEADERS] + [_figure_row(f) for f in figures], _FIGURE_NUMERIC)
    return "\n".join(lines)
