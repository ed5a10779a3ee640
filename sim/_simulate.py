"""`simulate`: run a scenario through the real runtime in virtual time.

One run builds a `Runtime` seeded from the scenario's seed, registers each
service with its policy and a `FakeProvider` as its transport, and drives the
workloads at it: one task per arrival, each making one logical call through
the service's call shape and recording how it ended. Arrivals stop at the
scenario's duration; calls still running ``drain`` seconds later are cancelled
and reported as unfinished. The wall clock, real sleeps, sockets, threads and
global randomness are guarded against for the whole run (`RealWorldGuard`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from importlib import metadata

import anyio

from connector import (
    ActorCrashed,
    CircuitBreakerOpen,
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    DeadlineExceeded,
    Overloaded,
    RateLimitExceeded,
    Runtime,
    ServiceUnavailable,
    ShuttingDown,
    Timeout,
    Transport,
    VendorError,
)

from ._backends import Calls, Kernel, run_virtual
from ._calls import CALL_SHAPES, LogicalCall
from ._guard import RealWorldGuard, VirtualTimeViolation
from ._provider import FakeProvider
from ._recorder import CallRecord, Recorder, Track
from ._report import (
    Incident,
    LimiterSummary,
    Outcome,
    Provenance,
    ProviderSummary,
    Report,
    Retries,
    ServiceReport,
    percentiles,
    rounded,
)
from ._scenario import Scenario
from ._streams import fork
from ._workload import Workload

__all__ = ["Progress", "simulate"]

# Progress callback: (virtual seconds done, virtual seconds in all).
Progress = Callable[[float, float], None]

_OUTCOME_OF_ERROR: tuple[tuple[type[ConnectorError], Outcome], ...] = (
    (VendorError, "caller_error"),
    (CircuitBreakerOpen, "circuit_open"),
    (RateLimitExceeded, "rate_limited"),
    (Overloaded, "overloaded"),
    (DeadlineExceeded, "deadline"),
    (ServiceUnavailable, "unavailable"),
    (ShuttingDown, "shutting_down"),
    (ConnectionFailed, "failed"),
    (Timeout, "failed"),
    (ActorCrashed, "crashed"),
)


def simulate(
    scenario: Scenario,
    *,
    seed: int | None = None,
    backend: str = "asyncio",
    progress: Progress | None = None,
) -> Report:
    """Run ``scenario`` (with ``seed`` instead of its own, if given) and report.

    Raises `VirtualTimeViolation` when code under simulation touched the real
    world, and whatever escaped a call that was not a connector outcome.
    """
    run = _Run(scenario, scenario.seed if seed is None else seed, progress)
    try:
        report = run_virtual(run.main, backend, run.seed)
    except BaseException:
        if run.violation is not None:
            raise run.violation from None  # not the task group it escaped through
        raise
    if run.violation is not None:
        raise run.violation
    if run.crash is not None:
        raise run.crash
    return report


class _Run:
    def __init__(self, scenario: Scenario, seed: int, progress: Progress | None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.progress = progress
        self.violation: VirtualTimeViolation | None = None
        self.crash: BaseException | None = None
        self._cancel: Callable[[], None] = lambda: None
        bucket = scenario.bucket
        self.tracks = {
            name: Track(name, scenario.duration, bucket, scenario.warmup)
            for name in scenario.services
        }
        self.recorder = Recorder(self.tracks)

    def _violated(self, error: VirtualTimeViolation) -> None:
        self.violation = error
        self._cancel()

    def crashed(self, error: BaseException) -> None:
        if self.crash is None:
            self.crash = error
        self._cancel()

    async def main(self) -> Report:
        scenario, seed = self.scenario, self.seed
        kernel = Kernel()
        runtime = Runtime(
            rng=fork(seed, "runtime"),
            wall_clock=lambda: scenario.epoch + kernel.clock(),
            shutdown_timeout=0.0,
        )
        runtime.events = self.recorder
        providers: dict[str, FakeProvider] = {}
        shapes: dict[str, LogicalCall] = {}
        for name, spec in scenario.services.items():
            provider = providers[name] = FakeProvider(
                spec.provider,
                latency_rng=fork(seed, "provider", name, "latency"),
                error_rng=fork(seed, "provider", name, "errors"),
                clock=kernel.clock,
                sleep=kernel.sleep,
                wall_clock=lambda: scenario.epoch + kernel.clock(),
                on_request=self.tracks[name].request,
            )
            service = runtime.register(name, spec.policy, transport=_always(provider))
            shapes[name] = CALL_SHAPES[spec.call](service, spec, name)
        drivers = [
            _Driver(self, kernel, runtime, name, workload, shapes[workload.service])
            for name, workload in scenario.workloads.items()
        ]
        # Entered inside the loop: trio opens its wake-up socket as it starts.
        with RealWorldGuard(self._violated):
            async with runtime, anyio.create_task_group() as group:
                self._cancel = group.cancel_scope.cancel
                calls = kernel.calls(group, self.crashed)
                try:
                    if self.progress is not None:
                        group.start_soon(self._report_progress, kernel)
                    async with anyio.create_task_group() as arrivals:
                        for driver in drivers:
                            arrivals.start_soon(driver.run, calls)
                    end = scenario.duration + scenario.drain
                    with anyio.move_on_after(end - kernel.clock()):
                        await calls.join()
                finally:
                    # Done, past the drain limit, or stopped: what is left is cut.
                    self.recorder.freeze()
                    calls.cancel()
                    group.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True):
                        await calls.join()
        return self._report(providers, runtime, kernel.backend)

    async def _report_progress(self, kernel: Kernel) -> None:
        assert self.progress is not None
        duration = self.scenario.duration
        step = self.scenario.bucket
        while True:
            self.progress(min(kernel.clock(), duration), duration)
            await kernel.sleep(step)

    def _report(self, providers: dict[str, FakeProvider], runtime: Runtime, backend: str) -> Report:
        scenario = self.scenario
        libraries = {"anyio": _version("anyio")}
        if backend == "trio":
            libraries["trio"] = _version("trio")
        services = [
            _service_report(scenario, name, self.tracks[name], providers[name], runtime)
            for name in scenario.services
        ]
        return Report(
            provenance=Provenance(
                scenario=scenario.name,
                seed=self.seed,
                config_hash=scenario.config_hash(),
                version=_version("nexus-connector"),
                backend=backend,
                libraries=libraries,
            ),
            duration=scenario.duration,
            bucket=scenario.bucket,
            services=services,
        )


class _Driver:
    """Turns one workload's arrivals into calls, and each call's end into an outcome."""

    def __init__(
        self,
        run: _Run,
        kernel: Kernel,
        runtime: Runtime,
        name: str,
        workload: Workload,
        call: LogicalCall,
    ) -> None:
        self.sim = run
        self.kernel = kernel
        self.name = name
        self.workload = workload
        self.call = call
        self.track = run.tracks[workload.service]
        self.cells = runtime.actor(workload.service).cells
        self.arrival_rng = fork(run.seed, "workload", name, "arrivals")
        self.pick_tenant = workload.tenant_picker(fork(run.seed, "workload", name, "tenants"))
        spec = run.scenario.services[workload.service]
        self.key_by = spec.policy.key_by
        self.endpoint = f"{spec.method} {spec.path}"
        limit = spec.policy.rate_limit
        self.capacity = limit.capacity if limit is not None else None

    async def run(self, calls: Calls) -> None:
        """Make every arrival's call, each at its time; return after the last one."""
        times = enumerate(self.workload.times(self.arrival_rng, self.sim.scenario.duration))
        loop = self.kernel.loop
        if loop is not None:
            await self._chain(loop, times, calls)
            return
        clock, sleep = self.kernel.clock, self.kernel.sleep
        for n, at in times:
            delay = at - clock()
            if delay > 0:
                await sleep(delay)
            self._arrive(n, calls)

    async def _chain(
        self, loop: asyncio.AbstractEventLoop, times: Iterator[tuple[int, float]], calls: Calls
    ) -> None:
        """asyncio: each arrival is a timer that starts its call and sets the next timer,
        which saves the driver task's wake-up (two turns of the loop) per arrival."""
        finished = anyio.Event()
        pending: asyncio.TimerHandle | None = None

        def arrive(n: int) -> None:
            try:
                self._arrive(n, calls)
                schedule()
            except BaseException as error:  # a callback's error would only be logged
                self.sim.crashed(error)
                finished.set()

        def schedule() -> None:
            nonlocal pending
            following = next(times, None)
            if following is None:
                finished.set()
            else:
                pending = loop.call_at(following[1], arrive, following[0])

        schedule()
        try:
            await finished.wait()
        finally:
            if pending is not None:
                pending.cancel()  # stopped early: no more arrivals

    def _arrive(self, n: int, calls: Calls) -> None:
        now = self.kernel.clock()
        tenant = self.pick_tenant()
        key_by = self.key_by
        cell = self.cells.get(
            None if key_by is None else tenant if key_by == "tenant" else self.endpoint
        )
        depth, tokens = 0, self.capacity  # a cell not made yet has a full bucket
        if cell is not None:
            depth = cell.queued
            if cell.limiter is not None:
                tokens = cell.limiter.available(now)
        record = self.track.arrived(now, depth, tokens)
        workload = self.workload
        key = f"{self.name}-{n}" if workload.idempotency_keys else None
        calls.spawn(self._one, record, tenant, key, workload.deadline, workload.cost)

    async def _one(
        self,
        record: CallRecord,
        tenant: str | None,
        key: str | None,
        deadline: float | None,
        cost: float,
    ) -> None:
        self.sim.recorder.start_call(record)
        outcome: Outcome = "success"
        try:
            await self.call(tenant, key, deadline, cost)
        except ConnectorError as error:
            found = _outcome_of(error)
            if found is None:
                raise
            outcome = found
        self.track.finished(record, outcome, self.kernel.clock())


def _always(provider: FakeProvider) -> Callable[[], Transport]:
    """The transport factory: every instance of the service talks to the same vendor."""
    return lambda: provider


def _outcome_of(error: ConnectorError) -> Outcome | None:
    if isinstance(error, ConfigError):
        return None  # a scenario that asks the runtime for something invalid: stop
    for kind, outcome in _OUTCOME_OF_ERROR:
        if isinstance(error, kind):
            return outcome
    return None


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _service_report(
    scenario: Scenario, name: str, track: Track, provider: FakeProvider, runtime: Runtime
) -> ServiceReport:
    spec = scenario.services[name]
    duration = scenario.duration
    outcomes = dict(track.outcomes)
    outcomes["unfinished"] = track.offered - sum(outcomes.values())
    offered, succeeded = track.offered, outcomes["success"]
    limit, quota = spec.policy.rate_limit, spec.provider.quota
    limiter_rate = limit.tokens_per_second if limit is not None else None
    quota_rate = quota.rate if quota is not None else None
    headroom = None
    if limiter_rate is not None and quota_rate is not None:
        headroom = rounded(1 - limiter_rate / quota_rate)
    model = spec.provider
    incidents = [
        Incident(kind=f"outage ({outage.mode})", start=outage.start, end=outage.end)
        for outage in model.outages
    ] + [Incident(kind="brownout", start=b.start, end=b.end) for b in model.brownouts]
    stats = provider.stats
    return ServiceReport(
        name=name,
        offered=offered,
        offered_rate=rounded(offered / duration),
        succeeded=succeeded,
        goodput=rounded(succeeded / duration),
        success_rate=rounded(succeeded / offered) if offered else 0.0,
        attempts=track.attempts,
        amplification=rounded(track.attempts / offered) if offered else 0.0,
        outcomes=outcomes,
        latency=percentiles(track.latencies),
        queueing=percentiles(track.queueing),
        mailbox=track.mailbox(),
        rejections=track.rejections,
        breaker=track.breaker(duration) if spec.policy.breaker is not None else None,
        limiter=LimiterSummary(
            rate=rounded(limiter_rate) if limiter_rate is not None else None,
            quota_rate=rounded(quota_rate) if quota_rate is not None else None,
            headroom=headroom,
            tokens_min=rounded(track.tokens_min) if track.tokens_min is not None else None,
            peak_rate=stats.peak_rate,
            throttled=stats.throttled,
        ),
        retries=Retries(
            histogram=track.retry_histogram(),
            scheduled=track.retries,
            budget_exhausted=track.rejections["budget_exhausted"],
        ),
        restarts=track.restarts,
        stopped=track.stopped,
        provider=ProviderSummary(
            requests=stats.requests,
            answers=dict(sorted(stats.statuses.items())),
            peak_in_flight=stats.peak_in_flight,
        ),
        incidents=incidents,
        series=track.series(),
    )
