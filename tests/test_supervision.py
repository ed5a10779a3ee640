"""Supervision (one_for_one restarts, intensity) and graceful shutdown, in virtual time."""

from __future__ import annotations

import anyio
import pytest

from connector import (
    ActorCrashed,
    ActorRestarted,
    Breaker,
    BreakerState,
    CircuitBreakerOpen,
    ConnectionFailed,
    HttpRequest,
    HttpResponse,
    Retry,
    Runtime,
    ServiceStopped,
    ServiceUnavailable,
    ShuttingDown,
    Supervision,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend(virtual_anyio_backend: tuple[str, dict[str, object]]) -> object:
    return virtual_anyio_backend


class BuggyTransport:
    """Raises a bug (not a provider error) on the requests it is told to."""

    instances: list[BuggyTransport]

    def __init__(self, crash_on: set[int], counter: list[int], log: list[BuggyTransport]) -> None:
        self.crash_on = crash_on
        self.counter = counter
        self.closed = False
        log.append(self)

    async def send(self, request: HttpRequest, tenant_id: str | None = None) -> HttpResponse:
        self.counter[0] += 1
        if self.counter[0] in self.crash_on:
            raise KeyError("a bug in the client")
        await anyio.sleep(0.5)
        return HttpResponse(status=200, content=request.url.encode())

    async def aclose(self) -> None:
        self.closed = True


def factory(crash_on: set[int]) -> tuple[list[BuggyTransport], object]:
    made: list[BuggyTransport] = []
    counter = [0]
    return made, lambda: BuggyTransport(crash_on, counter, made)


async def test_a_crash_restarts_the_instance_and_queued_calls_still_complete() -> None:
    made, make = factory(crash_on={1})
    async with Runtime() as rt:
        svc = rt.register("api", transport=make, max_concurrency=1)  # type: ignore[arg-type]
        results: list[object] = []

        async def send(n: int) -> None:
            request = HttpRequest(method="POST", url=f"https://api.test/{n}")
            try:
                results.append((await svc.request(request)).content)
            except ActorCrashed as error:
                results.append(error)

        with rt.events.subscribe() as events:
            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(send, n)
                    await anyio.sleep(0.01)
            restarts = [e for e in events.drain() if isinstance(e, ActorRestarted)]
        assert isinstance(results[0], ActorCrashed)  # the call in flight during the crash
        assert "KeyError" in str(results[0])
        assert results[1:] == [f"https://api.test/{n}".encode() for n in (1, 2, 3)]
        assert rt.actor("api").restarts == 1
        assert len(restarts) == 1
        assert len(made) == 2
        assert made[0].closed  # the old instance was retired and closed


async def test_an_idempotent_call_is_retried_across_a_restart() -> None:
    made, make = factory(crash_on={1})
    async with Runtime() as rt:
        svc = rt.register("api", transport=make, retry=Retry(attempts=2, initial_delay=0.1))  # type: ignore[arg-type]
        response = await svc.request(HttpRequest(method="GET", url="https://api.test/x"))
    assert response.status == 200
    assert len(made) == 2


async def test_breaker_state_survives_a_restart() -> None:
    failures = 0

    async def flaky() -> str:
        nonlocal failures
        failures += 1
        if failures <= 2:
            raise ConnectionError("provider down")
        raise ValueError("a bug")

    async with Runtime() as rt:
        svc = rt.register(
            "api", breaker=Breaker(failure_threshold=3, open_duration=60), retry=Retry.none()
        )
        for _ in range(2):
            with pytest.raises(ConnectionFailed):
                await svc.call(flaky)
        with pytest.raises(ActorCrashed):
            await svc.call(flaky)
        await anyio.sleep(10)  # restart done
        assert rt.actor("api").restarts == 1
        breaker = rt.actor("api").cells[None].breaker
        assert breaker is not None
        assert breaker.consecutive_failures == 2  # the crash did not count, nor reset
        assert breaker.current is BreakerState.CLOSED


async def test_more_restarts_than_the_intensity_stop_the_service() -> None:
    async def bug() -> None:
        raise ZeroDivisionError("division by zero")

    async def fine() -> str:
        return "fine"

    async with Runtime() as rt:
        svc = rt.register(
            "api", retry=Retry.none(), supervision=Supervision(max_restarts=3, within=30)
        )
        with rt.events.subscribe() as events:
            for _ in range(4):
                with pytest.raises(ActorCrashed):
                    await svc.call(bug)
                await anyio.sleep(6)  # each restart backs off at most 5 s
            with pytest.raises(ServiceUnavailable) as caught:
                await svc.call(fine)
            stopped = [e for e in events.drain() if isinstance(e, ServiceStopped)]
    assert "crashed 4 times within 30 s" in str(caught.value)
    assert len(stopped) == 1
    assert rt.actor("api").restarts == 3


async def test_restarts_spread_over_time_do_not_stop_the_service() -> None:
    async def bug() -> None:
        raise ZeroDivisionError("division by zero")

    async with Runtime() as rt:
        svc = rt.register(
            "api", retry=Retry.none(), supervision=Supervision(max_restarts=1, within=10)
        )
        for _ in range(5):
            with pytest.raises(ActorCrashed):
                await svc.call(bug)
            await anyio.sleep(20)
        assert rt.actor("api").restarts == 5
        assert not rt.actor("api").rejecting


async def test_calls_queued_when_the_service_stops_fail_with_service_unavailable() -> None:
    async def bug() -> None:
        await anyio.sleep(1)
        raise ZeroDivisionError("boom")

    async with Runtime() as rt:
        svc = rt.register(
            "api",
            retry=Retry.none(),
            max_concurrency=1,
            supervision=Supervision(max_restarts=0, within=30),
        )
        outcomes: list[type[BaseException]] = []

        async def call() -> None:
            try:
                await svc.call(bug)
            except (ActorCrashed, ServiceUnavailable) as error:
                outcomes.append(type(error))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(call)
    assert outcomes == [ActorCrashed, ServiceUnavailable, ServiceUnavailable]


async def test_graceful_stop_lets_in_flight_calls_finish_and_fails_queued_ones() -> None:
    outcomes: list[object] = []

    async def slow(n: int) -> int:
        await anyio.sleep(5)
        return n

    async def call(n: int, after: float = 0.0) -> None:
        await anyio.sleep(after)
        try:
            outcomes.append(await svc.call(slow, n))
        except ShuttingDown as error:
            outcomes.append(error)

    async with anyio.create_task_group() as callers:
        rt = Runtime(shutdown_timeout=30)
        async with rt:
            svc = rt.register("email", max_concurrency=2)
            for n in range(4):
                callers.start_soon(call, n)
            callers.start_soon(call, 4, 2.0)  # arrives while the runtime is stopping
            await anyio.sleep(1)
            started = anyio.current_time()
        # Leaving waited for the two in flight, not for the queued two.
        assert anyio.current_time() - started == pytest.approx(4.0)
    finished = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, ShuttingDown)]
    assert len(finished) == 2  # trio schedules in random order: which two is not fixed
    assert len(refused) == 3
    assert 4 not in finished


async def test_shutdown_does_not_wait_past_its_timeout() -> None:
    async def forever() -> None:
        await anyio.sleep(10_000)

    async with anyio.create_task_group() as callers:
        rt = Runtime(shutdown_timeout=3)
        async with rt:
            svc = rt.register("email")
            callers.start_soon(svc.call, forever)
            await anyio.sleep(1)
            started = anyio.current_time()
        assert anyio.current_time() - started == pytest.approx(3.0)
        callers.cancel_scope.cancel()


async def test_an_open_breaker_still_rejects_after_restart() -> None:
    async def down() -> None:
        raise ConnectionError("down")

    async def bug() -> None:
        raise AssertionError("invariant broken")

    async with Runtime() as rt:
        svc = rt.register("api", breaker=Breaker(failure_threshold=1), retry=Retry.none())
        with pytest.raises(ConnectionFailed):
            await svc.call(down)
        with pytest.raises(CircuitBreakerOpen):
            await svc.call(bug)
        rt.actor("api").crash(AssertionError("forced"))
        await anyio.sleep(10)
        assert rt.actor("api").restarts == 1
        with pytest.raises(CircuitBreakerOpen):
            await svc.call(down)
