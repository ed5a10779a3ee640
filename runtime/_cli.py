"""The ``connector`` command: one entry point, a subcommand per job.

Errors are one clear line on stderr and a non-zero exit (2 for bad input: a
bad option, config file or store URL; 1 for a failure at run time), never a
traceback unless ``--debug``. ``simulate`` and ``bench`` hand their arguments
to the simulator's and the benchmark harness's own parsers.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from ._errors import ConfigError, ConnectorError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]

_EPILOG = """\
examples:
  connector demo --duration 20             the whole runtime against fake vendors, live
  connector simulate sim/scenarios/sendgrid_outage.toml --plot out/
  connector logs --service sendgrid --status failed --since 1h
  connector metrics stripe --since 24h
  connector credentials set stripe --method api_key --field api_key < key.txt
  connector health --config connector.toml
  connector bench --quick
"""


def _delegated(
    name: str, help_text: str, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]
) -> None:
    parser = subparsers.add_parser(name, help=help_text, add_help=False)
    parser.add_argument("arguments", nargs=argparse.REMAINDER)


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: keeps `connector --help` fast.
    from . import _cli_credentials, _cli_demo, _cli_health, _cli_logs, _cli_outbox  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="connector",
        description="Nexus Connector: a resilient actor runtime for calling external services.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _cli_demo.add_commands(subparsers)
    _cli_logs.add_commands(subparsers)
    _cli_credentials.add_commands(subparsers)
    _cli_health.add_commands(subparsers)
    _cli_outbox.add_commands(subparsers)
    _delegated("simulate", "run a scenario through the runtime in virtual time", subparsers)
    _delegated("bench", "run the benchmark harness (see `connector bench --help`)", subparsers)
    return parser


def _run_delegated(command: str, arguments: Sequence[str]) -> int:
    if command == "simulate":
        from connector.sim._cli import main as simulate  # noqa: PLC0415

        return simulate(list(arguments))
    # The harness is not installed with the package: it runs from a source
    # checkout, found beside an editable install or in the current directory.
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (root / "benchmarks" / "__main__.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            break
    else:
        raise ConfigError(
            "bench", "no benchmarks/ folder", "run it from a source checkout of the project"
        )
    from benchmarks.__main__ import main as bench  # noqa: PLC0415

    return bench(list(arguments))


def _error(message: str) -> None:
    # One line, unwrapped: a script or a container probe reads it.
    sys.stderr.write(f"connector: error: {' '.join(message.split())}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``connector`` command; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments
    try:
        if arguments and arguments[0] in ("simulate", "bench"):
            return _run_delegated(arguments[0], arguments[1:])
        parser = build_parser()
        namespace = parser.parse_args(arguments)
        handler: Handler = namespace.handler
        return handler(namespace)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except (ConfigError, msgspec.ValidationError) as error:
        if debug:
            raise
        _error(str(error))
        return 2
    except ConnectorError as error:
        if debug:
            raise
        _error(str(error))
        return 1
    except (OSError, sqlite3.Error) as error:
        if debug:
            raise
        _error(str(error))
        return 1


if __name__ == "__main__":
    sys.exit(main())
