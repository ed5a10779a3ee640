"""Outbox stores: the `Outbox` contract on memory, SQLite (a real file) and PostgreSQL.

Every behaviour runs against every store; PostgreSQL on asyncio only (asyncpg).
A hypothesis test drives the memory and SQLite stores with one random sequence
of operations and requires the same answers from both, and the invariants the
dispatcher relies on: a leased entry is never leased again before its lease
ends, and an order key's entries are claimed one at a time, oldest first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from _servers import postgres_schema
from hypothesis import given
from hypothesis import strategies as st

from connector._credential_crypto import CredentialCipher, generate_key
from connector._errors import ConfigError
from connector._http import HttpRequest
from connector._outbox import (
    EXPIRED_UNTRIED,
    Outbox,
    OutboxEntry,
    open_request,
    redacted_request,
    seal_request,
)
from connector._outbox_memory import MemoryOutbox
from connector._outbox_postgres import PostgresOutbox
from connector._outbox_sqlite import SqliteOutbox

T0 = 1_800_000_000.0
STORES = ["memory", "sqlite", "postgres"]
ASYNCIO_ONLY_PARAMS = ("postgres",)  # asyncpg: see tests/conftest.py


def make_entry(
    n: int,
    *,
    service: str = "hooks",
    order_key: str | None = None,
    now: float = T0,
    delay: float = 0.0,
    max_age: float = 3600.0,
    cipher: CredentialCipher | None = None,
    request: HttpRequest | None = None,
) -> OutboxEntry:
    """Entry ``n``: a POST whose idempotency key is ``evt-n``, due ``delay`` s after ``now``."""
    entry_id = f"entry-{n:06d}"
    if request is None:
        request = HttpRequest(
            method="POST",
            url=f"https://hooks.example/orders/{n}?sig=abc",
            headers={"Idempotency-Key": f"evt-{n}"},
            content=b'{"n": %d}' % n,
        )
    payload, nonce, key_id = seal_request(request, cipher, entry_id, service)
    return OutboxEntry(
        id=entry_id,
        service=service,
        tenant_id=None,
        order_key=order_key,
        idempotency_key=f"evt-{n}",
        target="POST https://hooks.example/orders",
        payload=payload,
        nonce=nonce,
        key_id=key_id,
        reason="requested",
        created_at=now,
        expires_at=now + max_age,
        next_attempt_at=now + delay,
    )


def ids(entries: list[OutboxEntry]) -> list[str]:
    return [entry.id for entry in entries]


Opener = Callable[[], Outbox]


@pytest.fixture(params=STORES)
async def opener(
    request: pytest.FixtureRequest, anyio_backend: str, tmp_path: Path
) -> AsyncIterator[Opener]:
    """Makes store instances on one database: each one plays another process."""
    kind = request.param
    if kind == "memory":
        memory = MemoryOutbox()  # one process's memory: every "instance" is this one
        yield lambda: memory
    elif kind == "sqlite":
        yield lambda: SqliteOutbox(tmp_path / "outbox.db")
    else:
        async with postgres_schema() as (dsn, schema):
            yield lambda: PostgresOutbox(dsn, schema=schema)


@pytest.fixture
async def store(opener: Opener) -> AsyncIterator[Outbox]:
    outbox = opener()
    outbox.cipher = None  # whatever the environment says: these tests store plain
    await outbox.open()
    try:
        yield outbox
    finally:
        await outbox.close()


pytestmark = pytest.mark.anyio


async def test_added_entries_get_increasing_seqs_and_read_back_equal(store: Outbox) -> None:
    added = [await store.add(make_entry(n)) for n in range(3)]
    assert [entry.seq for entry in added] == sorted({entry.seq for entry in added})
    assert await store.entries() == added
    assert await store.get(added[1].id) == added[1]
    assert await store.get("nope") is None
    assert await store.count() == 3
    assert await store.count(dead=True) == 0


async def test_a_claim_leases_due_entries_oldest_first_up_to_the_limit(store: Outbox) -> None:
    for n in range(5):
        await store.add(make_entry(n, delay=10.0 if n == 1 else 0.0))
    claimed = await store.claim(["hooks"], "a", T0, T0 + 60, 3)
    assert ids(claimed) == ["entry-000000", "entry-000002", "entry-000003"]
    assert all(e.lease_owner == "a" and e.lease_until == T0 + 60 for e in claimed)
    # Leased: another runtime gets the rest, not these; a service it lacks gives nothing.
    assert ids(await store.claim(["hooks"], "b", T0 + 1, T0 + 61, 10)) == ["entry-000004"]
    assert await store.claim(["mail"], "b", T0 + 20, T0 + 80, 10) == []
    # Entry 1 is due at T0 + 10; the leases end at T0 + 60 and T0 + 61.
    assert ids(await store.claim(["hooks"], "b", T0 + 10, T0 + 70, 10)) == ["entry-000001"]
    assert ids(await store.claim(["hooks"], "b", T0 + 60, T0 + 120, 10)) == ids(claimed)


async def test_an_order_key_lets_only_its_oldest_pending_entry_out(store: Outbox) -> None:
    for n in range(4):
        await store.add(make_entry(n, order_key="cust-1" if n < 3 else None))
    first = await store.claim(["hooks"], "a", T0, T0 + 60, 10)
    assert ids(first) == ["entry-000000", "entry-000003"]
    # Its head is leased, not finished: the key stays held, for every runtime.
    assert await store.claim(["hooks"], "b", T0, T0 + 60, 10) == []
    assert await store.has_pending("hooks", "cust-1")
    assert not await store.has_pending("hooks", "cust-2")
    assert await store.delivered("entry-000000")
    assert ids(await store.claim(["hooks"], "b", T0, T0 + 60, 10)) == ["entry-000001"]
    # A dead-lettered head lets the next one go.
    assert await store.dead_letter("entry-000001", "b", now=T0, attempts=1, last_error="HTTP 400")
    assert ids(await store.claim(["hooks"], "b", T0, T0 + 60, 10)) == ["entry-000002"]


async def test_next_due_is_the_earliest_claimable_time(store: Outbox) -> None:
    assert await store.next_due(["hooks"]) is None
    await store.add(make_entry(0, delay=30.0, order_key="k"))
    await store.add(make_entry(1, delay=5.0, order_key="k"))  # held back by entry 0
    await store.add(make_entry(2, delay=20.0))
    assert await store.next_due(["hooks"]) == T0 + 20
    assert await store.next_due(["mail"]) is None
    await store.claim(["hooks"], "a", T0 + 20, T0 + 50, 10)  # entry 2, leased to T0 + 50
    assert await store.next_due(["hooks"]) == T0 + 30
    assert await store.next_due([]) is None


async def test_only_the_lease_owner_reschedules_or_dead_letters(store: Outbox) -> None:
    await store.add(make_entry(0))
    await store.claim(["hooks"], "a", T0, T0 + 60, 10)
    assert not await store.reschedule(
        "entry-000000", "b", attempts=1, next_attempt_at=T0 + 5, last_error="x"
    )
    assert not await store.dead_letter("entry-000000", "b", now=T0, attempts=1, last_error="x")
    await store.release(["entry-000000"], "b", T0 + 999)
    assert (await store.entries())[0].lease_owner == "a"
    assert await store.reschedule(
        "entry-000000", "a", attempts=1, next_attempt_at=T0 + 5, last_error="HTTP 503"
    )
    entry = (await store.entries())[0]
    assert (entry.attempts, entry.next_attempt_at, entry.last_error) == (1, T0 + 5, "HTTP 503")
    assert (entry.lease_owner, entry.lease_until) == (None, 0.0)
    assert await store.claim(["hooks"], "b", T0 + 4, T0 + 64, 10) == []
    assert ids(await store.claim(["hooks"], "b", T0 + 5, T0 + 65, 10)) == ["entry-000000"]


async def test_release_hands_entries_back_unsent(store: Outbox) -> None:
    for n in range(2):
        await store.add(make_entry(n))
    await store.claim(["hooks"], "a", T0, T0 + 60, 10)
    await store.release(["entry-000000"], "a")
    await store.release(["entry-000001"], "a", T0 + 30)
    entries = await store.entries()
    assert [(e.lease_owner, e.next_attempt_at, e.attempts) for e in entries] == [
        (None, T0, 0),
        (None, T0 + 30, 0),
    ]
    await store.release([], "a")


async def test_expired_entries_are_dead_lettered_with_their_last_error(store: Outbox) -> None:
    await store.add(make_entry(0, max_age=60))
    await store.add(make_entry(1, max_age=60))
    await store.add(make_entry(2, max_age=600))
    await store.claim(["hooks"], "a", T0, T0 + 100, 1)
    await store.reschedule(
        "entry-000000", "a", attempts=3, next_attempt_at=T0 + 60, last_error="HTTP 503"
    )
    assert await store.expire(T0 + 59) == []
    dead = await store.expire(T0 + 60)
    assert [(e.id, e.status, e.last_error, e.dead_at) for e in dead] == [
        ("entry-000000", "dead", "HTTP 503", T0 + 60),
        ("entry-000001", "dead", EXPIRED_UNTRIED, T0 + 60),
    ]
    assert ids(await store.entries(dead=True)) == ["entry-000000", "entry-000001"]
    assert ids(await store.entries()) == ["entry-000002"]
    # Past its age, an entry is not claimed even before the sweep.
    assert await store.claim(["hooks"], "a", T0 + 600, T0 + 700, 10) == []


async def test_a_leased_entry_is_not_expired_under_its_runtime(store: Outbox) -> None:
    await store.add(make_entry(0, max_age=60))
    await store.claim(["hooks"], "a", T0 + 10, T0 + 70, 1)
    assert await store.expire(T0 + 65) == []
    assert ids(await store.expire(T0 + 70)) == ["entry-000000"]


async def test_retry_makes_a_dead_entry_pending_with_a_fresh_age(store: Outbox) -> None:
    await store.add(make_entry(0, max_age=60, delay=50))
    await store.add(make_entry(1, max_age=60, delay=50))
    await store.expire(T0 + 60)
    assert await store.retry("entry-000000", T0 + 100)
    entry = await store.get("entry-000000")
    assert entry is not None
    assert (entry.status, entry.next_attempt_at, entry.expires_at, entry.dead_at) == (
        "pending",
        T0 + 100,
        T0 + 160,
        None,
    )
    assert ids(await store.claim(["hooks"], "a", T0 + 100, T0 + 160, 10)) == ["entry-000000"]
    assert not await store.retry("nope", T0)
    assert await store.drop("entry-000001")
    assert not await store.drop("entry-000001")
    assert await store.count(dead=True) == 0


async def test_retry_makes_a_pending_entry_due_now(store: Outbox) -> None:
    await store.add(make_entry(0, delay=500))
    assert await store.retry("entry-000000", T0 + 1)
    assert ids(await store.claim(["hooks"], "a", T0 + 1, T0 + 61, 10)) == ["entry-000000"]


async def test_listing_filters_by_service_and_pages(store: Outbox) -> None:
    for n in range(5):
        await store.add(make_entry(n, service="hooks" if n % 2 else "mail"))
    assert ids(await store.entries(service="hooks")) == ["entry-000001", "entry-000003"]
    assert ids(await store.entries(limit=2, offset=1)) == ["entry-000001", "entry-000002"]
    with pytest.raises(ConfigError, match="limit"):
        await store.entries(limit=0)


async def test_a_delivered_entry_is_gone_whoever_holds_it(store: Outbox) -> None:
    await store.add(make_entry(0))
    await store.claim(["hooks"], "a", T0, T0 + 60, 10)
    assert await store.delivered("entry-000000")
    assert not await store.delivered("entry-000000")
    assert await store.count() == 0


async def test_two_claimers_at_once_never_share_an_entry(store: Outbox, opener: Opener) -> None:
    """Two store instances (two connections or pools) on one database, claiming at once."""
    for n in range(60):
        await store.add(make_entry(n, order_key=f"k{n % 3}" if n % 2 else None))
    other = opener()
    claims: dict[str, list[OutboxEntry]] = {"a": [], "b": []}

    async def claimer(owner: str, outbox: Outbox) -> None:
        for _ in range(10):
            claims[owner] += await outbox.claim(["hooks"], owner, T0, T0 + 60, 4)

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(claimer, "a", store)
            tasks.start_soon(claimer, "b", other)
    finally:
        await other.close()
    mine, theirs = set(ids(claims["a"])), set(ids(claims["b"]))
    assert not mine & theirs
    # Unkeyed entries all went out; of each order key only the head did.
    assert len(mine | theirs) == 30 + 3


# ---------------------------------------------------------------- sealing


async def test_a_sealed_payload_opens_only_with_its_key_and_as_its_own_entry() -> None:
    cipher = CredentialCipher(generate_key())
    request = HttpRequest(
        method="POST", url="https://x.example/a", headers={"A": "b"}, content=b"secret-body"
    )
    entry = make_entry(0, cipher=cipher, request=request)
    assert b"secret-body" not in entry.payload
    assert entry.key_id == cipher.key_id
    assert open_request(entry, cipher) == request
    with pytest.raises(ConfigError, match="set the key"):
        open_request(entry, None)
    with pytest.raises(ConfigError, match="key id"):
        open_request(entry, CredentialCipher(generate_key()))
    moved = make_entry(1, cipher=cipher, request=request)
    swapped = msgspec.structs.replace(entry, payload=moved.payload, nonce=moved.nonce)
    with pytest.raises(ConfigError, match="fails authentication"):
        open_request(swapped, cipher)
    # Unsealed entries need no key.
    assert open_request(make_entry(2, request=request), cipher) == request


async def test_a_listing_shows_the_request_redacted() -> None:
    request = HttpRequest(
        method="POST",
        url="https://user:pw@x.example/a?api_key=k-123",
        headers={"Authorization": "Bearer tok-456", "Content-Type": "application/json"},
        content=b'{"password": "hunter2", "to": "a@b.c"}',
    )
    shown = redacted_request(make_entry(0, request=request), None)
    text = repr(shown)
    for secret in ("pw@", "k-123", "tok-456", "hunter2"):
        assert secret not in text
    assert "a@b.c" in text
    assert shown["method"] == "POST"


async def test_sqlite_keeps_no_plaintext_on_disk_when_a_key_is_set(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "outbox.db"
    async with SqliteOutbox(path, key=key) as outbox:
        assert outbox.cipher is not None
        request = HttpRequest(method="POST", url="https://x.example/", content=b"hunter2-pii")
        await outbox.add(make_entry(0, cipher=outbox.cipher, request=request))
        on_disk = b"".join([await p.read_bytes() async for p in anyio.Path(tmp_path).iterdir()])
        assert b"hunter2-pii" not in on_disk
    async with SqliteOutbox(path, key=key) as reopened:
        (entry,) = await reopened.entries()
        assert open_request(entry, reopened.cipher) == request


# ---------------------------------------------------------------- differential


_ADD = st.tuples(
    st.just("add"),
    st.sampled_from(["a", "b"]),
    st.sampled_from([None, "k1", "k1", "k2"]),
    st.sampled_from([0.0, 5.0]),
    st.sampled_from([8.0, 100.0]),
)
_CLAIM = st.tuples(
    st.just("claim"),
    st.sampled_from(["x", "y"]),
    st.sampled_from([("a",), ("b",), ("a", "b")]),
    st.integers(1, 4),
)
_SETTLE = st.tuples(
    st.sampled_from(["delivered", "reschedule", "release", "dead", "retry", "drop"]),
    st.integers(0, 11),
    st.sampled_from(["x", "y"]),
)
# Weighted towards adds and claims, with settlements of entries that exist.
_OPERATIONS = st.lists(
    st.one_of(
        _ADD,
        _ADD,
        _ADD,
        _CLAIM,
        _CLAIM,
        _SETTLE,
        _SETTLE,
        st.tuples(st.just("advance"), st.sampled_from([1.0, 3.0, 10.0])),
        st.tuples(st.just("expire")),
    ),
    min_size=10,
    max_size=60,
)


async def _apply(store: Outbox, operation: tuple[Any, ...], now: float, added: int) -> Any:
    kind = operation[0]
    if kind == "add":
        _, service, order_key, delay, max_age = operation
        entry = make_entry(
            added, service=service, order_key=order_key, now=now, delay=delay, max_age=max_age
        )
        return await store.add(entry)
    if kind == "claim":
        _, owner, services, limit = operation
        return await store.claim(services, owner, now, now + 4.0, limit)
    if kind == "expire":
        return await store.expire(now)
    _, index, owner = operation
    entry_id = f"entry-{index:06d}"
    if kind == "delivered":
        return await store.delivered(entry_id)
    if kind == "reschedule":
        return await store.reschedule(
            entry_id, owner, attempts=index % 3, next_attempt_at=now + 2, last_error="e"
        )
    if kind == "release":
        await store.release([entry_id], owner, None if index % 2 else now + 1)
        return None
    if kind == "dead":
        return await store.dead_letter(entry_id, owner, now=now, attempts=1, last_error="x")
    if kind == "retry":
        return await store.retry(entry_id, now)
    return await store.drop(entry_id)


@given(_OPERATIONS)
def test_memory_and_sqlite_answer_every_operation_alike(
    operations: list[tuple[Any, ...]],
) -> None:
    async def run() -> None:
        memory = MemoryOutbox()
        async with SqliteOutbox(":memory:") as sqlite:
            sqlite.cipher = None
            now, added = T0, 0
            leases: dict[str, float] = {}
            for operation in operations:
                if operation[0] == "advance":
                    now += operation[1]
                    continue
                expected = await _apply(memory, operation, now, added)
                assert await _apply(sqlite, operation, now, added) == expected
                if operation[0] == "add":
                    added += 1
                if operation[0] == "claim":
                    for entry in expected:
                        # Never leased again while a lease on it runs.
                        assert leases.get(entry.id, 0.0) <= now
                        leases[entry.id] = entry.lease_until
                        # The oldest pending entry of its order key.
                        if entry.order_key is not None:
                            pending = await memory.entries(service=entry.service, limit=1000)
                            same = [e for e in pending if e.order_key == entry.order_key]
                            assert same[0].id == entry.id
                if operation[0] in ("delivered", "drop", "reschedule", "release", "dead"):
                    entry = await memory.get(f"entry-{operation[1]:06d}")
                    if entry is None or entry.lease_owner is None:
                        leases.pop(f"entry-{operation[1]:06d}", None)
            assert await sqlite.entries(limit=1000) == await memory.entries(limit=1000)
            assert await sqlite.entries(dead=True, limit=1000) == await memory.entries(
                dead=True, limit=1000
            )
            assert await sqlite.next_due(["a", "b"]) == await memory.next_due(["a", "b"])

    anyio.run(run)
