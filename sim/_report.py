"""The simulation report: per service, what was offered, what came back, and how.

Everything here is a msgspec struct, so a report encodes to JSON byte for
byte the same for the same scenario, seed and backend. Times are seconds of
virtual time, rounded to the microsecond; rates are per second of
``duration``.
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

__all__ = [
    "OUTCOMES",
    "REJECTED",
    "REJECT_REASONS",
    "BreakerChange",
    "BreakerSummary",
    "Depth",
    "Incident",
    "LimiterSummary",
    "Outcome",
    "Percentiles",
    "Provenance",
    "ProviderSummary",
    "Report",
    "Retries",
    "Series",
    "ServiceReport",
    "breaker_spans",
    "percentiles",
    "rounded",
]

Outcome = Literal[
    "success",
    "caller_error",
    "failed",
    "crashed",
    "circuit_open",
    "rate_limited",
    "overloaded",
    "deadline",
    "unavailable",
    "shutting_down",
    "unfinished",
]
# The order outcomes are reported in; the second group never reached the provider
# on their last try (rejected by a policy), "unfinished" was cut at the drain limit.
OUTCOMES: tuple[Outcome, ...] = (
    "success",
    "caller_error",
    "failed",
    "crashed",
    "circuit_open",
    "rate_limited",
    "overloaded",
    "deadline",
    "unavailable",
    "shutting_down",
    "unfinished",
)
REJECTED: frozenset[str] = frozenset(OUTCOMES[4:10])
REJECT_REASONS = (
    "circuit_open",
    "rate_limited",
    "overloaded",
    "deadline",
    "budget_exhausted",
    "unavailable",
    "shutting_down",
)


def rounded(value: float) -> float:
    """Seconds to the microsecond (and every other float to six decimals)."""
    return round(value, 6)


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    """Nearest-rank percentiles of ``count`` values (seconds)."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    p999: float
    max: float


def _rank(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def percentiles(values: list[float]) -> Percentiles | None:
    if not values:
        return None
    ordered = sorted(values)
    return Percentiles(
        count=len(ordered),
        mean=rounded(math.fsum(ordered) / len(ordered)),
        p50=rounded(_rank(ordered, 0.5)),
        p95=rounded(_rank(ordered, 0.95)),
        p99=rounded(_rank(ordered, 0.99)),
        p999=rounded(_rank(ordered, 0.999)),
        max=rounded(ordered[-1]),
    )


class Depth(msgspec.Struct, frozen=True, kw_only=True):
    """Mailbox depth as arriving calls found it (Poisson arrivals see time averages)."""

    max: int
    p99: int
    mean: float


class BreakerChange(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    key: str | None
    previous: str
    current: str


class BreakerSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Trips (closed -> open), reopens (half-open -> open) and time per state
    within the scenario's duration, summed over keys for a keyed service."""

    trips: int
    reopens: int
    time_open: float
    time_half_open: float
    timeline: list[BreakerChange]


class LimiterSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Our limiter against the provider's quota.

    ``headroom`` is ``1 - rate / quota_rate`` (how far below the quota the
    limiter keeps us); ``tokens_min`` the fewest tokens an arriving call saw;
    ``peak_rate`` the most requests the provider received in one second;
    ``throttled`` how many it answered with its quota's status.
    """

    rate: float | None
    quota_rate: float | None
    headroom: float | None
    tokens_min: float | None
    peak_rate: int
    throttled: int


class Retries(msgspec.Struct, frozen=True, kw_only=True):
    """``histogram`` maps attempts made to logical calls that made that many."""

    histogram: dict[int, int]
    scheduled: int
    budget_exhausted: int


class ProviderSummary(msgspec.Struct, frozen=True, kw_only=True):
    requests: int
    answers: dict[str, int]
    peak_in_flight: int


class Incident(msgspec.Struct, frozen=True, kw_only=True):
    """A provider outage or brownout window, for the reader and the plots."""

    kind: str
    start: float
    end: float


class Series(msgspec.Struct, frozen=True, kw_only=True):
    """Counts per time bucket (``start`` of each); latency percentiles of the
    successes that completed in it (None: there were none)."""

    start: list[float]
    offered: list[int]
    succeeded: list[int]
    failed: list[int]
    rejected: list[int]
    attempts: list[int]
    p50: list[float | None]
    p95: list[float | None]
    p99: list[float | None]


class ServiceReport(msgspec.Struct, frozen=True, kw_only=True):
    """One service's results. ``latency`` is of successful calls, end to end;
    ``queueing`` is the part of it spent waiting in the runtime (latency
    minus attempts minus backoff sleeps); both leave out the warmup."""

    name: str
    offered: int
    offered_rate: float
    succeeded: int
    goodput: float
    success_rate: float
    attempts: int
    amplification: float
    outcomes: dict[str, int]
    latency: Percentiles | None
    queueing: Percentiles | None
    mailbox: Depth
    rejections: dict[str, int]
    breaker: BreakerSummary | None
    limiter: LimiterSummary
    retries: Retries
    restarts: int
    stopped: str | None
    provider: ProviderSummary
    incidents: list[Incident]
    series: Series


class Provenance(msgspec.Struct, frozen=True, kw_only=True):
    """What produced a report: rerunning this gives the same bytes."""

    scenario: str
    seed: int
    config_hash: str
    version: str
    backend: str
    libraries: dict[str, str]


class Report(msgspec.Struct, frozen=True, kw_only=True):
    provenance: Provenance
    duration: float
    bucket: float
    services: list[ServiceReport]

    def to_json(self) -> bytes:
        """Indented JSON with a final newline: the same bytes for the same run."""
        return msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n"


def breaker_spans(timeline: list[BreakerChange], end: float) -> list[tuple[float, float, str]]:
    """``(start, stop, state)`` for every stretch not closed, per key, clipped to ``end``."""
    spans: list[tuple[float, float, str]] = []
    since: dict[str | None, tuple[float, str]] = {}
    for change in timeline:
        opened = since.pop(change.key, None)
        if opened is not None and opened[0] < end:
            spans.append((opened[0], min(change.at, end), opened[1]))
        if change.current != "closed":
            since[change.key] = (change.at, change.current)
    for start, state in since.values():
        if start < end:
            spans.append((start, end, state))
    return spans
