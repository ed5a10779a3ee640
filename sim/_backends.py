"""Running in virtual time on asyncio or trio, and the lean pieces of a run's hot path.

asyncio runs on `VirtualTimeLoop`; trio on ``MockClock(autojump_threshold=0)``
with its scheduler made deterministic: trio shuffles each batch of runnable
tasks at random on purpose, and only lets a test seed that. `run_virtual`
turns that on for the run (``_ALLOW_DETERMINISTIC_SCHEDULING`` and the
scheduler's ``_r``, as trio's own determinism test does), seeded from the
run's seed, and restores both after. These are trio internals: tested with
`TRIO_TESTED`, and checked before use so that a trio which changed them fails
with a clear error rather than with a silently different report.

Per simulated call the driver needs a clock, a sleep and a task; anyio's
portable versions look the backend up on every call, which is more than the
rest of a simulated call costs. `Kernel` resolves the backend's own once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

import anyio
import sniffio
from anyio.abc import TaskGroup

from ._loop import VirtualTimeLoop
from ._streams import fork

__all__ = ["BACKENDS", "TRIO_TESTED", "Calls", "Kernel", "run_virtual"]

BACKENDS = ("asyncio", "trio")
# The trio release whose scheduler internals `_deterministic_trio` relies on.
TRIO_TESTED = "0.35.0"

T = TypeVar("T")
CallFn = Callable[..., Coroutine[Any, Any, None]]


def run_virtual(main: Callable[[], Awaitable[T]], backend: str, seed: int) -> T:
    """``await main()`` on ``backend`` in virtual time, deterministically for ``seed``."""
    if backend == "asyncio":
        return anyio.run(main, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop})
    if backend == "trio":
        from trio.testing import MockClock  # noqa: PLC0415 - trio is optional

        with _deterministic_trio(seed):
            return anyio.run(
                main, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
            )
    raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")


@contextlib.contextmanager
def _deterministic_trio(seed: int) -> Iterator[None]:
    run = importlib.import_module("trio._core._run")
    if not hasattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING") or not hasattr(run, "_r"):
        import trio  # noqa: PLC0415

        raise RuntimeError(
            f"trio {trio.__version__} no longer has the scheduler hooks a deterministic "
            f"simulation needs (tested with trio {TRIO_TESTED}); use asyncio or that trio"
        )
    flag = "_ALLOW_DETERMINISTIC_SCHEDULING"
    allowed = getattr(run, flag)
    scheduler_rng: random.Random = run._r
    state = scheduler_rng.getstate()
    setattr(run, flag, True)
    scheduler_rng.seed(fork(seed, "trio-scheduler").getrandbits(64))
    try:
        yield
    finally:
        setattr(run, flag, allowed)
        scheduler_rng.setstate(state)


class Calls(Protocol):
    """Where the workload drivers start calls: one task each."""

    @property
    def live(self) -> int: ...

    def spawn(self, fn: CallFn, *args: Any) -> None: ...

    async def join(self) -> None:
        """Return once no call is running."""

    def cancel(self) -> None: ...


class _AsyncioCalls:
    """Bare asyncio tasks: about a third of the cost of anyio's task group per call.

    An error escaping a call goes to ``crashed``, which stops the run; the
    calls are cancelled in the order they started, so a cut run stays
    deterministic.
    """

    def __init__(self, crashed: Callable[[BaseException], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._crashed = crashed
        self._tasks: dict[asyncio.Task[None], None] = {}
        self._idle: anyio.Event | None = None

    @property
    def live(self) -> int:
        return len(self._tasks)

    def spawn(self, fn: CallFn, *args: Any) -> None:
        task = self._loop.create_task(fn(*args))
        self._tasks[task] = None
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        del self._tasks[task]
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                self._crashed(error)
        if not self._tasks and self._idle is not None:
            self._idle.set()

    async def join(self) -> None:
        while self._tasks:
            self._idle = anyio.Event()
            await self._idle.wait()
        self._idle = None

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class _GroupCalls:
    """Calls as tasks of an anyio task group (trio's nurseries are lean already)."""

    def __init__(self, group: TaskGroup) -> None:
        self._group = group
        self._live = 0
        self._idle: anyio.Event | None = None

    @property
    def live(self) -> int:
        return self._live

    def spawn(self, fn: CallFn, *args: Any) -> None:
        self._live += 1
        self._group.start_soon(self._run, fn, args)

    async def _run(self, fn: CallFn, args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        finally:
            self._live -= 1
            if not self._live and self._idle is not None:
                self._idle.set()

    async def join(self) -> None:
        while self._live:
            self._idle = anyio.Event()
            await self._idle.wait()
        self._idle = None

    def cancel(self) -> None:
        self._group.cancel_scope.cancel()


class Kernel:
    """The running backend's own clock, sleep and task spawning, resolved once."""

    def __init__(self) -> None:
        self.backend = sniffio.current_async_library()
        self.clock: Callable[[], float]
        self.sleep: Callable[[float], Awaitable[Any]]
        self.loop: asyncio.AbstractEventLoop | None = None  # set on asyncio: timers go on it
        if self.backend == "asyncio":
            self.loop = asyncio.get_running_loop()
            self.clock = self.loop.time
            self.sleep = asyncio.sleep
        elif self.backend == "trio":
            import trio  # noqa: PLC0415

            self.clock = trio.current_time
            self.sleep = trio.sleep
        else:  # pragma: no cover - run_virtual only runs these two
            self.clock = anyio.current_time
            self.sleep = anyio.sleep

    def calls(self, group: TaskGroup, crashed: Callable[[BaseException], None]) -> Calls:
        """A spawner for calls; on trio they join ``group``, which cancels them with it."""
        if self.backend == "asyncio":
            return _AsyncioCalls(crashed)
        return _GroupCalls(group)
