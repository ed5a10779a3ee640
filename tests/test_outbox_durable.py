"""The outbox on real stores in real time: a killed process, two runtimes, dead letters.

These run on the real clock: SQLite works in worker threads and PostgreSQL
over sockets, and a virtual clock would run on while they work. Every wait
is bounded (`until`), none is measured. PostgreSQL runs on asyncio only.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
import msgspec
import pytest
from _servers import postgres_schema
from test_outbox_stores import make_entry

from connector import HttpRequest, HttpResponse, HttpService, Retry, Runtime
from connector._cli import main as cli
from connector._clock import system_wall_clock
from connector._credential_crypto import SECRET_KEY_ENV, generate_key
from connector._outbox import Deferred, Outbox, OutboxPolicy
from connector._outbox_events import OutboxDeadLettered
from connector._outbox_postgres import PostgresOutbox
from connector._outbox_sqlite import SqliteOutbox
from connector.testing import FakeJsonApi, FakeTransport, Reply, serve_asgi

CHILD = Path(__file__).with_name("_outbox_child.py")
QUICK = OutboxPolicy(lease=1.0, initial_delay=0.05, max_delay=0.2, poll_interval=0.05)
ASYNCIO_ONLY_PARAMS = ("postgres",)  # asyncpg: see tests/conftest.py

pytestmark = pytest.mark.anyio


class Provider:
    """A provider that is up: counts what reaches it per idempotency key, and from whom."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.received: Counter[str] = Counter()
        self.senders: Counter[str] = Counter()
        self.arrivals: list[int] = []
        self._arrived: anyio.Event | None = None

    def transport(self, sender: str) -> Callable[[], FakeTransport]:
        def answer(request: HttpRequest) -> HttpResponse:
            self.received[request.headers["Idempotency-Key"]] += 1
            self.senders[sender] += 1
            if request.content:
                self.arrivals.append(msgspec.json.decode(request.content).get("n", -1))
            if self._arrived is not None:
                self._arrived.set()
            return HttpResponse(status=200)

        transport = FakeTransport(handler=answer, delay=self.delay)
        return lambda: transport

    async def wait_for(self, keys: int, within: float = 60.0) -> None:
        """Until ``keys`` idempotency keys arrived; ``within`` real seconds bounds it."""
        with anyio.fail_after(within):
            while len(self.received) < keys:
                self._arrived = anyio.Event()
                await self._arrived.wait()


async def dead_letters(rt: Runtime, count: int, within: float = 60.0) -> None:
    """Until ``rt``'s outbox has dead-lettered ``count`` entries."""
    assert rt.outbox is not None
    with rt.events.subscribe() as feed, anyio.fail_after(within):
        while rt.outbox.dead_lettered < count:
            await feed.receive()


async def _line(stream: anyio.abc.ByteReceiveStream) -> str:
    data = b""
    while not data.endswith(b"\n"):
        data += await stream.receive()
    return data.decode().strip()


async def test_a_runtime_on_the_same_file_delivers_what_a_killed_process_left(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    key = generate_key()
    env = {**os.environ, SECRET_KEY_ENV: key}
    command = [sys.executable, str(CHILD), str(path), "500"]
    async with await anyio.open_process(command, env=env, stderr=None) as child:
        assert child.stdout is not None
        with anyio.fail_after(120):
            assert await _line(child.stdout) == "ready"
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
    async with SqliteOutbox(path, key=key) as left:
        entries = await left.entries(limit=1000)
        assert len(entries) == 500
        assert all(entry.key_id is not None for entry in entries)  # sealed at rest
    provider = Provider()
    async with Runtime(outbox=SqliteOutbox(path, key=key), outbox_policy=QUICK) as rt:
        rt.register("hooks", transport=provider.transport("heir"))
        await provider.wait_for(500)
    assert provider.received == {f"evt-{n}": 1 for n in range(500)}
    await expect_empty(SqliteOutbox(path, key=key))


async def expect_empty(store: Outbox) -> None:
    await store.open()
    try:
        assert await store.count() == 0
        assert await store.count(dead=True) == 0
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def shared(
    request: pytest.FixtureRequest, anyio_backend: str, tmp_path: Path
) -> AsyncIterator[Callable[[], Outbox]]:
    """Makes outboxes on one database, as separate processes would open it."""
    key = generate_key()
    if request.param == "sqlite":
        yield lambda: SqliteOutbox(tmp_path / "shared.db", key=key)
    else:
        async with postgres_schema() as (dsn, schema):
            yield lambda: PostgresOutbox(dsn, schema=schema, key=key)


async def test_two_runtimes_on_one_outbox_never_deliver_an_entry_twice(
    shared: Callable[[], Outbox],
) -> None:
    filler = shared()
    await filler.open()
    try:
        for n in range(200):
            await filler.add(
                make_entry(
                    n,
                    order_key=f"k{n % 5}" if n % 2 else None,
                    now=system_wall_clock(),
                    cipher=filler.cipher,
                )
            )
    finally:
        await filler.close()
    provider = Provider(delay=0.005)
    policy = OutboxPolicy(
        lease=5.0, batch_size=5, concurrency=5, initial_delay=0.05, poll_interval=0.02
    )
    async with (
        Runtime(outbox=shared(), outbox_policy=policy) as first,
        Runtime(outbox=shared(), outbox_policy=policy) as second,
    ):
        first.register("hooks", transport=provider.transport("first"))
        second.register("hooks", transport=provider.transport("second"))
        await provider.wait_for(200)
    await expect_empty(shared())
    assert provider.received == {f"evt-{n}": 1 for n in range(200)}
    assert provider.senders["first"] > 0
    assert provider.senders["second"] > 0
    by_key: defaultdict[int, list[int]] = defaultdict(list)
    for n in provider.arrivals:
        if n % 2:
            by_key[n % 5].append(n)
    assert all(sent == sorted(sent) for sent in by_key.values())


async def test_an_entry_past_its_max_age_is_dead_lettered_listed_and_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    url = f"sqlite:///{path}"
    key = generate_key()
    monkeypatch.setenv(SECRET_KEY_ENV, key)
    monkeypatch.setenv("COLUMNS", "250")  # rich's table width, where no terminal says
    down = FakeTransport(handler=lambda request: HttpResponse(status=503))
    seen: list[object] = []
    request = HttpRequest(
        method="POST",
        url="https://sms.example/v1/messages?api_key=k-123",
        headers={"Idempotency-Key": "evt-1", "Content-Type": "application/json"},
        content=b'{"to": "+15550100", "password": "hunter2"}',
    )
    async with Runtime(outbox=SqliteOutbox(path), outbox_policy=QUICK) as rt:
        rt.events.listen(seen.append)
        svc = rt.register("sms", transport=lambda: down, retry=Retry(attempts=1), breaker=None)
        receipt = await svc.defer(request, idempotency_key="evt-1", max_age=1.0)
        other = await svc.defer(request, idempotency_key="evt-2", max_age=1.0)
        await dead_letters(rt, 2)
    (dead, _) = [e for e in seen if isinstance(e, OutboxDeadLettered)]
    assert (dead.outbox_id, dead.cause) == (receipt.id, "expired")
    assert "HTTP 503" in dead.error
    assert len(down.calls) >= 2

    assert await anyio.to_thread.run_sync(cli, ["outbox", "list", "--dead", "--store", url]) == 0
    table = capsys.readouterr().out
    assert receipt.id in table
    assert "POST https://sms.example/v1/messages" in table
    command = ["outbox", "list", "--dead", "--json", "--store", url]
    assert await anyio.to_thread.run_sync(cli, command) == 0
    output = capsys.readouterr().out
    listed = {item["id"]: item for item in msgspec.json.decode(output)}
    assert listed[receipt.id]["last_error"] == dead.error
    assert listed[receipt.id]["encrypted"] is True
    assert listed[receipt.id]["request"]["headers"]["Idempotency-Key"] == "evt-1"
    assert "hunter2" not in output
    assert "k-123" not in output
    assert await anyio.to_thread.run_sync(cli, ["outbox", "list", "--store", url, "--json"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out) == []

    # retry: pending again, with a fresh max age; drop: gone for good.
    assert await anyio.to_thread.run_sync(cli, ["outbox", "retry", receipt.id, "--store", url]) == 0
    assert await anyio.to_thread.run_sync(cli, ["outbox", "drop", other.id, "--store", url]) == 0
    assert await anyio.to_thread.run_sync(cli, ["outbox", "drop", other.id, "--store", url]) == 1
    assert f"no outbox entry '{other.id}'" in capsys.readouterr().err
    provider = Provider()
    async with Runtime(outbox=SqliteOutbox(path), outbox_policy=QUICK) as rt:
        rt.register("sms", transport=provider.transport("retry"))
        await provider.wait_for(1)
    assert provider.received == {"evt-1": 1}
    await expect_empty(SqliteOutbox(path))


async def test_the_command_line_names_a_bad_store_url(capsys: pytest.CaptureFixture[str]) -> None:
    command = ["outbox", "list", "--store", "ftp://x"]
    assert await anyio.to_thread.run_sync(cli, command) == 2
    assert "--store" in capsys.readouterr().err


@pytest.fixture
def api() -> Iterator[tuple[FakeJsonApi, str]]:
    fake = FakeJsonApi()
    with serve_asgi(fake.app) as url:
        yield fake, url


async def test_the_readme_pattern_over_http_sends_later_what_failed_now(
    api: tuple[FakeJsonApi, str], tmp_path: Path
) -> None:
    """Send; if the service is down, the outbox delivers it later, with the same key."""
    fake, url = api
    fake.script("/orders", Reply.json({"error": "down"}, 503))
    async with Runtime(outbox=SqliteOutbox(tmp_path / "connector.db"), outbox_policy=QUICK) as rt:
        hooks = HttpService(rt, "webhooks", base_url=url, retry=Retry(attempts=1))
        event = HttpRequest(
            method="POST",
            url="/orders",
            content=b'{"order": 42, "status": "paid"}',
            headers={"Idempotency-Key": "order-42-paid"},
        )
        result = await hooks.service.request(
            event, idempotency_key="order-42-paid", on_unavailable="defer"
        )
        assert isinstance(result, Deferred)
        assert result.reason == "failed"
        with rt.events.subscribe() as feed, anyio.fail_after(60):
            while len(fake.requests_to("/orders")) < 2:
                await feed.receive()
    first, second = fake.requests_to("/orders")
    assert first.body == second.body == event.content
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key") == "order-42-paid"
    await expect_empty(SqliteOutbox(tmp_path / "connector.db"))
