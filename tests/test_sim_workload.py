"""Workloads' arrivals and tenant mixes, and the seeded streams they draw from."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import ConfigError
from connector.sim import Burst, Diurnal, Workload, fork

rates = st.floats(0.5, 50)


@given(rates, st.floats(0, 50), st.floats(1, 100), st.integers(0, 2**32))
def test_arrivals_are_in_order_and_inside_their_window(
    rate: float, start: float, length: float, seed: int
) -> None:
    workload = Workload(service="s", rate=rate, start=start, end=start + length)
    times = list(workload.times(fork(seed, "w"), end=start + length / 2))
    assert times == sorted(times)
    assert all(start <= t < start + length / 2 for t in times)


@given(rates, st.integers(1, 200))
def test_constant_arrivals_are_evenly_spaced(rate: float, count: int) -> None:
    workload = Workload(service="s", rate=rate, arrivals="constant")
    times = list(workload.times(fork(0, "w"), end=count / rate + 0.5 / rate))
    assert len(times) == count
    for n, t in enumerate(times, 1):
        assert t == pytest.approx(n / rate)


@pytest.mark.parametrize("seed", range(3))
def test_poisson_arrivals_come_at_their_rate(seed: int) -> None:
    workload = Workload(service="s", rate=20.0)
    count = sum(1 for _ in workload.times(fork(seed, "w"), end=500.0))
    assert count == pytest.approx(10_000, abs=5 * math.sqrt(10_000))


def test_a_burst_multiplies_the_rate_inside_its_window() -> None:
    workload = Workload(service="s", rate=10.0, bursts=[Burst(start=100.0, end=200.0, factor=4.0)])
    times = list(workload.times(fork(1, "w"), end=300.0))
    inside = sum(100 <= t < 200 for t in times)
    outside = len(times) - inside
    assert inside == pytest.approx(4000, abs=5 * math.sqrt(4000))
    assert outside == pytest.approx(2000, abs=5 * math.sqrt(2000))
    assert workload.rate_at(150.0) == 40.0
    assert workload.peak_rate == 40.0


def test_a_diurnal_curve_peaks_at_its_peak() -> None:
    curve = Diurnal(amplitude=0.5, period=100.0, peak=25.0)
    workload = Workload(service="s", rate=10.0, diurnal=curve)
    assert workload.rate_at(25.0) == pytest.approx(15.0)
    assert workload.rate_at(75.0) == pytest.approx(5.0)
    times = list(workload.times(fork(2, "w"), end=1000.0))
    near_peak = sum(abs((t - 25.0) % 100.0) < 10 or abs((t - 25.0) % 100.0) > 90 for t in times)
    near_trough = sum(abs((t - 75.0) % 100.0) < 10 or abs((t - 75.0) % 100.0) > 90 for t in times)
    assert near_peak > 2 * near_trough


def test_constant_arrivals_follow_a_varying_rate() -> None:
    workload = Workload(
        service="s",
        rate=1.0,
        arrivals="constant",
        bursts=[Burst(start=10.0, end=20.0, factor=10.0)],
    )
    times = list(workload.times(fork(0, "w"), end=30.0))
    assert sum(10 <= t < 20 for t in times) == pytest.approx(100, abs=2)


@given(st.dictionaries(st.sampled_from("abcd"), st.floats(0.1, 10), min_size=1))
def test_tenants_are_drawn_by_weight(weights: dict[str, float]) -> None:
    workload = Workload(service="s", rate=1.0, tenants=weights)
    pick = workload.tenant_picker(fork(3, "tenants"))
    draws = [pick() for _ in range(4000)]
    total = sum(weights.values())
    for tenant, weight in weights.items():
        share = draws.count(tenant) / len(draws)
        assert share == pytest.approx(weight / total, abs=0.05)


def test_no_tenants_means_no_tenant() -> None:
    pick = Workload(service="s", rate=1.0).tenant_picker(fork(0, "t"))
    assert {pick() for _ in range(10)} == {None}


def test_streams_depend_on_the_seed_and_the_name_only() -> None:
    assert fork(1, "a", "b").random() == fork(1, "a", "b").random()
    assert fork(1, "a", "b").random() != fork(2, "a", "b").random()
    assert fork(1, "a", "b").random() != fork(1, "a", "c").random()
    # Pinned: a stream is the same on every machine and every run (SHA-256, not hash()).
    assert fork(0, "runtime").getrandbits(32) == 1642603241


def test_a_workload_is_validated() -> None:
    with pytest.raises(ConfigError, match="rate"):
        Workload(service="s", rate=0.0)
    with pytest.raises(ConfigError, match="end"):
        Workload(service="s", rate=1.0, start=5.0, end=5.0)
    with pytest.raises(ConfigError, match="amplitude"):
        Diurnal(amplitude=1.0)
    with pytest.raises(ConfigError, match="factor"):
        Burst(start=0.0, end=1.0, factor=0.0)
    with pytest.raises(ConfigError, match=r"tenants\.x"):
        Workload(service="s", rate=1.0, tenants={"x": -1.0})
