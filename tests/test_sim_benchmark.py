"""The benchmark section "sim" runs every program it names and reports their figures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_sim_section_reports_each_program_on_each_backend(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    args = ["--only", "sim", "--backend", "both", "--ops", "300", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())["figures"]
    by_key = {(figure["name"], figure["backend"]): figure for figure in figures}
    erlang = by_key[("Erlang C: mean wait", None)]["value"]
    assert 0.016 < erlang < 0.017
    for backend in ("asyncio", "trio"):
        for program in ("bare virtual loop", "connector.sim"):
            assert by_key[(f"{program}: rate", backend)]["value"] > 0
            assert by_key[(f"{program}: rate, CPU time", backend)]["unit"] == "calls/s"
            wait = by_key[(f"{program}: mean wait", backend)]["value"]
            assert 0 < wait < 10 * erlang  # 10.8 simulated seconds: only roughly
        note = by_key[("connector.sim: wall time", backend)]["note"]
        assert note.startswith("10.8 s simulated")
    has_simpy = importlib.util.find_spec("simpy") is not None
    assert (("simpy: rate", None) in by_key) is has_simpy
    assert (("connector.sim / simpy", "asyncio") in by_key) is has_simpy
    assert "== sim ==" in done.stdout
