"""Durable state stores for passivated cells: SQLite on a real file, Redis on the real server.

A stored `CellState` must resume in another process, whose loop clock has
another origin: the stores keep instants on the wall clock. The tests inject
both clocks to play two processes exactly (instants on a 1/64 s grid and whole
second offsets are exact floats, so resumed machines must answer exactly as
the originals would have). SQLite tests run on asyncio and trio; Redis tests
on asyncio only (redis-py's asyncio client needs an asyncio loop), pinned with
``anyio_backend``, not skipped.
"""

from __future__ import annotations

import json
import math
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from _servers import redis_prefix
from hypothesis import example, given
from hypothesis import strategies as st

from connector._breaker import Breaker, BreakerState, CircuitBreaker, CircuitBreakerState
from connector._clock import loop_clock
from connector._errors import ConnectorError
from connector._ratelimit import LimiterState, RateLimit
from connector._redis_state_store import RedisStateStore
from connector._shared_state import SharedStateError
from connector._sqlite_state_store import CellStateCodec, SqliteStateStore, shift_cell_state
from connector._state_store import CellState

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])

T0 = 1_700_000_000.0  # a wall-clock reading, Unix seconds
GRID = 1 / 64
BREAKER = Breaker(failure_threshold=2, open_duration=30.0)


class Process:
    """One process's two clocks: its loop clock reads ``loop`` when the wall reads ``wall``."""

    def __init__(self, loop: float, wall: float) -> None:
        self.loop = loop
        self.wall = wall

    def clock(self) -> float:
        return self.loop

    def wall_clock(self) -> float:
        return self.wall


def open_state(opened_at: float) -> CellState:
    return CellState(
        breaker=CircuitBreakerState(
            state=BreakerState.OPEN, generation=3, opened_at=opened_at, open_count=1
        ),
        limiter=LimiterState(level=opened_at + 2.0),  # a GCRA's theoretical arrival time
        paused_until=opened_at + 40.0,
    )


# -- the wall-clock translation ------------------------------------------------------


def test_every_instant_moves_and_nothing_else() -> None:
    state = CellState(
        breaker=CircuitBreakerState(
            state=BreakerState.OPEN,
            generation=2,
            opened_at=10.0,
            open_count=1,
            consecutive_failures=4,
            outcomes=[1, 0, 3],
            buckets=[(9, 2, 1, 0), (10, 1, 1, 1)],
        ),
        limiter=LimiterState(level=2.5, updated=9.0, paused_until=12.0),
        paused_until=11.0,
    )
    moved = shift_cell_state(state, 100.25)
    assert moved.breaker is not None
    assert moved.limiter is not None
    assert moved.breaker.opened_at == 110.25
    assert moved.breaker.buckets == [(109, 2, 1, 0), (110, 1, 1, 1)]
    assert moved.breaker.outcomes == [1, 0, 3]
    assert moved.breaker.consecutive_failures == 4
    # A token bucket (updated is set): its level is tokens, which stay.
    assert moved.limiter == LimiterState(level=2.5, updated=109.25, paused_until=112.25)
    assert moved.paused_until == 111.25
    assert shift_cell_state(CellState(), 5.0) == CellState()


def test_never_paused_survives_json() -> None:
    codec = CellStateCodec(wall_clock=lambda: T0, clock=lambda: 0.0)
    assert codec.decode(codec.encode(CellState())) == CellState()
    assert CellState().paused_until == -math.inf


PASSIVATED = st.lists(
    st.tuples(st.integers(0, 40), st.sampled_from([1.0, 2.0, 0.5]), st.booleans()), max_size=30
)


@given(
    algorithm=st.sampled_from(["token_bucket", "gcra"]),
    uses=PASSIVATED,
    pause=st.integers(0, 200),
    other_origin=st.integers(-(10**6), 10**6),
    idle=st.integers(0, 400),
    probes=st.lists(st.integers(0, 100), min_size=1, max_size=10),
)
def test_a_limiter_resumes_in_another_process_as_it_was(
    algorithm: Literal["token_bucket", "gcra"],
    uses: list[tuple[int, float, bool]],
    pause: int,
    other_origin: int,
    idle: int,
    probes: list[int],
) -> None:
    limit = RateLimit(rate=4, burst=3, algorithm=algorithm)
    original = limit.new_limiter()
    now = 1000.0
    for ticks, cost, refund in uses:
        now += ticks * GRID
        if refund:
            original.refund(now, cost)
        else:
            original.try_acquire(now, cost)
    if pause:
        original.pause_until(now + pause * GRID)
    data = CellStateCodec(wall_clock=lambda: T0 + now, clock=lambda: now).encode(
        CellState(limiter=original.snapshot())
    )
    # Another process, idle seconds later, on a clock with another origin.
    later = now + idle + other_origin
    resumed_state = CellStateCodec(wall_clock=lambda: T0 + now + idle, clock=lambda: later).decode(
        data
    )
    assert resumed_state.limiter is not None
    resumed = limit.new_limiter()
    resumed.restore(resumed_state.limiter)
    for ticks in probes:
        at = ticks * GRID
        assert resumed.try_acquire(later + at) == original.try_acquire(now + idle + at)


@given(
    window=st.sampled_from(["count", "time"]),
    outcomes=st.lists(st.tuples(st.integers(0, 64), st.booleans()), max_size=30),
    # Loop clocks never read negative (the time window's buckets assume it).
    other_origin=st.integers(-900, 10**6),
    idle=st.integers(0, 12),
    after=st.lists(st.tuples(st.integers(0, 64), st.booleans()), max_size=20),
)
# Two calls in the window before, one failure after: the buckets must have moved.
@example(
    window="time",
    outcomes=[(0, False), (0, True)],
    other_origin=500,
    idle=0,
    after=[(0, True), (0, True)],
)
def test_a_breaker_resumes_in_another_process_as_it_was(
    window: Literal["count", "time"],
    outcomes: list[tuple[int, bool]],
    other_origin: int,
    idle: int,
    after: list[tuple[int, bool]],
) -> None:
    config = Breaker(
        failure_threshold=None,
        failure_rate_threshold=0.5,
        sliding_window=window,
        window_size=5,
        minimum_calls=3,
        open_duration=7.0,
    )
    original = CircuitBreaker(config)
    now = 1000.0

    def drive(breaker: CircuitBreaker, at: float, failed: bool) -> None:
        permit = breaker.admit(at)
        if permit is None:
            return
        if failed:
            breaker.record_failure(permit, at)
        else:
            breaker.record_success(permit, at)

    for ticks, failed in outcomes:
        now += ticks * GRID
        drive(original, now, failed)
    data = CellStateCodec(wall_clock=lambda: T0 + now, clock=lambda: now).encode(
        CellState(breaker=original.snapshot())
    )
    later = now + idle + other_origin
    loaded = CellStateCodec(wall_clock=lambda: T0 + now + idle, clock=lambda: later).decode(data)
    assert loaded.breaker is not None
    resumed = CircuitBreaker(config, loaded.breaker)
    now += idle
    for ticks, failed in after:
        now += ticks * GRID
        later += ticks * GRID
        assert resumed.state(later) is original.state(now)
        assert resumed.retry_after(later) == original.retry_after(now)
        drive(original, now, failed)
        drive(resumed, later, failed)


# -- SQLite -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_sqlite_state_resumes_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "cells.db"
    first = Process(loop=100.0, wall=T0 + 100.0)
    async with SqliteStateStore(path, wall_clock=first.wall_clock, clock=first.clock) as store:
        await store.save("stripe", "tenant-a", open_state(90.0))
    # The row holds wall-clock instants.
    with sqlite3.connect(path) as connection:
        (text,) = connection.execute("SELECT state FROM cell_states").fetchone()
    assert json.loads(text)["breaker"]["opened_at"] == T0 + 90.0
    # 15 s later, a process whose loop clock started elsewhere resumes it.
    second = Process(loop=7000.0, wall=T0 + 115.0)
    async with SqliteStateStore(path, wall_clock=second.wall_clock, clock=second.clock) as store:
        loaded = await store.load("stripe", "tenant-a")
    assert loaded == open_state(6975.0)
    assert loaded.breaker is not None
    # Opened 10 s before the save, 15 s before the load: 5 s of 30 left.
    assert CircuitBreaker(BREAKER, loaded.breaker).retry_after(second.loop) == 5.0


@pytest.mark.anyio
async def test_sqlite_keys_services_and_overwrites(tmp_path: Path) -> None:
    clocks = Process(loop=0.0, wall=T0)
    async with SqliteStateStore(
        tmp_path / "cells.db", wall_clock=clocks.wall_clock, clock=clocks.clock
    ) as store:
        assert await store.load("stripe", None) is None
        await store.save("stripe", None, open_state(1.0))
        await store.save("stripe", "", open_state(2.0))
        await store.save("twilio", None, open_state(3.0))
        await store.save("stripe", None, open_state(4.0))
        assert await store.load("stripe", None) == open_state(4.0)
        assert await store.load("stripe", "") == open_state(2.0)
        assert await store.load("twilio", None) == open_state(3.0)
        assert await store.load("twilio", "") is None


@pytest.mark.anyio
async def test_sqlite_purges_old_states(tmp_path: Path) -> None:
    clocks = Process(loop=0.0, wall=T0)
    async with SqliteStateStore(
        tmp_path / "cells.db", wall_clock=clocks.wall_clock, clock=clocks.clock
    ) as store:
        await store.save("stripe", "old", CellState())
        clocks.wall += 100.0
        await store.save("stripe", "new", CellState())
        clocks.wall += 50.0
        assert await store.purge(older_than=120.0) == 1
        assert await store.load("stripe", "old") is None
        assert await store.load("stripe", "new") == CellState()


@pytest.mark.anyio
async def test_sqlite_on_the_loop_clock_by_default(tmp_path: Path) -> None:
    async with SqliteStateStore(tmp_path / "cells.db") as store:
        now = loop_clock()()
        await store.save("stripe", None, open_state(now))
        loaded = await store.load("stripe", None)
    assert loaded is not None
    assert loaded.breaker is not None
    # Wall and loop clocks drift apart a little between the two readings.
    assert loaded.breaker.opened_at == pytest.approx(now, abs=0.05)


@pytest.mark.anyio
async def test_a_closed_sqlite_store_refuses(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "cells.db")
    await store.close()
    with pytest.raises(ConnectorError, match="closed"):
        await store.load("stripe", None)


# -- Redis ----------------------------------------------------------------------------


@pytest.fixture
def redis_env() -> Iterator[tuple[str, str]]:
    with redis_prefix() as env:
        yield env


@pytest.mark.anyio
@asyncio_only
async def test_redis_state_resumes_in_another_process(redis_env: tuple[str, str]) -> None:
    url, prefix = redis_env
    first = Process(loop=100.0, wall=T0 + 100.0)
    second = Process(loop=7000.0, wall=T0 + 115.0)
    one = RedisStateStore.from_url(
        url, prefix=prefix, ttl=60.0, wall_clock=first.wall_clock, clock=first.clock
    )
    two = RedisStateStore.from_url(
        url, prefix=prefix, wall_clock=second.wall_clock, clock=second.clock
    )
    try:
        assert await one.load("stripe", None) is None
        await one.save("stripe", None, open_state(90.0))
        await one.save("stripe", "", open_state(95.0))
        assert await two.load("stripe", None) == open_state(6975.0)
        assert await two.load("stripe", "") == open_state(6980.0)
        key = f'{prefix}cell:["stripe",null]'
        assert 0 < await one.client.pttl(key) <= 60_000
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.anyio
@asyncio_only
async def test_an_unreachable_redis_state_store_raises_its_own_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisStateStore.from_url(f"redis://127.0.0.1:{port}/0", prefix=uuid.uuid4().hex)
    try:
        with pytest.raises(SharedStateError):
            await store.save("stripe", None, CellState())
        with pytest.raises(SharedStateError):
            await store.load("stripe", None)
    finally:
        await store.aclose()
