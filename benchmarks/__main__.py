"""``python -m benchmarks``: run the sections, print a table, optionally write JSON."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import msgspec

from . import _failure, _http, _logging, _memory, _overhead, _policies, _redis, _sim, _throughput
from ._harness import (
    BACKENDS,
    CaseResult,
    Figure,
    Section,
    Settings,
    format_report,
    machine_info,
    new_report,
)

# Every section, in the order a full run takes them; a new section adds one entry.
# Each sizes its samples from --ops: see the section's module docstring.
SECTIONS: dict[str, Section] = {
    "policies": _policies.SECTION,
    "overhead": _overhead.SECTION,
    "throughput": _throughput.SECTION,
    "memory": _memory.SECTION,
    "logging": _logging.SECTION,
    "http": _http.SECTION,
    "redis": _redis.SECTION,
    "sim": _sim.SECTION,
    "failure": _failure.SECTION,
}

# (repetitions, operations per sample): the full run and --quick.
_FULL = (15, 100_000)
_QUICK = (5, 20_000)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time nexus-connector against bare calls and peers, side by side.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{_QUICK[0]} repetitions x {_QUICK[1]} ops instead of {_FULL[0]} x {_FULL[1]}",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(SECTIONS),
        metavar="SECTION",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report here")
    parser.add_argument(
        "--backend",
        choices=(*BACKENDS, "both"),
        default="asyncio",
        help="event loop for async cases (default: asyncio)",
    )
    parser.add_argument("--repetitions", type=_positive, help="override the repetition count")
    parser.add_argument(
        "--ops",
        type=_positive,
        help="override the operations per sample (sections scale their sizes from it)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    for backend in backends:
        if importlib.util.find_spec(backend) is None:
            parser.error(f"--backend {args.backend} needs {backend}, which is not installed")
    repetitions, ops = _QUICK if args.quick else _FULL
    settings = Settings(
        repetitions=args.repetitions or repetitions,
        ops=args.ops or ops,
        backends=backends,
        quick=args.quick,
    )
    names = list(dict.fromkeys(args.only or SECTIONS))
    machine = machine_info(package for name in names for package in SECTIONS[name].packages)

    results: list[CaseResult] = []
    figures: list[Figure] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        for item in SECTIONS[name].run(settings):
            if isinstance(item, Figure):
                figures.append(item)
            else:
                results.append(item)
    report = new_report(machine, settings, results, figures)
    print(format_report(report))
    if args.json is not None:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
