"""``connector health``: is each configured service healthy? For people and container probes.

Per service, over the period ``--since`` (default the last 15 minutes):

- the success rate in the integration log: **healthy** at 95 % or more,
  **degraded** below (or while its breaker is half-open), **idle** with no
  traffic at all (no traffic is not a symptom);
- the circuit breaker: read from the shared state store when the file names
  one (``stores.shared_state``: the state every process acts on); otherwise
  derived from the log, since a breaker lives in the memory of the process
  that runs it: **open** when the service's newest record in the period is a
  ``circuit_open`` refusal, **closed** when it is anything else, **unknown**
  without records;
- the provider probe, when the service has a ``health`` table: one request,
  no retry, its own timeout.

A service is **unhealthy** when its breaker is open (or forced open) or its
probe failed; the command then exits 1, else 0 (2 for a bad config file).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Literal

import anyio
import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._auth import Auth
from ._breaker import BreakerState
from ._cli_logs import parse_since
from ._clock import system_wall_clock
from ._config import ConnectorConfig, HealthProbe, HttpServiceConfig, load_config
from ._configured import (
    base_url_of,
    credential_managers,
    credential_store_of,
    log_store_of,
    shared_state_of,
)
from ._endpoint import Endpoint
from ._errors import ConfigError, ConnectionFailed, ConnectorError, VendorError
from ._http_service import HttpService
from ._logrecord import LogFilters, LogMetrics, LogStatus
from ._logstore import LogStore
from ._policy import ServicePolicy
from ._retry import Retry
from ._runtime import Runtime
from ._shared_state import MemorySharedState, SharedPolicyState, SharedStateError
from ._store_urls import log_store_from_url

__all__ = [
    "DEFAULT_CONFIG",
    "HEALTHY_RATE",
    "HealthReport",
    "HealthStatus",
    "ProbeResult",
    "ServiceHealth",
    "add_commands",
    "check_health",
    "service_status",
]

DEFAULT_CONFIG = "connector.toml"
HEALTHY_RATE = 95  # percent of successes, inclusive

HealthStatus = Literal["healthy", "degraded", "unhealthy", "idle"]
BreakerSource = Literal["shared", "log", "policy"]

_EPILOG = """\
examples:
  connector health                                 every service in ./connector.toml
  connector health --config /etc/app/connector.toml --since 5m
  connector health --service stripe --json         one service, as JSON, for scripts
  connector health --no-probe                      the log and breakers only

exit status: 0 when no service is unhealthy, 1 when one is, 2 for a bad config.
"""


class ProbeResult(msgspec.Struct, frozen=True, kw_only=True):
    """One probe request: ``ok`` when the provider answered the expected status."""

    ok: bool
    status: int | None = None
    error: str | None = None
    duration_ms: float


class ServiceHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One service's verdict and what it rests on (see the module docstring)."""

    service: str
    status: HealthStatus
    success_rate: float | None
    successes: int
    failures: int
    breaker: str
    breaker_source: BreakerSource
    probe: ProbeResult | None = None


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    healthy: bool
    since: datetime
    services: list[ServiceHealth]


def service_status(
    successes: int, failures: int, breaker: str, probe: ProbeResult | None
) -> HealthStatus:
    """The verdict on one service (the module docstring gives the rules)."""
    if breaker in (BreakerState.OPEN, BreakerState.FORCED_OPEN) or (
        probe is not None and not probe.ok
    ):
        return "unhealthy"
    total = successes + failures
    if total == 0:
        return "idle"
    # In integers: a rate rounded for display must not decide the verdict.
    if successes * 100 >= HEALTHY_RATE * total and breaker != BreakerState.HALF_OPEN:
        return "healthy"
    return "degraded"


async def check_health(
    config: ConnectorConfig,
    *,
    since: datetime,
    until: datetime,
    environ: Mapping[str, str],
    log_store: str | None = None,
    services: Sequence[str] = (),
    probe: bool = True,
) -> HealthReport:
    """The health of ``services`` (default: all of the file's) between ``since`` and ``until``.

    ``log_store`` (a URL) replaces the file's log store.
    """
    names = list(services) or list(config.services)
    for name in names:
        if name not in config.services:
            raise ConfigError("--service", name, f"is not a service of {config.file}")
    async with AsyncExitStack() as stack:
        store: LogStore | None = (
            log_store_from_url(log_store, field="--store")
            if log_store is not None
            else log_store_of(config, environ)
        )
        if store is None:
            raise ConfigError(
                "--store", None, f"{config.file} names no log store (stores.log): pass --store"
            )
        await stack.enter_async_context(store)
        shared = shared_state_of(config, environ, fallback=False)
        if isinstance(shared, MemorySharedState):
            shared = None  # this process's own memory: nothing another process shared
        if shared is not None:
            stack.push_async_callback(shared.aclose)
        probes = await _probes(config, names, environ, stack) if probe else {}
        results = []
        for name in names:
            metrics = await store.metrics(name, since, until)
            breaker, source = await _breaker(config, name, store, shared, since, until)
            results.append(_verdict(name, metrics, breaker, source, probes.get(name)))
    return HealthReport(
        healthy=all(result.status != "unhealthy" for result in results),
        since=since,
        services=results,
    )


def _verdict(
    name: str, metrics: LogMetrics, breaker: str, source: BreakerSource, probe: ProbeResult | None
) -> ServiceHealth:
    return ServiceHealth(
        service=name,
        status=service_status(metrics.success_count, metrics.failure_count, breaker, probe),
        success_rate=metrics.success_rate,
        successes=metrics.success_count,
        failures=metrics.failure_count,
        breaker=breaker,
        breaker_source=source,
        probe=probe,
    )


async def _breaker(
    config: ConnectorConfig,
    name: str,
    store: LogStore,
    shared: SharedPolicyState | None,
    since: datetime,
    until: datetime,
) -> tuple[str, BreakerSource]:
    service = config.services[name]
    policy = ServicePolicy(**service.policy)
    if policy.breaker is None:
        return "none", "policy"
    # A keyed service has a breaker per tenant or endpoint, not one to read.
    if shared is not None and policy.key_by is None:
        try:
            state = await shared.breaker_state(name, policy.breaker, until.timestamp())
        except SharedStateError:
            pass  # unreachable: what the log says is the next best thing
        else:
            return str(state.state), "shared"
    newest = await store.query(
        LogFilters(service_name=name, date_from=since, date_to=until), limit=1
    )
    if not newest:
        return "unknown", "log"
    opened = newest[0].status is LogStatus.CIRCUIT_OPEN
    return str(BreakerState.OPEN if opened else BreakerState.CLOSED), "log"


async def _probes(
    config: ConnectorConfig, names: list[str], environ: Mapping[str, str], stack: AsyncExitStack
) -> dict[str, ProbeResult]:
    """Each named service's probe, all at once, on a runtime of their own that logs nothing."""
    probed = {name: config.services[name].health for name in names}
    checks = {name: probe for name, probe in probed.items() if probe is not None}
    if not checks:
        return {}
    credential_store = credential_store_of(config, environ, system_wall_clock)
    if credential_store is not None:
        await stack.enter_async_context(credential_store)
    runtime = await stack.enter_async_context(Runtime())
    # Only the probed services' credentials are read: the others need none here.
    probing = msgspec.structs.replace(
        config, services={name: config.services[name] for name in checks}
    )
    managers = await credential_managers(probing, runtime, environ=environ, store=credential_store)
    results: dict[str, ProbeResult] = {}

    async def run(name: str, probe: HealthProbe, http: HttpService) -> None:
        results[name] = await _probe(http, probe)

    async with anyio.create_task_group() as group:
        for name, probe in checks.items():
            service = config.services[name]
            credentials = managers.get(name)
            auth = None
            if credentials is not None:
                # The service's own credentials, placed as the service places them.
                auth = (service.auth if isinstance(service, HttpServiceConfig) else None) or Auth()
                if auth.service is None:
                    auth = msgspec.structs.replace(auth, service=name)
            http = HttpService(
                runtime,
                f"{name} health",
                base_url=base_url_of(service),
                headers=service.headers if isinstance(service, HttpServiceConfig) else None,
                credentials=credentials,
                auth=auth,
                timeout=probe.timeout,
                retry=Retry(attempts=1),
                breaker=None,
                retry_budget=None,
            )
            group.start_soon(run, name, probe, http)
    return results


async def _probe(http: HttpService, probe: HealthProbe) -> ProbeResult:
    started = anyio.current_time()
    status: int | None = None
    error: str | None = None
    try:
        response = await http.request(Endpoint.create(probe.path, probe.method), idempotent=True)
        status = response.status
    except VendorError as refused:
        status = refused.status
        error = refused.message
    except ConnectorError as failed:
        # The innermost error says it best ("HTTP 503", "timed out after 5 seconds").
        while isinstance(failed.__cause__, ConnectorError):
            failed = failed.__cause__
        error = failed.last_error if isinstance(failed, ConnectionFailed) else failed.message
    ok = status == probe.expect_status
    if ok:
        error = None
    elif error is None:
        error = f"HTTP {status}, expected {probe.expect_status}"
    duration_ms = round((anyio.current_time() - started) * 1000, 1)
    return ProbeResult(ok=ok, status=status, error=error, duration_ms=duration_ms)


# -- the command ----------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    health = subparsers.add_parser(
        "health",
        help="per service: success rate, breaker, provider probe; exit 1 if one is unhealthy",
        description=(
            "Report each service of the config file as healthy (95 % successes or more),\n"
            "degraded (fewer), idle (no traffic) or unhealthy (its breaker is open, or its\n"
            "health probe failed)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    health.add_argument(
        "--config",
        default=os.environ.get("CONNECTOR_CONFIG", DEFAULT_CONFIG),
        help="the config file (default: $CONNECTOR_CONFIG or %(default)s)",
    )
    health.add_argument("--store", help="the log store URL (default: the config's stores.log)")
    health.add_argument("--since", default="15m", help="the period: 5m, 1h, or a date")
    health.add_argument(
        "--service", action="append", default=[], help="only this service (repeatable)"
    )
    health.add_argument("--no-probe", action="store_true", help="do not call the providers")
    health.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    health.set_defaults(handler=_health)


def _health(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = system_wall_clock()
    since = parse_since(args.since, now)

    async def check() -> HealthReport:
        return await check_health(
            config,
            since=since,
            until=datetime.fromtimestamp(now, UTC),
            environ=os.environ,
            log_store=args.store,
            services=args.service,
            probe=not args.no_probe,
        )

    report = anyio.run(check)
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        _print(report)
    return 0 if report.healthy else 1


_STYLES = {"healthy": "green", "idle": "dim", "degraded": "yellow", "unhealthy": "bold red"}


def _print(report: HealthReport) -> None:
    table = Table(
        "service",
        "status",
        "success rate",
        "calls",
        "breaker",
        "probe",
        title=f"health since {report.since:%Y-%m-%d %H:%M:%S} UTC",
    )
    for result in report.services:
        rate = "-" if result.success_rate is None else f"{result.success_rate:g} %"
        probe = result.probe
        if probe is None:
            shown = "-"
        elif probe.ok:
            shown = f"ok ({probe.status}, {probe.duration_ms:g} ms)"
        else:
            shown = escape(f"failed: {probe.error}")
        table.add_row(
            result.service,
            f"[{_STYLES[result.status]}]{result.status}[/]",
            rate,
            str(result.successes + result.failures),
            f"{result.breaker} ({result.breaker_source})",
            shown,
        )
    Console().print(table)
