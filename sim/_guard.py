"""Keep a simulation in virtual time: fail loudly when code reaches for the real world.

Under simulation the runtime must read time only from the event loop's clock
and randomness only from the `random.Random` it was given. While a
`RealWorldGuard` is active, on the thread running the simulation:

- ``time.time``, ``monotonic``, ``perf_counter`` (and their ``_ns`` forms)
  called from a ``connector`` module raise `VirtualTimeViolation`, and so do
  the ``random`` module's global functions (unseeded, shared randomness);
- ``time.sleep``, making a socket, looking a name up (``getaddrinfo``) and
  starting a thread raise from anywhere.

Patching the ``time`` module's attributes catches a ``time.monotonic`` call;
names bound by ``from time import monotonic`` are patched in every loaded
``connector`` module as well. Everything is restored on exit.

The error raised inside the runtime may be taken for a crash there (it is an
exception in an attempt); the guard therefore also hands it to
``on_violation``, which the simulator uses to stop the run and raise it.
"""

from __future__ import annotations

import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from connector import ConnectorError

__all__ = ["RealWorldGuard", "VirtualTimeViolation"]

_CLOCKS = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns")
_RANDOMS = (
    "betavariate",
    "choice",
    "choices",
    "expovariate",
    "gammavariate",
    "gauss",
    "getrandbits",
    "lognormvariate",
    "normalvariate",
    "paretovariate",
    "randbytes",
    "randint",
    "random",
    "randrange",
    "sample",
    "shuffle",
    "triangular",
    "uniform",
    "vonmisesvariate",
    "weibullvariate",
)


class VirtualTimeViolation(ConnectorError, RuntimeError):
    """Code under simulation read the wall clock, slept for real, used global
    randomness, or opened a socket or a thread; ``what`` says which, and where."""

    what: str

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} during a simulation: code under simulation must take time from the "
            "event loop's clock and randomness from the Runtime's rng (DESIGN.md §2)",
            what=what,
        )


class _State:
    active: RealWorldGuard | None = None


class RealWorldGuard:
    """Context manager; see the module docstring. One may be active at a time."""

    def __init__(self, on_violation: Callable[[VirtualTimeViolation], None]) -> None:
        self._on_violation = on_violation
        self._thread = threading.get_ident()
        self._restore: list[tuple[Any, str, Any]] = []
        self.first: VirtualTimeViolation | None = None

    def on_this_thread(self) -> bool:
        return threading.get_ident() == self._thread

    def violation(self, what: str) -> None:
        """Raise a `VirtualTimeViolation` for ``what``, after reporting the first one."""
        error = VirtualTimeViolation(what)
        if self.first is None:
            self.first = error
            self._on_violation(error)
        raise error

    def __enter__(self) -> RealWorldGuard:
        if _State.active is not None:
            raise RuntimeError("a simulation is already running in this process")
        self._thread = threading.get_ident()
        replaced: dict[int, Any] = {}  # id of an original -> its guarded stand-in
        for owner, names in ((time, _CLOCKS), (random, _RANDOMS)):
            for name in names:
                original = getattr(owner, name)
                replaced[id(original)] = self._patch(owner, name, self._from_connector)
        anywhere: tuple[tuple[object, str], ...] = (
            (time, "sleep"),
            (socket.socket, "__init__"),
            (socket, "getaddrinfo"),
            (threading.Thread, "start"),
        )
        for target, attribute in anywhere:
            self._patch(target, attribute, self._anywhere)
        for module_name, module in list(sys.modules.items()):
            if module is None or not (
                module_name == "connector" or module_name.startswith("connector.")
            ):
                continue
            for attribute, value in list(vars(module).items()):
                if callable(value) and id(value) in replaced:
                    self._restore.append((module, attribute, value))
                    setattr(module, attribute, replaced[id(value)])
        _State.active = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _State.active = None
        while self._restore:
            owner, attribute, value = self._restore.pop()
            setattr(owner, attribute, value)

    def _patch(
        self, owner: Any, name: str, wrap: Callable[[str, Callable[..., Any]], Callable[..., Any]]
    ) -> Callable[..., Any]:
        original = getattr(owner, name)
        qualified = f"{getattr(owner, '__name__', owner)}.{name}"
        guarded = wrap(qualified, original)
        self._restore.append((owner, name, original))
        setattr(owner, name, guarded)
        return guarded

    def _from_connector(self, qualified: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.on_this_thread():
                caller = sys._getframe(1)
                module = caller.f_globals.get("__name__", "")
                if module == "connector" or module.startswith("connector."):
                    where = f"{module} ({caller.f_code.co_filename}:{caller.f_lineno})"
                    self.violation(f"{qualified}() was called from {where}")
            return original(*args, **kwargs)

        return guarded

    def _anywhere(self, qualified: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.on_this_thread():
                caller = sys._getframe(1)
                module = caller.f_globals.get("__name__", "?")
                self.violation(f"{qualified}() was called from {module}:{caller.f_lineno}")
            return original(*args, **kwargs)

        return guarded
