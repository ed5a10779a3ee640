"""A virtual-time asyncio event loop.

Time is an integer count of nanoseconds that moves only when the loop would
otherwise wait: instead of blocking in ``select(timeout)``, the loop jumps its
clock forward by ``timeout`` and carries on, so an hour of timers runs in as
long as the callbacks take. Pass `VirtualTimeLoop` as anyio's ``loop_factory``.

With ``autojump=False`` the clock stands still until `advance` moves it (and a
wait with nothing ready blocks for real, as a normal loop does): that is how a
test steps time by hand while driving the loop from another thread.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Mapping
from typing import Any

__all__ = ["VirtualTimeLoop"]

_NS = 1_000_000_000


class _VirtualSelector(selectors.BaseSelector):
    """Polls real file descriptors without blocking; turns a wait into a clock jump."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()
        self._registered = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if not self._loop.autojump:
            return self._real.select(timeout)
        if timeout is None:
            # Nothing scheduled at all: block for real (a thread may wake us).
            return self._real.select(None)
        # The loop's own self-pipe is always registered. It only wakes a blocked
        # select, and call_soon_threadsafe has queued its callback by then, which
        # `_ready` shows. With no other descriptor there is nothing to poll, and
        # a poll is a system call on every turn of the loop.
        if self._registered > 1:
            ready = self._real.select(0)
            if ready:
                return ready
        if timeout > 0 and not self._loop._ready:  # type: ignore[attr-defined]
            self._loop.advance_ns(math.ceil(timeout * _NS))
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._real.register(fileobj, events, data)
        self._registered += 1
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._real.unregister(fileobj)
        self._registered -= 1
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose `time` is virtual; see the module docstring."""

    def __init__(self, *, autojump: bool = True, start_ns: int = 0) -> None:
        self.autojump = autojump
        self._now_ns = start_ns
        self._now = start_ns / _NS  # asyncio reads the time a dozen times per turn
        super().__init__(selector=_VirtualSelector(self))

    def time(self) -> float:
        return self._now

    @property
    def time_ns(self) -> int:
        return self._now_ns

    def advance_ns(self, nanoseconds: int) -> None:
        """Move the clock forward; timers due by then run on the next iteration."""
        if nanoseconds < 0:
            raise ValueError(f"time cannot go back ({nanoseconds} ns)")
        self._now_ns += nanoseconds
        self._now = self._now_ns / _NS

    def advance(self, seconds: float) -> None:
        self.advance_ns(math.ceil(seconds * _NS))
