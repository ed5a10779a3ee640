"""``connector health``: the verdict rules, and the real command in a subprocess.

The command reads the integration log the config file names (records are
written into a SQLite file first), a shared breaker in Redis when the file
names one, and probes providers served by `FakeJsonApi` over loopback. Its
exit status is what a container probe sees: 0 when no service is unhealthy,
1 when one is, 2 for a bad config file, with one line on stderr.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _servers import redis_prefix
from hypothesis import given
from hypothesis import strategies as st

from connector import ConnectionFailed, Endpoint, Runtime
from connector._cli_health import HEALTHY_RATE, ProbeResult, service_status
from connector._clock import system_wall_clock
from connector._logrecord import IntegrationLog, LogStatus, UlidGenerator
from connector._logstore_sqlite import SqliteLogStore
from connector.testing import FakeJsonApi, Reply, serve_asgi

OK = ProbeResult(ok=True, status=200, duration_ms=1.0)
FAILED = ProbeResult(ok=False, status=503, error="HTTP 503", duration_ms=1.0)
BREAKERS = ["closed", "open", "half_open", "forced_open", "disabled", "none", "unknown"]


# -- the verdict ------------------------------------------------------------------


@given(
    successes=st.integers(0, 10_000),
    failures=st.integers(0, 10_000),
    breaker=st.sampled_from(BREAKERS),
    probe=st.sampled_from([None, OK, FAILED]),
)
def test_the_verdict_follows_the_documented_rules(
    successes: int, failures: int, breaker: str, probe: ProbeResult | None
) -> None:
    status = service_status(successes, failures, breaker, probe)
    refused = breaker in ("open", "forced_open") or probe is FAILED
    assert (status == "unhealthy") == refused
    if refused:
        return
    total = successes + failures
    assert (status == "idle") == (total == 0)
    if total:
        rate = successes / total * 100
        healthy = rate >= HEALTHY_RATE and breaker != "half_open"
        assert status == ("healthy" if healthy else "degraded")


@pytest.mark.parametrize(
    ("successes", "failures", "breaker", "status"),
    [
        (19, 1, "closed", "healthy"),  # exactly 95 %: inclusive
        (9499, 501, "closed", "degraded"),  # 94.99 %, which rounds to 95.0
        (18, 2, "closed", "degraded"),
        (0, 0, "closed", "idle"),  # no traffic is not a symptom
        (0, 0, "unknown", "idle"),
        (20, 0, "half_open", "degraded"),
        (20, 0, "open", "unhealthy"),
        (0, 0, "forced_open", "unhealthy"),
    ],
)
def test_the_verdict_at_its_edges(successes: int, failures: int, breaker: str, status: str) -> None:
    assert service_status(successes, failures, breaker, None) == status


def test_a_failed_probe_makes_even_an_idle_service_unhealthy() -> None:
    assert service_status(0, 0, "closed", FAILED) == "unhealthy"
    assert service_status(0, 0, "closed", OK) == "idle"


# -- the command ------------------------------------------------------------------


def connector(
    *arguments: str, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command, as a container probe runs it."""
    (result,) = connectors(list(arguments), environ=environ)
    return result


def connectors(
    *commands: list[str], environ: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Several independent runs of the command at once (each starts a Python: 0.5 s)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONNECTOR_")}
    env.update(environ or {})
    running = [
        (
            command,
            subprocess.Popen(
                [sys.executable, "-m", "connector._cli", *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            ),
        )
        for command in commands
    ]
    results = []
    for command, process in running:
        stdout, stderr = process.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(command, process.returncode, stdout, stderr))
    return results


def report(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    document = json.loads(result.stdout)
    return {service["service"]: service for service in document["services"]}


def write_log(path: Path, records: list[tuple[str, LogStatus, float]]) -> None:
    """(service, status, seconds ago) records, in that order, into a SQLite log store."""
    ids = UlidGenerator(random.Random(7))
    now = system_wall_clock()
    batch = [
        IntegrationLog.create(
            service_name=service,
            endpoint="POST /v1/charges",
            method="POST",
            status=status,
            now=now - ago,
            ids=ids,
            duration_ms=12.0 if status is not LogStatus.CIRCUIT_OPEN else None,
        )
        for service, status, ago in records
    ]

    async def write() -> None:
        async with SqliteLogStore(path) as store:
            await store.write_batch(batch)

    anyio.run(write)


def config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SUCCESS, FAILURE, OPEN = LogStatus.SUCCESS, LogStatus.FAILED, LogStatus.CIRCUIT_OPEN


def test_each_service_gets_its_verdict_and_an_open_breaker_fails_the_probe(tmp_path: Path) -> None:
    log = tmp_path / "log.db"
    records = [("steady", SUCCESS, 60.0)] * 19 + [("steady", FAILURE, 50.0)]
    records += [("steady", FAILURE, 7200.0)] * 5  # two hours ago: outside the period
    records += [("flaky", SUCCESS, 60.0)] * 18 + [("flaky", FAILURE, 50.0)] * 2
    records += [("tripped", FAILURE, 40.0)] * 5 + [("tripped", OPEN, 30.0 - n) for n in range(3)]
    records += [("recovered", OPEN, 40.0)] + [("recovered", SUCCESS, 30.0)] * 20  # 95.2 %
    write_log(log, records)
    services = "".join(
        f'[services.{name}]\nadapter = "http"\nbase_url = "http://127.0.0.1:9"\n'
        for name in ("steady", "flaky", "quiet", "tripped", "recovered")
    )
    path = config(tmp_path / "connector.toml", f'[stores]\nlog = "sqlite:///{log}"\n{services}')

    everything, some, longer, table = connectors(
        ["health", "--config", str(path), "--json"],
        ["health", "--config", str(path), "--json", "--service", "steady", "--service", "flaky"],
        ["health", "--config", str(path), "--json", "--since", "3h", "--service", "steady"],
        ["health", "--config", str(path)],
    )
    assert everything.returncode == 1, everything.stderr
    assert everything.stderr == ""
    verdicts = report(everything)
    assert {name: v["status"] for name, v in verdicts.items()} == {
        "steady": "healthy",
        "flaky": "degraded",
        "quiet": "idle",
        "tripped": "unhealthy",
        "recovered": "healthy",
    }
    assert (verdicts["steady"]["successes"], verdicts["steady"]["failures"]) == (19, 1)
    assert verdicts["steady"]["success_rate"] == 95.0
    assert verdicts["quiet"]["success_rate"] is None
    assert (verdicts["tripped"]["breaker"], verdicts["tripped"]["breaker_source"]) == (
        "open",
        "log",
    )
    assert verdicts["recovered"]["breaker"] == "closed"
    assert verdicts["quiet"]["breaker"] == "unknown"
    assert json.loads(everything.stdout)["healthy"] is False

    assert some.returncode == 0
    assert list(report(some)) == ["steady", "flaky"]

    assert report(longer)["steady"]["status"] == "degraded"  # 19 of 25

    assert table.returncode == 1
    for name in ("steady", "flaky", "quiet", "tripped", "unhealthy", "degraded", "idle"):
        assert name in table.stdout


def test_the_store_option_replaces_the_files_log_store(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    write_log(other, [("api", SUCCESS, 10.0)])
    path = config(tmp_path / "c.toml", '[services.api]\nadapter = "http"\nbase_url = "http://a"\n')
    without = connector("health", "--config", str(path))
    assert without.returncode == 2
    assert "names no log store (stores.log): pass --store" in without.stderr
    result = connector("health", "--config", str(path), "--store", f"sqlite:///{other}", "--json")
    assert result.returncode == 0, result.stderr
    assert report(result)["api"]["successes"] == 1


BAD_CONFIGS = [
    (
        '[services.api]\nadapter = "http"\nbase_url = "http://a"\ncolour = "red"',
        "services.api.colour",
    ),
    (
        '[services.api]\nadapter = "http"\nbase_url = "http://a"\n'
        '[services.api.policy.retry]\nattempts = "three"',
        "services.api.policy.retry.attempts",
    ),
    (
        '[services.api]\nadapter = "stripe"\napi_key = "sk_live_abc123secret"',
        "services.api.api_key",
    ),
    ('[services.api]\nadapter = "stripe"', "services.api.credentials"),
]


def test_a_bad_config_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    paths = [
        config(tmp_path / f"bad-{n}.toml", '[stores]\nlog = "memory://"\n' + text)
        for n, (text, _) in enumerate(BAD_CONFIGS)
    ]
    results = connectors(*(["health", "--config", str(path)] for path in paths))
    for path, (_, key), result in zip(paths, BAD_CONFIGS, results, strict=True):
        assert result.returncode == 2
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"connector: error: {path}: {key}: ")
        assert "sk_live_abc123secret" not in result.stderr
        assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback_and_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.toml")
    plain, debug = connectors(
        ["health", "--config", missing], ["--debug", "health", "--config", missing]
    )
    assert plain.returncode == 2
    assert (
        plain.stderr == f"connector: error: {missing}: cannot be read: No such file or directory\n"
    )
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr
    assert "ConfigFileError" in debug.stderr


def test_help_shows_examples() -> None:
    result, top = connectors(["health", "--help"], ["--help"])
    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert "connector health --config" in result.stdout
    assert "connector health" in top.stdout


# -- probes -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[FakeJsonApi, str]]:
    api = FakeJsonApi()
    with serve_asgi(api.app) as url:
        yield api, url


def probed(tmp_path: Path, url: str, health: str, credentials: str = "") -> Path:
    return config(
        tmp_path / "connector.toml",
        f'[stores]\nlog = "sqlite:///{tmp_path}/log.db"\n'
        f'[services.api]\nadapter = "http"\nbase_url = "{url}"\n{credentials}\n'
        f"[services.api.health]\n{health}\n",
    )


def test_a_probe_carries_the_services_credentials_and_passes_on_the_expected_status(
    tmp_path: Path, provider: tuple[FakeJsonApi, str]
) -> None:
    api, url = provider
    api.reset()
    api.script("/healthz", Reply(status=204))
    credentials = 'credentials = { method = "bearer_token", env = { token = "API_TOKEN" } }'
    path = probed(tmp_path, url, 'path = "/healthz"\nexpect_status = 204', credentials)
    result = connector("health", "--config", str(path), "--json", environ={"API_TOKEN": "tok-1"})
    assert result.returncode == 0, result.stderr
    verdict = report(result)["api"]
    assert verdict["status"] == "idle"
    assert verdict["probe"]["ok"] is True
    assert verdict["probe"]["status"] == 204
    (request,) = api.requests_to("/healthz")
    assert request.method == "GET"
    assert request.header("authorization") == "Bearer tok-1"

    missing = connector("health", "--config", str(path))  # API_TOKEN is not set
    assert missing.returncode == 2
    assert missing.stderr == (
        f"connector: error: {path}: services.api.credentials.env.token: "
        "environment variable API_TOKEN is not set\n"
    )


def test_a_failing_probe_is_unhealthy_and_is_tried_once(
    tmp_path: Path, provider: tuple[FakeJsonApi, str]
) -> None:
    api, url = provider
    api.reset()
    api.script("/up", Reply(status=503), Reply(status=200))
    path = probed(tmp_path, url, 'path = "/up"\ntimeout = 2')
    result = connector("health", "--config", str(path), "--json")
    assert result.returncode == 1
    probe = report(result)["api"]["probe"]
    assert probe["ok"] is False
    assert probe["error"] == "HTTP 503"
    assert len(api.requests_to("/up")) == 1  # no retry: a probe asks once

    skipped = connector("health", "--config", str(path), "--json", "--no-probe")
    assert skipped.returncode == 0
    assert report(skipped)["api"]["probe"] is None
    assert len(api.requests_to("/up")) == 1


def test_a_probe_that_gets_a_refusal_reports_its_status(
    tmp_path: Path, provider: tuple[FakeJsonApi, str]
) -> None:
    api, url = provider
    api.reset()
    api.script("/ping", Reply.json({"error": "no"}, status=404))
    result = connector("health", "--config", str(probed(tmp_path, url, 'path = "/ping"')), "--json")
    assert result.returncode == 1
    probe = report(result)["api"]["probe"]
    assert (probe["ok"], probe["status"]) == (False, 404)


# -- the shared breaker -----------------------------------------------------------


def test_the_breaker_is_read_from_the_shared_store(
    tmp_path: Path, provider: tuple[FakeJsonApi, str]
) -> None:
    api, url = provider
    api.reset()
    with redis_prefix() as (redis_url, prefix):
        path = config(
            tmp_path / "connector.toml",
            f"""
[stores]
log = "sqlite:///{tmp_path}/log.db"
shared_state = "{redis_url}"
redis_prefix = "{prefix}"

[services.pay]
adapter = "http"
base_url = "{url}"

[services.pay.policy]
breaker = {{ failure_threshold = 2, open_duration = 600 }}
retry = {{ attempts = 1 }}
""",
        )
        before = connector("health", "--config", str(path), "--json")
        assert before.returncode == 0, before.stderr
        assert (report(before)["pay"]["breaker"], report(before)["pay"]["breaker_source"]) == (
            "closed",
            "shared",
        )
        api.script("/charge", Reply(status=500), Reply(status=500))

        async def trip() -> None:
            async with Runtime.from_config(path) as app:
                for _ in range(2):
                    with pytest.raises(ConnectionFailed):
                        await app.services["pay"].request(Endpoint.create("/charge"))

        anyio.run(trip)
        after = connector("health", "--config", str(path), "--json")
    assert after.returncode == 1
    verdict = report(after)["pay"]
    assert (verdict["breaker"], verdict["breaker_source"]) == ("open", "shared")
    assert verdict["status"] == "unhealthy"
    assert (verdict["successes"], verdict["failures"]) == (0, 2)
