"""Section "failure": what a retry budget and a breaker buy while a provider fails.

One schedule, one seed, every variant: a fake provider answers after 50 ms,
healthy for 10 s, then failing half of its calls (a seeded `random.Random`)
for 20 s, then all of them for 20 s, then healthy again for 30 s. Logical
calls arrive open-loop, Poisson at ``--ops / 1,000`` a second (100 in a full
run, at least 10), the same arrival times for every variant; each is its own
task (many concurrent callers) making one guarded call, whose error is caught
and counted as a failed call.

The variants guard that call as follows:

- ``connector``: the runtime's defaults (a breaker opening after 5
  consecutive failures, 3 attempts with full-jitter backoff from 1 s, x2, the
  retry budget of 20 % of requests + 10 a second), but the breaker stays open
  5 s instead of 60 s: the default would outlast the outage, and 5 s is to
  this schedule what a minute is to a long incident;
- ``connector, failure-rate breaker``: the same with resilience4j's rule
  instead (open when at least 80 % of the last 100 calls failed, 20 calls at
  least), which rides out a brownout that trips the consecutive rule;
- ``connector, no budget`` (``retry_budget=None``), ``connector, no breaker``
  (``breaker=None``) and ``connector, retries only`` (neither): what each
  part buys, one at a time;
- ``tenacity + aiobreaker``: tenacity's retry (3 attempts, the same backoff,
  retrying ``OSError``) around aiobreaker's breaker (``fail_max=5``, 5 s).

The service is registered ``idempotent=True``: a failed attempt of a
non-idempotent call is not retried, and retries are what is measured.

Everything runs in virtual time, on asyncio with `VirtualTimeLoop` as anyio's
loop factory: the 80 s schedule takes about a second per variant in a full
run, and a run repeats exactly. The runtime reads the loop's clock; tenacity
sleeps with ``asyncio.sleep``, which follows it (its jitter comes from a
seeded `random.Random` here: ``wait_random_exponential`` draws from the
global one). aiobreaker does not: it decides whether its reset timeout has
passed with ``datetime.utcnow()``, read inside its state machine. Nothing is
patched; aiobreaker is given a state storage instead (its ``state_storage=``
extension point) that notes when the breaker opened on the loop's clock and
reports ``opened_at`` as the wall-clock instant for which aiobreaker's own
comparison comes out as it would on that clock, so its unmodified logic runs
in virtual time. The peers are asyncio's, and virtual time makes the figures
independent of the loop's speed, so the section runs on asyncio whatever
``--backend`` says.

Figures, per variant: amplification (calls that reached the provider per
logical call, each attempt counted for the phase its logical call arrived
in) overall and per phase, below 1 where a breaker turns calls away unsent;
the share of logical calls that succeeded, per phase; and two times to
recover, from the end of the outage: to the first logical call that
succeeds, and to the start of the first 1 s window of arrivals (stepped by
0.1 s) of which at least 95 % succeed.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio

from connector import Breaker, CircuitBreakerOpen, ConnectionFailed, Overloaded, Runtime
from connector.sim import VirtualTimeLoop

from ._harness import Figure, Section, Settings

if TYPE_CHECKING:
    import tenacity

__all__ = ["PHASES", "SECTION", "VARIANTS", "run"]

SEED = 1
LATENCY = 0.05  # seconds the provider takes to answer, success or failure
# (name, seconds, share of provider calls that fail), in order.
PHASES = (
    ("healthy", 10.0, 0.0),
    ("50 % failing", 20.0, 0.5),
    ("100 % failing", 20.0, 1.0),
    ("recovered", 30.0, 0.0),
)
OUTAGE_END = sum(seconds for _, seconds, _ in PHASES[:-1])
DURATION = OUTAGE_END + PHASES[-1][1]
OPEN_SECONDS = 5.0  # every breaker's reset timeout, scaled to the schedule
FAIL_MAX = 5  # consecutive failures that open a breaker (the runtime's default)
ATTEMPTS = 3  # the runtime's default retry, which tenacity is given as well
INITIAL_DELAY, MULTIPLIER, MAX_DELAY = 1.0, 2.0, 30.0
RECOVERED_SHARE = 0.95
WINDOW, STEP = 1.0, 0.1
_FULL_RATE_OPS = 1_000  # --ops per logical call a second: a full run's 100,000 -> 100/s
_MIN_RATE = 10.0
PEER = "tenacity + aiobreaker"
RATE_VARIANT = "connector, failure-rate breaker"
VARIANTS = (
    "connector",
    RATE_VARIANT,
    "connector, no budget",
    "connector, no breaker",
    "connector, retries only",
    PEER,
)
_NOTES = {
    "connector": f"defaults, breaker open {OPEN_SECONDS:g} s",
    RATE_VARIANT: f">= 80 % of the last 100 calls failed (20 at least), open {OPEN_SECONDS:g} s",
    "connector, no budget": "retry_budget=None",
    "connector, no breaker": "breaker=None",
    "connector, retries only": "breaker=None, retry_budget=None",
    PEER: f"{ATTEMPTS} attempts, fail_max={FAIL_MAX}, {OPEN_SECONDS:g} s",
}

# Guards a logical call arriving in phase ``phase`` around the provider.
Guarded = Callable[[int], Awaitable[None]]


def _phase_at(at: float) -> int:
    end = 0.0
    for index, (_, seconds, _) in enumerate(PHASES):
        end += seconds
        if at < end:
            return index
    return len(PHASES) - 1


class _Provider:
    """The fake provider: answers after `LATENCY`, failing as the schedule says when asked."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._rng = random.Random(f"{SEED}:provider")
        self.sent = [0] * len(PHASES)  # calls received, by the phase their logical call arrived in

    async def send(self, phase: int) -> None:
        self.sent[phase] += 1
        failing = PHASES[_phase_at(self._clock())][2]
        fails = failing > 0 and self._rng.random() < failing
        await anyio.sleep(LATENCY)
        if fails:
            raise ConnectionError("the provider is failing")


class _Outcome(NamedTuple):
    arrived: float
    finished: float
    ok: bool


class _Run(NamedTuple):
    sent: list[int]
    outcomes: list[_Outcome]


def _arrivals(rate: float) -> list[float]:
    """Poisson arrival times over the schedule: the same for every variant."""
    rng = random.Random(f"{SEED}:arrivals")
    times: list[float] = []
    at = rng.expovariate(rate)
    while at < DURATION:
        times.append(at)
        at += rng.expovariate(rate)
    return times


async def _drive(
    guarded: Guarded, times: list[float], errors: tuple[type[Exception], ...]
) -> list[_Outcome]:
    """Start one logical call at each time in ``times``; wait for all of them."""
    outcomes: list[_Outcome] = []

    async def logical(arrived: float) -> None:
        try:
            await guarded(_phase_at(arrived))
        except errors:
            ok = False
        else:
            ok = True
        outcomes.append(_Outcome(arrived, anyio.current_time(), ok))

    async with anyio.create_task_group() as group:
        for at in times:
            await anyio.sleep_until(at)
            group.start_soon(logical, at)
    return outcomes


# -- the variants ----------------------------------------------------------------------


def _connector(**overrides: Any) -> Callable[[list[float]], Awaitable[_Run]]:
    fields = {"breaker": Breaker(open_duration=OPEN_SECONDS), **overrides}

    async def run(times: list[float]) -> _Run:
        provider = _Provider(anyio.current_time)
        runtime = Runtime(rng=random.Random(f"{SEED}:jitter"))
        service = runtime.register("provider", idempotent=True, **fields)
        call, send = service.call, provider.send

        async def guarded(phase: int) -> None:
            await call(send, phase)

        async with runtime:
            outcomes = await _drive(
                guarded, times, (ConnectionFailed, CircuitBreakerOpen, Overloaded)
            )
        return _Run(provider.sent, outcomes)

    return run


def _loop_clock_storage(clock: Callable[[], float], timeout: timedelta) -> Any:
    """aiobreaker's in-memory storage, timing the open state on ``clock``.

    aiobreaker stays open while ``datetime.utcnow() < opened_at + timeout``.
    The storage keeps the loop time the breaker opened at and answers
    ``opened_at`` as "now" less the loop time elapsed since, which makes that
    comparison come out as it does on the loop's clock. Only its sign
    matters, so the elapsed time is kept a second clear of the timeout: the
    wall time between our read and aiobreaker's cannot tip it.
    """
    from aiobreaker import CircuitBreakerState  # type: ignore[import-untyped]
    from aiobreaker.storage.memory import CircuitMemoryStorage  # type: ignore[import-untyped]

    margin = timedelta(seconds=1)
    assert timeout > margin

    class LoopClockStorage(CircuitMemoryStorage):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(CircuitBreakerState.CLOSED)
            self._opened: float | None = None

        @property
        def opened_at(self) -> datetime | None:
            if self._opened is None:
                return None
            elapsed = timedelta(seconds=clock() - self._opened)
            elapsed = min(elapsed, timeout - margin) if elapsed < timeout else elapsed + margin
            # aiobreaker compares naive UTC datetimes.
            return datetime.now(UTC).replace(tzinfo=None) - elapsed

        @opened_at.setter
        def opened_at(self, _wall: datetime) -> None:
            self._opened = clock()

    return LoopClockStorage()


def _full_jitter(rng: random.Random) -> Callable[[tenacity.RetryCallState], float]:
    """tenacity's ``wait_random_exponential`` with our numbers, drawn from ``rng``."""
    import tenacity

    exponential = tenacity.wait_exponential(
        multiplier=INITIAL_DELAY, exp_base=MULTIPLIER, max=MAX_DELAY
    )

    def wait(state: tenacity.RetryCallState) -> float:
        return rng.uniform(0.0, exponential(state))

    return wait


async def _peer(times: list[float]) -> _Run:
    import tenacity
    from aiobreaker import CircuitBreaker, CircuitBreakerError

    provider = _Provider(anyio.current_time)
    timeout = timedelta(seconds=OPEN_SECONDS)
    breaker = CircuitBreaker(
        fail_max=FAIL_MAX,
        timeout_duration=timeout,
        state_storage=_loop_clock_storage(anyio.current_time, timeout),
    )
    call_async: Callable[..., Awaitable[None]] = breaker.call_async
    send = provider.send

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=_full_jitter(random.Random(f"{SEED}:jitter")),
        retry=tenacity.retry_if_exception_type(OSError),
        reraise=True,
    )
    async def guarded(phase: int) -> None:
        await call_async(send, phase)

    outcomes = await _drive(guarded, times, (OSError, CircuitBreakerError))
    return _Run(provider.sent, outcomes)


_RUNS: dict[str, Callable[[list[float]], Awaitable[_Run]]] = {
    "connector": _connector(),
    RATE_VARIANT: _connector(
        breaker=Breaker(
            failure_threshold=None,
            failure_rate_threshold=0.8,
            window_size=100,
            minimum_calls=20,
            open_duration=OPEN_SECONDS,
        )
    ),
    "connector, no budget": _connector(retry_budget=None),
    "connector, no breaker": _connector(breaker=None),
    "connector, retries only": _connector(breaker=None, retry_budget=None),
    PEER: _peer,
}
_REQUIRES = {PEER: ("tenacity", "aiobreaker")}


def _simulate(variant: str, times: list[float]) -> _Run:
    run = _RUNS[variant]

    async def main() -> _Run:
        return await run(times)

    return anyio.run(main, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop})


# -- the figures -------------------------------------------------------------------------


def _recovery(outcomes: list[_Outcome]) -> tuple[float | None, float | None]:
    """Seconds from the end of the outage to the first success, and to a 95 % window."""
    first = min((o.finished for o in outcomes if o.ok and o.finished >= OUTAGE_END), default=None)
    after = [(o.arrived, o.ok) for o in outcomes if o.arrived >= OUTAGE_END]
    window: float | None = None
    step = 0
    while OUTAGE_END + step * STEP + WINDOW <= DURATION:
        start = OUTAGE_END + step * STEP
        inside = [ok for arrived, ok in after if start <= arrived < start + WINDOW]
        if inside and sum(inside) >= RECOVERED_SHARE * len(inside):
            window = start - OUTAGE_END
            break
        step += 1
    return (None if first is None else first - OUTAGE_END), window


def _figures(variant: str, run: _Run) -> list[Figure]:
    found: list[Figure] = []

    def figure(name: str, value: float, unit: str, note: str) -> None:
        found.append(
            Figure(
                section="failure",
                name=f"{variant}: {name}",
                backend="asyncio",
                value=value,
                unit=unit,
                note=note,
            )
        )

    calls = [0] * len(PHASES)
    succeeded = [0] * len(PHASES)
    for outcome in run.outcomes:
        index = _phase_at(outcome.arrived)
        calls[index] += 1
        succeeded[index] += outcome.ok
    figure(
        "amplification",
        round(sum(run.sent) / max(1, len(run.outcomes)), 3),
        "calls/call",
        _NOTES[variant],
    )
    start = 0.0
    for index, (phase, seconds, _) in enumerate(PHASES):
        span = f"{start:g}-{start + seconds:g} s"
        start += seconds
        figure(
            f"amplification, {phase}",
            round(run.sent[index] / max(1, calls[index]), 3),
            "calls/call",
            span,
        )
        figure(
            f"success, {phase}",
            round(100 * succeeded[index] / max(1, calls[index]), 1),
            "%",
            f"{span}, {calls[index]:,} calls",
        )
    first, window = _recovery(run.outcomes)
    never = f"not within the {PHASES[-1][1]:g} s after the outage"
    figure(
        "recovery, first success",
        round(first if first is not None else PHASES[-1][1], 2),
        "s",
        "" if first is not None else never,
    )
    figure(
        f"recovery, {RECOVERED_SHARE * 100:g} % in {WINDOW:g} s",
        round(window if window is not None else PHASES[-1][1], 2),
        "s",
        "start of the first such window of arrivals" if window is not None else never,
    )
    return found


def run(settings: Settings) -> list[Figure]:
    rate = max(_MIN_RATE, settings.ops / _FULL_RATE_OPS)
    times = _arrivals(rate)
    found = [
        Figure(
            section="failure",
            name="logical calls",
            backend=None,
            value=len(times),
            unit="calls",
            note=f"Poisson, {rate:g}/s over {DURATION:g} s, the same for every variant",
        )
    ]
    for variant in VARIANTS:
        if all(importlib.util.find_spec(module) for module in _REQUIRES.get(variant, ())):
            found += _figures(variant, _simulate(variant, times))
    return found


SECTION = Section(run=run, packages=("tenacity", "aiobreaker"))
