"""``connector demo``: the runtime on live traffic against fake vendors, no server needed."""

from __future__ import annotations

import argparse
import functools

import anyio
from rich.console import Console

from ._demo import (
    DEFAULT_DURATION,
    DEFAULT_LOG,
    DEFAULT_SEED,
    MAX_DURATION,
    MIN_DURATION,
    DemoSettings,
    run_demo,
    serve_vendors,
)

__all__ = ["add_commands"]

_DESCRIPTION = """\
Run the real runtime and adapters (SendGrid, Twilio, Stripe) against fake vendor
servers on 127.0.0.1, with a few calls a second to each, and break things on cue:
SendGrid goes down (its breaker opens, probes, closes again), Stripe throttles
(429 with Retry-After), Twilio stalls past its timeout and a burst overflows its
mailbox. A live dashboard shows each service's breaker, limiter tokens, calls in
flight, mailbox depth, outcomes and rejections by reason; at the end a summary
is read back from the SQLite integration log, which holds a record of every
attempt and rejection. Ctrl-C stops early: traffic stops, calls in flight
finish, the log is flushed and the summary printed; the exit status is then 130
(143 on SIGTERM), else 0 (1 if a record went missing from the log).
Needs the testing extra: pip install 'nexus-connector[testing]'.
"""

_EPILOG = """\
examples:
  connector demo                           20 s, live, log in ./connector-demo.sqlite3
  connector demo --duration 60 --seed 42   longer, other traffic
  connector demo --no-dashboard --log /tmp/demo.sqlite3
  connector logs --store sqlite:///connector-demo.sqlite3 --status circuit_open
  connector metrics sendgrid --store sqlite:///connector-demo.sqlite3
"""


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="live traffic through the runtime against fake vendors (no server needed)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION,
        metavar="SECONDS",
        help=f"how long traffic runs, {MIN_DURATION:g} to {MAX_DURATION:g} (default: %(default)g)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seeds the traffic and the jitter: same seed, same calls (default: %(default)s)",
    )
    demo.add_argument(
        "--log",
        default=DEFAULT_LOG,
        metavar="PATH",
        help="the SQLite integration log to write, added to if it exists (default: %(default)s)",
    )
    demo.add_argument(
        "--no-dashboard",
        action="store_true",
        help="print progress lines instead of the live view "
        "(the default when standard output is not a terminal)",
    )
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    settings = DemoSettings(duration=args.duration, seed=args.seed, log=args.log)
    console = Console()
    live = console.is_terminal and not args.no_dashboard
    with serve_vendors(settings.seed) as vendors:
        result = anyio.run(functools.partial(run_demo, vendors, settings, console, live=live))
    return result.exit_code
