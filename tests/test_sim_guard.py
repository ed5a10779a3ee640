"""Virtual time is enforced: code under simulation that reaches for the real world fails the run."""

from __future__ import annotations

import random
import socket
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from connector import Service
from connector.sim import (
    TRIO_TESTED,
    RealWorldGuard,
    ServiceSpec,
    VirtualTimeLoop,
    VirtualTimeViolation,
    parse_scenario,
    run_virtual,
    simulate,
)
from connector.sim._calls import CALL_SHAPES, LogicalCall

TINY = """\
name = "tiny"
duration = 5

[services.api.policy]
retry = { attempts = 1 }

[workloads.w]
service = "api"
rate = 2.0
"""


def probe(monkeypatch: pytest.MonkeyPatch, source: str) -> types.ModuleType:
    """A module named like the package's own, defining ``async def work()``."""
    module = types.ModuleType("connector._sim_probe")
    exec(source, module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def calling(monkeypatch: pytest.MonkeyPatch, work: Callable[[], Any]) -> None:
    """Make every simulated call run ``work`` through the runtime (`Service.call`)."""

    def shape(service: Service, spec: ServiceSpec, name: str) -> LogicalCall:
        async def call(*args: Any) -> Any:
            return await service.call(work)

        return call

    monkeypatch.setitem(CALL_SHAPES, "request", shape)


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("import time\nasync def work():\n    time.monotonic()\n", "time.monotonic"),
        ("from time import time as now\nasync def work():\n    now()\n", "time.time"),
        ("import time\nasync def work():\n    time.perf_counter_ns()\n", "time.perf_counter_ns"),
        ("import random\nasync def work():\n    random.random()\n", "random.random"),
        ("from random import uniform\nasync def work():\n    uniform(0, 1)\n", "random.uniform"),
    ],
)
def test_package_code_reading_the_wall_clock_or_global_randomness_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, source: str, named: str
) -> None:
    module = probe(monkeypatch, source)
    calling(monkeypatch, module.work)
    # The runtime takes the error for a crash of the attempt; the run still fails with it.
    with pytest.raises(VirtualTimeViolation) as caught:
        simulate(parse_scenario(TINY))
    assert f"{named}() was called from connector._sim_probe" in str(caught.value)
    # Everything is put back: the module's own binding too.
    assert time.monotonic is not None
    for name in ("time", "monotonic", "perf_counter", "perf_counter_ns", "sleep"):
        assert type(getattr(time, name)).__name__ == "builtin_function_or_method"
    assert isinstance(random.random, types.BuiltinMethodType)
    assert all(
        type(value).__name__ in ("builtin_function_or_method", "method", "function")
        and getattr(value, "__qualname__", "") != "RealWorldGuard._from_connector.<locals>.guarded"
        for value in vars(module).values()
        if callable(value)
    )


async def _sleeps() -> None:
    time.sleep(0)  # noqa: ASYNC251 - the very mistake under test


async def _connects() -> None:
    socket.socket().close()


async def _threads() -> None:
    threading.Thread(target=lambda: None).start()


@pytest.mark.parametrize(
    ("work", "named"),
    [(_sleeps, "time.sleep"), (_connects, "socket.__init__"), (_threads, "Thread.start")],
)
def test_real_sleeps_sockets_and_threads_fail_the_run_from_any_code(
    monkeypatch: pytest.MonkeyPatch, work: Callable[[], Any], named: str
) -> None:
    calling(monkeypatch, work)
    with pytest.raises(VirtualTimeViolation, match=named):
        simulate(parse_scenario(TINY))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_violation_outside_the_runtime_stops_the_run_at_once(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    started: list[float] = []

    def shape(service: Service, spec: ServiceSpec, name: str) -> LogicalCall:
        async def call(*args: Any) -> Any:
            started.append(anyio.current_time())
            time.sleep(0)  # noqa: ASYNC251 - the very mistake under test

        return call

    monkeypatch.setitem(CALL_SHAPES, "request", shape)
    with pytest.raises(VirtualTimeViolation, match=r"time\.sleep"):
        simulate(parse_scenario(TINY), backend=backend)
    assert len(started) == 1  # no call started after the first one failed


async def _reads_clocks() -> float:
    return time.monotonic() + random.random()


def test_other_libraries_may_read_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    calling(monkeypatch, _reads_clocks)  # this module is not the package's
    report = simulate(parse_scenario(TINY))
    assert report.services[0].success_rate == 1.0


def test_the_guard_is_inactive_outside_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    module = probe(monkeypatch, "import time\ndef now():\n    return time.monotonic()\n")
    assert module.now() > 0
    with RealWorldGuard(lambda error: None), pytest.raises(VirtualTimeViolation):
        module.now()
    assert module.now() > 0


def test_only_one_guard_at_a_time() -> None:
    with RealWorldGuard(lambda error: None), pytest.raises(RuntimeError, match="already"):
        RealWorldGuard(lambda error: None).__enter__()


def test_other_threads_are_not_guarded() -> None:
    seen: list[float] = []
    with RealWorldGuard(lambda error: None):
        worker = threading.Thread(target=lambda: seen.append(time.monotonic()))
        with pytest.raises(VirtualTimeViolation):
            worker.start()  # starting it is guarded on this thread...
    worker = threading.Thread(target=lambda: seen.append(time.monotonic()))
    worker.start()
    worker.join()
    assert len(seen) == 1


# -- backends -------------------------------------------------------------------


async def _an_hour() -> float:
    await anyio.sleep(3600)
    return anyio.current_time()


def test_the_virtual_loop_jumps_an_hour_to_the_nanosecond() -> None:
    began = time.perf_counter()
    assert run_virtual(_an_hour, "asyncio", 0) == 3600.0
    assert time.perf_counter() - began < 60  # not an hour


def test_the_virtual_loop_stands_still_without_autojump() -> None:
    loop = VirtualTimeLoop(autojump=False, start_ns=5)
    try:
        assert loop.time() == 5e-9
        loop.advance(1.5)
        assert loop.time_ns == 1_500_000_005
        with pytest.raises(ValueError, match="back"):
            loop.advance_ns(-1)
    finally:
        loop.close()


def test_trio_scheduling_is_restored_after_a_run() -> None:
    trio_run = pytest.importorskip("trio._core._run")
    flag = trio_run._ALLOW_DETERMINISTIC_SCHEDULING
    state = trio_run._r.getstate()
    assert run_virtual(_an_hour, "trio", 1) >= 3600.0
    assert flag == trio_run._ALLOW_DETERMINISTIC_SCHEDULING
    assert trio_run._r.getstate() == state


def test_trio_is_the_release_the_deterministic_scheduling_was_tested_with() -> None:
    trio = pytest.importorskip("trio")
    # Deterministic runs on trio use its scheduler's internals: a new trio
    # release must pass the byte-identical test before this pin moves.
    assert trio.__version__ == TRIO_TESTED


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="curio"):
        run_virtual(_an_hour, "curio", 0)
