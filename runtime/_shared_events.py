"""Events of the shared breaker and limiter state: its store went away, and came back.

`FallbackSharedState` publishes each once per outage. ``service`` is the scope
whose operation noticed, and ``at`` is the wall-clock instant (Unix seconds)
that operation was given: shared state runs on wall-clock time, since loop
clocks differ from process to process.
"""

from __future__ import annotations

from typing import Literal

from ._events import Event

__all__ = ["FallbackMode", "SharedStateRestored", "SharedStateUnavailable"]

FallbackMode = Literal["fail_open", "fail_closed"]


class SharedStateUnavailable(Event, frozen=True, kw_only=True):
    """The shared store failed; until it is back, calls are decided by ``mode``.

    ``fail_open`` admits by this process's own state; ``fail_closed`` rejects.
    ``error`` names the failure (redacted: no address credentials).
    """

    store: str
    mode: FallbackMode
    error: str


class SharedStateRestored(Event, frozen=True, kw_only=True):
    """The shared store answers again after ``down_for`` seconds.

    ``resynced`` counts the scopes whose local state was pushed to it (open
    circuits and provider pauses that started during the outage).
    """

    store: str
    down_for: float
    resynced: int
