"""Section "memory": what idle keyed actors cost, and what passivation gives back.

A fresh interpreter per measurement (so no other section's garbage counts)
registers a service keyed by tenant, with a breaker and a limiter, makes one
call for each of ``ops`` tenants (100,000 in a full run) and measures; then it
lets time pass the idle timeout, the runtime passivates every cell into its
state store, and it measures again. Time is virtual (the simulator's
`VirtualTimeLoop` on asyncio, trio's `MockClock` on trio), so the wait is free.

RSS (resident set size, from /proc/self/statm) is what the OS sees, but
CPython keeps freed objects' memory in its arenas and glibc in its heap, so RSS
does not fall after passivation (the states kept are new allocations, so it
may rise); ``malloc_trim(0)`` shows how much of it the heap could give back.
A second interpreter runs the same steps under tracemalloc, whose traced
memory shows what was freed and which source lines hold what is left. Tenant
ids are made before the first measurement: they are the application's strings,
not the runtime's. A measurement is taken once, not repeated: it counts bytes,
which do not drift as timings do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import msgspec

from connector import Breaker, RateLimit, Runtime

from ._harness import Figure, Section, Settings

__all__ = ["SECTION", "Measured", "Point", "child", "measure", "run"]

_IDLE_TIMEOUT = 60.0  # seconds; the runtime sweeps every idle_timeout / 2
_WAIT = 1.5 * _IDLE_TIMEOUT  # virtual seconds slept: one sweep past the timeout
_TOP = 8  # source lines listed for where traced memory goes
_MB = 1_000_000
_GOAL_MB = 200
_ROOT = Path(__file__).resolve().parent.parent


class Point(msgspec.Struct, frozen=True, kw_only=True):
    """One measurement: live cells, and bytes in use by either count (None: not taken)."""

    cells: int
    rss: int | None
    traced: int | None


class Measured(msgspec.Struct, frozen=True, kw_only=True):
    """What one child saw; ``grown`` and ``kept`` list (file:line, bytes) traced there."""

    actors: int
    before: Point
    idle: Point
    passivated: Point
    stored: int
    trimmed_rss: int | None = None
    grown: list[tuple[str, int]] = []
    kept: list[tuple[str, int]] = []


class _Args(msgspec.Struct, frozen=True):
    actors: int
    backend: str
    traced: bool


async def _noop() -> None:
    """The provider: nothing; the actor it leaves behind is what is measured."""


def _rss() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident * os.sysconf("SC_PAGE_SIZE")


def _point(cells: int, traced: bool) -> Point:
    gc.collect()
    return Point(
        cells=cells,
        rss=None if traced else _rss(),
        traced=tracemalloc.get_traced_memory()[0] if traced else None,
    )


def _malloc_trim() -> bool:
    """Ask glibc to return its free heap to the OS; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def _top(now: tracemalloc.Snapshot, then: tracemalloc.Snapshot) -> list[tuple[str, int]]:
    """The source lines holding the most more memory in ``now`` than in ``then``."""
    ignore = [tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)]
    grown = now.filter_traces(ignore).compare_to(then.filter_traces(ignore), "lineno")
    return [
        (f"{Path(stat.traceback[0].filename).name}:{stat.traceback[0].lineno}", stat.size_diff)
        for stat in grown
        if stat.size_diff > 0
    ][:_TOP]


async def measure(tenants: list[str], traced: bool) -> Measured:
    """One call per tenant, then passivation, measured at each step."""
    runtime = Runtime()
    policy: dict[str, Any] = {
        "key_by": "tenant",
        "breaker": Breaker(),
        "rate_limit": RateLimit.per_second(100.0),
        "idle_timeout": _IDLE_TIMEOUT,
    }
    service = runtime.register("bench", **policy)
    # Same code paths, another service: first-call allocations happen before measuring.
    warm_up = runtime.register("warm-up", **policy)
    async with runtime:
        actor = runtime.actor("bench")
        await warm_up.call(_noop, tenant_id="warm-up")
        then = tracemalloc.take_snapshot() if traced else None
        before = _point(len(actor.cells), traced)
        for tenant in tenants:
            await service.call(_noop, tenant_id=tenant)
        idle = _point(len(actor.cells), traced)
        grown = _top(tracemalloc.take_snapshot(), then) if then is not None else []
        await anyio.sleep(_WAIT)
        passivated = _point(len(actor.cells), traced)
        kept = _top(tracemalloc.take_snapshot(), then) if then is not None else []
        trimmed = _rss() if not traced and _malloc_trim() else None
        store = runtime.state_store
        stored = 0
        for tenant in tenants:
            if await store.load("bench", tenant) is not None:
                stored += 1
    return Measured(
        actors=len(tenants),
        before=before,
        idle=idle,
        passivated=passivated,
        stored=stored,
        trimmed_rss=trimmed,
        grown=grown,
        kept=kept,
    )


def _virtual_time(backend: str) -> dict[str, Any]:
    """anyio backend options for a fresh virtual clock on ``backend``."""
    if backend == "trio":
        from trio.testing import MockClock

        return {"clock": MockClock(autojump_threshold=0)}
    from connector.sim._loop import VirtualTimeLoop

    return {"loop_factory": VirtualTimeLoop}


def child() -> None:
    """The child's entry point: measure as ``sys.argv[1]`` says, print the JSON."""
    args = msgspec.json.decode(sys.argv[1], type=_Args)
    # A first run imports the backend, so tracemalloc need not trace (and list) its modules.
    anyio.run(_noop, backend=args.backend, backend_options=_virtual_time(args.backend))
    tenants = [f"tenant-{i:07d}" for i in range(args.actors)]
    if args.traced:
        tracemalloc.start()
    measured = anyio.run(
        measure,
        tenants,
        args.traced,
        backend=args.backend,
        backend_options=_virtual_time(args.backend),
    )
    sys.stdout.buffer.write(msgspec.json.encode(measured))


def _spawn(actors: int, backend: str, traced: bool) -> Measured:
    argument = msgspec.json.encode(_Args(actors, backend, traced)).decode()
    done = subprocess.run(
        [sys.executable, "-c", "from benchmarks._memory import child; child()", argument],
        cwd=_ROOT,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{done.stderr.decode(errors='replace')}")
    return msgspec.json.decode(done.stdout, type=Measured)


def _figures(backend: str, plain: Measured, traced: Measured) -> list[Figure]:
    actors = plain.actors
    found: list[Figure] = []

    def figure(name: str, value: float, unit: str, note: str = "") -> None:
        found.append(
            Figure(section="memory", name=name, backend=backend, value=value, unit=unit, note=note)
        )

    figure("idle actors", plain.idle.cells, "cells", "one call per tenant, key_by='tenant'")
    before, idle, passivated = plain.before.rss, plain.idle.rss, plain.passivated.rss
    if before is not None and idle is not None and passivated is not None:
        figure("RSS before", before / _MB, "MB", "runtime started, one warm-up call")
        figure("RSS with idle actors", idle / _MB, "MB", f"goal < {_GOAL_MB} MB")
        figure("RSS added per actor", (idle - before) / actors, "bytes")
        figure("RSS after passivation", passivated / _MB, "MB", "gc.collect() first")
        if plain.trimmed_rss is not None:
            figure("RSS after malloc_trim(0)", plain.trimmed_rss / _MB, "MB", "glibc's free heap")
    figure(
        "cells after passivation",
        plain.passivated.cells,
        "cells",
        f"idle_timeout {_IDLE_TIMEOUT:g} s, {_WAIT:g} s of virtual time later",
    )
    figure("states kept in the store", plain.stored, "states", "MemoryStateStore, the default")
    t_before, t_idle, t_kept = traced.before.traced, traced.idle.traced, traced.passivated.traced
    if t_before is not None and t_idle is not None and t_kept is not None:
        figure("traced added per actor", (t_idle - t_before) / actors, "bytes", "tracemalloc")
        figure(
            "traced kept per passivated actor",
            (t_kept - t_before) / actors,
            "bytes",
            "its state in the store",
        )
        if t_idle > t_before:
            figure(
                "traced freed by passivation",
                100 * (t_idle - t_kept) / (t_idle - t_before),
                "%",
                "of what the idle actors added",
            )
    for label, lines in (("idle", traced.grown), ("kept", traced.kept)):
        for where, size in lines:
            figure(f"traced {label}: {where}", size / actors, "bytes/actor")
    return found


def run(settings: Settings) -> list[Figure]:
    found: list[Figure] = []
    for backend in settings.backends:
        plain = _spawn(settings.ops, backend, traced=False)
        traced = _spawn(settings.ops, backend, traced=True)
        found += _figures(backend, plain, traced)
    return found


SECTION = Section(run=run)
