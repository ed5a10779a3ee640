"""Durable idempotency stores: SQLite on a real file, Redis on the real server.

Every behaviour runs against both stores. A second store instance on the same
file or key prefix plays another process (it shares nothing in memory with the
first). SQLite runs on asyncio and trio; Redis on asyncio only, since redis-py's
asyncio client needs an asyncio loop: the ``flavour`` fixture pairs each store
with the backends it runs on (no skips). Wall-clock time is injected.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from _servers import redis_prefix

from connector._errors import ConfigError
from connector._http import HttpResponse
from connector._idempotency_durable import DurableIdempotencyStore, encode_key
from connector._idempotency_redis import RedisIdempotencyStore
from connector._idempotency_sqlite import SqliteIdempotencyStore
from connector._shared_state import SharedStateError

T0 = 1_700_000_000.0
KEY = ("stripe", "tenant-a", "idem_0123456789abcdef0123456789abcdef")


class Wall:
    """An injected wall clock that moves only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Receipt(msgspec.Struct, frozen=True):
    charge: str
    amount: int


Make = Callable[..., DurableIdempotencyStore]


@pytest.fixture(
    params=[("sqlite", "asyncio"), ("sqlite", "trio"), ("redis", "asyncio")],
    ids=["sqlite-asyncio", "sqlite-trio", "redis-asyncio"],
)
def flavour(request: pytest.FixtureRequest) -> tuple[str, str]:
    return tuple(request.param)


@pytest.fixture
def anyio_backend(flavour: tuple[str, str]) -> str:
    return flavour[1]


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
async def make(flavour: tuple[str, str], tmp_path: Path, wall: Wall) -> AsyncIterator[Make]:
    """Builds store instances on one file or prefix: each one another process."""
    made: list[DurableIdempotencyStore] = []
    with redis_prefix() if flavour[0] == "redis" else contextlib.nullcontext() as env:

        def build(**options: Any) -> DurableIdempotencyStore:
            options = {"clock": wall, "poll_interval": 0.01, **options}
            store: DurableIdempotencyStore
            if env is None:
                store = SqliteIdempotencyStore(tmp_path / "idempotency.db", **options)
            else:
                url, prefix = env
                store = RedisIdempotencyStore.from_url(url, prefix=prefix, **options)
            made.append(store)
            return store

        yield build
        for store in made:
            if isinstance(store, SqliteIdempotencyStore):
                await store.close()
            elif isinstance(store, RedisIdempotencyStore):
                await store.aclose()


class Counted:
    """An operation that counts its runs and returns ``result``, optionally after ``gate``."""

    def __init__(self, result: Any = "charged", error: Exception | None = None) -> None:
        self.result = result
        self.error = error
        self.runs = 0
        self.started = anyio.Event()
        self.gate: anyio.Event | None = None

    async def __call__(self) -> Any:
        self.runs += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.result


def run(store: DurableIdempotencyStore, op: Callable[[], Awaitable[Any]], ttl: float = 60.0) -> Any:
    return store.run(KEY, ttl, 0.0, op)


@pytest.mark.anyio
async def test_a_repeated_key_gets_the_stored_result(make: Make) -> None:
    first, second = make(), make()
    op = Counted()
    assert await run(first, op) == "charged"
    assert await run(first, op) == "charged"
    # Another process, or this one restarted, finds it too.
    assert await run(second, Counted("again")) == "charged"
    assert op.runs == 1
    # Another key is another operation.
    assert await second.run(("stripe", None, "other"), 60.0, 0.0, Counted("other")) == "other"


@pytest.mark.anyio
async def test_a_result_expires_after_its_ttl_on_the_wall_clock(make: Make, wall: Wall) -> None:
    store = make()
    await run(store, Counted("first"), ttl=10.0)
    wall.now = T0 + 9.9
    assert await run(store, Counted("second"), ttl=10.0) == "first"
    wall.now = T0 + 10.0  # the boundary itself is expired
    assert await run(store, Counted("third"), ttl=10.0) == "third"


@pytest.mark.anyio
async def test_concurrent_calls_in_one_process_run_once(make: Make) -> None:
    store = make()
    op = Counted()
    op.gate = anyio.Event()
    results: list[Any] = []

    async def call() -> None:
        results.append(await run(store, op))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(call)
        await op.started.wait()
        await anyio.sleep(0.05)
        op.gate.set()
    assert results == ["charged"] * 5
    assert op.runs == 1


@pytest.mark.anyio
async def test_one_flight_across_processes(make: Make) -> None:
    first, second = make(), make()
    op, other = Counted(), Counted("duplicate")
    op.gate = anyio.Event()
    results: list[Any] = []

    async def call(store: DurableIdempotencyStore, operation: Counted) -> None:
        results.append(await run(store, operation))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(call, first, op)
            await op.started.wait()
            group.start_soon(call, second, other)
            await anyio.sleep(0.1)  # the second polls meanwhile
            assert results == []
            op.gate.set()
    assert results == ["charged", "charged"]
    assert (op.runs, other.runs) == (1, 0)


@pytest.mark.anyio
async def test_a_failure_is_not_stored(make: Make) -> None:
    store = make()
    with pytest.raises(ValueError, match="declined"):
        await run(store, Counted(error=ValueError("declined")))
    assert await run(store, Counted("retried")) == "retried"


@pytest.mark.anyio
async def test_waiters_see_a_failure_their_way(make: Make) -> None:
    first, second = make(), make()
    op = Counted(error=ValueError("declined"))
    op.gate = anyio.Event()
    other = Counted("second try")
    outcomes: list[str] = []

    async def call(store: DurableIdempotencyStore, operation: Counted) -> None:
        try:
            outcomes.append(await run(store, operation))
        except ValueError as error:
            outcomes.append(f"raised {error}")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(call, first, op)
            await op.started.wait()
            group.start_soon(call, first, op)  # same process: shares the error
            group.start_soon(call, second, other)  # another: runs it itself
            await anyio.sleep(0.1)
            op.gate.set()
    assert sorted(outcomes) == ["raised declined", "raised declined", "second try"]
    assert (op.runs, other.runs) == (1, 1)


@pytest.mark.anyio
async def test_a_cancelled_runner_hands_over_at_once(make: Make) -> None:
    first, second = make(lease=1000.0), make(lease=1000.0)
    op = Counted()
    op.gate = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(run, first, op)
        await op.started.wait()
        group.cancel_scope.cancel()
    # Its lease was dropped: no waiting out 1000 s.
    with anyio.fail_after(5):
        assert await run(second, Counted("taken over")) == "taken over"


@pytest.mark.anyio
async def test_a_dead_runner_blocks_its_key_for_one_lease(make: Make, wall: Wall) -> None:
    dead, alive = make(lease=0.2), make(lease=0.2)
    # A runner that claimed the key and died: nobody will drop its lease.
    await dead._claim(encode_key(KEY), "dead-runner", wall())
    results: list[Any] = []

    async def call() -> None:
        results.append(await run(alive, Counted("after the lease")))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(call)
            await anyio.sleep(0.05)
            assert results == []
            wall.now += 1.0  # SQLite leases run on the wall clock, Redis' on the server's
    assert results == ["after the lease"]


@pytest.mark.anyio
async def test_results_come_back_typed(make: Make) -> None:
    first, second = make(types=[Receipt]), make(types=[Receipt])
    response = HttpResponse(status=201, headers={"x-id": "1"}, content=b"\x00\xff")
    values: list[Any] = [
        response,
        Receipt(charge="ch_1", amount=500),
        {"id": "ch_1", "raw": b"\x01", "items": [1, 2.5, None, True]},
        None,
    ]
    for index, value in enumerate(values):
        key = ("svc", None, f"k{index}")
        await first.run(key, 60.0, 0.0, Counted(value))
        stored = await second.run(key, 60.0, 0.0, Counted("not run"))
        assert stored == value
        assert type(stored) is type(value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("value", "reason"),
    [(object(), "Encoding objects"), ((1, 2), "different value"), (Receipt("c", 1), "different")],
)
async def test_an_unstorable_result_is_a_config_error(make: Make, value: Any, reason: str) -> None:
    store = make()  # Receipt not registered: it would come back as a dict
    with pytest.raises(ConfigError, match=reason):
        await run(store, Counted(value))
    # Nothing was kept: the key can be used again at once.
    with anyio.fail_after(5):
        assert await run(make(), Counted("kept")) == "kept"


@pytest.mark.anyio
async def test_bad_keys_and_options_are_config_errors(make: Make) -> None:
    store = make()
    with pytest.raises(ConfigError, match="idempotency key"):
        await store.run(("svc", object()), 60.0, 0.0, Counted())
    with pytest.raises(ConfigError, match="ttl"):
        await run(store, Counted(), ttl=0)
    with pytest.raises(ConfigError, match="lease"):
        make(lease=0)
    with pytest.raises(ConfigError, match="poll_interval"):
        make(poll_interval=-1)
    with pytest.raises(ConfigError, match="types"):
        make(types=[dict])


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_sqlite_purges_what_expired(tmp_path: Path, anyio_backend: str) -> None:
    wall = Wall()
    async with SqliteIdempotencyStore(tmp_path / "idempotency.db", clock=wall) as store:
        await store.run(("svc", None, "a"), 10.0, 0.0, Counted())
        await store.run(("svc", None, "b"), 100.0, 0.0, Counted())
        wall.now += 50.0
        assert await store.purge() == 1
        assert await store.run(("svc", None, "b"), 100.0, 0.0, Counted("new")) == "charged"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_unreachable_redis_idempotency_store_says_so(anyio_backend: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisIdempotencyStore.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    op = Counted()
    try:
        with pytest.raises(SharedStateError):
            await run(store, op)
        assert op.runs == 0  # never run without its claim
    finally:
        await store.aclose()
