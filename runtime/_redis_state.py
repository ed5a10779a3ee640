"""`RedisSharedState`: breaker and limiter state in Redis, each decision one atomic Lua script.

Every read-modify-write runs inside Redis as one script on one scope's keys,
so N processes sharing a quota never over-admit together (the PHP original's
get-then-set did) and only ``half_open_probes`` probes go out across all of
them. An admission is one round trip (EVALSHA; the script is loaded again by
itself after a server restart).

The scripts port `MemorySharedState` line for line: the limit's integer
microseconds, and `CircuitBreaker` on the same float arithmetic (Lua numbers
are doubles; values cross as ``%.17g`` text, which round-trips), so the shared
machines agree with the local ones; the tests hold them to it. One addition:
a half-open probe is a lease of ``probe_lease`` seconds, so a process that
dies holding a probe cannot wedge the circuit half-open for everyone.

Keys: ``{prefix}limit:{<scope>}`` (tat, paused), ``{prefix}breaker:{<scope>}``
and ``...:window``, the braces a cluster hash tag keeping a circuit's two keys
on one node. A limit's key expires a minute after it reads full again; a
circuit's keys live ``state_ttl`` after their last write (forced-open and
disabled circuits never expire). redis-py is the ``redis`` extra, imported only when a
store is built.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _validate as check
from ._breaker import Breaker, BreakerState, CircuitBreakerState
from ._ratelimit import RateLimit
from ._shared_state import (
    MICROSECONDS,
    Admission,
    BreakerStatus,
    SharedStateError,
    check_cost,
    check_force,
    instant_us,
    limit_steps,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisScript", "RedisSharedState", "as_text", "redis_client", "redis_errors"]

# How long a limit's key outlives the moment it reads full again, in ms: a
# margin for hosts whose clocks disagree a little with the server's.
_LIMIT_KEEP_MS = 60_000

_LIMIT_PRELUDE = """
-- KEYS[1]: the scope's limit (hash: tat, paused), instants in integer us.
-- ARGV[1]: now, ARGV[2]: the cost's increment (0: no limit, only the pause),
-- ARGV[3]: the tolerance, ARGV[4]: until (a pause's end), ARGV[5]: ms the key
-- is kept after it reads full again. Integers all: a double holds them exactly.
local now, inc, tol = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('HMGET', KEYS[1], 'tat', 'paused')
local tat = raw[1] and tonumber(raw[1])
local paused = raw[2] and tonumber(raw[2])
local function keep()
  local last = math.max(tat or now, paused or now)
  local ms = math.ceil((last - now) / 1000) + tonumber(ARGV[5])
  redis.call('PEXPIRE', KEYS[1], string.format('%d', ms))
end
"""

ACQUIRE_LUA = (
    _LIMIT_PRELUDE
    + """
local function wait_at(t)
  local allow_at = math.max(tat or t, t) + inc - tol
  if t + 1 >= allow_at then return 0 end  -- 1 us of slack, as _shared_state
  return allow_at - t
end
if inc == 0 then
  if paused and now < paused then return paused - now end
  return 0
end
if paused and now < paused then return paused - now + wait_at(paused) end
local wait = wait_at(now)
if wait == 0 then
  tat = math.max(tat or now, now) + inc
  redis.call('HSET', KEYS[1], 'tat', string.format('%d', tat))
  keep()
end
return wait
"""
)

REFUND_LUA = (
    _LIMIT_PRELUDE
    + """
if tat then tat = math.max(now, tat - inc) else tat = now end
redis.call('HSET', KEYS[1], 'tat', string.format('%d', tat))
keep()
return 1
"""
)

PAUSE_LUA = (
    _LIMIT_PRELUDE
    + """
local until_ = tonumber(ARGV[4])
if paused then paused = math.max(paused, until_) else paused = until_ end
redis.call('HSET', KEYS[1], 'paused', string.format('%d', paused))
keep()
return 1
"""
)

# The circuit: CircuitBreaker's fields in KEYS[1], its sliding window in KEYS[2]
# (a count window as a ring of digits, bit 0 failed, bit 1 slow; a time window
# as one field per live second, 'b<second % size>' = 'second:calls:failures:slow').
_BREAKER_PRELUDE = """
local function fmt(x) return string.format('%.17g', x) end
local CORE, WIN = KEYS[1], KEYS[2]
local FT, RATE, WKIND = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local WSIZE, MINCALLS, SLOWRATE = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local OPEN, MULT, CAP = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local PROBES, SUCCESSES = tonumber(ARGV[10]), tonumber(ARGV[11])
local LEASE, TTL, NOW = tonumber(ARGV[12]), ARGV[13], tonumber(ARGV[14])

local raw = redis.call('HMGET', CORE, 'state', 'gen', 'opened_at', 'open_count', 'cf', 'hos',
                       'probes')
local B = {
  state = raw[1] or 'closed',
  gen = tonumber(raw[2] or '0'),
  opened_at = raw[3] and tonumber(raw[3]) or nil,
  open_count = tonumber(raw[4] or '0'),
  cf = tonumber(raw[5] or '0'),
  hos = tonumber(raw[6] or '0'),
  probes = {},
}
if raw[7] then
  for t in string.gmatch(raw[7], '%S+') do table.insert(B.probes, tonumber(t)) end
end
local dirty, W, wdirty = false, nil, false

local function open_duration_for(n)
  if MULT == 1 or n <= 1 then return OPEN end
  return math.min(CAP, OPEN * MULT ^ (n - 1))
end

local function reopen_at() return B.opened_at + open_duration_for(B.open_count) end

local function transition(state)
  B.state = state
  B.gen = B.gen + 1
  B.probes = {}
  B.hos = 0
  dirty = true
end

local function current()
  if B.state == 'open' and NOW >= reopen_at() then transition('half_open') end
  return B.state
end

local function prune()
  local live = {}
  for _, t in ipairs(B.probes) do
    if t > NOW then table.insert(live, t) end
  end
  if #live ~= #B.probes then B.probes = live; dirty = true end
end

local function window()
  if W == nil then
    local sig = WKIND .. ':' .. ARGV[4]
    local w = redis.call('HMGET', WIN, 'sig', 'calls', 'failures', 'slow', 'next', 'ring', 'latest')
    if w[1] == sig then
      W = {calls = tonumber(w[2]), failures = tonumber(w[3]), slow = tonumber(w[4]),
           next = tonumber(w[5] or '0'), ring = w[6] or '', latest = tonumber(w[7] or '-1')}
    else
      -- none yet, or one kept for another window: start empty
      redis.call('DEL', WIN)
      local ring = ''
      if WKIND == 'count' then ring = string.rep('0', WSIZE) end
      W = {calls = 0, failures = 0, slow = 0, next = 0, ring = ring, latest = -1}
    end
    W.sig = sig
  end
  return W
end

local function parse_bucket(text)
  local s, c, f, w = string.match(text, '^(%-?%d+):(%d+):(%d+):(%d+)$')
  return tonumber(s), tonumber(c), tonumber(f), tonumber(w)
end

local function advance(second)
  local w = window()
  if second <= w.latest then return end
  if second - w.latest >= WSIZE then
    redis.call('DEL', WIN)  -- every bucket falls out
    w.calls, w.failures, w.slow = 0, 0, 0
  else
    for s = w.latest + 1, second do
      local field = 'b' .. (s % WSIZE)
      local text = redis.call('HGET', WIN, field)
      if text then
        local _, c, f, sl = parse_bucket(text)
        w.calls, w.failures, w.slow = w.calls - c, w.failures - f, w.slow - sl
        redis.call('HDEL', WIN, field)
      end
    end
  end
  w.latest = second
  wdirty = true
end

local function add(failed, slow)
  local w = window()
  local f, sl = failed and 1 or 0, slow and 1 or 0
  if WKIND == 'count' then
    local i = w.next
    if w.calls == WSIZE then
      local old = string.byte(w.ring, i + 1) - 48
      w.failures = w.failures - old % 2
      w.slow = w.slow - math.floor(old / 2)
    else
      w.calls = w.calls + 1
    end
    w.ring = string.sub(w.ring, 1, i) .. (f + 2 * sl) .. string.sub(w.ring, i + 2)
    w.next = (i + 1) % WSIZE
  else
    local second = math.max(math.floor(NOW), w.latest)
    advance(second)
    local field = 'b' .. (second % WSIZE)
    local c, bf, bs = 0, 0, 0
    local text = redis.call('HGET', WIN, field)
    if text then
      local _
      _, c, bf, bs = parse_bucket(text)
    end
    redis.call('HSET', WIN, field,
               string.format('%d:%d:%d:%d', second, c + 1, bf + f, bs + sl))
    w.calls = w.calls + 1
  end
  w.failures = w.failures + f
  w.slow = w.slow + sl
  wdirty = true
end

local function open_()
  B.open_count = B.open_count + 1
  B.opened_at = NOW
  transition('open')
end

local function close_()
  transition('closed')
  B.opened_at = nil
  B.open_count = 0
  B.cf = 0
  redis.call('DEL', WIN)
  W, wdirty = nil, false
end

local function trip_if_needed()
  if FT > 0 and B.cf >= FT then open_() return end
  if WKIND == '' then return end
  local w = window()
  if WKIND == 'time' then advance(math.floor(NOW)) end
  local needed = MINCALLS
  if WKIND == 'count' then needed = math.min(needed, WSIZE) end
  if w.calls < needed then return end
  if (RATE >= 0 and w.failures / w.calls >= RATE)
     or (SLOWRATE >= 0 and w.slow / w.calls >= SLOWRATE) then
    open_()
  end
end

local function save()
  if dirty then
    local probes = {}
    for k, t in ipairs(B.probes) do probes[k] = fmt(t) end
    redis.call('HSET', CORE, 'state', B.state, 'gen', string.format('%d', B.gen),
               'open_count', string.format('%d', B.open_count),
               'cf', string.format('%d', B.cf), 'hos', string.format('%d', B.hos),
               'probes', table.concat(probes, ' '))
    if B.opened_at then
      redis.call('HSET', CORE, 'opened_at', fmt(B.opened_at))
    else
      redis.call('HDEL', CORE, 'opened_at')
    end
  end
  if W ~= nil and wdirty then
    redis.call('HSET', WIN, 'sig', W.sig, 'calls', W.calls, 'failures', W.failures,
               'slow', W.slow, 'next', W.next, 'ring', W.ring, 'latest', W.latest)
  end
  if dirty or wdirty then
    if B.state == 'forced_open' or B.state == 'disabled' then
      redis.call('PERSIST', CORE)
      redis.call('PERSIST', WIN)
    else
      redis.call('PEXPIRE', CORE, TTL)
      redis.call('PEXPIRE', WIN, TTL)
    end
  end
end

local function status()
  return {B.state, B.gen, B.opened_at and fmt(B.opened_at) or '', B.open_count}
end
"""

BREAKER_ADMIT_LUA = (
    _BREAKER_PRELUDE
    + """
local state = current()
local permit, retry = -1, '0'
if state == 'closed' or state == 'disabled' then
  permit = B.gen
elseif state == 'half_open' then
  prune()
  if #B.probes < PROBES then
    table.insert(B.probes, NOW + LEASE)
    dirty = true
    permit = B.gen
  end
elseif state == 'open' then
  retry = fmt(math.max(0, reopen_at() - NOW))
else
  retry = 'inf'
end
save()
local answer = status()
table.insert(answer, permit)
table.insert(answer, retry)
return answer
"""
)

BREAKER_RECORD_LUA = (
    _BREAKER_PRELUDE
    + """
local permit, failed, slow = tonumber(ARGV[15]), ARGV[16] == '1', ARGV[17] == '1'
if permit == B.gen then
  if B.state == 'half_open' then
    table.remove(B.probes, 1)
    dirty = true
    if failed or slow then
      open_()  -- a failed probe, or a slow one: the service is still degraded
    else
      B.hos = B.hos + 1
      if B.hos >= SUCCESSES then close_() end
    end
  elseif B.state == 'closed' then
    if failed then B.cf = B.cf + 1 else B.cf = 0 end
    dirty = true
    if WKIND ~= '' then add(failed, slow) end
    trip_if_needed()
  end
end
save()
return status()
"""
)

BREAKER_RELEASE_LUA = (
    _BREAKER_PRELUDE
    + """
if tonumber(ARGV[15]) == B.gen and B.state == 'half_open' and #B.probes > 0 then
  table.remove(B.probes, 1)
  dirty = true
end
save()
return status()
"""
)

BREAKER_FORCE_LUA = (
    _BREAKER_PRELUDE
    + """
if ARGV[15] == 'closed' then close_() else transition(ARGV[15]) end
save()
return status()
"""
)

BREAKER_SYNC_LUA = (
    _BREAKER_PRELUDE
    + """
local state = current()
local o_state, o_gen = ARGV[15], tonumber(ARGV[16])
local o_opened, o_count = tonumber(ARGV[17]), tonumber(ARGV[18])
if (state == 'closed' or state == 'half_open') and o_state == 'open' and o_opened
   and NOW < o_opened + open_duration_for(o_count) then
  B.gen = math.max(B.gen, o_gen)
  B.opened_at, B.open_count = o_opened, o_count
  transition('open')
end
save()
return status()
"""
)

BREAKER_STATE_LUA = (
    _BREAKER_PRELUDE
    + """
current()
prune()
local outcomes, buckets = '', {}
if WKIND == 'count' then
  local w = window()
  local start, codes = (w.next - w.calls) % WSIZE, {}
  for k = 0, w.calls - 1 do
    local i = (start + k) % WSIZE
    codes[k + 1] = string.sub(w.ring, i + 1, i + 1)
  end
  outcomes = table.concat(codes)
elseif WKIND == 'time' then
  window()
  local all = redis.call('HGETALL', WIN)
  for k = 1, #all, 2 do
    if string.sub(all[k], 1, 1) == 'b' then table.insert(buckets, all[k + 1]) end
  end
end
save()
local answer = status()
for _, value in ipairs({B.cf, B.hos, #B.probes, outcomes}) do table.insert(answer, value) end
for _, value in ipairs(buckets) do table.insert(answer, value) end
return answer
"""
)


class RedisScript:
    """A Lua script run by its SHA1 (EVALSHA), loaded again when the server lost it."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        from redis.exceptions import NoScriptError  # noqa: PLC0415  # the optional extra

        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.text)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


def redis_client(url: str, *, timeout: float = 1.0) -> Redis:
    """A client for ``url`` that fails fast: ``timeout`` seconds to connect or answer, no retries.

    The stores' fallbacks and callers' deadlines decide what happens next; a
    client retrying on its own would only hold a call up while Redis is down.
    """
    from redis.asyncio import Redis  # noqa: PLC0415  # the optional extra
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    check.positive("timeout", timeout)
    client: Redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return client


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a failing server or connection raises through redis-py."""
    from redis.exceptions import RedisError  # noqa: PLC0415  # the optional extra

    return (RedisError, OSError)


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _optional_float(value: bytes | str) -> float | None:
    return float(value) if value else None


@functools.lru_cache(maxsize=256)
def _breaker_args(breaker: Breaker) -> tuple[str, ...]:
    """ARGV[1..11] of the circuit scripts: the `Breaker`, as the prelude reads it."""
    cap = breaker.max_open_duration
    return (
        str(breaker.failure_threshold or 0),
        repr(breaker.failure_rate_threshold)
        if breaker.failure_rate_threshold is not None
        else "-1",
        breaker.sliding_window if breaker.uses_window else "",
        str(breaker.window_size),
        str(breaker.minimum_calls),
        repr(float(breaker.slow_call_rate_threshold))
        if breaker.slow_call_duration is not None
        else "-1",
        repr(float(breaker.open_duration)),
        repr(float(breaker.open_duration_multiplier)),
        repr(float(cap if cap is not None else breaker.open_duration)),
        str(breaker.half_open_probes),
        str(breaker.success_threshold),
    )


def _status(answer: Sequence[Any]) -> BreakerStatus:
    return BreakerStatus(
        state=BreakerState(as_text(answer[0])),
        generation=int(answer[1]),
        opened_at=_optional_float(answer[2]),
        open_count=int(answer[3]),
    )


class RedisSharedState:
    """`SharedPolicyState` in Redis; wrap it in `FallbackSharedState` so outages stay local.

    Failures of the server or connection raise `SharedStateError`. Build it on
    a client of your own or with `from_url`; ``probe_lease`` bounds how long a
    half-open probe with no outcome holds its slot, ``state_ttl`` how long an
    idle circuit is remembered.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "connector:",
        probe_lease: float = 60.0,
        state_ttl: float = 86_400.0,
        owns_client: bool = False,
    ) -> None:
        check.positive("probe_lease", probe_lease)
        check.positive("state_ttl", state_ttl)
        self.client = client
        self.prefix = prefix
        self._lease = repr(float(probe_lease))
        self._ttl = str(math.ceil(state_ttl * 1000))
        self._owns_client = owns_client
        self._errors = redis_errors()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "connector:",
        timeout: float = 1.0,
        probe_lease: float = 60.0,
        state_ttl: float = 86_400.0,
    ) -> RedisSharedState:
        """A store on its own fail-fast client (see `redis_client`), closed by `aclose`."""
        return cls(
            redis_client(url, timeout=timeout),
            prefix=prefix,
            probe_lease=probe_lease,
            state_ttl=state_ttl,
            owns_client=True,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def _run(self, script: RedisScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await script(self.client, keys, args)
        except self._errors as error:
            raise SharedStateError("redis", f"{type(error).__name__}: {error}") from error

    # -- limiter ------------------------------------------------------------

    async def _limit(
        self,
        script: RedisScript,
        scope: str,
        now: float,
        increment: int,
        tolerance: int,
        until: int = 0,
    ) -> Any:
        args = (instant_us(now), increment, tolerance, until, _LIMIT_KEEP_MS)
        return await self._run(script, (f"{self.prefix}limit:{{{scope}}}",), args)

    async def acquire(
        self, scope: str, limit: RateLimit | None, now: float, cost: float = 1.0
    ) -> float:
        if limit is None:
            wait = await self._limit(_ACQUIRE, scope, now, 0, 0)
        else:
            check_cost(limit, cost)
            steps = limit_steps(limit)
            wait = await self._limit(_ACQUIRE, scope, now, steps.increment(cost), steps.tolerance)
        return int(wait) / MICROSECONDS

    async def refund(self, scope: str, limit: RateLimit, now: float, cost: float = 1.0) -> None:
        check_cost(limit, cost)
        steps = limit_steps(limit)
        await self._limit(_REFUND, scope, now, steps.increment(cost), steps.tolerance)

    async def pause(self, scope: str, until: float, now: float) -> None:
        await self._limit(_PAUSE, scope, now, 0, 0, instant_us(until, "until"))

    # -- breaker ------------------------------------------------------------

    async def _breaker(
        self, script: RedisScript, scope: str, breaker: Breaker, now: float, *extra: str
    ) -> Any:
        core = f"{self.prefix}breaker:{{{scope}}}"
        args = (*_breaker_args(breaker), self._lease, self._ttl, repr(float(now)), *extra)
        return await self._run(script, (core, core + ":window"), args)

    async def breaker_admit(self, scope: str, breaker: Breaker, now: float) -> Admission:
        answer = await self._breaker(_ADMIT, scope, breaker, now)
        permit = int(answer[4])
        return Admission(
            state=BreakerState(as_text(answer[0])),
            generation=int(answer[1]),
            opened_at=_optional_float(answer[2]),
            open_count=int(answer[3]),
            permit=permit if permit >= 0 else None,
            retry_after=float(answer[5]),
        )

    async def breaker_record(
        self,
        scope: str,
        breaker: Breaker,
        permit: int,
        now: float,
        *,
        failed: bool,
        duration: float = 0.0,
    ) -> BreakerStatus:
        threshold = breaker.slow_call_duration
        slow = threshold is not None and duration >= threshold
        answer = await self._breaker(
            _RECORD,
            scope,
            breaker,
            now,
            str(int(permit)),
            "1" if failed else "0",
            "1" if slow else "0",
        )
        return _status(answer)

    async def breaker_release(self, scope: str, breaker: Breaker, permit: int, now: float) -> None:
        await self._breaker(_RELEASE, scope, breaker, now, str(int(permit)))

    async def breaker_state(self, scope: str, breaker: Breaker, now: float) -> CircuitBreakerState:
        answer = await self._breaker(_STATE, scope, breaker, now)
        status = _status(answer)
        buckets = sorted(
            (int(s), int(c), int(f), int(w))
            for s, c, f, w in (as_text(bucket).split(":") for bucket in answer[8:])
        )
        return CircuitBreakerState(
            state=status.state,
            generation=status.generation,
            opened_at=status.opened_at,
            open_count=status.open_count,
            consecutive_failures=int(answer[4]),
            half_open_successes=int(answer[5]),
            half_open_in_flight=int(answer[6]),
            outcomes=[int(code) for code in as_text(answer[7])],
            buckets=buckets,
        )

    async def breaker_force(
        self, scope: str, breaker: Breaker, state: BreakerState, now: float
    ) -> BreakerStatus:
        check_force(state)
        return _status(await self._breaker(_FORCE, scope, breaker, now, state.value))

    async def breaker_sync(
        self, scope: str, breaker: Breaker, observed: CircuitBreakerState, now: float
    ) -> BreakerStatus:
        answer = await self._breaker(
            _SYNC,
            scope,
            breaker,
            now,
            observed.state.value,
            str(observed.generation),
            repr(observed.opened_at) if observed.opened_at is not None else "",
            str(observed.open_count),
        )
        return _status(answer)


_ACQUIRE = RedisScript(ACQUIRE_LUA)
_REFUND = RedisScript(REFUND_LUA)
_PAUSE = RedisScript(PAUSE_LUA)
_ADMIT = RedisScript(BREAKER_ADMIT_LUA)
_RECORD = RedisScript(BREAKER_RECORD_LUA)
_RELEASE = RedisScript(BREAKER_RELEASE_LUA)
_FORCE = RedisScript(BREAKER_FORCE_LUA)
_SYNC = RedisScript(BREAKER_SYNC_LUA)
_STATE = RedisScript(BREAKER_STATE_LUA)
