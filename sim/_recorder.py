"""The recorder: turns the runtime's events and the driver's calls into a report.

It is the runtime's `EventBus` for the run (``runtime.events``), handling each
event where it is published. Attempts and retries are published in the
calling task, so a context variable set by the workload driver in each call's
task names the logical call they belong to: that is how a call's queueing
time (its latency minus its attempts minus its backoff sleeps) is measured
without an id on the events, and without buffering a single event.

Attempts are counted where the provider receives them (`Track.request`, in
the sender's task too): an attempt cut short by its caller's deadline
publishes no event, but it did reach the provider.
"""

from __future__ import annotations

import contextvars
import math

from connector import (
    ActorRestarted,
    AttemptFinished,
    BreakerTransition,
    CallRejected,
    Event,
    EventBus,
    RetryScheduled,
    ServiceStopped,
    Subscription,
)

from ._report import (
    OUTCOMES,
    REJECT_REASONS,
    REJECTED,
    BreakerChange,
    BreakerSummary,
    Depth,
    Outcome,
    Series,
    percentiles,
    rounded,
)

__all__ = ["CallRecord", "Recorder", "Track"]


class CallRecord:
    """One logical call: when it started, its attempts, their and its backoffs' seconds."""

    __slots__ = ("attempts", "backoff", "service", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.attempts = 0
        self.service = 0.0
        self.backoff = 0.0


_CURRENT: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar(
    "connector_sim_call", default=None
)


class Track:
    """Everything counted for one service."""

    def __init__(self, name: str, duration: float, bucket: float, warmup: float) -> None:
        self.name = name
        self.frozen = False  # past the drain limit: nothing more is counted
        self.bucket = bucket
        self.warmup = warmup
        self.offered = 0
        self.attempts = 0
        self.retries = 0
        self.restarts = 0
        self.stopped: str | None = None
        self.outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.rejections: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self.histogram: dict[int, int] = {}  # attempts made -> finished calls
        self.latencies: list[float] = []
        self.queueing: list[float] = []
        self.depths: dict[int, int] = {}
        self.tokens_min: float | None = None
        self.transitions: list[BreakerChange] = []
        buckets = max(1, math.ceil(duration / bucket))
        self.s_offered = [0] * buckets
        self.s_succeeded = [0] * buckets
        self.s_failed = [0] * buckets
        self.s_rejected = [0] * buckets
        self.s_attempts = [0] * buckets
        self.s_latencies: list[list[float]] = [[] for _ in range(buckets)]

    # -- the driver's side -------------------------------------------------------

    def arrived(self, now: float, depth: int, tokens: float | None) -> CallRecord:
        """A call arrives; ``depth`` and ``tokens`` are what it finds at its cell."""
        self.offered += 1
        i = int(now / self.bucket)
        if i < len(self.s_offered):
            self.s_offered[i] += 1
        self.depths[depth] = self.depths.get(depth, 0) + 1
        if tokens is not None and (self.tokens_min is None or tokens < self.tokens_min):
            self.tokens_min = tokens
        return CallRecord(now)

    def request(self, now: float) -> None:
        """The provider received an attempt (called in the sender's task)."""
        if self.frozen:
            return
        self.attempts += 1
        i = int(now / self.bucket)
        if i < len(self.s_attempts):
            self.s_attempts[i] += 1
        record = _CURRENT.get()
        if record is not None:
            record.attempts += 1

    def finished(self, record: CallRecord, outcome: Outcome, now: float) -> None:
        if self.frozen:
            return
        self.outcomes[outcome] += 1
        self.histogram[record.attempts] = self.histogram.get(record.attempts, 0) + 1
        i = int(now / self.bucket)
        inside = i < len(self.s_offered)
        if outcome == "success":
            latency = now - record.started
            if record.started >= self.warmup:
                self.latencies.append(latency)
                self.queueing.append(max(0.0, latency - record.service - record.backoff))
            if inside:
                self.s_succeeded[i] += 1
                self.s_latencies[i].append(latency)
        elif inside:
            if outcome in REJECTED:
                self.s_rejected[i] += 1
            else:
                self.s_failed[i] += 1

    # -- summaries ------------------------------------------------------------------

    def mailbox(self) -> Depth:
        total = sum(self.depths.values())
        if not total:
            return Depth(max=0, p99=0, mean=0.0)
        seen, p99 = 0, 0
        for depth in sorted(self.depths):
            seen += self.depths[depth]
            if seen >= math.ceil(0.99 * total):
                p99 = depth
                break
        mean = sum(depth * count for depth, count in self.depths.items()) / total
        return Depth(max=max(self.depths), p99=p99, mean=rounded(mean))

    def retry_histogram(self) -> dict[int, int]:
        """Finished calls by the number of attempts they made (0: rejected before any)."""
        return dict(sorted(self.histogram.items()))

    def breaker(self, end: float) -> BreakerSummary:
        trips = reopens = 0
        time_in: dict[str, float] = {"open": 0.0, "half_open": 0.0, "forced_open": 0.0}
        state: dict[str | None, tuple[str, float]] = {}
        for change in self.transitions:
            previous, since = state.get(change.key, ("closed", 0.0))
            if previous in time_in:
                time_in[previous] += max(0.0, min(change.at, end) - since)
            state[change.key] = (change.current, change.at)
            if change.current == "open":
                if change.previous == "closed":
                    trips += 1
                elif change.previous == "half_open":
                    reopens += 1
        for current, since in state.values():
            if current in time_in:
                time_in[current] += max(0.0, end - since)
        return BreakerSummary(
            trips=trips,
            reopens=reopens,
            time_open=rounded(time_in["open"] + time_in["forced_open"]),
            time_half_open=rounded(time_in["half_open"]),
            timeline=self.transitions,
        )

    def series(self) -> Series:
        quantiles = [percentiles(values) for values in self.s_latencies]
        return Series(
            start=[rounded(i * self.bucket) for i in range(len(self.s_offered))],
            offered=self.s_offered,
            succeeded=self.s_succeeded,
            failed=self.s_failed,
            rejected=self.s_rejected,
            attempts=self.s_attempts,
            p50=[q.p50 if q else None for q in quantiles],
            p95=[q.p95 if q else None for q in quantiles],
            p99=[q.p99 if q else None for q in quantiles],
        )


class Recorder(EventBus):
    """An `EventBus` that records each event as it is published (see the module docstring).

    Subscribers still get every event. `freeze` stops recording: what happens
    while a run is cut short at its drain limit is not reported.
    """

    def __init__(self, tracks: dict[str, Track]) -> None:
        super().__init__()
        self.tracks = tracks
        self.frozen = False
        self.active = True

    def unsubscribe(self, subscription: Subscription) -> None:
        super().unsubscribe(subscription)
        self.active = True  # the recorder itself always listens

    def publish(self, event: Event) -> None:
        track = None if self.frozen else self.tracks.get(event.service)
        if track is not None:
            # Most frequent first: an attempt finishes for every call.
            if isinstance(event, AttemptFinished):
                self._attempt(event)
            elif isinstance(event, RetryScheduled):
                self._retry(track, event)
            elif isinstance(event, CallRejected):
                track.rejections[event.reason] += 1
            elif isinstance(event, BreakerTransition):
                self._transition(track, event)
            elif isinstance(event, ActorRestarted):
                track.restarts += 1
            elif isinstance(event, ServiceStopped):
                track.stopped = event.reason
        super().publish(event)

    def freeze(self) -> None:
        self.frozen = True
        for track in self.tracks.values():
            track.frozen = True

    def start_call(self, record: CallRecord) -> None:
        """Attribute the attempts and backoffs published from this task to ``record``."""
        _CURRENT.set(record)

    def _attempt(self, event: AttemptFinished) -> None:
        record = _CURRENT.get()
        if record is not None:
            record.service += event.duration

    def _retry(self, track: Track, event: RetryScheduled) -> None:
        track.retries += 1
        record = _CURRENT.get()
        if record is not None:
            record.backoff += event.delay

    def _transition(self, track: Track, event: BreakerTransition) -> None:
        track.transitions.append(
            BreakerChange(
                at=rounded(event.at),
                key=event.key,
                previous=str(event.previous),
                current=str(event.current),
            )
        )
