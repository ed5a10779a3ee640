"""Services whose breaker and rate limit live in shared state, through the runtime.

Two runtimes stand for two processes. The memory tests run on both backends;
the Redis ones on asyncio only (redis-py), against a real server.
"""

from __future__ import annotations

import itertools

import anyio
import pytest
from _servers import OwnRedis

from connector import (
    Breaker,
    BreakerTransition,
    CircuitBreakerOpen,
    ConnectionFailed,
    FallbackSharedState,
    MemorySharedState,
    RateLimit,
    RateLimitExceeded,
    RedisSharedState,
    Retry,
    Runtime,
    SharedStateRestored,
    SharedStateUnavailable,
)
from connector._events import Event

pytestmark = pytest.mark.anyio


async def ok() -> str:
    return "ok"


async def down() -> str:
    raise ConnectionError("provider down")


def policies() -> dict[str, object]:
    return {
        "breaker": Breaker(failure_threshold=2, open_duration=60),
        "rate_limit": RateLimit.per_minute(6, mode="reject"),
        "retry": Retry.none(),
    }


async def test_two_runtimes_share_one_quota_and_one_circuit() -> None:
    shared = MemorySharedState()
    async with Runtime() as first, Runtime() as second:
        a = first.register("sms", shared_state=shared, **policies())  # type: ignore[arg-type]
        b = second.register("sms", shared_state=shared, **policies())  # type: ignore[arg-type]
        for svc in (a, b, a, b):
            assert await svc.call(ok) == "ok"
        with second.events.subscribe() as events:
            for svc in (a, b):
                with pytest.raises(ConnectionFailed):
                    await svc.call(down)
            with pytest.raises(CircuitBreakerOpen):  # opened by both together, seen by each
                await a.call(ok)
            with pytest.raises(CircuitBreakerOpen):
                await b.call(ok)
            transitions = [e for e in events.drain() if isinstance(e, BreakerTransition)]
        assert [(t.previous, t.current) for t in transitions] == [("closed", "open")]


async def test_the_shared_quota_rejects_the_call_past_it_in_either_runtime() -> None:
    shared = MemorySharedState()
    async with Runtime() as first, Runtime() as second:
        limit = RateLimit.per_minute(3, mode="reject")
        a = first.register("email", shared_state=shared, rate_limit=limit, breaker=None)
        b = second.register("email", shared_state=shared, rate_limit=limit, breaker=None)
        for svc in (a, b, a):
            await svc.call(ok)
        with pytest.raises(RateLimitExceeded) as caught:
            await b.call(ok)
        assert caught.value.retry_after == pytest.approx(20.0, abs=0.01)


async def test_a_waiting_call_sleeps_for_its_shared_token() -> None:
    shared = MemorySharedState()
    moments: list[float] = []

    async def stamp() -> None:
        moments.append(anyio.current_time())

    async with Runtime() as rt:
        svc = rt.register(
            "email", shared_state=shared, rate_limit=RateLimit.per_second(10, burst=1)
        )
        for _ in range(3):
            await svc.call(stamp)
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert all(gap >= 0.099 for gap in gaps), gaps


@pytest.mark.asyncio_only
@pytest.mark.parametrize("mode", ["fail_open", "fail_closed"])
async def test_calls_never_see_redis_die_and_state_comes_back(
    own_redis: OwnRedis, mode: str
) -> None:
    events: list[Event] = []
    shared = FallbackSharedState(
        RedisSharedState.from_url(own_redis.url, timeout=0.3),
        mode=mode,  # type: ignore[arg-type]
        on_event=events.append,
        retry_initial=0.2,
        retry_max=0.2,
        store="redis",
    )
    async with Runtime() as rt:
        svc = rt.register(
            "api",
            shared_state=shared,
            breaker=Breaker(failure_threshold=2, open_duration=600),
            rate_limit=RateLimit.per_second(1000, mode="reject"),
            retry=Retry.none(),
        )
        assert await svc.call(ok) == "ok"
        own_redis.kill()
        outcomes: list[str] = []
        for _ in range(5):
            try:
                outcomes.append(await svc.call(ok))
            except (CircuitBreakerOpen, RateLimitExceeded) as error:
                outcomes.append(type(error).__name__)  # the fail-closed rule, typed
        if mode == "fail_open":
            assert outcomes == ["ok"] * 5
        else:
            assert "ok" not in outcomes
        own_redis.start()
        await anyio.sleep(0.5)
        for _ in range(3):
            try:
                await svc.call(ok)
            except (CircuitBreakerOpen, RateLimitExceeded):
                await anyio.sleep(0.3)  # the probe after the backoff restores it
        assert await svc.call(ok) == "ok"
    await shared.aclose()
    kinds = [type(e) for e in events]
    assert kinds[0] is SharedStateUnavailable
    assert SharedStateRestored in kinds
