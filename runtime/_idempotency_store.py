"""Idempotent execution: one logical operation per key, stored for its TTL.

A repeated key within its TTL gets the stored result without a new attempt;
two concurrent calls with one key execute once (single flight), the second
waiting for the first. Only successes are stored: a failed call may be tried
again with the same key, which is what the provider's own key store expects.
If the call that runs is cancelled, a waiter takes over rather than inheriting
someone else's cancellation.
"""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol, TypeVar

import anyio

__all__ = ["IdempotencyStore", "MemoryIdempotencyStore"]

T = TypeVar("T")


class IdempotencyStore(Protocol):
    async def run(
        self, key: Hashable, ttl: float, now: float, operation: Callable[[], Awaitable[T]]
    ) -> T: ...


class _Flight:
    __slots__ = ("done", "error", "result", "taken_over")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.taken_over = False


class MemoryIdempotencyStore:
    """Results kept in this process, expiring on the loop clock."""

    def __init__(self) -> None:
        self._results: dict[Hashable, tuple[float, Any]] = {}
        self._expiry: list[tuple[float, int, Hashable]] = []
        self._sequence = 0
        self._flights: dict[Hashable, _Flight] = {}

    def __len__(self) -> int:
        return len(self._results)

    def _expire(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, _, key = heapq.heappop(expiry)
            stored = self._results.get(key)
            if stored is not None and stored[0] <= now:
                del self._results[key]

    async def run(
        self, key: Hashable, ttl: float, now: float, operation: Callable[[], Awaitable[T]]
    ) -> T:
        self._expire(now)
        while True:
            stored = self._results.get(key)
            if stored is not None:
                result: T = stored[1]
                return result
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.taken_over:
                continue  # the runner was cancelled: try again, perhaps as the runner
            if flight.error is not None:
                raise flight.error
            shared: T = flight.result
            return shared
        flight = self._flights[key] = _Flight()
        try:
            result = await operation()
        except Exception as error:
            flight.error = error
            raise
        except BaseException:
            flight.taken_over = True
            raise
        else:
            flight.result = result
            expires = now + ttl
            self._results[key] = (expires, result)
            self._sequence += 1
            heapq.heappush(self._expiry, (expires, self._sequence, key))
            return result
        finally:
            del self._flights[key]
            flight.done.set()
