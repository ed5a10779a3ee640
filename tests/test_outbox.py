"""The durable outbox in the runtime: deferring, redelivering, dead-lettering, in virtual time.

The wall clock the outbox stores is the loop's virtual clock shifted to a Unix
epoch, so hours of backoff and ages pass in no real time. A `Provider` stands
for the vendor: down until told otherwise, it counts what reaches it per
idempotency key and notes the breaker's state at each arrival.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import pytest

from connector import (
    AttemptFinished,
    Breaker,
    BreakerState,
    ConfigError,
    Event,
    HttpRequest,
    HttpResponse,
    IdempotencyKey,
    RateLimit,
    Retry,
    Runtime,
    VendorError,
)
from connector._credential_crypto import CredentialCipher, generate_key
from connector._logstore_memory import MemoryLogStore
from connector._outbox import Deferred, OutboxPolicy, OutboxUnavailable
from connector._outbox_events import (
    CallDeferred,
    OutboxDeadLettered,
    OutboxDelivered,
    OutboxRetryScheduled,
)
from connector._outbox_memory import MemoryOutbox
from connector.testing import FakeTransport

EPOCH = 1_800_000_000.0
FAST = OutboxPolicy(initial_delay=1.0, max_delay=30.0, poll_interval=5.0)


@pytest.fixture
def anyio_backend(virtual_anyio_backend: tuple[str, dict[str, object]]) -> object:
    return virtual_anyio_backend


pytestmark = pytest.mark.anyio


def virtual_wall() -> float:
    return EPOCH + anyio.current_time()


class Provider:
    """A vendor that is down (503) until `up`; counts deliveries per idempotency key."""

    def __init__(self, latency: float = 0.0) -> None:
        self.up = False
        self.latency = latency
        self.answer = HttpResponse(status=200)
        self.breaker: Callable[[], BreakerState | None] = lambda: None
        self.arrivals: list[tuple[float, str, BreakerState | None]] = []
        self.delivered: Counter[str] = Counter()
        self.sequences: defaultdict[str, list[int]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get("Idempotency-Key", "")
        self.arrivals.append((anyio.current_time(), key, self.breaker()))
        up = self.up  # as it is when the request arrives
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await anyio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        if not up:
            return HttpResponse(status=503)
        if self.answer.status < 300:
            self.delivered[key] += 1
            if request.content:
                body = msgspec.json.decode(request.content)
                self.sequences[body["customer"]].append(body["n"])
        return self.answer


def order(n: int, customer: str, *, secret: str = "") -> HttpRequest:
    """Request ``n`` of ``customer``: its idempotency key in the vendor's header."""
    body: dict[str, Any] = {"customer": customer, "n": n}
    if secret:
        body["password"] = secret
    return HttpRequest(
        method="POST",
        url="https://sms.example/v1/messages",
        headers={"Idempotency-Key": f"msg-{n}", "Content-Type": "application/json"},
        content=msgspec.json.encode(body),
        endpoint="POST /v1/messages",
    )


def register(rt: Runtime, provider: Provider, name: str = "sms", **policy: Any) -> None:
    policy.setdefault("retry", Retry(attempts=3, initial_delay=0.1, max_delay=1.0))
    policy.setdefault("breaker", Breaker(failure_threshold=5, open_duration=60.0))
    transport = FakeTransport(handler=provider)
    rt.register(name, transport=lambda: transport, **policy)

    def state() -> BreakerState | None:
        cell = rt.actor(name).cells.get(None)
        return cell.breaker.current if cell is not None and cell.breaker is not None else None

    provider.breaker = state


async def settle(rt: Runtime, done: Callable[[], bool], within: float = 7200.0) -> None:
    """Wait until ``done()``, looking again after each event of ``rt``; fail after
    ``within`` (virtual) seconds."""
    with rt.events.subscribe() as feed, anyio.fail_after(within):
        while not done():
            await feed.receive()
            feed.drain()


def events_of(rt: Runtime) -> list[Event]:
    seen: list[Event] = []
    rt.events.listen(seen.append)
    return seen


# ---------------------------------------------------------------- the outage


async def test_an_outage_defers_every_call_and_each_is_delivered_once_in_key_order() -> None:
    """1,000 calls for 10 customers arrive over 10 minutes while the provider is down.

    In memory: SQLite's worker threads would let virtual time run on while they
    work (tests/test_outbox_durable.py runs the SQLite store in real time).
    """
    provider = Provider()
    outbox = MemoryOutbox(cipher=CredentialCipher(generate_key()))  # sealed, as at rest
    async with Runtime(outbox=outbox, outbox_policy=FAST, wall_clock=virtual_wall) as rt:
        register(rt, provider)
        svc = rt.service("sms")
        receipts = []
        for n in range(1000):
            customer = f"customer-{n % 10}"
            receipts.append(
                await svc.request(
                    order(n, customer),
                    idempotency_key=f"msg-{n}",
                    on_unavailable="defer",
                    order_key=customer,
                )
            )
            await anyio.sleep(0.6)
        assert all(isinstance(receipt, Deferred) for receipt in receipts)
        assert {r.idempotency_key for r in receipts if isinstance(r, Deferred)} == {
            f"msg-{n}" for n in range(1000)
        }
        assert not provider.delivered
        during_outage = len(provider.arrivals)
        provider.up = True
        assert rt.outbox is not None
        await settle(rt, lambda: sum(provider.delivered.values()) == 1000)
        assert await outbox.count() == 0
    # Exactly once each, in the order each customer's calls were made.
    assert provider.delivered == {f"msg-{n}": 1 for n in range(1000)}
    assert provider.sequences == {f"customer-{c}": list(range(c, 1000, 10)) for c in range(10)}
    # Nothing went out while the breaker was open: only the calls that opened it
    # and one half-open probe per open period reached the provider.
    assert BreakerState.OPEN not in {state for _, _, state in provider.arrivals}
    assert during_outage <= 5 + 600 // 60 + 1


async def test_a_down_provider_sees_one_probe_per_round_and_the_backlog_only_after() -> None:
    """No breaker here: the dispatcher's own probe keeps the backlog off a down provider."""
    provider = Provider(latency=1.0)
    policy = OutboxPolicy(initial_delay=1.0, max_delay=30.0, concurrency=4)
    async with Runtime(outbox=MemoryOutbox(), outbox_policy=policy, wall_clock=virtual_wall) as rt:
        register(rt, provider, breaker=None, retry=Retry(attempts=1))
        svc = rt.service("sms")
        for n in range(40):
            await svc.defer(order(n, "c"), idempotency_key=f"msg-{n}")
        await anyio.sleep(300)
        assert len(provider.arrivals) >= 10
        assert provider.max_in_flight == 1
        await settle(rt, lambda: provider.in_flight == 0)  # the outage's last probe failed
        provider.up = True
        provider.arrivals.clear()
        await settle(rt, lambda: len(provider.delivered) == 40)
    first_done = provider.arrivals[0][0] + provider.latency
    assert provider.arrivals[1][0] >= first_done  # the probe went alone
    assert 1 < provider.max_in_flight <= policy.concurrency


# ---------------------------------------------------------------- deferring


async def test_defer_writes_without_trying_and_the_dispatcher_delivers() -> None:
    provider = Provider()
    provider.up = True
    async with Runtime(outbox=MemoryOutbox(), wall_clock=virtual_wall) as rt:
        seen = events_of(rt)
        register(rt, provider)
        receipt = await rt.service("sms").defer(order(1, "c"))
        assert receipt.reason == "requested"
        assert receipt.next_attempt_at == virtual_wall()
        assert receipt.idempotency_key.startswith("outbox_")  # none given: one generated
        await settle(rt, lambda: bool(provider.delivered))
    deferred = [e for e in seen if isinstance(e, CallDeferred)]
    delivered = [e for e in seen if isinstance(e, OutboxDelivered)]
    attempts = [e for e in seen if isinstance(e, AttemptFinished)]
    assert [(e.outbox_id, e.reason) for e in deferred] == [(receipt.id, "requested")]
    assert [(e.outbox_id, e.status, e.attempts) for e in delivered] == [(receipt.id, 200, 1)]
    assert [(a.outbox_id, a.idempotency_key) for a in attempts] == [
        (receipt.id, receipt.idempotency_key)
    ]


async def test_a_call_that_goes_through_is_not_deferred() -> None:
    provider = Provider()
    provider.up = True
    store = MemoryOutbox()
    async with Runtime(outbox=store, wall_clock=virtual_wall) as rt:
        register(rt, provider)
        response = await rt.service("sms").request(order(1, "c"), on_unavailable="defer")
    assert isinstance(response, HttpResponse)
    assert response.status == 200
    assert await store.count() == 0


async def test_each_kind_of_unavailability_defers_with_its_reason() -> None:
    provider = Provider()
    async with Runtime(outbox=MemoryOutbox(), wall_clock=virtual_wall) as rt:
        seen = events_of(rt)
        register(rt, provider, breaker=Breaker(failure_threshold=3, open_duration=60.0))
        register(rt, provider, "limited", rate_limit=RateLimit.per_minute(1, mode="reject"))
        register(rt, provider, "stopped")
        sms, limited, stopped = (rt.service(n) for n in ("sms", "limited", "stopped"))
        failed = await sms.request(order(1, "c"), on_unavailable="defer")
        opened = await sms.request(order(2, "c"), on_unavailable="defer")
        provider.up = True
        await limited.request(order(3, "c"))
        throttled = await limited.request(order(4, "c"), on_unavailable="defer")
        rt.actor("stopped").stop("crashed 4 times within 30 s")
        unavailable = await stopped.request(order(5, "c"), on_unavailable="defer")
        assert isinstance(failed, Deferred)
        assert isinstance(opened, Deferred)
        assert isinstance(throttled, Deferred)
        assert isinstance(unavailable, Deferred)
        assert [failed.reason, opened.reason, throttled.reason, unavailable.reason] == [
            "failed",
            "circuit_open",
            "rate_limited",
            "unavailable",
        ]
        assert failed.error is not None
        assert "HTTP 503" in failed.error
        # The breaker's and the limiter's own waits set the first attempt.
        now = virtual_wall()
        assert opened.next_attempt_at == pytest.approx(now + 60.0, abs=1.0)
        assert throttled.next_attempt_at == pytest.approx(now + 60.0, abs=1.0)
    # The live attempts of the failed call used the key its entry keeps.
    live = [e for e in seen if isinstance(e, AttemptFinished) and e.outbox_id is None]
    assert {e.idempotency_key for e in live[:3]} == {failed.idempotency_key}


async def test_a_callers_own_error_is_raised_not_deferred() -> None:
    provider = Provider()
    provider.up = True
    provider.answer = HttpResponse(status=422, content=b'{"error": "bad number"}')
    store = MemoryOutbox()
    async with Runtime(outbox=store, wall_clock=virtual_wall) as rt:
        register(rt, provider)
        with pytest.raises(VendorError):
            await rt.service("sms").request(order(1, "c"), on_unavailable="defer")
    assert await store.count() == 0


async def test_an_order_key_with_pending_entries_defers_a_live_call_behind_them() -> None:
    provider = Provider()
    async with Runtime(outbox=MemoryOutbox(), outbox_policy=FAST, wall_clock=virtual_wall) as rt:
        register(rt, provider, breaker=Breaker(failure_threshold=1, open_duration=60.0))
        svc = rt.service("sms")
        first = await svc.request(order(1, "c"), on_unavailable="defer", order_key="c")
        provider.up = True  # the provider is back, but the breaker does not know yet
        second = await svc.request(order(2, "c"), on_unavailable="defer", order_key="c")
        other = await svc.defer(order(3, "d"), order_key="d")
        assert isinstance(first, Deferred)
        assert isinstance(second, Deferred)
        assert (first.reason, second.reason, other.reason) == (
            "circuit_open",
            "ordered",
            "requested",
        )
        await settle(rt, lambda: len(provider.delivered) == 3)
    assert provider.sequences["c"] == [1, 2]


async def test_bad_arguments_are_clear_errors() -> None:
    provider = Provider()
    with pytest.raises(ConfigError, match="outbox_policy"):
        Runtime(outbox_policy=OutboxPolicy())
    with pytest.raises(ConfigError, match="lease"):
        OutboxPolicy(lease=0)
    async with Runtime(wall_clock=virtual_wall) as bare:
        register(bare, provider)
        with pytest.raises(ConfigError, match="outbox"):
            await bare.service("sms").request(order(1, "c"), on_unavailable="defer")
        with pytest.raises(ConfigError, match="outbox"):
            await bare.service("sms").defer(order(1, "c"))
    async with Runtime(outbox=MemoryOutbox(), wall_clock=virtual_wall) as rt:
        register(rt, provider)
        rt.register("plain")
        svc = rt.service("sms")
        with pytest.raises(ConfigError, match="on_unavailable"):
            await svc.request(order(1, "c"), on_unavailable="drop")  # type: ignore[call-overload]
        with pytest.raises(ConfigError, match="order_key"):
            await svc.request(order(1, "c"), order_key="c")  # type: ignore[call-overload]
        with pytest.raises(ConfigError, match="max_age"):
            await svc.defer(order(1, "c"), max_age=0)
        with pytest.raises(ConfigError, match="order_key"):
            await svc.defer(order(1, "c"), order_key="")
        with pytest.raises(ConfigError, match="request"):
            await svc.defer("POST /")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="transport"):
            await rt.service("plain").defer(order(1, "c"))
        stale = IdempotencyKey.generate(now=virtual_wall() - 90_000)
        with pytest.raises(ConfigError, match="expired"):
            await svc.defer(order(1, "c"), idempotency_key=stale)


async def test_an_entry_never_outlives_its_idempotency_key() -> None:
    async with Runtime(outbox=MemoryOutbox(), wall_clock=virtual_wall) as rt:
        register(rt, Provider())
        key = IdempotencyKey.generate(now=virtual_wall() - 86_000)
        receipt = await rt.service("sms").defer(order(1, "c"), idempotency_key=key)
        assert rt.outbox is not None
        entry = await rt.outbox.store.get(receipt.id)
        assert entry is not None
        assert entry.expires_at == key.created_at + key.ttl


class FailingOutbox(MemoryOutbox):
    """A store that fails while ``broken``."""

    broken = False

    async def add(self, entry: Any) -> Any:
        if self.broken:
            raise OSError("disk full")
        return await super().add(entry)

    async def claim(self, *args: Any) -> Any:
        if self.broken:
            raise OSError("disk full")
        return await super().claim(*args)


async def test_a_store_failure_reaches_the_caller_and_does_not_stop_the_dispatcher() -> None:
    provider = Provider()
    provider.up = True
    store = FailingOutbox()
    async with Runtime(outbox=store, outbox_policy=FAST, wall_clock=virtual_wall) as rt:
        register(rt, provider)
        svc = rt.service("sms")
        store.broken = True
        with pytest.raises(OutboxUnavailable, match="disk full"):
            await svc.defer(order(1, "c"))
        await anyio.sleep(20)
        assert rt.outbox is not None
        assert rt.outbox.failures >= 1
        assert rt.outbox.last_error == "OSError: disk full"
        store.broken = False
        await svc.defer(order(2, "c"))
        await settle(rt, lambda: len(provider.delivered) == 1)
    assert provider.delivered == {"msg-2": 1}


# ---------------------------------------------------------------- redelivery


async def test_a_failed_round_backs_off_and_keeps_the_key() -> None:
    provider = Provider()
    async with Runtime(outbox=MemoryOutbox(), outbox_policy=FAST, wall_clock=virtual_wall) as rt:
        seen = events_of(rt)
        register(rt, provider, retry=Retry(attempts=1), breaker=None)
        receipt = await rt.service("sms").defer(order(1, "c"))
        await settle(rt, lambda: len(provider.arrivals) >= 4)
        provider.up = True
        await settle(rt, lambda: bool(provider.delivered))
    rounds = [e for e in seen if isinstance(e, OutboxRetryScheduled)]
    assert [e.attempts for e in rounds[:3]] == [1, 2, 3]
    gaps = [b[0] - a[0] for a, b in zip(provider.arrivals, provider.arrivals[1:], strict=False)]
    # Equal jitter: each wait is between half and all of 1, 2, 4, 8, ... seconds.
    for n, gap in enumerate(gaps[:3]):
        assert 2**n / 2 <= gap <= 2**n + 1
    assert {key for _, key, _ in provider.arrivals} == {"msg-1"}
    assert [e.attempts for e in seen if isinstance(e, OutboxDelivered)] == [len(rounds) + 1]
    assert receipt.id == rounds[0].outbox_id


async def test_a_rejected_redelivery_is_dead_lettered_at_once() -> None:
    provider = Provider()
    provider.up = True
    provider.answer = HttpResponse(status=400, content=b'{"error": "api_key=sk_live_1 bad"}')
    store = MemoryOutbox()
    async with Runtime(outbox=store, wall_clock=virtual_wall) as rt:
        seen = events_of(rt)
        register(rt, provider)
        receipt = await rt.service("sms").defer(order(1, "c"))
        await settle(rt, lambda: rt.outbox is not None and rt.outbox.dead_lettered == 1)
    (dead,) = [e for e in seen if isinstance(e, OutboxDeadLettered)]
    assert (dead.outbox_id, dead.cause, dead.attempts) == (receipt.id, "rejected", 1)
    assert "VendorError" in dead.error
    assert "sk_live_1" not in dead.error
    (entry,) = await store.entries(dead=True)
    assert entry.last_error == dead.error
    assert len(provider.arrivals) == 1


async def test_the_integration_log_links_each_delivery_attempt_to_its_entry() -> None:
    provider = Provider()
    logs = MemoryLogStore()
    async with Runtime(
        outbox=MemoryOutbox(), outbox_policy=FAST, wall_clock=virtual_wall, log_store=logs
    ) as rt:
        register(rt, provider, retry=Retry(attempts=1), breaker=None)
        svc = rt.service("sms")
        receipt = await svc.request(order(1, "c"), on_unavailable="defer")
        assert isinstance(receipt, Deferred)
        await settle(rt, lambda: len(provider.arrivals) >= 2)
        provider.up = True
        await settle(rt, lambda: bool(provider.delivered))
    records = sorted(await logs.query(limit=1000), key=lambda r: r.id)
    links = [(r.request_data or {}).get("outbox_id") for r in records]
    assert links[0] is None  # the live attempt, before there was an entry
    assert links[1:] == [receipt.id] * (len(records) - 1)
    assert len(records) == len(provider.arrivals)
    assert [r.http_status_code for r in records][-1] == 200


async def test_a_keyed_service_holds_back_only_the_tenants_whose_breaker_is_open() -> None:
    provider = Provider()
    provider.up = True
    async with Runtime(outbox=MemoryOutbox(), outbox_policy=FAST, wall_clock=virtual_wall) as rt:
        register(
            rt,
            provider,
            key_by="tenant",
            retry=Retry(attempts=1),
            breaker=Breaker(failure_threshold=1, open_duration=600.0),
        )
        svc = rt.service("sms")
        provider.up = False
        await svc.request(order(0, "a"), tenant_id="a", on_unavailable="defer")
        provider.up = True
        await svc.defer(order(1, "a"), tenant_id="a")
        await svc.defer(order(2, "b"), tenant_id="b")
        await settle(rt, lambda: "msg-2" in provider.delivered, within=300)
        assert "msg-1" not in provider.delivered
        assert "msg-0" not in provider.delivered
        await settle(rt, lambda: len(provider.delivered) == 3, within=3600)


async def test_entries_left_at_shutdown_are_delivered_by_the_next_runtime() -> None:
    provider = Provider()
    store = MemoryOutbox()
    async with Runtime(outbox=store, outbox_policy=FAST, wall_clock=virtual_wall) as rt:
        register(rt, provider, breaker=Breaker(failure_threshold=1, open_duration=3600.0))
        for n in range(5):
            await rt.service("sms").request(order(n, "c"), on_unavailable="defer")
    assert await store.count() == 5
    provider.up = True
    async with Runtime(outbox=store, outbox_policy=FAST, wall_clock=virtual_wall) as rt:
        register(rt, provider)
        await settle(rt, lambda: len(provider.delivered) == 5)
    assert provider.delivered == {f"msg-{n}": 1 for n in range(5)}


async def test_a_payload_sealed_under_another_key_waits_with_a_clear_error() -> None:
    provider = Provider()
    provider.up = True
    store = MemoryOutbox(cipher=CredentialCipher(generate_key()))
    async with Runtime(outbox=store, outbox_policy=FAST, wall_clock=virtual_wall) as rt:
        register(rt, provider)
        await rt.service("sms").defer(order(1, "c"))
        store.cipher = CredentialCipher(generate_key())  # rotated: not this entry's key
        await anyio.sleep(30)
    (entry,) = await store.entries()
    assert entry.last_error is not None
    assert "key id" in entry.last_error
    assert not provider.arrivals
