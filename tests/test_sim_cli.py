"""``connector simulate`` (``python -m connector.sim``) and compare mode."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from connector.sim import (
    Comparison,
    PlotUnavailable,
    ScenarioError,
    compare,
    load_scenario,
    parse_scenario,
    plot_report,
    simulate,
)
from connector.sim._cli import _values, main
from connector.sim._compare import estimate

SCENARIOS = Path(__file__).parent.parent / "sim" / "scenarios"

SMALL = """\
name = "small"
duration = 30
seed = 4

[services.api.policy]
breaker = false
retry = { attempts = 2, initial_delay = 0.1 }

[services.api.provider]
latency = { kind = "exponential", mean = 0.05 }
errors = { "503" = 0.2 }

[workloads.w]
service = "api"
rate = 10.0

[variants.no-retries]
"services.api.policy.retry.attempts" = 1

[variants.same]
"services.api.policy.mailbox" = 999
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def test_it_prints_a_table_and_writes_the_reports_exact_bytes(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "report.json"
    assert main([str(small), "--json", str(out), "--no-progress"]) == 0
    assert out.read_bytes() == simulate(load_scenario(small)).to_json()
    printed = capsys.readouterr()
    assert "goodput" in printed.out
    assert "amplification" in printed.out
    assert "simulated 30 s" in printed.err


def test_json_can_go_to_stdout_and_the_seed_can_change(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(small), "--json", "-", "--seed", "9", "--no-progress"]) == 0
    report = msgspec.json.decode(capsys.readouterr().out)
    assert report["provenance"]["seed"] == 9


def test_a_bad_scenario_names_the_field_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("rate = 10.0", "rate = -1"))
    assert main([str(bad), "--no-progress"]) == 2
    error = capsys.readouterr().err
    line = SMALL.splitlines().index("rate = 10.0") + 1
    assert f"bad.toml:{line}: workloads.w.rate: must be > 0 (got -1.0)" in error
    assert "Traceback" not in error


def test_separate_processes_write_the_same_bytes(small: Path) -> None:
    outputs = []
    for hash_seed in ("1", "2"):  # str hashing, set order and dict layout all differ
        done = subprocess.run(
            [sys.executable, "-m", "connector.sim", str(small), "--json", "-", "--no-progress"],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0] == simulate(load_scenario(small)).to_json()


def test_the_module_runs_as_a_program(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n")
    done = subprocess.run(
        [sys.executable, "-m", "connector.sim", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "duration: required field is missing" in done.stderr


def test_plots_need_matplotlib_and_say_so_in_one_line(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name)
    )
    assert main([str(small), "--plot", str(tmp_path), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: --plot needs matplotlib: pip install 'nexus-connector[plot]'"
    assert not list(tmp_path.glob("*.png"))


def test_plotting_without_matplotlib_raises_a_clear_error(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = simulate(load_scenario(small))
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    with pytest.raises(PlotUnavailable, match=r"nexus-connector\[plot\]"):
        plot_report(report, tmp_path)


def test_the_outage_example_plots_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    scenario = SCENARIOS / "sendgrid_outage.toml"
    assert main([str(scenario), "--plot", str(tmp_path), "--no-progress"]) == 0
    png = tmp_path / "sendgrid-outage-sendgrid.png"
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 1000
    assert height >= 800


def test_compare_runs_the_variants_with_common_random_numbers(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "compare.json"
    assert main([str(small), "--compare", "--seeds", "2", "--json", str(out), "--no-progress"]) == 0
    comparison = msgspec.json.decode(out.read_bytes(), type=Comparison)
    assert comparison.variants == ["base", "no-retries", "same"]
    assert comparison.seeds == [4, 5]
    by_name = {point.variant: point.services["api"] for point in comparison.points}
    # A variant that changes nothing the run touches sees the very same draws.
    assert by_name["same"] == by_name["base"]
    assert by_name["no-retries"]["amplification"].mean == pytest.approx(1.0)
    base = by_name["base"]["amplification"]
    assert base.mean is not None
    assert base.mean > 1.1
    assert base.n == 2
    assert "no-retries" in capsys.readouterr().out


def test_a_sweep_runs_each_variant_at_each_value(small: Path) -> None:
    scenario = load_scenario(small)
    comparison = compare(
        scenario,
        variants=["no-retries"],
        parameter="services.api.provider.errors.503",
        values=[0.0, 0.5],
        seeds=1,
    )
    points = [(p.variant, p.value) for p in comparison.points]
    assert points == [("base", 0.0), ("base", 0.5), ("no-retries", 0.0), ("no-retries", 0.5)]
    rates = {
        (p.variant, p.value): p.services["api"]["success_rate"].mean for p in comparison.points
    }
    assert rates[("base", 0.0)] == rates[("no-retries", 0.0)] == 1.0
    assert rates[("no-retries", 0.5)] == pytest.approx(0.5, abs=0.06)
    assert rates[("base", 0.5)] == pytest.approx(0.75, abs=0.06)  # a retry: 1 - 0.5 ** 2


def test_compare_refuses_an_unknown_variant_and_a_bad_sweep_value(small: Path) -> None:
    scenario = load_scenario(small)
    with pytest.raises(ScenarioError, match="nope"):
        compare(scenario, variants=["nope"])
    with pytest.raises(ScenarioError, match=r"errors\.503"):
        compare(scenario, parameter="services.api.provider.errors.503", values=[2.0])


def test_the_sweep_option_reads_ranges_and_lists(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _values("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert _values('1,false,"a",word') == [1, False, "a", "word"]
    with pytest.raises(SystemExit) as exited:
        main([str(small), "--sweep", "no-equals-sign"])
    assert exited.value.code == 2
    assert "--sweep" in capsys.readouterr().err


def test_a_plot_of_a_comparison(small: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    argv = [str(small), "--sweep", "services.api.provider.errors.503=0,0.4", "--no-progress"]
    assert main([*argv, "--plot", str(tmp_path)]) == 0
    assert (tmp_path / "small-compare-api.png").read_bytes().startswith(b"\x89PNG")


def test_estimates_use_students_t() -> None:
    single = estimate([3.0])
    assert (single.mean, single.half_width, single.n) == (3.0, None, 1)
    three = estimate([1.0, 2.0, 3.0])
    assert three.mean == 2.0
    assert three.half_width == pytest.approx(4.303 / math.sqrt(3), abs=1e-6)
    assert estimate([math.nan]).mean is None


def test_a_scenario_without_the_seed_override_keeps_its_own(small: Path) -> None:
    assert simulate(parse_scenario(SMALL)).provenance.seed == 4
