"""`RedisIdempotencyStore`: idempotency keys and their results in Redis, shared by processes.

Per key, a result hash (``expires_at``, ``payload``) and a lease key taken with
``SET NX PX`` holding the runner's token. Claiming, completing and abandoning
are each one Lua script, so "no result yet, take the lease" is one atomic step.
The lease expires on the server's clock (it is about liveness); the result's
expiry is compared with the store's wall clock, and Redis drops the hash
after the TTL on its own clock. See `DurableIdempotencyStore` for what results
may be. Server failures raise `SharedStateError`. A client of your own must
return bytes (``decode_responses=False``, redis-py's default): results are binary.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from ._clock import WallClock, system_wall_clock
from ._idempotency_durable import Claim, DurableIdempotencyStore
from ._redis_state import RedisScript, as_text, redis_client, redis_errors
from ._shared_state import SharedStateError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisIdempotencyStore"]

# KEYS[1]: the result, KEYS[2]: the lease. ARGV[1]: token, ARGV[2]: lease ms, ARGV[3]: now.
CLAIM_LUA = """
local stored = redis.call('HMGET', KEYS[1], 'expires_at', 'payload')
if stored[1] then
  if tonumber(stored[1]) > tonumber(ARGV[3]) then return {'done', stored[2]} end
  redis.call('DEL', KEYS[1])
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'mine'} end
return {'busy'}
"""

# ARGV[1]: token, ARGV[2]: expires_at, ARGV[3]: payload, ARGV[4]: ms to keep the result.
COMPLETE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[2], 'payload', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

# ARGV[1]: token.
ABANDON_LUA = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

_CLAIM = RedisScript(CLAIM_LUA)
_COMPLETE = RedisScript(COMPLETE_LUA)
_ABANDON = RedisScript(ABANDON_LUA)


class RedisIdempotencyStore(DurableIdempotencyStore):
    """A durable `IdempotencyStore` in Redis, on ``client`` or a fail-fast one (`from_url`)."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "connector:",
        clock: WallClock = system_wall_clock,
        lease: float = 300.0,
        poll_interval: float = 0.05,
        types: Iterable[type[msgspec.Struct]] = (),
        rng: random.Random | None = None,
        owns_client: bool = False,
    ) -> None:
        super().__init__(
            clock=clock, lease=lease, poll_interval=poll_interval, types=types, rng=rng
        )
        self.client = client
        self.prefix = prefix
        self._owns_client = owns_client
        self._errors = redis_errors()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "connector:",
        timeout: float = 1.0,
        clock: WallClock = system_wall_clock,
        lease: float = 300.0,
        poll_interval: float = 0.05,
        types: Iterable[type[msgspec.Struct]] = (),
    ) -> RedisIdempotencyStore:
        return cls(
            redis_client(url, timeout=timeout),
            prefix=prefix,
            clock=clock,
            lease=lease,
            poll_interval=poll_interval,
            types=types,
            owns_client=True,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    def _keys(self, name: str) -> tuple[str, str]:
        result = f"{self.prefix}idempotency:{{{name}}}"
        return result, result + ":lease"

    async def _run(self, script: RedisScript, name: str, args: Sequence[Any]) -> Any:
        try:
            return await script(self.client, self._keys(name), args)
        except self._errors as error:
            raise SharedStateError("redis", f"{type(error).__name__}: {error}") from error

    async def _claim(self, name: str, token: str, now: float) -> tuple[Claim, bytes | None]:
        lease_ms = str(math.ceil(self._lease * 1000))
        answer = await self._run(_CLAIM, name, (token, lease_ms, repr(now)))
        claim = Claim(as_text(answer[0]))
        return claim, answer[1] if claim is Claim.DONE else None

    async def _complete(self, name: str, token: str, data: bytes, expires_at: float) -> None:
        keep_ms = str(max(1, math.ceil((expires_at - self._clock()) * 1000)))
        await self._run(_COMPLETE, name, (token, repr(expires_at), data, keep_ms))

    async def _abandon(self, name: str, token: str) -> None:
        await self._run(_ABANDON, name, (token,))
