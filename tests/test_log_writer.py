"""The log-writer actor: every attempt and rejection recorded, batched, never lost silently."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import anyio
import msgspec
import pytest

from connector import (
    Breaker,
    CircuitBreakerOpen,
    ConnectionFailed,
    HttpRequest,
    HttpResponse,
    Retry,
    Runtime,
)
from connector._events import LogBufferFull
from connector._log_writer import LogsNotWritten
from connector._logrecord import IntegrationLog, LogFilters, LogStatus
from connector._logstore_memory import MemoryLogStore
from connector._logstore_sqlite import SqliteLogStore

pytestmark = pytest.mark.anyio


class FlakyStore(MemoryLogStore):
    """A memory store that refuses writes while ``down`` (a database outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused = 0

    async def write_batch(self, records: Sequence[IntegrationLog]) -> None:
        if self.down:
            self.refused += 1
            raise ConnectionError("database unreachable")
        await super().write_batch(records)


async def ok() -> str:
    return "ok"


def count_rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT status, COUNT(*) FROM integration_logs GROUP BY status")
        return dict(rows.fetchall())


async def test_every_attempt_of_many_calls_is_in_sqlite_after_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "logs.sqlite3"
    calls = 20_000
    async with SqliteLogStore(path) as store:
        async with Runtime(log_store=store) as rt:
            svc = rt.register("email", breaker=None, retry_budget=None)
            for _ in range(calls):
                await svc.call(ok)
        assert rt.log_writer is not None
        assert rt.log_writer.written == calls
        assert rt.log_writer.dropped == 0
    assert count_rows(path) == {"success": calls}


async def test_records_say_what_happened_and_why_a_call_never_left(tmp_path: Path) -> None:
    async def down() -> None:
        raise ConnectionError("provider down")

    store = MemoryLogStore()
    async with Runtime(log_store=store) as rt:
        svc = rt.register(
            "sms",
            breaker=Breaker(failure_threshold=2),
            retry=Retry(attempts=2, initial_delay=0.0),
            idempotent=True,
        )
        with pytest.raises(ConnectionFailed):
            await svc.call(down, tenant_id="acme", endpoint="/messages")
        with pytest.raises(CircuitBreakerOpen):
            await svc.call(down, tenant_id="acme", endpoint="/messages")
    records = sorted(await store.query(LogFilters(service_name="sms")), key=lambda r: r.id)
    assert [(r.status, r.attempt_number) for r in records] == [
        (LogStatus.FAILED, 1),
        (LogStatus.FAILED, 2),
        (LogStatus.CIRCUIT_OPEN, 1),
    ]
    assert all(r.tenant_id == "acme" and r.endpoint == "/messages" for r in records)
    assert records[0].duration_ms is not None
    assert records[2].duration_ms is None  # nothing was sent
    assert "provider down" in (records[0].error_message or "")


async def test_http_records_keep_request_and_response_without_secrets() -> None:
    class Api:
        async def send(self, request: HttpRequest, tenant_id: str | None = None) -> HttpResponse:
            return HttpResponse(
                status=200,
                headers={"content-type": "application/json"},
                content=b'{"id": "msg_1", "access_token": "tok_live_123"}',
            )

        async def aclose(self) -> None:
            pass

    store = MemoryLogStore()
    async with Runtime(log_store=store) as rt:
        svc = rt.register("sendgrid", transport=Api)
        await svc.request(
            HttpRequest(
                method="POST",
                url="https://api.sendgrid.test/v3/mail/send",
                headers={
                    "Authorization": "Bearer SG.secret-key",
                    "content-type": "application/json",
                },
                content=msgspec.json.encode({"to": "a@example.com", "api_key": "k-123"}),
                endpoint="/v3/mail/send",
            )
        )
    (record,) = await store.query()
    assert record.method == "POST"
    assert record.http_status_code == 200
    assert record.request_data is not None
    assert record.request_data["body"]["to"] == "a@example.com"
    assert record.response_data is not None
    assert record.response_data["body"]["id"] == "msg_1"
    stored = msgspec.json.encode(record).decode()
    for secret in ("SG.secret-key", "k-123", "tok_live_123"):
        assert secret not in stored


async def test_records_written_while_the_store_is_down_arrive_when_it_returns() -> None:
    store = FlakyStore()
    async with Runtime(log_store=store) as rt:
        svc = rt.register("email")
        store.down = True
        for _ in range(50):
            await svc.call(ok)
        await anyio.sleep(0.5)
        assert store.refused >= 1
        assert len(store) == 0
        store.down = False
        await anyio.sleep(1.5)  # the writer retries with backoff
        assert len(store) == 50
        for _ in range(10):
            await svc.call(ok)
    assert len(store) == 60


async def test_a_full_buffer_is_counted_and_announced_not_blocking() -> None:
    store = FlakyStore()
    store.down = True
    async with Runtime(log_store=store, shutdown_timeout=0.1) as rt:
        assert rt.log_writer is not None
        rt.log_writer.max_buffer = 10
        svc = rt.register("email")
        with rt.events.subscribe() as events:
            for _ in range(25):
                await svc.call(ok)  # never waits on the failing store
            full = [e for e in events.drain() if isinstance(e, LogBufferFull)]
        assert rt.log_writer.dropped == 15
        assert len(full) == 1
        store.down = False
    assert len(store) == 10


async def test_shutdown_says_so_when_the_store_never_comes_back() -> None:
    store = FlakyStore()
    store.down = True
    rt = Runtime(log_store=store, shutdown_timeout=0.2)
    await rt.__aenter__()
    svc = rt.register("email")
    for _ in range(3):
        await svc.call(ok)
    with pytest.raises(LogsNotWritten) as caught:
        await rt.aclose()
    assert caught.value.count == 3
    assert "database unreachable" in caught.value.last_error
