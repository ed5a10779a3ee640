"""``connector simulate`` / ``python -m connector.sim``: run a scenario file, report.

Prints the report as a table, and writes it as JSON (``--json``) and PNG plots
(``--plot``) if asked. ``--compare`` runs the scenario's variants side by side,
``--sweep`` runs each at several values of one parameter, ``--seeds`` sets the
seeds per point. Exit status: 0 done, 1 the simulation failed, 2 bad input (a
bad scenario file or override, or a missing extra).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ._backends import BACKENDS
from ._compare import Comparison, compare
from ._guard import VirtualTimeViolation
from ._plot import plot_comparison, plot_report
from ._report import Report
from ._scenario import Scenario, ScenarioError, load_scenario, split_path
from ._simulate import simulate
from ._table import comparison_tables, report_table

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connector simulate",
        description="Run a scenario through the real runtime in virtual time.",
    )
    parser.add_argument("scenario", type=Path, help="the scenario file (TOML)")
    parser.add_argument("--seed", type=int, help="the seed (default: the scenario's)")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="asyncio", help="event loop (default: asyncio)"
    )
    parser.add_argument(
        "--json", metavar="OUT", help="write the report as JSON here (- for stdout)"
    )
    parser.add_argument("--plot", metavar="DIR", type=Path, help="write PNG plots into DIR")
    parser.add_argument(
        "--compare",
        nargs="*",
        metavar="VARIANT",
        help="compare the base scenario with its variants (all, or those named)",
    )
    parser.add_argument(
        "--sweep",
        metavar="PATH=VALUES",
        help="run each variant at several values of one parameter: "
        "PATH=V1,V2,... or PATH=START:STOP:STEP (values in TOML syntax)",
    )
    parser.add_argument("--seeds", type=int, metavar="K", help="seeds per compared point")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _values(text: str) -> list[Any]:
    """``0:1:0.25`` (inclusive) or ``a,b,c``, each a TOML value."""
    parts = text.split(":")
    if len(parts) == 3:
        start, stop, step = (float(_toml_value(part)) for part in parts)
        if step <= 0 or stop < start:
            raise ValueError("START:STOP:STEP needs STEP > 0 and STOP >= START")
        count = round((stop - start) / step) + 1
        return [round(start + k * step, 12) for k in range(count)]
    return [_toml_value(part) for part in text.split(",")]


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()  # a bare word is a string


def _sweep(text: str) -> tuple[str, list[Any]]:
    path, equals, values = text.partition("=")
    if not equals or not split_path(path.strip()) or not values.strip():
        raise ValueError("expected PATH=V1,V2,... or PATH=START:STOP:STEP")
    return path.strip(), _values(values)


class _Bar:
    """A progress bar in virtual time, on stderr, when stderr is a terminal."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled and console.is_terminal:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f} / {task.total:,.0f} s virtual"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                auto_refresh=False,  # no refresh thread: the run has none
            )
        self._shown = -1

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("simulating", total=1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def label(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._shown = -1
            self._progress.update(self._task, description=text, completed=0)
            self._progress.refresh()

    def tick(self, done: float, total: float) -> None:
        if self._progress is None or self._task is None:
            return
        percent = int(100 * done / total) if total else 100
        if percent != self._shown:  # at most a hundred redraws a run
            self._shown = percent
            self._progress.update(self._task, completed=done, total=total)
            self._progress.refresh()

    @property
    def callback(self) -> Callable[[float, float], None] | None:
        return self.tick if self._progress is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    out = Console()
    sweep: tuple[str, list[Any]] | None = None
    if args.sweep is not None:
        try:
            sweep = _sweep(args.sweep)
        except ValueError as error:
            parser.error(f"--sweep: {error}")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        _say("error: --plot needs matplotlib: pip install 'nexus-connector[plot]'")
        return 2
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as error:
        _say(f"error: {error}")
        return 2
    if args.seed is not None:
        scenario = scenario.override({"seed": args.seed}, source="--seed")

    began = time.perf_counter()  # wall-clock-ok: the shell's clock, outside any run
    try:
        with _Bar(err, not args.no_progress) as bar:
            if args.compare is not None or sweep is not None:
                result: Report | Comparison = _compare(scenario, args, sweep, bar)
            else:
                result = simulate(scenario, backend=args.backend, progress=bar.callback)
    except ScenarioError as error:
        _say(f"error: {error}")
        return 2
    except VirtualTimeViolation as error:
        _say(f"simulation failed: {error}")
        return 1
    elapsed = time.perf_counter() - began  # wall-clock-ok
    _write(result, args, out)
    virtual = scenario.duration * _runs(result)
    _say(f"simulated {virtual:,.0f} s in {elapsed:.1f} s of wall time")
    return 0


def _say(line: str) -> None:
    """One plain line on stderr, never wrapped: errors and notes stay greppable."""
    print(line, file=sys.stderr)


def _write(result: Report | Comparison, args: argparse.Namespace, out: Console) -> None:
    """The table on stdout (unless the JSON goes there), then the JSON and the plots."""
    data = result.to_json()
    if args.json == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        out.print(report_table(result) if isinstance(result, Report) else comparison_tables(result))
        if args.json is not None:
            target = Path(args.json)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    if args.plot is not None:
        paths = (
            plot_report(result, args.plot)
            if isinstance(result, Report)
            else plot_comparison(result, args.plot)
        )
        for path in paths:
            _say(f"wrote {path}")


def _runs(result: Report | Comparison) -> int:
    if isinstance(result, Report):
        return 1
    return len(result.points) * len(result.seeds)


def _compare(
    scenario: Scenario, args: argparse.Namespace, sweep: tuple[str, list[Any]] | None, bar: _Bar
) -> Comparison:
    def started(done: int, total: int, variant: str, value: Any, seed: int) -> None:
        at = "" if value is None else f" {sweep[0] if sweep else 'value'}={value!r}"
        bar.label(f"run {done + 1}/{total}: {variant}{at}, seed {seed}")

    return compare(
        scenario,
        variants=args.compare or None,
        parameter=sweep[0] if sweep else None,
        values=sweep[1] if sweep else (),
        seeds=args.seeds,
        backend=args.backend,
        started=started,
        progress=bar.callback,
    )
