"""Where a keyed actor's breaker and limiter state waits while the actor is passivated.

A re-created actor resumes from here, so an idle tenant's open circuit stays
open. Instants in a `CellState` are on the runtime's loop clock; a store shared
between processes must translate them (the shared stores do).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from ._breaker import CircuitBreakerState
from ._ratelimit import LimiterState

__all__ = ["CellState", "MemoryStateStore", "StateStore"]


class CellState(msgspec.Struct, frozen=True, kw_only=True):
    breaker: CircuitBreakerState | None = None
    limiter: LimiterState | None = None
    paused_until: float = float("-inf")


class StateStore(Protocol):
    async def load(self, service: str, key: str | None) -> CellState | None: ...

    async def save(self, service: str, key: str | None, state: CellState) -> None: ...


class MemoryStateStore:
    """Process-local state, the default."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str | None], CellState] = {}

    async def load(self, service: str, key: str | None) -> CellState | None:
        return self._states.get((service, key))

    async def save(self, service: str, key: str | None, state: CellState) -> None:
        self._states[(service, key)] = state
