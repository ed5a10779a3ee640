"""The actor runtime's call path, on asyncio and trio, in virtual time."""

from __future__ import annotations

import random
from collections.abc import Callable

import anyio
import pytest

from connector import (
    AttemptFinished,
    Breaker,
    BreakerState,
    CallRejected,
    CircuitBreakerOpen,
    ConfigError,
    ConnectionFailed,
    DeadlineExceeded,
    HttpRequest,
    HttpResponse,
    Overloaded,
    RateLimit,
    RateLimitExceeded,
    Retry,
    RetryBudget,
    RetryScheduled,
    Runtime,
    ServiceUnavailable,
    Timeout,
)


@pytest.fixture
def anyio_backend(virtual_anyio_backend: tuple[str, dict[str, object]]) -> object:
    return virtual_anyio_backend


class CallerMistake(Exception):
    """Stands for an SDK's "bad request" error: the caller's own fault."""


class Provider:
    """A fake provider: records every attempt and answers from a script of outcomes."""

    def __init__(self, *outcomes: object, latency: float = 0.0) -> None:
        self.script = list(outcomes)
        self.latency = latency
        self.starts: list[float] = []
        self.active = 0
        self.max_active = 0

    async def __call__(self, value: object = "ok") -> object:
        self.starts.append(anyio.current_time())
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.latency:
                await anyio.sleep(self.latency)
            outcome = self.script.pop(0) if self.script else value
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        finally:
            self.active -= 1


def fast_retry(attempts: int = 3) -> Retry:
    return Retry(attempts=attempts, initial_delay=0.1, max_delay=1.0, jitter="none")


pytestmark = pytest.mark.anyio


async def test_a_call_returns_the_providers_result() -> None:
    provider = Provider()
    async with Runtime() as rt:
        svc = rt.register("email")
        assert await svc.call(provider, 42) == 42
    assert len(provider.starts) == 1


async def test_the_fifth_consecutive_failure_opens_the_circuit_and_calls_stop() -> None:
    provider = Provider(*[ConnectionError("down")] * 5)
    async with Runtime() as rt:
        svc = rt.register("sms", retry=Retry.none())
        for _ in range(5):
            with pytest.raises(ConnectionFailed):
                await svc.call(provider)
        with pytest.raises(CircuitBreakerOpen) as caught:
            await svc.call(provider)
        assert caught.value.retry_after == pytest.approx(60.0)
        assert len(provider.starts) == 5  # the sixth never reached the provider

        await anyio.sleep(60)
        assert await svc.call(provider, "back") == "back"  # half-open probe closes it
        cell = rt.actor("sms").cells[None]
        assert cell.breaker is not None
        assert cell.breaker.current is BreakerState.CLOSED


async def test_a_callers_own_error_is_raised_untouched_and_never_opens_the_circuit() -> None:
    provider = Provider(*[CallerMistake("bad email")] * 10)
    async with Runtime() as rt:
        svc = rt.register(
            "email",
            breaker=Breaker(failure_threshold=2),
            caller_errors=(CallerMistake,),
            idempotent=True,
        )
        for _ in range(10):
            with pytest.raises(CallerMistake):
                await svc.call(provider)
        assert len(provider.starts) == 10  # not retried, not rejected
        cell = rt.actor("email").cells[None]
        assert cell.breaker is not None
        assert cell.breaker.current is BreakerState.CLOSED


async def test_idempotent_calls_are_retried_with_backoff_then_succeed() -> None:
    provider = Provider(ConnectionError("1"), TimeoutError("2"))
    async with Runtime() as rt:
        svc = rt.register("api", retry=fast_retry(), idempotent=True)
        start = anyio.current_time()
        assert await svc.call(provider, "third time") == "third time"
    assert len(provider.starts) == 3
    gaps = [b - a for a, b in zip(provider.starts, provider.starts[1:], strict=False)]
    assert gaps == pytest.approx([0.1, 0.2])  # initial 0.1, multiplier 2, no jitter
    assert provider.starts[0] == pytest.approx(start)


async def test_a_call_the_provider_may_have_seen_is_not_retried_unless_safe() -> None:
    provider = Provider(*[ConnectionResetError("reset after send")] * 3)
    async with Runtime() as rt:
        svc = rt.register("payments", retry=fast_retry())
        with pytest.raises(ConnectionFailed) as caught:
            await svc.call(provider)
        assert caught.value.attempts == 1
        assert isinstance(caught.value.__cause__, ConnectionResetError)
        assert len(provider.starts) == 1

        # An idempotency key makes the same operation safe to repeat.
        provider.script = [ConnectionResetError("again")]
        assert await svc.call(provider, "charged", idempotency_key="charge-1") == "charged"
        assert len(provider.starts) == 3


async def test_a_request_never_sent_is_retried_even_when_not_idempotent() -> None:
    provider = Provider(ConnectionRefusedError("refused"))
    async with Runtime() as rt:
        svc = rt.register("payments", retry=fast_retry())
        assert await svc.call(provider, "ok") == "ok"
    assert len(provider.starts) == 2


async def test_all_attempts_failing_raise_connection_failed_with_the_count() -> None:
    provider = Provider(*[ConnectionRefusedError("refused")] * 3)
    async with Runtime() as rt:
        svc = rt.register("api", retry=fast_retry(3))
        with pytest.raises(ConnectionFailed) as caught:
            await svc.call(provider, endpoint="/v1/things")
    assert caught.value.attempts == 3
    assert caught.value.endpoint == "/v1/things"
    assert "refused" in caught.value.last_error


async def test_rate_limit_in_wait_mode_queues_until_the_token_is_due() -> None:
    provider = Provider()
    async with Runtime() as rt:
        svc = rt.register("sms", rate_limit=RateLimit.per_second(2))
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(svc.call, provider)
    offsets = [t - start for t in provider.starts]
    assert offsets == pytest.approx([0.0, 0.0, 0.5, 1.0])


async def test_rate_limit_in_reject_mode_fails_at_once_with_retry_after() -> None:
    provider = Provider()
    async with Runtime() as rt:
        svc = rt.register("sms", rate_limit=RateLimit.per_minute(5, mode="reject"))
        for _ in range(5):
            await svc.call(provider)
        with pytest.raises(RateLimitExceeded) as caught:
            await svc.call(provider)
    assert caught.value.retry_after == pytest.approx(12.0)
    assert (caught.value.limit, caught.value.window) == (5, 60)
    assert len(provider.starts) == 5


async def test_a_token_due_after_the_deadline_fails_fast() -> None:
    provider = Provider()
    async with Runtime() as rt:
        svc = rt.register("sms", rate_limit=RateLimit.per_minute(1))
        await svc.call(provider)
        before = anyio.current_time()
        with pytest.raises(RateLimitExceeded):
            await svc.call(provider, deadline=5)
        assert anyio.current_time() == before  # it did not wait for a hopeless token


async def test_the_bulkhead_bounds_concurrency_and_the_mailbox_rejects_when_full() -> None:
    provider = Provider(latency=1.0)
    outcomes: list[str] = []

    async def caller(svc_call: Callable[[], object]) -> None:
        try:
            await svc.call(provider)
            outcomes.append("ok")
        except Overloaded:
            outcomes.append("overloaded")

    async with Runtime() as rt:
        svc = rt.register("email", max_concurrency=2, mailbox=2)
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(caller, svc.call)
    assert provider.max_active == 2
    assert sorted(outcomes) == ["ok"] * 4 + ["overloaded"]


async def test_waiters_are_served_first_in_first_out() -> None:
    order: list[int] = []

    async def job(n: int) -> None:
        order.append(n)
        await anyio.sleep(1)

    async with Runtime() as rt:
        svc = rt.register("email", max_concurrency=1)
        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(svc.call, job, n)
                await anyio.sleep(0.01)
    assert order == list(range(6))


async def test_a_queued_call_past_its_deadline_fails_without_calling_the_provider() -> None:
    provider = Provider(latency=10.0)
    async with Runtime() as rt:
        svc = rt.register("email", max_concurrency=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.call, provider)
            await anyio.sleep(0.01)
            with pytest.raises(DeadlineExceeded):
                await svc.call(provider, deadline=2)
    assert len(provider.starts) == 1
    cell = rt.actor("email").cells[None]
    assert cell.in_flight == 0
    assert not cell.queue


async def test_the_deadline_cuts_a_slow_attempt_and_frees_its_slot() -> None:
    provider = Provider(latency=100.0)
    async with Runtime() as rt:
        svc = rt.register("email")
        start = anyio.current_time()
        with pytest.raises(DeadlineExceeded):
            await svc.call(provider, deadline=3)
        assert anyio.current_time() - start == pytest.approx(3.0)
        assert rt.actor("email").cells[None].in_flight == 0


async def test_a_per_attempt_timeout_is_a_provider_failure() -> None:
    provider = Provider(latency=100.0)
    async with Runtime() as rt:
        svc = rt.register("email", timeout=2.0, retry=fast_retry(2), idempotent=True)
        with pytest.raises(ConnectionFailed) as caught:
            await svc.call(provider)
        assert caught.value.attempts == 2
        assert isinstance(caught.value.__cause__, Timeout)
        assert rt.actor("email").cells[None].breaker.consecutive_failures == 2  # type: ignore[union-attr]


async def test_a_cancelled_waiter_gives_back_its_place_and_its_token() -> None:
    provider = Provider(latency=5.0)
    async with Runtime() as rt:
        svc = rt.register("email", max_concurrency=1, rate_limit=RateLimit.per_second(10))
        async with anyio.create_task_group() as tg:
            tg.start_soon(svc.call, provider)
            await anyio.sleep(0.01)
            with anyio.move_on_after(1):
                await svc.call(provider)  # queued behind the slow one, then cancelled
        cell = rt.actor("email").cells[None]
        assert cell.in_flight == 0
        assert not cell.queue
        assert cell.limiter is not None
        assert cell.limiter.available(anyio.current_time()) == pytest.approx(10.0)
    assert len(provider.starts) == 1


async def test_retries_stop_when_the_retry_budget_is_spent() -> None:
    failing = Provider(*[ConnectionRefusedError("refused")] * 1000)
    async with Runtime() as rt:
        svc = rt.register(
            "api",
            breaker=None,
            retry=Retry(attempts=5, initial_delay=0.0, jitter="none"),
            retry_budget=RetryBudget(ratio=0.1, min_per_second=0.5, window=10),
        )
        for _ in range(20):
            with pytest.raises(ConnectionFailed):
                await svc.call(failing)
    retries = len(failing.starts) - 20
    # 10 % of 20 requests plus 0.5/s over a 10 s window: at most 2 + 5 retries.
    assert retries <= 0.1 * 20 + 0.5 * 10
    assert retries >= 5  # the floor is there to be used


async def test_http_429_with_retry_after_pauses_the_service() -> None:
    class Throttling:
        def __init__(self) -> None:
            self.starts: list[float] = []

        async def send(self, request: HttpRequest, tenant_id: str | None = None) -> HttpResponse:
            self.starts.append(anyio.current_time())
            if len(self.starts) == 1:
                return HttpResponse(status=429, headers={"Retry-After": "2"})
            return HttpResponse(status=200, content=b"{}")

        async def aclose(self) -> None:
            pass

    transport = Throttling()
    async with Runtime() as rt:
        svc = rt.register("api", transport=lambda: transport, retry=fast_retry())
        request = HttpRequest(method="GET", url="https://api.test/v1/items")
        start = anyio.current_time()
        response = await svc.request(request)
        # Another call made during the pause waits for it as well.
        assert (await svc.request(request)).status == 200
    assert response.status == 200
    assert transport.starts[1] - start == pytest.approx(2.0)
    assert all(t >= start + 2.0 for t in transport.starts[1:])


async def test_http_4xx_is_a_vendor_error_and_5xx_a_retried_failure() -> None:
    from connector import VendorError

    class Scripted:
        def __init__(self, *statuses: int) -> None:
            self.statuses = list(statuses)
            self.sent = 0

        async def send(self, request: HttpRequest, tenant_id: str | None = None) -> HttpResponse:
            self.sent += 1
            return HttpResponse(status=self.statuses.pop(0), content=b'{"error":"nope"}')

        async def aclose(self) -> None:
            pass

    async with Runtime() as rt:
        scripted = Scripted(404, 503, 503, 200)
        svc = rt.register("api", transport=lambda: scripted, retry=fast_retry())
        request = HttpRequest(method="GET", url="https://api.test/v1/items/1")
        with pytest.raises(VendorError) as caught:
            await svc.request(request)
        assert caught.value.status == 404
        assert "nope" in caught.value.body
        assert (await svc.request(request)).status == 200
        assert scripted.sent == 4


async def test_one_idempotency_key_executes_once() -> None:
    provider = Provider(latency=1.0)
    async with Runtime() as rt:
        svc = rt.register("payments")
        results: list[object] = []

        async def charge() -> None:
            results.append(await svc.call(provider, "ch_1", idempotency_key="order-7"))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(charge)
        results.append(await svc.call(provider, "ch_2", idempotency_key="order-7"))
        # Another tenant's identical key is another operation.
        results.append(await svc.call(provider, "ch_3", idempotency_key="order-7", tenant_id="b"))
    assert results == ["ch_1"] * 6 + ["ch_3"]
    assert len(provider.starts) == 2


async def test_keyed_services_isolate_tenants_and_passivation_keeps_their_state() -> None:
    provider = Provider(*[ConnectionError("down")] * 2)
    async with Runtime() as rt:
        svc = rt.register(
            "email",
            key_by="tenant",
            breaker=Breaker(failure_threshold=2, open_duration=600),
            retry=Retry.none(),
            idle_timeout=30,
        )
        for _ in range(2):
            with pytest.raises(ConnectionFailed):
                await svc.call(provider, tenant_id="a")
        with pytest.raises(CircuitBreakerOpen):
            await svc.call(provider, tenant_id="a")
        assert await svc.call(provider, "fine", tenant_id="b") == "fine"

        actor = rt.actor("email")
        assert set(actor.cells) == {"a", "b"}
        await anyio.sleep(100)  # both idle: passivated
        assert actor.cells == {}
        with pytest.raises(CircuitBreakerOpen):  # a's open circuit came back from the store
            await svc.call(provider, tenant_id="a")
        assert await svc.call(provider, "still fine", tenant_id="b") == "still fine"


async def test_events_describe_attempts_retries_and_rejections() -> None:
    provider = Provider(ConnectionRefusedError("refused"))
    async with Runtime() as rt:
        svc = rt.register(
            "api", retry=fast_retry(), rate_limit=RateLimit.per_minute(2, mode="reject")
        )
        with rt.events.subscribe() as subscription:
            await svc.call(provider, endpoint="/v1/x", tenant_id="t1")
            with pytest.raises(RateLimitExceeded):
                await svc.call(provider)
            events = subscription.drain()
    kinds = [type(event) for event in events]
    assert kinds == [AttemptFinished, RetryScheduled, AttemptFinished, CallRejected]
    first, _, second, rejected = events
    assert isinstance(first, AttemptFinished)
    assert (first.outcome, first.attempt, first.endpoint, first.tenant_id) == (
        "failure",
        1,
        "/v1/x",
        "t1",
    )
    assert isinstance(second, AttemptFinished)
    assert (second.outcome, second.attempt) == ("success", 2)
    assert isinstance(rejected, CallRejected)
    assert rejected.reason == "rate_limited"


async def test_a_slow_subscriber_loses_its_oldest_events_not_the_callers_time() -> None:
    async with Runtime() as rt:
        svc = rt.register("api")
        with rt.events.subscribe(max_buffer=3) as subscription:
            for n in range(10):
                await svc.call(Provider(), n)
            assert subscription.dropped == 7
            assert len(subscription.drain()) == 3


async def test_bad_input_gets_clear_typed_errors() -> None:
    def not_async() -> int:
        return 1

    async with Runtime() as rt:
        svc = rt.register("api")
        with pytest.raises(ConfigError, match="fn"):
            await svc.call(not_async)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="deadline"):
            await svc.call(Provider(), deadline=-1)
        with pytest.raises(ConfigError, match="service"):
            rt.service("nope")
        with pytest.raises(ConfigError, match="already registered"):
            rt.register("api")
        with pytest.raises(ConfigError, match="max_concurrency"):
            rt.register("other", max_concurrency=0)
        with pytest.raises(ConfigError, match="no_such_policy"):
            rt.register("third", no_such_policy=1)
        with pytest.raises(ConfigError, match="transport"):
            await svc.request(HttpRequest(method="GET", url="https://x.test"))
    with pytest.raises(ServiceUnavailable, match="not running"):
        await svc.call(Provider())


async def test_the_same_seed_gives_the_same_jittered_schedule() -> None:
    async def schedule(seed: int) -> list[float]:
        provider = Provider(*[ConnectionRefusedError("x")] * 4)
        async with Runtime(rng=random.Random(seed)) as rt:
            svc = rt.register("api", retry=Retry(attempts=5, initial_delay=1.0))
            start = anyio.current_time()
            await svc.call(provider)
        return [t - start for t in provider.starts]

    first, again, other = await schedule(7), await schedule(7), await schedule(8)
    # The runs start at different instants of one loop: compare offsets to the nanosecond.
    assert first == pytest.approx(again, abs=1e-9)
    assert first != pytest.approx(other, abs=1e-3)


async def test_a_call_whose_token_is_due_past_its_deadline_is_refused_on_arrival() -> None:
    provider = Provider()
    refused_at: list[float] = []

    async def caller() -> None:
        try:
            await svc.call(provider, deadline=1.0)
        except RateLimitExceeded:
            refused_at.append(anyio.current_time())

    async with Runtime() as rt:
        svc = rt.register("sms", rate_limit=RateLimit.per_second(2))
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(caller)
    # Tokens at 0, 0 and 0.5 come before the deadline; the rest would come too late
    # (at 1.0, the deadline itself, or after) and are refused at once, rather than
    # after queueing until the head of the line.
    assert [t - start for t in provider.starts] == pytest.approx([0.0, 0.0, 0.5])
    assert refused_at == pytest.approx([start] * 5)
