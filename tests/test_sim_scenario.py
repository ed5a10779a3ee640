"""Scenario files: decoding, errors that name the line and the field, overrides."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector import Breaker, ConfigError, RetryBudget
from connector.sim import (
    Constant,
    Empirical,
    Exponential,
    LogNormal,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from connector.sim._scenario import split_path
from connector.sim._toml_lines import key_lines, line_of

SCENARIOS = Path(__file__).parent.parent / "sim" / "scenarios"

BASE = """\
name = "t"
duration = 60

[services.api.policy]
timeout = 2.0

[services.api.policy.breaker]
failure_threshold = 3

[services.api.provider]
latency = { kind = "exponential", mean = 0.1 }
errors = { "503" = 0.1, "reset" = 0.01 }

[[services.api.provider.outages]]
start = 10
end = 20

[workloads.w]
service = "api"
rate = 10
"""


def error_for(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, source="x.toml")
    return caught.value


def test_a_scenario_decodes_into_the_runtimes_own_policy_structs() -> None:
    scenario = parse_scenario(BASE)
    policy = scenario.services["api"].policy
    assert policy.breaker == Breaker(failure_threshold=3)
    assert policy.timeout == 2.0
    assert policy.retry_budget == RetryBudget()  # a default nobody turned off
    provider = scenario.services["api"].provider
    assert provider.latency == Exponential(mean=0.1)
    assert provider.errors == {"503": 0.1, "reset": 0.01}
    assert provider.outages[0].start == 10
    assert scenario.workloads["w"].rate == 10


def test_false_turns_an_optional_setting_off() -> None:
    text = BASE.replace("timeout = 2.0", "retry_budget = false\nbreaker = false").replace(
        "[services.api.policy.breaker]\nfailure_threshold = 3\n", ""
    )
    policy = parse_scenario(text).services["api"].policy
    assert policy.retry_budget is None
    assert policy.breaker is None
    # A field that is a bool keeps its false.
    text = BASE.replace("timeout = 2.0", "idempotent = false")
    assert parse_scenario(text).services["api"].policy.idempotent is False


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "reason"),
    [
        (
            "failure_threshold = 3",
            "failure_threshold = 0",
            "services.api.policy.breaker.failure_threshold",
            8,
            "must be >= 1",
        ),
        ("mean = 0.1", "mean = -1", "services.api.provider.latency.mean", 11, "must be > 0"),
        ("end = 20", "end = 20\nhang = 1", "services.api.provider.outages[0].hang", 17, "unknown"),
        ("end = 20", "end = 5", "services.api.provider.outages[0].end", 16, "after start"),
        ('service = "api"', 'service = "nope"', "workloads.w.service", 19, "not a service"),
        ('"503" = 0.1', '"999" = 0.1', "services.api.provider.errors.999", 12, "HTTP status"),
        ("rate = 10", 'rate = "fast"', "workloads.w.rate", 20, "Expected `float`"),
        ("start = 10\n", "", "services.api.provider.outages[0].start", 14, "missing"),
        ('kind = "exponential"', 'kind = "gamma"', "services.api.provider.latency.kind", 11, ""),
        ("timeout = 2.0", "timeout = 2.0\nmailbox = -1", "services.api.policy.mailbox", 6, ">= 0"),
    ],
)
def test_a_bad_field_is_named_with_its_line(
    old: str, new: str, field: str, line: int, reason: str
) -> None:
    assert old in BASE
    error = error_for(BASE.replace(old, new))
    assert error.field == field
    assert error.line == line
    assert reason in error.reason
    assert str(error).startswith(f"x.toml:{line}: {field}: ")
    assert isinstance(error, ConfigError)


def test_a_toml_syntax_error_gives_its_line() -> None:
    error = error_for(BASE.replace("duration = 60", "duration = [60"))
    assert error.field == "TOML"
    assert error.line is not None
    assert error.line >= 2


def test_a_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="file"):
        load_scenario(tmp_path / "absent.toml")


def test_required_top_level_fields_are_named() -> None:
    error = error_for(BASE.replace("duration = 60\n", ""))
    assert error.field == "duration"
    assert "missing" in error.reason


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_the_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.services
    for name, settings in scenario.variants.items():
        varied = scenario.override(settings, source=name)
        assert varied != scenario


def test_an_override_applies_by_dotted_path_and_is_validated() -> None:
    scenario = parse_scenario(BASE)
    varied = scenario.override(
        {
            "services.api.policy.retry_budget": False,
            "services.api.provider.quota": {"limit": 50},
            "services.api.provider.errors.503": 0.5,
        },
        source="variant v",
    )
    assert varied.services["api"].policy.retry_budget is None
    quota = varied.services["api"].provider.quota
    assert quota is not None
    assert quota.limit == 50
    assert varied.services["api"].provider.errors["503"] == 0.5
    assert scenario.services["api"].provider.quota is None  # the original is unchanged
    with pytest.raises(ScenarioError) as caught:
        scenario.override({"services.api.policy.breaker.failure_threshold": -2}, source="v2")
    assert caught.value.field == "services.api.policy.breaker.failure_threshold"
    assert str(caught.value).startswith("v2: ")
    with pytest.raises(ScenarioError, match="not a table"):
        scenario.override({"services.api.policy.timeout.x": 1}, source="v3")


def test_the_config_hash_ignores_the_seed_only() -> None:
    scenario = parse_scenario(BASE)
    assert scenario.override({"seed": 9}, source="s").config_hash() == scenario.config_hash()
    other = scenario.override({"workloads.w.rate": 11}, source="s")
    assert other.config_hash() != scenario.config_hash()


def test_the_report_bucket_defaults_to_a_round_width() -> None:
    assert parse_scenario(BASE).bucket == 1
    hour = parse_scenario(BASE.replace("duration = 60", "duration = 3600"))
    assert hour.bucket == 30
    assert isinstance(hour, Scenario)


# -- dotted paths and key lines ------------------------------------------------

_key = st.text(alphabet="abc.-_ 9", min_size=1, max_size=6)


@given(st.lists(_key, min_size=1, max_size=4))
def test_a_quoted_dotted_path_splits_back_into_its_keys(keys: list[str]) -> None:
    dotted = ".".join('"' + key + '"' for key in keys)
    assert split_path(dotted) == tuple(keys)


def test_malformed_paths_split_to_nothing() -> None:
    assert split_path("a..b") == ()
    assert split_path("") == ()
    assert split_path('a."b') == ()


@given(st.lists(st.sampled_from(["alpha", "beta", "gamma"]), min_size=1, max_size=5, unique=True))
def test_key_lines_finds_every_table_and_key(names: list[str]) -> None:
    lines = ["top = 1", 'text = """', "[not.a.table]", '"""']
    for name in names:
        lines += [f"[tables.{name}]", "value = [", "  1,", "]", f'"{name}.quoted" = 2']
    found = key_lines("\n".join(lines))
    assert found[("top",)] == 1
    assert ("not", "a", "table") not in found
    for i, name in enumerate(names):
        header = 5 + 5 * i
        assert found[("tables", name)] == header
        assert found[("tables", name, "value")] == header + 1
        assert found[("tables", name, f"{name}.quoted")] == header + 4
        assert line_of(found, ("tables", name, "value", 0)) == header + 1


def test_array_of_tables_elements_are_numbered() -> None:
    found = key_lines("[[a.b]]\nx = 1\n[[a.b]]\nx = 2\n[a.b.c]\ny = 3\n")
    assert found[("a", "b", 0, "x")] == 2
    assert found[("a", "b", 1, "x")] == 4
    assert found[("a", "b", 1, "c", "y")] == 6


# -- latency distributions -----------------------------------------------------


@given(st.integers(0, 2**32), st.floats(0.001, 10))
def test_lognormal_from_a_p99_puts_one_percent_above_it(seed: int, median: float) -> None:
    latency = LogNormal(median=median, p99=median * 5)
    assert math.isclose(latency.shape, math.log(5) / 2.3263478740408408)
    draw = latency.sampler(random.Random(seed))
    samples = sorted(draw() for _ in range(2000))
    above = sum(sample > median * 5 for sample in samples) / len(samples)
    assert above < 0.03
    assert samples[len(samples) // 2] == pytest.approx(median, rel=0.2)


def test_lognormal_needs_exactly_one_of_sigma_and_p99() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        LogNormal(median=0.1)
    with pytest.raises(ConfigError, match="exactly one"):
        LogNormal(median=0.1, sigma=1.0, p99=1.0)
    with pytest.raises(ConfigError, match="above the median"):
        LogNormal(median=0.1, p99=0.05)


@given(
    st.dictionaries(st.integers(1, 100).map(str), st.floats(0, 5), min_size=1, max_size=6).filter(
        lambda d: True
    ),
    st.integers(0, 2**32),
)
def test_empirical_samples_stay_within_its_table(points: dict[str, float], seed: int) -> None:
    ordered = dict(sorted(points.items(), key=lambda kv: float(kv[0])))
    values = sorted(ordered.values())
    table = dict(zip(ordered, values, strict=True))  # nondecreasing, as it must be
    latency = Empirical(percentiles=table)
    draw = latency.sampler(random.Random(seed))
    for _ in range(200):
        assert 0 <= draw() <= max(values)
    assert 0 <= latency.mean <= max(values)


def test_empirical_interpolates_between_percentiles() -> None:
    latency = Empirical(percentiles={"0": 1.0, "100": 3.0})
    assert latency.mean == pytest.approx(2.0)
    draw = latency.sampler(random.Random(1))
    samples = [draw() for _ in range(5000)]
    assert min(samples) >= 1.0
    assert max(samples) <= 3.0
    assert sum(samples) / len(samples) == pytest.approx(2.0, abs=0.05)


def test_empirical_rejects_a_decreasing_table_and_bad_keys() -> None:
    with pytest.raises(ConfigError, match=r"percentiles\.99"):
        Empirical(percentiles={"50": 1.0, "99": 0.5})
    with pytest.raises(ConfigError, match="percentiles"):
        Empirical(percentiles={"p50": 1.0})
    with pytest.raises(ConfigError, match="percentiles"):
        Empirical(percentiles={"101": 1.0})


def test_constant_is_constant() -> None:
    draw = Constant(value=0.25).sampler(random.Random(0))
    assert {draw() for _ in range(10)} == {0.25}
