"""``connector demo``: the real console script, its integration log, its dashboard, Ctrl-C.

The demo runs as a subprocess, as a user runs it (`connector` next to this
interpreter). One 6-second run, shared by the module, is checked through its
SQLite log: every status the scenario provokes is there, each record says
what the scenario did, no fake key leaked, and ``connector logs`` and
``connector metrics`` read it back as JSON. The live dashboard is checked
under a pseudo-terminal (pexpect); SIGINT is sent once the first progress line
shows traffic flowing. The dashboard's counting and drawing are also checked
in-process, against a real runtime, where they are fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from connector import (
    Breaker,
    CircuitBreakerOpen,
    ConfigError,
    ConnectionFailed,
    RateLimit,
    Retry,
    Runtime,
)
from connector._cli import main
from connector._dashboard import Dashboard
from connector._demo import (
    DEMO_SECRETS,
    SERVICES,
    TENANTS,
    DemoResult,
    DemoSettings,
    serve_vendors,
)
from connector._events import AttemptFinished, CallRejected, Event
from connector._logrecord import LogFilters, LogStatus
from connector._logstore_memory import MemoryLogStore

# The console script installed next to this interpreter, as a user runs it.
_SCRIPT = Path(sys.executable).with_name("connector")
CONNECTOR = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "connector._cli"]
ENDPOINTS = {
    "sendgrid": "POST /v3/mail/send",
    "twilio": "POST /2010-04-01/Accounts/{AccountSid}/Messages.json",
    "stripe": "POST /v1/payment_intents",
}
LOGGED = re.compile(r"(\d+) attempts and rejections logged")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def connector(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CONNECTOR, *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )


class Row(NamedTuple):
    id: str
    tenant_id: str | None
    service_name: str
    endpoint: str
    method: str
    status: str
    http_status_code: int | None
    duration_ms: float | None
    error_message: str | None
    attempt_number: int
    created_at: str
    text: str  # every column, as stored, for the secrets check


def rows(path: Path) -> list[Row]:
    with sqlite3.connect(path) as db:
        found = db.execute(
            "SELECT id, tenant_id, service_name, endpoint, method, status, http_status_code, "
            "duration_ms, error_message, attempt_number, created_at, "
            "id || COALESCE(request_data, '') || COALESCE(response_data, '') "
            "|| COALESCE(error_message, '') FROM integration_logs"
        ).fetchall()
    return [Row(*row) for row in found]


def seconds(row: Row) -> float:
    return datetime.fromisoformat(row.created_at).timestamp()


class Run(NamedTuple):
    result: subprocess.CompletedProcess[str]
    log: Path
    rows: list[Row]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    log = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    result = connector("demo", "--duration", "6", "--seed", "3", "--log", str(log))
    return Run(result, log, rows(log) if log.exists() else [])


# -- one run, through its log ---------------------------------------------------------


def test_the_demo_exits_0_and_logs_exactly_the_attempts_it_reports(run: Run) -> None:
    assert run.result.returncode == 0, run.result.stderr
    assert "Traceback" not in run.result.stdout + run.result.stderr
    match = LOGGED.search(run.result.stdout)
    assert match is not None, run.result.stdout
    assert int(match.group(1)) == len(run.rows) > 0


def test_the_log_holds_every_status_the_scenario_provokes(run: Run) -> None:
    assert {row.status for row in run.rows} == {status.value for status in LogStatus}
    by_service = {(row.service_name, row.status) for row in run.rows}
    # SendGrid's outage: 503s, then its breaker refuses calls.
    assert ("sendgrid", "failed") in by_service
    assert ("sendgrid", "circuit_open") in by_service
    # Stripe's 429s; Twilio's stalled answers and its overflowing mailbox.
    assert ("stripe", "rate_limited") in by_service
    assert ("twilio", "timeout") in by_service
    assert ("twilio", "rejected") in by_service


def test_each_record_says_what_happened_as_the_scenario_made_it(run: Run) -> None:
    for row in run.rows:
        assert row.service_name in SERVICES
        assert row.endpoint == ENDPOINTS[row.service_name]
        assert row.tenant_id in TENANTS
        sent = row.method == "POST"
        if not sent:  # a rejection: nothing reached the provider
            assert row.method == "CALL"
            assert row.status in {"rate_limited", "circuit_open", "rejected"}
            assert row.http_status_code is None
            assert row.duration_ms is None
            assert row.error_message is not None
            assert row.error_message.startswith("not sent: ")
            continue
        assert row.duration_ms is not None
        assert row.duration_ms >= 0
        if row.status == "success":
            assert row.http_status_code is not None
            assert 200 <= row.http_status_code < 300
        elif row.status == "rate_limited":
            assert (row.service_name, row.http_status_code) == ("stripe", 429)
        elif row.status == "timeout":
            assert (row.service_name, row.http_status_code) == ("twilio", None)
            assert row.duration_ms >= 1000  # Twilio's 1 s timeout ran out
        else:
            assert row.status == "failed"
            expected = {"sendgrid": {503}, "twilio": {400}, "stripe": {402}}[row.service_name]
            assert row.http_status_code in expected  # the outage, unsubscribed, declined
    assert max(row.attempt_number for row in run.rows if row.service_name == "stripe") >= 2


def test_no_fake_key_reaches_the_log(run: Run) -> None:
    assert run.rows
    for row in run.rows:
        for secret in DEMO_SECRETS:
            assert secret not in row.text


def test_the_breaker_opens_only_after_three_503s(run: Run) -> None:
    sendgrid = sorted(
        (row for row in run.rows if row.service_name == "sendgrid"), key=lambda row: row.id
    )
    first_refusal = next(i for i, row in enumerate(sendgrid) if row.status == "circuit_open")
    failures = [row for row in sendgrid[:first_refusal] if row.http_status_code == 503]
    assert len(failures) >= 3


def test_nothing_goes_to_stripe_while_its_retry_after_runs(run: Run) -> None:
    attempts = [row for row in run.rows if row.service_name == "stripe" and row.method == "POST"]
    throttled = [seconds(row) for row in attempts if row.http_status_code == 429]
    assert throttled
    for answered in throttled:
        for row in attempts:
            assert row.duration_ms is not None
            started = seconds(row) - row.duration_ms / 1000
            assert not answered < started < answered + 0.999, row


def test_connector_logs_reads_the_demo_log_as_json(run: Run) -> None:
    store = f"sqlite:///{run.log}"
    listed = connector("logs", "--store", store, "--json", "--limit", "500")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert len(records) == min(len(run.rows), 500)
    assert {record["id"] for record in records} <= {row.id for row in run.rows}
    stamps = [(record["created_at"], record["id"]) for record in records]
    assert stamps == sorted(stamps, reverse=True)  # newest first

    refused = connector(
        "logs", "--store", store, "--service", "sendgrid", "--status", "circuit_open", "--json"
    )
    assert refused.returncode == 0, refused.stderr
    expected = [r for r in run.rows if (r.service_name, r.status) == ("sendgrid", "circuit_open")]
    found = json.loads(refused.stdout)
    assert len(found) == len(expected) > 0
    assert all(record["error_message"].startswith("not sent: circuit open") for record in found)


def test_connector_metrics_reads_the_demo_log_as_json(run: Run) -> None:
    for service in SERVICES:
        result = connector("metrics", service, "--store", f"sqlite:///{run.log}", "--json")
        assert result.returncode == 0, result.stderr
        metrics: dict[str, Any] = json.loads(result.stdout)
        statuses = Counter(row.status for row in run.rows if row.service_name == service)
        assert metrics["service_name"] == service
        assert metrics["success_count"] == statuses["success"]
        assert metrics["failure_count"] == statuses.total() - statuses["success"]
        assert metrics["success_rate"] == round(statuses["success"] * 100 / statuses.total(), 2)
        assert 0 < metrics["p50_duration_ms"] <= metrics["p95_duration_ms"]
        assert metrics["p95_duration_ms"] <= metrics["p99_duration_ms"]


# -- a terminal, and Ctrl-C ---------------------------------------------------------------


def _pexpect() -> Any:
    if sys.platform == "win32":
        pytest.skip("pexpect drives a pseudo-terminal, which Windows does not have")
    try:
        import pexpect
    except ImportError:
        if os.environ.get("CONNECTOR_REQUIRE_SERVICES") == "1":
            pytest.fail("pexpect is not installed (the 'test' extra)")
        pytest.skip("pexpect is not installed (the 'test' extra)")
    return pexpect


def test_the_dashboard_renders_live_under_a_terminal(tmp_path: Path) -> None:
    pexpect = _pexpect()
    log = tmp_path / "pty.sqlite3"
    child = pexpect.spawn(
        CONNECTOR[0],
        [*CONNECTOR[1:], "demo", "--duration", "3", "--seed", "3", "--log", str(log)],
        dimensions=(45, 100),
        encoding="utf-8",
        timeout=60,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    child.expect(pexpect.EOF)
    output: str = child.before
    child.close()
    assert child.exitstatus == 0, output
    assert "Traceback" not in output
    # rich's live display: the cursor hidden, the view redrawn in place, then shown again.
    assert "\x1b[?25l" in output
    assert "\x1b[1A" in output
    assert "\x1b[?25h" in output
    text = ANSI.sub("", output)
    assert re.search(r"sendgrid\s+twilio\s+stripe", text)
    assert re.search(r"breaker\s+(closed|open|half_open)\s+(closed|open|half_open)", text)
    assert re.search(r"limiter tokens\s+\d+\.\d / 20\s+\d+\.\d / 5\s+\d+\.\d / 8", text)
    assert "not sent: circuit open" in text
    assert "recent events" in text
    assert "SendGrid goes down" in text
    match = LOGGED.search(text)
    assert match is not None
    assert int(match.group(1)) == len(rows(log))


@pytest.fixture
def interrupted(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    log = tmp_path / "interrupted.sqlite3"
    arguments = ["demo", "--duration", "60", "--seed", "3", "--log", str(log), "--no-dashboard"]
    process = subprocess.Popen(
        [*CONNECTOR, *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigint_stops_the_demo_cleanly_with_every_attempt_logged(
    interrupted: tuple[subprocess.Popen[str], Path],
) -> None:
    process, log = interrupted
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # the first progress line comes 2 s into the run
        seen.append(line)
        if " of 60 s  sendgrid " in line:
            break
    else:
        pytest.fail("the demo ended before its first progress line:\n" + "".join(seen))
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    out = "".join(seen) + out
    assert process.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "SIGINT: traffic stopped, calls in flight finish" in out
    match = LOGGED.search(out)
    assert match is not None, out
    logged = rows(log)
    assert int(match.group(1)) == len(logged) > 0
    # Calls in flight were let finish, not cut short by the shutdown.
    assert not [row for row in logged if "shutting down" in (row.error_message or "")]


# -- the command line ---------------------------------------------------------------------


def test_help_names_the_demo_and_documents_every_option() -> None:
    top = connector("--help")
    assert top.returncode == 0
    assert re.search(r"^\s+demo\s+live traffic", top.stdout, re.MULTILINE)
    demo = connector("demo", "--help")
    assert demo.returncode == 0
    for option in ("--duration SECONDS", "--seed SEED", "--log PATH", "--no-dashboard"):
        assert option in demo.stdout
    assert "examples:" in demo.stdout
    assert "130" in demo.stdout  # the exit status after Ctrl-C is documented


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (["--duration", "1"], "duration"),
        (["--duration", "nan"], "duration"),
        (["--log", "/no/such/dir/demo.sqlite3"], "log"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    arguments: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *arguments]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"connector: error: invalid {field}=")


def test_settings_refuse_what_the_timeline_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duration"):
        DemoSettings(duration=2.9, log=str(tmp_path / "x.sqlite3"))
    with pytest.raises(ConfigError, match="seed"):
        DemoSettings(seed=True, log=str(tmp_path / "x.sqlite3"))  # type: ignore[arg-type]
    settings = DemoSettings(duration=20, log=str(tmp_path / "x.sqlite3"))
    start, end = settings.outage
    assert 0 < start < end < settings.duration
    assert end - start > settings.open_duration  # long enough for the breaker to reopen


def test_without_the_testing_extra_the_demo_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "uvicorn" else real(name)
    )
    with (
        pytest.raises(ConfigError, match=r"uvicorn.*nexus-connector\[testing\]"),
        serve_vendors(1),
    ):
        pytest.fail("no server may start without the extra")


def test_the_exit_status_says_how_the_run_ended() -> None:
    assert DemoResult(records=5, logged=5, signal=None).exit_code == 0
    assert DemoResult(records=5, logged=4, signal=None).exit_code == 1
    assert DemoResult(records=5, logged=5, signal=signal.SIGINT).exit_code == 130
    assert DemoResult(records=5, logged=5, signal=signal.SIGTERM).exit_code == 143


# -- the dashboard, in-process --------------------------------------------------------------

_OUTCOMES = st.sampled_from(["success", "caller_error", "failure", "timeout", "crash"])
_STATUSES = st.sampled_from([None, 200, 400, 429, 503])
_REASONS = st.sampled_from(
    ["circuit_open", "rate_limited", "overloaded", "deadline", "budget_exhausted", "shutting_down"]
)
_EVENTS = st.lists(
    st.one_of(
        st.builds(
            AttemptFinished,
            service=st.sampled_from(["a", "b"]),
            key=st.none(),
            at=st.just(0.0),
            attempt=st.integers(1, 3),
            outcome=_OUTCOMES,
            duration=st.floats(0, 1),
            status=_STATUSES,
        ),
        st.builds(
            CallRejected,
            service=st.sampled_from(["a", "b"]),
            key=st.none(),
            at=st.just(0.0),
            reason=_REASONS,
        ),
    ),
    max_size=30,
)


@given(events=_EVENTS)
def test_the_dashboard_counts_as_the_log_writer_records(events: list[Event]) -> None:
    """Whatever happens, the tallies split records as the log's statuses do."""

    async def play() -> tuple[Dashboard, Counter[tuple[str, LogStatus]]]:
        store = MemoryLogStore()
        async with Runtime(log_store=store) as rt:
            with Dashboard(rt, ["a", "b"], title="t") as board:
                for event in events:
                    rt.events.publish(event)
        logged = await store.query(LogFilters(), limit=500)
        return board, Counter((record.service_name, record.status) for record in logged)

    board, logged = anyio.run(play)
    assert board.records == logged.total() == len(events)
    for service in ("a", "b"):
        tally = board.tally(service)
        rejected = tally.rejected
        assert tally.successes == logged[service, LogStatus.SUCCESS]
        assert tally.failed == logged[service, LogStatus.FAILED]
        assert tally.timeouts == logged[service, LogStatus.TIMEOUT]
        assert (
            tally.rate_limited + rejected["rate_limited"] == logged[service, LogStatus.RATE_LIMITED]
        )
        assert rejected["circuit_open"] == logged[service, LogStatus.CIRCUIT_OPEN]
        others = rejected.total() - rejected["rate_limited"] - rejected["circuit_open"]
        assert others == logged[service, LogStatus.REJECTED]


@pytest.mark.anyio
async def test_the_dashboard_shows_each_service_s_live_state() -> None:
    async def fail() -> None:
        raise ConnectionError("refused")

    async with Runtime() as rt:
        svc = rt.register(
            "svc",
            breaker=Breaker(failure_threshold=2, open_duration=60),
            rate_limit=RateLimit.per_second(10),
            retry=Retry.none(),
            max_concurrency=3,
            mailbox=7,
            failures=(ConnectionError,),
        )
        with Dashboard(rt, ["svc", "idle"], title="watch", duration=30) as board:
            board.note("the provider goes away")
            for _ in range(2):
                with pytest.raises(ConnectionFailed):
                    await svc.call(fail)
            with pytest.raises(CircuitBreakerOpen):
                await svc.call(fail)
            console = Console(record=True, width=100, force_terminal=False)
            console.print(board.render())
            line = board.status_line()
    text = console.export_text()
    assert re.search(r"breaker\s+open\s+closed", text)  # the unused service: a fresh breaker
    assert re.search(r"limiter tokens\s+8\.\d / 10\s+-", text)
    assert re.search(r"in flight\s+0 / 3", text)
    assert re.search(r"mailbox\s+0 / 7", text)
    assert re.search(r"failed\s+2\s+0", text)
    assert re.search(r"not sent: circuit open\s+1\s+0", text)
    assert "the provider goes away" in text
    assert "svc: breaker closed -> open" in text
    assert "svc open ok 0 failed 2 timeout 0 429 0 not sent 1" in line
