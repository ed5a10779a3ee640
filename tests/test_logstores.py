"""Integration log records, ULIDs and the three log stores, held to one behavioural suite."""

from __future__ import annotations

import math
import random
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from _servers import postgres_schema
from hypothesis import given
from hypothesis import strategies as st

from connector._errors import ConfigError, ConnectorError
from connector._logrecord import (
    IntegrationLog,
    LogFilters,
    LogMetrics,
    LogStatus,
    UlidGenerator,
    nearest_rank,
    new_ulid,
)
from connector._logstore import MAX_QUERY_LIMIT, LogStore, TenantLogView
from connector._logstore_memory import MemoryLogStore
from connector._logstore_postgres import PostgresLogStore
from connector._logstore_sqlite import SqliteLogStore
from connector._redaction import REDACTED

T0 = 1_700_000_000.0  # a wall-clock reading, Unix seconds
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


class Factory:
    """Records with sensible defaults, stamped T0 + ``t`` seconds."""

    def __init__(self, seed: int = 0) -> None:
        self.ids = UlidGenerator(random.Random(seed))

    def __call__(self, t: float = 0.0, **fields: Any) -> IntegrationLog:
        values: dict[str, Any] = {
            "service_name": "sendgrid",
            "endpoint": "https://api.sendgrid.com/v3/mail/send",
            "method": "POST",
            "status": LogStatus.SUCCESS,
            "duration_ms": 12.5,
            "http_status_code": 202,
        }
        values.update(fields)
        return IntegrationLog.create(now=T0 + t, ids=self.ids, **values)


# ---------------------------------------------------------------- ULIDs


def decode_ulid(ulid: str) -> int:
    value = 0
    for char in ulid:
        value = value * 32 + CROCKFORD.index(char)
    return value


@given(st.floats(min_value=0, max_value=2**42 / 1000), st.integers(0, 2**32))
def test_ulid_is_26_crockford_chars_carrying_the_millisecond(now: float, seed: int) -> None:
    ulid = new_ulid(now, random.Random(seed))
    assert len(ulid) == 26
    assert set(ulid) <= set(CROCKFORD)
    assert decode_ulid(ulid) >> 80 == round(now * 1_000_000) // 1000


# Float seconds resolve microseconds until about 2100, well past any log's life.
@given(st.integers(0, 2**42), st.integers(1, 2**20), st.integers(0, 2**32))
def test_ulids_sort_by_time(ms: int, gap: int, seed: int) -> None:
    rng = random.Random(seed)
    assert new_ulid(ms / 1000, rng) < new_ulid((ms + gap) / 1000, rng)


@given(st.lists(st.floats(min_value=0, max_value=2e9), min_size=2, max_size=50))
def test_generator_ids_strictly_increase_whatever_the_clock_does(times: list[float]) -> None:
    generate = UlidGenerator(random.Random(7))
    ids = [generate(t) for t in times]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_generator_increments_within_a_millisecond_and_is_deterministic() -> None:
    first, second = UlidGenerator(random.Random(3)), UlidGenerator(random.Random(3))
    a, b = first(T0), first(T0 + 0.0001)
    assert decode_ulid(b) == decode_ulid(a) + 1
    assert [a, b] == [second(T0), second(T0 + 0.0001)]


def test_generator_carries_into_the_time_on_random_overflow() -> None:
    class MaxRandom(random.Random):
        def getrandbits(self, k: int) -> int:
            return (1 << k) - 1

    generate = UlidGenerator(MaxRandom())
    a, b = generate(T0), generate(T0)
    assert a < b
    assert decode_ulid(b) >> 80 == (decode_ulid(a) >> 80) + 1


@pytest.mark.parametrize("now", [-1.0, math.nan, math.inf, 2.0**48, "0", True])
def test_ulid_refuses_impossible_times(now: Any) -> None:
    with pytest.raises(ConfigError, match="now"):
        new_ulid(now, random.Random(0))


# ---------------------------------------------------------------- records and filters


def test_create_stamps_the_clock_reading_and_redacts() -> None:
    record = Factory()(
        1.25,
        tenant_id="acme",
        request_data={"headers": {"Authorization": "Bearer sk_live_1"}, "to": "a@b.c"},
        response_data={"echo": "key sk_live_1 used", 7: ("x",)},
        error_message="401 for api_key=sk_live_1",
        secrets=["sk_live_1"],
    )
    assert record.created_at == at(1.25)
    assert record.created_at.tzinfo is UTC
    assert record.request_data == {"headers": {"Authorization": REDACTED}, "to": "a@b.c"}
    assert record.response_data == {"echo": f"key {REDACTED} used", "7": ["x"]}
    assert record.error_message == f"401 for api_key={REDACTED}"
    assert "sk_live_1" not in msgspec.json.encode(record).decode()


def test_construction_redacts_without_create() -> None:
    record = msgspec.structs.replace(
        Factory()(),
        request_data={"password": "hunter2"},
        error_message="Authorization: Basic dXNlcjpodW50ZXIy",
    )
    assert record.request_data == {"password": REDACTED}
    assert record.error_message == f"Authorization: {REDACTED}"


def test_caller_data_is_copied_not_kept() -> None:
    nested = {"ok": 1}
    data = {"password": "hunter2", "nested": nested}
    record = Factory()(request_data=data)
    nested["ok"] = 2
    assert data["password"] == "hunter2"
    assert record.request_data == {"password": REDACTED, "nested": {"ok": 1}}


def test_nul_characters_become_replacement_characters_in_free_text() -> None:
    record = Factory()(response_data={"body": "a\x00b", "raw": "\\u0000"}, error_message="x\x00")
    assert record.response_data == {"body": "a\ufffdb", "raw": "\\u0000"}
    assert record.error_message == "x\ufffd"


def test_records_round_trip_through_msgspec() -> None:
    record = Factory()(tenant_id="t", request_data={"a": [1, 2.5, None, True]})
    assert msgspec.json.decode(msgspec.json.encode(record), type=IntegrationLog) == record


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "not-a-ulid"),
        ("id", "8" + "0" * 25),  # past 48 bits of time
        ("service_name", ""),
        ("service_name", "send\x00grid"),
        ("tenant_id", ""),
        ("endpoint", None),
        ("method", ""),
        ("status", "exploded"),
        ("http_status_code", 99),
        ("http_status_code", 600),
        ("http_status_code", 200.0),
        ("duration_ms", -0.1),
        ("duration_ms", math.nan),
        ("attempt_number", 0),
        ("attempt_number", True),
        ("created_at", datetime(2024, 1, 1)),  # naive: no guessing the zone
        ("created_at", 1_700_000_000.0),
        ("request_data", ["not", "a", "mapping"]),
        ("request_data", {"what": object()}),
        ("response_data", {(1, 2): "tuple key"}),
        ("error_message", 42),
    ],
)
def test_invalid_fields_are_config_errors_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        msgspec.structs.replace(Factory()(), **{field: value})
    assert raised.value.field == field


def test_created_at_in_another_zone_is_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    record = msgspec.structs.replace(Factory()(), created_at=datetime(2024, 1, 1, 1, tzinfo=paris))
    assert record.created_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert record.created_at.tzinfo is UTC


def test_filters_are_checked() -> None:
    with pytest.raises(ConfigError, match="date_to"):
        LogFilters(date_from=at(1), date_to=at(0))
    with pytest.raises(ConfigError, match="date_from"):
        LogFilters(date_from=datetime(2024, 1, 1))
    with pytest.raises(ConfigError, match="status"):
        LogFilters(status="nope")  # type: ignore[arg-type]
    assert LogFilters(status="timeout").status is LogStatus.TIMEOUT  # type: ignore[arg-type]


@given(st.integers(0, 10_000), st.sampled_from([1, 50, 95, 99, 100]))
def test_nearest_rank_is_the_ceiling_of_the_exact_fraction(count: int, percent: int) -> None:
    rank = nearest_rank(count, percent)
    if count:
        assert 1 <= rank <= count
        assert (rank - 1) * 100 < percent * count <= rank * 100
    else:
        assert rank == 1


# ---------------------------------------------------------------- the stores

STORES = ["memory", "sqlite", "postgres"]
ASYNCIO_ONLY_PARAMS = ("postgres",)  # asyncpg: see tests/conftest.py


@pytest.fixture(params=STORES)
async def store(
    request: pytest.FixtureRequest, anyio_backend: str, tmp_path: Path
) -> AsyncIterator[LogStore]:
    kind = request.param
    if kind == "memory":
        async with MemoryLogStore() as memory:
            yield memory
    elif kind == "sqlite":
        async with SqliteLogStore(tmp_path / "logs.db") as sqlite:
            yield sqlite
    else:
        async with (
            postgres_schema() as (dsn, schema),
            PostgresLogStore(dsn, schema=schema) as postgres,
        ):
            yield postgres


pytestmark = pytest.mark.anyio


async def test_round_trip_returns_equal_records_newest_first(store: LogStore) -> None:
    make = Factory()
    records = [
        make(0, tenant_id="acme", request_data={"to": ["a@b.c"], "n": 1.5, "ok": True}),
        make(
            1.000001,
            status=LogStatus.FAILED,
            http_status_code=503,
            duration_ms=30_000,
            response_data={"errors": [{"message": "unavailable"}]},
            error_message="HTTP 503",
            attempt_number=2,
        ),
        make(2, status=LogStatus.CIRCUIT_OPEN, duration_ms=None, http_status_code=None),
    ]
    await store.write_batch(records)
    assert await store.query() == records[::-1]


async def test_empty_batch_and_repeated_batch_write_nothing_new(store: LogStore) -> None:
    make = Factory()
    batch = [make(t) for t in range(3)]
    await store.write_batch([])
    await store.write_batch(batch)
    await store.write_batch(batch)  # a retry after a lost acknowledgement
    assert len(await store.query()) == 3


async def test_a_bad_record_fails_its_whole_batch(store: LogStore) -> None:
    batch: list[Any] = [Factory()(), "not a record"]
    with pytest.raises(ConfigError, match="records"):
        await store.write_batch(batch)
    assert await store.query() == []


async def test_data_mutated_after_creation_is_redacted_on_write(store: LogStore) -> None:
    record = Factory()(request_data={"user": "bob"})
    assert record.request_data is not None
    record.request_data["password"] = "hunter2"  # past the frozen struct's guard
    await store.write_batch([record])
    [stored] = await store.query()
    assert stored.request_data == {"user": "bob", "password": REDACTED}


async def test_each_filter_selects_exactly_its_records(store: LogStore) -> None:
    make = Factory()
    records = [
        make(0, service_name="stripe", tenant_id="a"),
        make(1, service_name="stripe", tenant_id="b", status=LogStatus.FAILED),
        make(2, service_name="twilio", tenant_id="a", status=LogStatus.TIMEOUT),
        make(3, service_name="twilio"),
        make(4, service_name="stripe", status=LogStatus.RATE_LIMITED, duration_ms=None),
    ]
    await store.write_batch(records)

    async def ids(**filters: Any) -> set[str]:
        return {record.id for record in await store.query(LogFilters(**filters))}

    def expected(select: Any) -> set[str]:
        return {record.id for record in records if select(record)}

    assert await ids(service_name="stripe") == expected(lambda r: r.service_name == "stripe")
    assert await ids(status=LogStatus.FAILED) == {records[1].id}
    assert await ids(status="rate_limited") == {records[4].id}
    assert await ids(tenant_id="a") == {records[0].id, records[2].id}
    assert await ids(service_name="twilio", tenant_id="a") == {records[2].id}
    assert await ids(service_name="stripe", status="success") == {records[0].id}
    # date bounds are inclusive, to the microsecond
    assert await ids(date_from=at(1), date_to=at(3)) == {r.id for r in records[1:4]}
    assert await ids(date_from=at(1) + timedelta(microseconds=1), date_to=at(3)) == {
        records[2].id,
        records[3].id,
    }
    assert await ids(date_to=at(1) - timedelta(microseconds=1)) == {records[0].id}
    assert await ids(date_from=at(4)) == {records[4].id}
    assert await ids(service_name="mailgun") == set()


async def test_pages_cover_everything_once_in_order(store: LogStore) -> None:
    make = Factory()
    records = [make(t * 0.5) for t in range(23)]
    await store.write_batch(records)
    pages = [await store.query(limit=5, offset=offset) for offset in range(0, 25, 5)]
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [r for p in pages for r in p] == records[::-1]
    assert await store.query(limit=5, offset=23) == []


async def test_same_instant_orders_by_id_descending(store: LogStore) -> None:
    make = Factory(seed=9)
    records = [make(0, endpoint=f"/{n}") for n in range(5)]
    await store.write_batch(records)
    assert [r.id for r in await store.query()] == sorted((r.id for r in records), reverse=True)


async def test_limit_is_capped_at_the_maximum(store: LogStore) -> None:
    make = Factory()
    await store.write_batch([make(t * 0.001) for t in range(MAX_QUERY_LIMIT + 7)])
    assert len(await store.query(limit=10_000)) == MAX_QUERY_LIMIT
    assert len(await store.query(limit=MAX_QUERY_LIMIT, offset=MAX_QUERY_LIMIT)) == 7


@pytest.mark.parametrize(
    ("limit", "offset", "field"),
    [(0, 0, "limit"), (-1, 0, "limit"), (1.5, 0, "limit"), (True, 0, "limit"), (10, -1, "offset")],
)
async def test_bad_paging_is_a_config_error(
    store: LogStore, limit: Any, offset: Any, field: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        await store.query(limit=limit, offset=offset)
    assert raised.value.field == field


INJECTIONS = [
    "' OR '1'='1",
    "sendgrid' --",
    "x'; DROP TABLE integration_logs; --",
    '"; DELETE FROM integration_logs; --',
    "%",
    "_",
    "sendgrid%",
    "\\",
    "$1",
    "?",
]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_hostile_filter_values_match_nothing_and_break_nothing(
    store: LogStore, value: str
) -> None:
    make = Factory()
    await store.write_batch([make(0, tenant_id="acme"), make(1, tenant_id="acme")])
    assert await store.query(LogFilters(service_name=value)) == []
    assert await store.query(LogFilters(tenant_id=value)) == []
    metrics = await store.metrics(value, None, None, tenant_id=value)
    assert metrics.total_count == 0
    assert len(await store.query()) == 2  # the table is still there, untouched


def test_nul_in_a_filter_is_refused_before_reaching_a_store() -> None:
    with pytest.raises(ConfigError, match="service_name"):
        LogFilters(service_name="x\x00' OR 1=1")


async def test_metrics_known_answers(store: LogStore) -> None:
    make = Factory()
    durations = list(range(1, 101))  # 1..100 ms
    random.Random(5).shuffle(durations)
    records = [
        make(i * 0.01, duration_ms=d, status=LogStatus.SUCCESS if i % 3 else LogStatus.FAILED)
        for i, d in enumerate(durations)
    ]
    # rejections: failures that sent nothing, so they carry no latency
    records += [make(2, status=LogStatus.CIRCUIT_OPEN, duration_ms=None) for _ in range(2)]
    records.append(make(0.5, service_name="other", duration_ms=5000))
    await store.write_batch(records)

    metrics = await store.metrics("sendgrid", None, None)
    assert metrics == LogMetrics(
        service_name="sendgrid",
        tenant_id=None,
        date_from=None,
        date_to=None,
        success_count=66,
        failure_count=36,
        success_rate=64.71,  # 66 / 102
        avg_duration_ms=50.5,
        p50_duration_ms=50.0,
        p95_duration_ms=95.0,
        p99_duration_ms=99.0,
    )


async def test_metrics_percentiles_are_nearest_rank_on_small_samples(store: LogStore) -> None:
    make = Factory()
    await store.write_batch([make(t, duration_ms=d) for t, d in enumerate([40.0, 10.0, 30.0])])
    metrics = await store.metrics("sendgrid", at(0), at(2))
    assert metrics.success_rate == 100.0
    assert metrics.avg_duration_ms == pytest.approx(26.667, abs=1e-9)
    assert (metrics.p50_duration_ms, metrics.p95_duration_ms, metrics.p99_duration_ms) == (
        30.0,
        40.0,
        40.0,
    )


async def test_metrics_without_traffic_say_so(store: LogStore) -> None:
    await store.write_batch([Factory()(0, service_name="other")])
    metrics = await store.metrics("sendgrid", at(-10), at(10))
    assert (metrics.success_count, metrics.failure_count, metrics.success_rate) == (0, 0, None)
    assert metrics.avg_duration_ms is None
    assert metrics.p50_duration_ms is metrics.p95_duration_ms is metrics.p99_duration_ms is None


async def test_metrics_with_only_rejections_have_a_rate_but_no_latency(store: LogStore) -> None:
    make = Factory()
    await store.write_batch([make(t, status=LogStatus.REJECTED, duration_ms=None) for t in (0, 1)])
    metrics = await store.metrics("sendgrid", None, None)
    assert (metrics.failure_count, metrics.success_rate, metrics.avg_duration_ms) == (2, 0.0, None)


async def test_metrics_respect_the_period_and_the_tenant(store: LogStore) -> None:
    make = Factory()
    await store.write_batch(
        [
            make(0, tenant_id="a", duration_ms=1),
            make(10, tenant_id="a", status=LogStatus.FAILED, duration_ms=2),
            make(20, tenant_id="b", duration_ms=3),
            make(30, tenant_id="a", duration_ms=4),
        ]
    )
    metrics = await store.metrics("sendgrid", at(10), at(30), tenant_id="a")
    assert (metrics.success_count, metrics.failure_count) == (1, 1)
    assert metrics.success_rate == 50.0
    assert metrics.avg_duration_ms == 3.0
    assert (metrics.tenant_id, metrics.date_from, metrics.date_to) == ("a", at(10), at(30))


async def test_metrics_match_the_memory_store_on_random_traffic(store: LogStore) -> None:
    rng = random.Random(11)
    make = Factory(seed=11)
    records = [
        make(
            rng.uniform(0, 100),
            tenant_id=rng.choice(["a", "b", None]),
            status=rng.choice(list(LogStatus)),
            duration_ms=rng.choice([None, round(rng.lognormvariate(3, 1), 3)]),
        )
        for _ in range(300)
    ]
    reference = MemoryLogStore()
    for target in (store, reference):
        await target.write_batch(records)
    for tenant in ("a", "b", None):
        for start, end in ((None, None), (at(10), at(60)), (at(99), at(99))):
            assert await store.metrics("sendgrid", start, end, tenant_id=tenant) == (
                await reference.metrics("sendgrid", start, end, tenant_id=tenant)
            )


async def test_metrics_arguments_are_checked(store: LogStore) -> None:
    with pytest.raises(ConfigError, match="service_name"):
        await store.metrics(None, None, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="date_to"):
        await store.metrics("sendgrid", at(5), at(0))


async def test_purge_deletes_strictly_older_than_the_retention(store: LogStore) -> None:
    make = Factory()
    now = T0 + 100 * 86_400
    cutoff = now - 90 * 86_400
    edge = timedelta(microseconds=1)
    just_before, exactly, just_after = (
        msgspec.structs.replace(make(), created_at=datetime.fromtimestamp(cutoff, UTC) + delta)
        for delta in (-edge, timedelta(0), edge)
    )
    newest = make(100 * 86_400)
    await store.write_batch([make(0), just_before, exactly, just_after, newest])
    assert await store.purge(now=now) == 2  # default: 90 days
    assert await store.query() == [newest, just_after, exactly]
    assert await store.purge(now=now) == 0
    assert await store.purge(0, now=now) == 2
    assert await store.query() == [newest]  # created exactly at ``now``: not older


@pytest.mark.parametrize(
    ("days", "now", "field"), [(-1, T0, "older_than_days"), (90, math.nan, "now")]
)
async def test_purge_arguments_are_checked(
    store: LogStore, days: float, now: float, field: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        await store.purge(days, now=now)
    assert raised.value.field == field


async def test_a_tenant_view_never_shows_another_tenant(store: LogStore) -> None:
    make = Factory()
    mine = [make(0, tenant_id="acme"), make(1, tenant_id="acme", status=LogStatus.FAILED)]
    theirs = [make(2, tenant_id="globex"), make(3, tenant_id=None)]
    await store.write_batch(mine + theirs)
    view = TenantLogView(store, "acme")
    assert await view.query() == mine[::-1]
    assert await view.query(LogFilters(status="failed")) == [mine[1]]  # type: ignore[arg-type]
    assert await view.query(LogFilters(tenant_id="acme"), limit=1, offset=1) == [mine[0]]
    with pytest.raises(ConfigError, match="tenant_id"):
        await view.query(LogFilters(tenant_id="globex"))
    metrics = await view.metrics("sendgrid", None, None)
    assert (metrics.tenant_id, metrics.success_count, metrics.failure_count) == ("acme", 1, 1)
    assert {r.tenant_id for r in await store.query()} == {"acme", "globex", None}


def test_a_tenant_view_needs_a_tenant() -> None:
    for tenant in (None, ""):
        with pytest.raises(ConfigError, match="tenant_id"):
            TenantLogView(MemoryLogStore(), tenant)  # type: ignore[arg-type]


# ---------------------------------------------------------------- store specifics


async def test_sqlite_file_is_wal_indexed_and_persistent(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    record = Factory()(tenant_id="acme", request_data={"a": 1})
    async with SqliteLogStore(path) as store:
        await store.write_batch([record])
    async with SqliteLogStore(path) as store:
        assert await store.query() == [record]

    def inspect() -> tuple[str, set[tuple[str, ...]]]:
        with sqlite3.connect(path) as connection:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            names = [row[1] for row in connection.execute("PRAGMA index_list(integration_logs)")]
            columns = {
                tuple(row[2] for row in connection.execute(f"PRAGMA index_info({name})"))
                for name in names
                if not name.startswith("sqlite_autoindex")
            }
        return mode, columns

    mode, indexed = await anyio.to_thread.run_sync(inspect)
    assert mode == "wal"
    assert indexed == {
        ("service_name",),
        ("status",),
        ("tenant_id",),
        ("created_at",),
        ("service_name", "created_at"),
        ("service_name", "status", "created_at"),
    }


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SqliteLogStore(tmp_path / "logs.db")
    await store.write_batch([Factory()()])  # opens on first use
    await store.close()
    await store.close()
    with pytest.raises(ConnectorError, match="closed"):
        await store.query()


@pytest.mark.asyncio_only
async def test_postgres_table_has_the_indexes() -> None:
    async with postgres_schema() as (dsn, schema), PostgresLogStore(dsn, schema=schema) as store:
        await store.write_batch([Factory()()])
        import asyncpg

        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = $1", schema
            )
        finally:
            await connection.close()
    definitions = {row["indexdef"].split(" USING btree ")[1] for row in rows}
    assert definitions == {
        "(id)",
        "(service_name)",
        "(status)",
        "(tenant_id)",
        "(created_at)",
        "(service_name, created_at)",
        "(service_name, status, created_at)",
    }


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_postgres_store_refuses_trio_clearly() -> None:
    store = PostgresLogStore("postgresql://user:pw@127.0.0.1:1/none")
    with pytest.raises(ConfigError, match="asyncio"):
        await store.open()


def test_postgres_store_checks_its_arguments_and_hides_the_dsn() -> None:
    with pytest.raises(ConfigError, match="schema"):
        PostgresLogStore("postgresql://x", schema='public"; DROP')
    with pytest.raises(ConfigError, match="max_size"):
        PostgresLogStore("postgresql://x", min_size=5, max_size=2)
    with pytest.raises(ConfigError) as raised:
        PostgresLogStore("")
    assert raised.value.value == "<hidden>"
