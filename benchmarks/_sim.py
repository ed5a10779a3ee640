"""Section "sim": simulator speed, against SimPy on the same queueing model.

The model is an M/M/c queue: Poisson arrivals at 100 per second, exponential
service of 80 ms mean, c = 10 servers (load 0.8). Four programs run it for the
same stretch of virtual time (one simulated hour in a full run, scaled by
``--ops / 100,000``), in one process, one after the other:

- SimPy, a process-based discrete-event simulator (a Resource of c servers);
- a bare virtual-time loop: tasks that take a semaphore and sleep (asyncio on
  `VirtualTimeLoop`, trio on ``MockClock``) - what any simulation on an event
  loop pays before it does anything;
- ``connector.sim`` on a one-service scenario: the real runtime with its
  default policies (breaker, retry, retry budget), the bulkhead of 10 as the
  servers, a fake provider behind the transport, the event recorder and the
  report.

Figures: customers (calls) per wall-clock second for each, the wall time of
the simulated stretch, connector.sim's rate over SimPy's, and the mean wait
each measured next to Erlang C's, which says all of them ran the same model.
Each program runs once: a run is long, and it is timed whole.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import math
import random
import statistics
import time
from collections.abc import Callable, Generator
from typing import Any

from connector.sim import VirtualTimeLoop, parse_scenario, simulate

from ._harness import Figure, Section, Settings

__all__ = ["SECTION", "run"]

RATE = 100.0  # arrivals per second
MEAN = 0.08  # seconds of service
SERVERS = 10
_HOUR = 3600.0
_FULL_OPS = 100_000  # --ops of a full run: one simulated hour
_GOAL_SECONDS = 60.0  # the hour through connector.sim on asyncio, wall clock

_SCENARIO = """\
name = "m-m-10"
duration = {duration}

[services.queue.policy]
max_concurrency = {servers}
mailbox = 1000000

[services.queue.provider]
latency = {{ kind = "exponential", mean = {mean} }}

[workloads.customers]
service = "queue"
rate = {rate}
"""


def erlang_c_wait() -> float:
    load = RATE * MEAN
    below = sum(load**k / math.factorial(k) for k in range(SERVERS))
    top = load**SERVERS / math.factorial(SERVERS) * SERVERS / (SERVERS - load)
    return top / (below + top) / (SERVERS / MEAN - RATE)


# Each program returns (customers served, their mean wait in seconds).
Program = Callable[[float, str], tuple[int, float]]


def _simpy(duration: float, backend: str) -> tuple[int, float]:
    # A peer of the "bench" extra, imported by name: type checkers need not have it.
    simpy = importlib.import_module("simpy")

    rng = random.Random(1)
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=SERVERS)
    waits: list[float] = []

    def customer(env: Any) -> Generator[Any, Any, None]:
        arrived = env.now
        with servers.request() as turn:
            yield turn
            waits.append(env.now - arrived)
            yield env.timeout(rng.expovariate(1 / MEAN))

    def source(env: Any) -> Generator[Any, Any, None]:
        while True:
            yield env.timeout(rng.expovariate(RATE))
            if env.now >= duration:
                return
            env.process(customer(env))

    env.process(source(env))
    env.run()
    return len(waits), statistics.fmean(waits)


def _bare_asyncio(duration: float, backend: str) -> tuple[int, float]:
    rng = random.Random(1)
    waits: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers = asyncio.Semaphore(SERVERS)
        tasks: set[asyncio.Task[None]] = set()

        async def customer() -> None:
            arrived = loop.time()
            async with servers:
                waits.append(loop.time() - arrived)
                await asyncio.sleep(rng.expovariate(1 / MEAN))

        while True:
            await asyncio.sleep(rng.expovariate(RATE))
            if loop.time() >= duration:
                break
            task = loop.create_task(customer())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.wait(set(tasks))

    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return len(waits), statistics.fmean(waits)


def _bare_trio(duration: float, backend: str) -> tuple[int, float]:
    import trio
    import trio.testing

    rng = random.Random(1)
    waits: list[float] = []

    async def main() -> None:
        servers = trio.Semaphore(SERVERS)

        async def customer() -> None:
            arrived = trio.current_time()
            async with servers:
                waits.append(trio.current_time() - arrived)
                await trio.sleep(rng.expovariate(1 / MEAN))

        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(rng.expovariate(RATE))
                if trio.current_time() >= duration:
                    break
                nursery.start_soon(customer)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return len(waits), statistics.fmean(waits)


def _connector(duration: float, backend: str) -> tuple[int, float]:
    scenario = parse_scenario(
        _SCENARIO.format(duration=duration, servers=SERVERS, mean=MEAN, rate=RATE)
    )
    service = simulate(scenario, seed=1, backend=backend).services[0]
    assert service.queueing is not None
    return service.offered, service.queueing.mean


def run(settings: Settings) -> list[Figure]:
    duration = _HOUR * settings.ops / _FULL_OPS
    found: list[Figure] = []
    # (program, backend) -> customers per second of wall time, and of CPU time.
    wall: dict[tuple[str, str | None], float] = {}
    cpu: dict[tuple[str, str | None], float] = {}

    def figure(name: str, backend: str | None, value: float, unit: str, note: str = "") -> None:
        found.append(
            Figure(section="sim", name=name, backend=backend, value=value, unit=unit, note=note)
        )

    def timed(name: str, backend: str | None, program: Program, note: str) -> None:
        began, cpu_began = time.perf_counter(), time.process_time()
        customers, wait = program(duration, backend or "asyncio")
        elapsed, used = time.perf_counter() - began, time.process_time() - cpu_began
        wall[(name, backend)], cpu[(name, backend)] = customers / elapsed, customers / used
        figure(f"{name}: rate", backend, round(customers / elapsed), "calls/s", note)
        figure(f"{name}: rate, CPU time", backend, round(customers / used), "calls/s")
        figure(f"{name}: mean wait", backend, round(wait, 4), "s", f"{customers:,} customers")
        if name == "connector.sim":
            goal = f"; goal < {_GOAL_SECONDS:g} s for the hour" if backend == "asyncio" else ""
            note = f"{duration:g} s simulated{goal}"
            figure(f"{name}: wall time", backend, round(elapsed, 1), "s", note)

    if importlib.util.find_spec("simpy") is not None:
        timed("simpy", None, _simpy, "Resource of 10 servers")
    bare = {"asyncio": _bare_asyncio, "trio": _bare_trio}
    for backend in settings.backends:
        timed("bare virtual loop", backend, bare[backend], "tasks, a semaphore, sleeps")
        timed("connector.sim", backend, _connector, "real runtime, default policies")
    # Wall time is what the goal is in; CPU time is steadier on a shared machine.
    for label, rates in (("", wall), (", CPU time", cpu)):
        simpy_rate = rates.get(("simpy", None))
        for backend in settings.backends:
            if simpy_rate:
                ratio = round(rates[("connector.sim", backend)] / simpy_rate, 3)
                figure(f"connector.sim / simpy{label}", backend, ratio, "x rate")
    figure("Erlang C: mean wait", None, round(erlang_c_wait(), 4), "s", "M/M/10, load 0.8")
    return found


SECTION = Section(run=run, packages=("simpy",))
