"""`RedisStateStore`: passivated cells' breaker and limiter state in Redis, one key per cell.

The value is the `CellState` as JSON with its instants on the wall clock
(`CellStateCodec`), so any process can resume it; the key expires ``ttl``
seconds after the last save, since a cell idle that long has nothing worth
resuming (its circuit's open period and its limiter's debt are long over).
Server failures raise `SharedStateError`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec

from . import _validate as check
from ._clock import Clock, WallClock, system_wall_clock
from ._redis_state import redis_client, redis_errors
from ._shared_state import SharedStateError
from ._sqlite_state_store import CellStateCodec
from ._state_store import CellState

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStateStore"]


class RedisStateStore:
    """A `StateStore` in Redis under ``prefix``, on ``client`` or a fail-fast one (`from_url`).

    ``clock`` and ``wall_clock`` as for `SqliteStateStore`.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "connector:",
        ttl: float = 7 * 86_400.0,
        wall_clock: WallClock = system_wall_clock,
        clock: Clock | None = None,
        owns_client: bool = False,
    ) -> None:
        check.positive("ttl", ttl)
        self.client = client
        self.prefix = prefix
        self._ttl_ms = math.ceil(ttl * 1000)
        self._codec = CellStateCodec(wall_clock, clock)
        self._owns_client = owns_client
        self._errors = redis_errors()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "connector:",
        timeout: float = 1.0,
        ttl: float = 7 * 86_400.0,
        wall_clock: WallClock = system_wall_clock,
        clock: Clock | None = None,
    ) -> RedisStateStore:
        return cls(
            redis_client(url, timeout=timeout),
            prefix=prefix,
            ttl=ttl,
            wall_clock=wall_clock,
            clock=clock,
            owns_client=True,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    def _key(self, service: str, key: str | None) -> str:
        # JSON keeps a None key apart from any string key.
        return f"{self.prefix}cell:{msgspec.json.encode([service, key]).decode()}"

    async def load(self, service: str, key: str | None) -> CellState | None:
        try:
            data = await self.client.get(self._key(service, key))
        except self._errors as error:
            raise SharedStateError("redis", f"{type(error).__name__}: {error}") from error
        return None if data is None else self._codec.decode(data)

    async def save(self, service: str, key: str | None, state: CellState) -> None:
        data = self._codec.encode(state)
        try:
            await self.client.set(self._key(service, key), data, px=self._ttl_ms)
        except self._errors as error:
            raise SharedStateError("redis", f"{type(error).__name__}: {error}") from error
