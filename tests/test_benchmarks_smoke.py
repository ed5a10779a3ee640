"""The benchmark harness runs end to end and reports every case; no timing thresholds."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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
