"""The simulator end to end: determinism, known answers, and the report's own arithmetic."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from connector.sim import Report, Scenario, load_scenario, parse_scenario, simulate
from connector.sim._report import REJECTED

SCENARIOS = Path(__file__).parent.parent / "sim" / "scenarios"

# Every feature at once, small: two services (one keyed by tenant), limiter,
# breaker, timeouts, a quota answering with HTTP dates, errors of every kind
# (crashes restart the actor), a brownout, a hanging outage, a queueing
# provider, diurnal and bursty Poisson arrivals and constant ones.
MIXED = """\
name = "mixed"
duration = 120
resolution = 10

[services.a.policy]
key_by = "tenant"
timeout = 0.5
rate_limit = { rate = 30.0 }
breaker = { failure_threshold = 3, open_duration = 5.0 }
retry = { attempts = 3, initial_delay = 0.1, max_delay = 1.0 }

[services.a.provider]
latency = { kind = "lognormal", median = 0.05, p99 = 0.4 }
errors = { "503" = 0.05, "reset" = 0.02, "crash" = 0.002, "404" = 0.01 }
quota = { limit = 12, period = 1.0, retry_after = "http-date", per_tenant = true }
brownouts = [{ start = 40.0, end = 60.0, latency_factor = 5.0, error_rate = 0.5 }]

[services.b]
method = "POST"

[services.b.policy]
timeout = 1.0
max_concurrency = 4
retry = { attempts = 2, initial_delay = 0.2 }

[services.b.provider]
latency = { kind = "empirical", percentiles = { "50" = 0.1, "99" = 0.6 } }
concurrency = { limit = 3, over = "queue" }
outages = [{ start = 30.0, end = 50.0, mode = "hang" }]

[workloads.a]
service = "a"
rate = 20.0
tenants = { x = 1.0, y = 2.0 }
diurnal = { amplitude = 0.5, period = 60.0 }
bursts = [{ start = 80.0, end = 90.0, factor = 3.0 }]

[workloads.b]
service = "b"
rate = 5.0
arrivals = "constant"
idempotency_keys = true
deadline = 5.0
"""


@pytest.fixture(scope="module")
def mixed() -> Scenario:
    return parse_scenario(MIXED)


@pytest.fixture(scope="module")
def mixed_report(mixed: Scenario) -> Report:
    return simulate(mixed, seed=5)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_same_seed_gives_the_same_bytes(
    mixed: Scenario, mixed_report: Report, backend: str
) -> None:
    first = simulate(mixed, seed=5, backend=backend).to_json()
    if backend == "asyncio":
        assert first == mixed_report.to_json()
    else:
        assert first == simulate(mixed, seed=5, backend=backend).to_json()
        assert b'"backend": "trio"' in first
    other = simulate(mixed, seed=6, backend=backend).to_json()
    assert other != first


def test_the_mixed_scenario_exercises_what_determinism_is_claimed_for(mixed_report: Report) -> None:
    a, b = mixed_report.services
    assert a.restarts > 0
    assert a.limiter.throttled > 0
    assert a.breaker is not None
    assert a.breaker.trips > 0
    assert a.retries.scheduled > 0
    assert a.outcomes["caller_error"] > 0
    assert b.outcomes["failed"] + b.outcomes["deadline"] > 0  # the hanging outage
    assert b.provider.peak_in_flight <= 3 + 4  # its 3 slots, and what queues for them


def check_arithmetic(report: Report) -> None:
    for service in report.services:
        outcomes = service.outcomes
        assert sum(outcomes.values()) == service.offered
        finished = service.offered - outcomes["unfinished"]
        assert sum(service.retries.histogram.values()) == finished
        assert service.attempts == service.provider.requests
        assert sum(n * calls for n, calls in service.retries.histogram.items()) <= service.attempts
        assert service.succeeded == outcomes["success"]
        assert math.isclose(service.amplification, service.attempts / service.offered, rel_tol=1e-5)
        series = service.series
        assert sum(series.offered) == service.offered  # arrivals stop at the duration
        assert sum(series.succeeded) <= service.succeeded
        assert sum(series.rejected) <= sum(outcomes[o] for o in REJECTED)
        assert len(series.start) == math.ceil(report.duration / report.bucket)
        if service.latency is not None and service.queueing is not None:
            assert service.queueing.count == service.latency.count
            assert service.queueing.p50 <= service.latency.p50
            assert service.latency.p50 <= service.latency.p99 <= service.latency.max


def test_the_report_adds_up(mixed_report: Report) -> None:
    check_arithmetic(mixed_report)


# -- known answers -----------------------------------------------------------------


def erlang_c_wait(servers: int, arrival_rate: float, mean_service: float) -> float:
    """The M/M/c queue's mean waiting time (Erlang C)."""
    load = arrival_rate * mean_service
    below = sum(load**k / math.factorial(k) for k in range(servers))
    top = load**servers / math.factorial(servers) * servers / (servers - load)
    waiting = top / (below + top)
    return waiting / (servers / mean_service - arrival_rate)


MMC = """\
name = "m-m-5"
duration = 300
warmup = 30

[services.queue.policy]
max_concurrency = 5   # the c servers: the bulkhead
mailbox = 100000
breaker = false
retry_budget = false
retry = { attempts = 1 }

[services.queue.provider]
latency = { kind = "exponential", mean = 0.5 }

[workloads.customers]
service = "queue"
rate = 8.0
"""


def test_an_m_m_c_queue_waits_as_erlang_c_says() -> None:
    scenario = parse_scenario(MMC)
    expected = erlang_c_wait(servers=5, arrival_rate=8.0, mean_service=0.5)
    waits, services = [], []
    for seed in range(8):
        service = simulate(scenario, seed=seed).services[0]
        assert service.queueing is not None
        assert service.latency is not None
        waits.append(service.queueing.mean)
        services.append(service.latency.mean - service.queueing.mean)
    mean = statistics.mean(waits)
    half_width = 2.365 * statistics.stdev(waits) / math.sqrt(len(waits))  # t(0.975, 7)
    assert abs(mean - expected) <= half_width, (mean, half_width, expected)
    assert half_width < expected / 2  # an interval this narrow says something
    assert statistics.mean(services) == pytest.approx(0.5, rel=0.05)


QUOTA = """\
name = "quota"
duration = 60

[services.api.policy]
mailbox = 100000
rate_limit = { rate = 90.0 }

[services.api.provider]
latency = { kind = "constant", value = 0.05 }
quota = { limit = 100, period = 1.0 }

[workloads.w]
service = "api"
rate = 150.0
"""


def test_a_limiter_below_the_quota_sees_no_429() -> None:
    scenario = parse_scenario(QUOTA)
    service = simulate(scenario).services[0]
    assert service.limiter.throttled == 0
    assert service.provider.answers.get("429", 0) == 0
    assert service.limiter.headroom == pytest.approx(0.1)
    assert service.success_rate == 1.0
    # The same load without our limiter does run into the quota.
    bare = scenario.override({"services.api.policy.rate_limit": False}, source="test")
    unlimited = simulate(bare).services[0]
    assert unlimited.limiter.throttled > 100


OUTAGE = """\
name = "outage"
duration = 300

[services.api.policy]
breaker = { failure_threshold = 5, open_duration = 20.0 }
retry = { attempts = 1 }

[services.api.provider]
latency = { kind = "constant", value = 0.05 }
outages = [{ start = 60.0, end = 240.0 }]

[workloads.w]
service = "api"
rate = 10.0
arrivals = "constant"
"""


def test_a_breaker_stays_open_for_the_outage_within_one_open_duration() -> None:
    service = simulate(parse_scenario(OUTAGE)).services[0]
    breaker = service.breaker
    assert breaker is not None
    outage, open_duration = 180.0, 20.0
    not_closed = breaker.time_open + breaker.time_half_open
    assert outage - 1.0 <= not_closed <= outage + open_duration
    assert breaker.trips == 1
    first, last = breaker.timeline[0], breaker.timeline[-1]
    assert first.current == "open"
    assert 60.0 <= first.at <= 61.0  # the fifth failure, half a second in
    assert last.current == "closed"
    assert 240.0 <= last.at <= 240.0 + open_duration + 0.2
    assert service.rejections["circuit_open"] > 1500


def test_the_retry_storm_example_needs_its_budget() -> None:
    scenario = load_scenario(SCENARIOS / "retry_storm.toml")
    storm = simulate(scenario.override(scenario.variants["no-budget"], source="no-budget"))
    with_budget, without = simulate(scenario).services[0], storm.services[0]
    assert without.amplification > 2
    assert with_budget.amplification <= 1.2
    assert with_budget.goodput > without.goodput
    check_arithmetic(storm)
