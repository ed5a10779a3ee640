"""Fake providers: quotas, concurrency, outages, brownouts and errors, in virtual time."""

from __future__ import annotations

import email.utils
import math
import random

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import ConfigError, HttpRequest, TransportFailure, parse_retry_after
from connector.sim import (
    Brownout,
    Concurrency,
    Constant,
    FakeProvider,
    Outage,
    ProviderModel,
    Quota,
    SimulatedBug,
)
from connector.sim._provider import DEFAULT_EPOCH, _BucketQuota, _WindowQuota

pytestmark = pytest.mark.anyio

GET = HttpRequest(method="GET", url="https://api.invalid/")


@pytest.fixture
def anyio_backend(virtual_anyio_backend: tuple[str, dict[str, object]]) -> object:
    return virtual_anyio_backend


def provider(**fields: object) -> FakeProvider:
    fields.setdefault("latency", Constant(value=1.0))
    return FakeProvider(
        ProviderModel(**fields),  # type: ignore[arg-type]
        latency_rng=random.Random(1),
        error_rng=random.Random(2),
    )


async def test_a_request_takes_its_latency_and_succeeds() -> None:
    vendor = provider()
    response = await vendor.send(GET)
    assert response.status == 200
    assert anyio.current_time() == pytest.approx(1.0)
    assert vendor.stats.requests == 1
    assert vendor.stats.statuses == {"200": 1}


@pytest.mark.parametrize(
    ("style", "header"),
    [("seconds", "retry-after"), ("decimal", "retry-after"), ("http-date", "retry-after")],
)
async def test_past_its_quota_it_answers_429_with_a_retry_after_that_parses(
    style: str, header: str
) -> None:
    vendor = provider(quota=Quota(limit=2, period=10.0, kind="window", retry_after=style))  # type: ignore[arg-type]
    for _ in range(2):
        assert (await vendor.send(GET)).status == 200  # t = 1, then 2
    throttled = await vendor.send(GET)
    assert throttled.status == 429
    assert vendor.stats.throttled == 1
    now = anyio.current_time()
    wait = parse_retry_after(throttled.header(header), DEFAULT_EPOCH + now)
    assert wait is not None
    # The window resets at t = 10; the answer came back reject_latency after t = 2.
    assert 10.0 - now - 0.01 <= wait <= 10.0 - now + 1.0


async def test_a_reset_quota_names_the_unix_time_of_the_reset() -> None:
    vendor = provider(quota=Quota(limit=1, period=60.0, kind="window", retry_after="reset"))
    await vendor.send(GET)
    throttled = await vendor.send(GET)
    assert throttled.header("x-ratelimit-reset") == str(math.ceil(DEFAULT_EPOCH + 60.0))
    assert throttled.header("retry-after") is None


async def test_quotas_can_be_per_tenant() -> None:
    vendor = provider(quota=Quota(limit=1, period=60.0, per_tenant=True))
    assert (await vendor.send(GET, "a")).status == 200
    assert (await vendor.send(GET, "b")).status == 200
    assert (await vendor.send(GET, "a")).status == 429


@given(st.lists(st.floats(0, 20), min_size=1, max_size=200), st.integers(1, 20))
def test_a_bucket_quota_admits_at_most_limit_plus_rate_times_t(
    offsets: list[float], limit: int
) -> None:
    quota = _BucketQuota(Quota(limit=limit, period=2.0))
    admitted = [t for t in sorted(offsets) if quota.take(t) == 0.0]
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            span = admitted[j] - start
            assert j - i + 1 <= limit + quota.rate * span + 1e-9


@given(st.lists(st.floats(0, 20), min_size=1, max_size=200), st.integers(1, 20))
def test_a_window_quota_admits_at_most_limit_per_window(offsets: list[float], limit: int) -> None:
    quota = _WindowQuota(Quota(limit=limit, period=2.0, kind="window"))
    counts: dict[int, int] = {}
    for t in sorted(offsets):
        wait = quota.take(t)
        window = math.floor(t / 2.0)
        if wait == 0.0:
            counts[window] = counts.get(window, 0) + 1
        else:
            assert t + wait == pytest.approx((window + 1) * 2.0)
            assert counts[window] == limit
    assert all(count <= limit for count in counts.values())


async def test_a_concurrency_limit_rejects_past_it() -> None:
    vendor = provider(concurrency=Concurrency(limit=2, status=503))
    statuses: list[int] = []

    async def one() -> None:
        statuses.append((await vendor.send(GET)).status)

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(one)
    assert sorted(statuses) == [200, 200, 503]
    assert vendor.stats.peak_in_flight == 2


async def test_a_queueing_provider_serves_in_arrival_order_and_finishes_abandoned_work() -> None:
    vendor = provider(concurrency=Concurrency(limit=1, over="queue"))
    with anyio.move_on_after(0.5):
        await vendor.send(GET)  # the client gives up; the server goes on until t = 1
    assert vendor.in_progress(anyio.current_time()) == 1
    await vendor.send(GET)
    assert anyio.current_time() == pytest.approx(2.0)  # waited for the abandoned one


@pytest.mark.parametrize("mode", ["error", "refused", "hang"])
async def test_an_outage_fails_every_request_in_its_window(mode: str) -> None:
    vendor = provider(outages=[Outage(start=0.0, end=30.0, mode=mode, retry_after=5.0)])  # type: ignore[arg-type]
    if mode == "error":
        response = await vendor.send(GET)
        assert response.status == 503
        assert response.header("retry-after") == "5"
        assert anyio.current_time() == pytest.approx(0.005)
    else:
        with pytest.raises(TransportFailure) as caught:
            await vendor.send(GET)
        assert caught.value.sent is (mode == "hang")
        assert anyio.current_time() == pytest.approx(30.0 if mode == "hang" else 0.005)
    await anyio.sleep(31.0 - anyio.current_time())
    assert (await vendor.send(GET)).status == 200


async def test_a_brownout_slows_and_fails_requests_in_its_window() -> None:
    vendor = provider(brownouts=[Brownout(start=0.0, end=100.0, latency_factor=3.0)])
    await vendor.send(GET)
    assert anyio.current_time() == pytest.approx(3.0)
    failing = provider(brownouts=[Brownout(start=0.0, end=100.0, error_rate=1.0, status=502)])
    assert (await failing.send(GET)).status == 502


async def test_error_rates_come_out_at_their_rates() -> None:
    vendor = provider(latency=Constant(value=0.0), errors={"500": 0.2, "reset": 0.1})
    outcomes = {"200": 0, "500": 0, "reset": 0}
    sent: list[bool] = []
    for _ in range(5000):
        try:
            outcomes[str((await vendor.send(GET)).status)] += 1
        except TransportFailure as failure:
            sent.append(failure.sent)
            outcomes["reset"] += 1
    assert all(sent)
    assert outcomes["500"] == pytest.approx(1000, abs=150)
    assert outcomes["reset"] == pytest.approx(500, abs=110)
    assert vendor.stats.statuses == outcomes


async def test_a_crash_is_a_bug_in_the_client() -> None:
    vendor = provider(errors={"crash": 1.0})
    with pytest.raises(SimulatedBug):
        await vendor.send(GET)


async def test_requests_are_reported_as_they_arrive() -> None:
    seen: list[float] = []
    vendor = FakeProvider(
        ProviderModel(),
        latency_rng=random.Random(0),
        error_rng=random.Random(0),
        on_request=seen.append,
    )
    await vendor.send(GET)
    await vendor.send(GET)
    assert seen == pytest.approx([0.0, 0.1])
    await vendor.aclose()  # the vendor carries on
    assert (await vendor.send(GET)).status == 200


def test_a_provider_model_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"errors\.999"):
        ProviderModel(errors={"999": 0.1})
    with pytest.raises(ConfigError, match=r"errors\.boom"):
        ProviderModel(errors={"boom": 0.1})
    with pytest.raises(ConfigError, match="add up"):
        ProviderModel(errors={"500": 0.7, "503": 0.7})
    with pytest.raises(ConfigError, match="end"):
        Outage(start=10.0, end=10.0)
    with pytest.raises(ConfigError, match="error_rate"):
        Brownout(start=0.0, end=1.0, error_rate=2.0)
    with pytest.raises(ConfigError, match="limit"):
        Quota(limit=0)


def test_http_dates_are_whole_seconds() -> None:
    stamp = email.utils.formatdate(DEFAULT_EPOCH + 1, usegmt=True)
    assert parse_retry_after(stamp, DEFAULT_EPOCH) == 1.0
