"""The benchmark harness runs end to end and reports every case; no timing thresholds."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Every case of the "policies" section: (name, synchronous, peer module it needs).
POLICY_CASES = {
    "bare call": (True, None),
    "connector CircuitBreaker": (True, None),
    "connector CircuitBreaker rate": (True, None),
    "pybreaker call": (True, "pybreaker"),
    "pybreaker call + listener": (True, "pybreaker"),
    "connector TokenBucket": (True, None),
    "connector TokenBucket + clock": (True, None),
    "connector GCRA": (True, None),
    "aiolimiter has_capacity": (False, "aiolimiter"),
    "bare await": (False, None),
    "aiolimiter acquire": (False, "aiolimiter"),
    "aiolimiter has_capacity + acquire": (False, "aiolimiter"),
}
BASELINES = {"bare call", "bare await"}
ASYNCIO_ONLY = {
    "aiolimiter has_capacity",
    "aiolimiter acquire",
    "aiolimiter has_capacity + acquire",
}
REPETITIONS, OPS = 3, 500


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    path = tmp_path_factory.mktemp("bench") / "policies.json"
    done = _run(
        "--quick",
        "--only",
        "policies",
        "--backend",
        "both",
        "--repetitions",
        str(REPETITIONS),
        "--ops",
        str(OPS),
        "--json",
        str(path),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(path.read_text()), done.stdout


def _results(report: dict[str, object]) -> dict[tuple[str, str | None], dict[str, object]]:
    results = report["results"]
    assert isinstance(results, list)
    return {(r["name"], r["backend"]): r for r in results}


def test_every_case_is_reported_once_per_backend_it_depends_on(
    report: tuple[dict[str, object], str],
) -> None:
    expected: set[tuple[str, str | None]] = set()
    for name, (synchronous, _peer) in POLICY_CASES.items():
        if synchronous:
            expected.add((name, None))
        else:
            expected |= {(name, "asyncio"), (name, "trio")}
    assert set(_results(report[0])) == expected


def test_timed_cases_have_every_sample_a_positive_median_and_a_ratio(
    report: tuple[dict[str, object], str],
) -> None:
    for (name, backend), result in _results(report[0]).items():
        _synchronous, peer = POLICY_CASES[name]
        peer_missing = peer is not None and importlib.util.find_spec(peer) is None
        if peer_missing or (name in ASYNCIO_ONLY and backend == "trio"):
            assert result["skipped"], (name, backend)
            assert result["sample_ns"] == []
            continue
        assert result["skipped"] is None, (name, backend)
        samples = result["sample_ns"]
        assert isinstance(samples, list)
        assert len(samples) == REPETITIONS
        assert all(sample > 0 for sample in samples)
        assert result["ops"] == OPS
        median, minimum = result["median"], result["min"]
        assert isinstance(median, float)
        assert isinstance(minimum, float)
        assert 0 < minimum <= median
        if name in BASELINES:
            assert result["baseline"] is None
            assert result["ratio"] is None
        else:
            assert result["baseline"] in BASELINES
            ratio = result["ratio"]
            assert isinstance(ratio, float)
            assert ratio > 0


def test_report_names_the_machine_and_settings(report: tuple[dict[str, object], str]) -> None:
    data = report[0]
    machine, settings = data["machine"], data["settings"]
    assert isinstance(machine, dict)
    assert isinstance(settings, dict)
    assert machine["packages"]["nexus-connector"] is not None
    assert {"pybreaker", "aiolimiter"} <= set(machine["packages"])
    assert settings == {
        "repetitions": REPETITIONS,
        "ops": OPS,
        "backends": ["asyncio", "trio"],
        "quick": True,
    }


def test_table_lists_every_case(report: tuple[dict[str, object], str]) -> None:
    table = report[1]
    assert "== policies ==" in table
    for name in POLICY_CASES:
        assert name in table


def test_unknown_section_is_a_usage_error() -> None:
    done = _run("--only", "nonesuch")
    assert done.returncode == 2
    assert "invalid choice: 'nonesuch'" in done.stderr


def test_missing_peers_are_skipped_with_a_note(tmp_path: Path) -> None:
    # None in sys.modules makes the peers unfindable, as if not installed.
    path = tmp_path / "no-peers.json"
    args = ["--only", "policies", "--repetitions", "1", "--ops", "50", "--json", str(path)]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['pybreaker'] = sys.modules['aiolimiter'] = None; "
            f"from benchmarks.__main__ import main; sys.exit(main({args!r}))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = _results(json.loads(path.read_text()))
    for (name, _backend), result in results.items():
        peer = POLICY_CASES[name][1]
        if peer is None:
            assert result["skipped"] is None
        else:
            assert (
                result["skipped"] == f"{peer} not installed (pip install 'nexus-connector[bench]')"
            )
            assert result["median"] is None
    assert "pybreaker not installed" in done.stdout


# -- the runtime sections: overhead, throughput, memory ------------------------------

COMPOSED = ("tenacity", "aiobreaker", "aiolimiter")
# Every timed case of the runtime sections: name -> peer modules it needs (asyncio only if any).
RUNTIME_CASES = {
    "overhead": {
        "bare await": (),
        "connector call": (),
        "connector call + timeout": (),
        "connector call + subscriber": (),
        "hand-rolled guard": (),
        "aiolimiter": ("aiolimiter",),
        "aiobreaker": ("aiobreaker",),
        "purgatory": ("purgatory",),
        "tenacity": ("tenacity",),
        "stamina": ("stamina",),
        "tenacity + aiobreaker + aiolimiter": COMPOSED,
    },
    "throughput": {
        "bare calls": (),
        "connector calls": (),
        "tenacity + aiobreaker + aiolimiter": COMPOSED,
    },
}
RUNTIME_BASELINES = {"bare await", "bare calls"}
RUNTIME_OPS = 200  # overhead: 20 calls per sample; throughput: 20 callers x 10; memory: 200 actors
SAMPLE_OPS = {"overhead": RUNTIME_OPS // 10, "throughput": RUNTIME_OPS}


def _installed(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


@pytest.fixture(scope="module")
def runtime_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    path = tmp_path_factory.mktemp("bench") / "runtime.json"
    sections = [arg for name in ("overhead", "throughput", "memory") for arg in ("--only", name)]
    done = _run(
        "--quick",
        *sections,
        "--backend",
        "both",
        "--repetitions",
        str(REPETITIONS),
        "--ops",
        str(RUNTIME_OPS),
        "--json",
        str(path),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(path.read_text()), done.stdout


def _figures(report: dict[str, Any], section: str) -> dict[tuple[str, str | None], float]:
    return {
        (f["name"], f["backend"]): f["value"] for f in report["figures"] if f["section"] == section
    }


@pytest.mark.parametrize("section", sorted(RUNTIME_CASES))
def test_runtime_sections_time_every_case_on_each_backend_or_say_why_not(
    runtime_report: tuple[dict[str, Any], str], section: str
) -> None:
    results = {
        (r["name"], r["backend"]): r
        for r in runtime_report[0]["results"]
        if r["section"] == section
    }
    cases = RUNTIME_CASES[section]
    assert set(results) == {(name, b) for name in cases for b in ("asyncio", "trio")}
    for (name, backend), result in results.items():
        peers = cases[name]
        if peers and (backend == "trio" or not _installed(peers)):
            assert result["skipped"], (name, backend)
            assert result["sample_ns"] == []
            continue
        assert result["skipped"] is None, (name, backend)
        assert result["ops"] == SAMPLE_OPS[section]
        assert len(result["sample_ns"]) == REPETITIONS
        assert all(sample > 0 for sample in result["sample_ns"])
        if name in RUNTIME_BASELINES:
            assert result["ratio"] is None
        else:
            assert result["baseline"] in RUNTIME_BASELINES
            assert result["ratio"] > 0


def test_overhead_figures_set_our_call_against_the_goals_and_the_peers(
    runtime_report: tuple[dict[str, Any], str],
) -> None:
    figures = _figures(runtime_report[0], "overhead")
    results = {
        (r["name"], r["backend"]): r
        for r in runtime_report[0]["results"]
        if r["section"] == "overhead"
    }
    for backend in ("asyncio", "trio"):
        ours = results[("connector call", backend)]
        added = figures[("connector call, added", backend)]
        assert added == pytest.approx(ours["overhead"] / 1e3)
        assert ("connector call + timeout, added", backend) in figures
    composed = ("tenacity + aiobreaker + aiolimiter / connector call", "asyncio")
    ours_added = results[("connector call", "asyncio")]["overhead"]
    assert (composed in figures) == (_installed(COMPOSED) and ours_added > 0)
    assert (composed[0], "trio") not in figures


def test_throughput_figures_are_rates_of_the_timed_cases(
    runtime_report: tuple[dict[str, Any], str],
) -> None:
    figures = _figures(runtime_report[0], "throughput")
    for result in runtime_report[0]["results"]:
        if result["section"] != "throughput" or result["skipped"]:
            continue
        rate = figures[(f"{result['name']}: rate", result["backend"])]
        assert rate == round(1e9 / result["median"])
    for backend in ("asyncio", "trio"):
        share = figures[("connector calls / bare calls", backend)]
        assert share > 0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_memory_counts_every_idle_actor_and_passivates_them_all(
    runtime_report: tuple[dict[str, Any], str], backend: str
) -> None:
    figures = _figures(runtime_report[0], "memory")
    assert figures[("idle actors", backend)] == RUNTIME_OPS
    assert figures[("cells after passivation", backend)] == 0
    # Each tenant made one successful call: a fresh cell's state, so none is stored.
    assert figures[("states kept in the store", backend)] == 0
    assert figures[("traced added per actor", backend)] > 0
    assert any(name.startswith("traced idle: ") for name, b in figures if b == backend)
    if Path("/proc/self/statm").exists():
        assert figures[("RSS with idle actors", backend)] > 0


def test_runtime_sections_print_a_table_each(runtime_report: tuple[dict[str, Any], str]) -> None:
    lines = runtime_report[1].splitlines()
    assert (", load " in lines[0]) == hasattr(os, "getloadavg")
    assert f"== overhead == ({RUNTIME_OPS // 10} ops per sample)" in lines
    assert "== throughput ==" in lines
    assert "connector call + timeout, added" in runtime_report[1]
    # A section of figures only: one table, value then unit.
    memory = lines[lines.index("== memory ==") + 1 :]
    assert memory[0].split() == ["figure", "backend", "value", "unit", "note"]
    assert memory[2].split()[:5] == ["idle", "actors", "asyncio", str(RUNTIME_OPS), "cells"]
    assert any(
        line.split()[:5] == ["cells", "after", "passivation", "trio", "0"] for line in memory
    )


# -- the failure section: figures only, in virtual time -----------------------------------

FAILURE_OPS = 200  # the floor of 10 logical calls a second
FAILURE_VARIANTS = {
    "connector": True,  # name -> has a breaker
    "connector, failure-rate breaker": True,
    "connector, no budget": True,
    "connector, no breaker": False,
    "connector, retries only": False,
    "tenacity + aiobreaker": True,
}
FAILURE_PHASES = ("healthy", "50 % failing", "100 % failing", "recovered")
Figures = dict[tuple[str, str | None], float]


def _failure_figures(path: Path) -> tuple[Figures, str]:
    done = _run("--quick", "--only", "failure", "--ops", str(FAILURE_OPS), "--json", str(path))
    assert done.returncode == 0, done.stderr
    return _figures(json.loads(path.read_text()), "failure"), done.stdout


@pytest.fixture(scope="module")
def failure_figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Figures, str]:
    return _failure_figures(tmp_path_factory.mktemp("bench") / "failure.json")


def test_failure_reports_every_figure_of_every_variant(
    failure_figures: tuple[Figures, str],
) -> None:
    figures, table = failure_figures
    assert "== failure ==" in table
    expected = {("logical calls", None)}
    for variant in FAILURE_VARIANTS:
        if variant == "tenacity + aiobreaker" and not _installed(("tenacity", "aiobreaker")):
            continue
        names = ["amplification", "recovery, first success", "recovery, 95 % in 1 s"]
        for phase in FAILURE_PHASES:
            names += [f"amplification, {phase}", f"success, {phase}"]
        expected |= {(f"{variant}: {name}", "asyncio") for name in names}
    assert set(figures) == expected
    assert figures[("logical calls", None)] > 0


def test_failure_amplification_is_bounded_by_the_attempts_and_the_policies(
    failure_figures: tuple[Figures, str],
) -> None:
    figures = {name: value for (name, _backend), value in failure_figures[0].items()}
    for variant, has_breaker in FAILURE_VARIANTS.items():
        if f"{variant}: amplification" not in figures:
            continue
        # Healthy: every logical call succeeds at its first attempt.
        assert figures[f"{variant}: amplification, healthy"] == 1
        assert figures[f"{variant}: success, healthy"] == 100
        for phase in FAILURE_PHASES:
            amplification = figures[f"{variant}: amplification, {phase}"]
            # A breaker rejects calls unsent; without one every call is sent at least once.
            assert (0 if has_breaker else 1) <= amplification <= 3, (variant, phase)
            assert 0 <= figures[f"{variant}: success, {phase}"] <= 100
        for name in ("first success", "95 % in 1 s"):
            assert 0 <= figures[f"{variant}: recovery, {name}"] <= 30
    outage = "amplification, 100 % failing"
    # The budget caps retries below the two each failed call would make; a breaker sends
    # almost none.
    assert (
        figures[f"connector, no breaker: {outage}"] < figures[f"connector, retries only: {outage}"]
    )
    assert figures[f"connector: {outage}"] < figures[f"connector, no breaker: {outage}"]


def test_failure_figures_repeat_exactly(
    failure_figures: tuple[Figures, str], tmp_path: Path
) -> None:
    assert _failure_figures(tmp_path / "again.json")[0] == failure_figures[0]


def test_the_other_sections_run_and_report_figures(tmp_path: Path) -> None:
    """http, redis, sim and logging at tiny sizes: each runs and reports (no timings judged)."""
    path = tmp_path / "rest.json"
    sections = ("http", "redis", "sim", "logging")
    args = [arg for name in sections for arg in ("--only", name)]
    done = _run("--quick", "--ops", "200", "--repetitions", "1", *args, "--json", str(path))
    assert done.returncode == 0, done.stderr
    report = json.loads(path.read_text())
    reported = {figure["section"] for figure in report["figures"]}
    reported |= {result["section"] for result in report["results"]}
    assert reported == set(sections)
    for section in sections:
        assert f"== {section} ==" in done.stdout
    rates = [f["value"] for f in report["figures"] if f["unit"] in ("calls/s", "records/s")]
    assert rates
    assert all(rate > 0 for rate in rates)


def test_connector_bench_runs_the_harness_from_anywhere(tmp_path: Path) -> None:
    """`connector bench` finds the harness beside the (editable) package, whatever the cwd."""
    done = subprocess.run(
        [sys.executable, "-m", "connector._cli", "bench", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout
