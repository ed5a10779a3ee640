"""The circuit breaker against an independent reference model, plus the original's cases.

The model below is written from DESIGN.md section 3 and the permit rule in the
module docstring (an outcome recorded with a stale permit is ignored), not from
the implementation: it keeps every outcome in a plain list and recomputes its
windows from scratch, and it compares rates as exact fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from connector import Breaker, BreakerState, CircuitBreaker, CircuitBreakerState, ConfigError

SLOW = 2.0  # slow_call_duration of the generated configs that watch latency
OPEN_FOR = 10.0
# (kind, duration): a success at least SLOW long is a slow call; "release" is a
# caller cancelled before any outcome, giving its permit back.
OUTCOMES = st.sampled_from(
    [
        ("failure", 0.0),
        ("success", 0.0),
        ("success", SLOW),
        ("release", 0.0),
        ("success", SLOW / 2),
        ("failure", 3 * SLOW),
        ("success", 3 * SLOW),
    ]
)


@dataclass
class _Outcome:
    at: float
    failed: bool
    slow: bool


@dataclass
class Model:
    """What the breaker should do, kept as simply as possible."""

    config: Breaker
    state: BreakerState = BreakerState.CLOSED
    epoch: int = 0  # bumped on every state change; calls remember the epoch they were admitted in
    opened_at: float = 0.0
    opens_in_a_row: int = 0
    consecutive: int = 0
    probes_out: int = 0
    probe_successes: int = 0
    outcomes: list[_Outcome] = field(default_factory=list)

    def enter(self, state: BreakerState) -> None:
        self.state = state
        self.epoch += 1
        self.probes_out = 0
        self.probe_successes = 0

    def reopen_at(self) -> float:
        config = self.config
        duration = config.open_duration * config.open_duration_multiplier ** (
            self.opens_in_a_row - 1
        )
        if config.max_open_duration is not None:
            duration = min(duration, config.max_open_duration)
        return self.opened_at + duration

    def tick(self, now: float) -> None:
        if self.state is BreakerState.OPEN and now >= self.reopen_at():
            self.enter(BreakerState.HALF_OPEN)

    def trip(self, now: float) -> None:
        self.opens_in_a_row += 1
        self.opened_at = now
        self.enter(BreakerState.OPEN)

    def close(self) -> None:
        self.enter(BreakerState.CLOSED)
        self.opens_in_a_row = 0
        self.consecutive = 0
        self.outcomes = []

    def _should_trip(self, now: float) -> bool:
        config = self.config
        if config.failure_threshold is not None and self.consecutive >= config.failure_threshold:
            return True
        if config.failure_rate_threshold is None and config.slow_call_duration is None:
            return False
        if config.sliding_window == "count":
            live = self.outcomes[-config.window_size :]
            # resilience4j's rule: a count window never needs more calls than it holds.
            needed = min(config.minimum_calls, config.window_size)
        else:
            live = [
                o for o in self.outcomes if math.floor(o.at) > math.floor(now) - config.window_size
            ]
            needed = config.minimum_calls
        if len(live) < needed:
            return False
        failures = Fraction(sum(o.failed for o in live), len(live))
        slow = Fraction(sum(o.slow for o in live), len(live))
        rate = config.failure_rate_threshold
        if rate is not None and failures >= Fraction(str(rate)):
            return True
        return config.slow_call_duration is not None and slow >= Fraction(
            str(config.slow_call_rate_threshold)
        )

    def admit(self) -> bool:
        if self.state in (BreakerState.CLOSED, BreakerState.DISABLED):
            return True
        if self.state is BreakerState.HALF_OPEN and self.probes_out < self.config.half_open_probes:
            self.probes_out += 1
            return True
        return False

    def release(self, epoch: int) -> None:
        if epoch == self.epoch and self.state is BreakerState.HALF_OPEN:
            self.probes_out -= 1

    def outcome(self, epoch: int, now: float, *, failed: bool, duration: float) -> None:
        if epoch != self.epoch:
            return  # a stale permit: the breaker moved on since this call was admitted
        slow = (
            self.config.slow_call_duration is not None
            and duration >= self.config.slow_call_duration
        )
        if self.state is BreakerState.HALF_OPEN:
            self.probes_out -= 1
            if failed or slow:
                self.trip(now)
                return
            self.probe_successes += 1
            if self.probe_successes >= self.config.success_threshold:
                self.close()
        elif self.state is BreakerState.CLOSED:
            self.consecutive = self.consecutive + 1 if failed else 0
            self.outcomes.append(_Outcome(now, failed, slow))
            if self._should_trip(now):
                self.trip(now)


@dataclass(eq=False)
class Call:
    permit: int  # the implementation's
    epoch: int  # the model's


@st.composite
def breaker_configs(draw: st.DrawFn) -> Breaker:
    rule_kind = draw(st.sampled_from(["consecutive", "count", "time"]))
    growing = draw(st.booleans())
    common: dict[str, Any] = {
        "open_duration": OPEN_FOR,
        "open_duration_multiplier": 2.0 if growing else 1.0,
        "max_open_duration": 4 * OPEN_FOR if growing else None,
        "half_open_probes": draw(st.integers(1, 3)),
        "success_threshold": draw(st.integers(1, 3)),
    }
    if rule_kind == "consecutive":
        return Breaker(failure_threshold=draw(st.integers(1, 4)), **common)
    window_size = draw(st.integers(1, 6) if rule_kind == "count" else st.integers(1, 4))
    slow_call_duration = draw(st.sampled_from([None, SLOW]))
    rate = draw(st.sampled_from([None, 0.25, 0.5, 0.6, 1.0]))
    threshold = draw(st.sampled_from([None, 3]))
    if rate is None and slow_call_duration is None:
        rate = 0.5
    return Breaker(
        failure_threshold=threshold,
        failure_rate_threshold=rate,
        sliding_window="count" if rule_kind == "count" else "time",
        window_size=window_size,
        # Up to two more than the count window holds: such a window must still trip.
        minimum_calls=draw(st.integers(1, window_size + 2)),
        slow_call_duration=slow_call_duration,
        slow_call_rate_threshold=draw(st.sampled_from([0.5, 1.0])),
        **common,
    )


class BreakerMachine(RuleBasedStateMachine):
    """Random admit / outcome / release / time / manual-control sequences, checked step by step.

    Hypothesis picks among the rules whose preconditions hold, so the helper rules
    guarded by a state (`probe`, `wait_out`, `operator_resets`) make the moves
    that matter in that state likely; without them half-open is rarely reached.
    """

    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.config = Breaker()
        self.breaker = CircuitBreaker(self.config)
        self.model = Model(self.config)
        self.outstanding: list[Call] = []

    @initialize(config=breaker_configs())
    def configure(self, config: Breaker) -> None:
        self.config = config
        self.breaker = CircuitBreaker(config)
        self.model = Model(config)

    # -- calls -------------------------------------------------------------

    def _admit(self) -> Call | None:
        was = self.model.state
        permit = self.breaker.admit(self.now)
        assert (permit is not None) == self.model.admit(), f"admit in {was}"
        if permit is None:
            return None
        assert was not in (BreakerState.OPEN, BreakerState.FORCED_OPEN)
        return Call(permit, self.model.epoch)

    def _finish(self, call: Call, outcome: tuple[str, float]) -> None:
        kind, duration = outcome
        if kind == "release":
            self.breaker.release(call.permit)
            self.model.release(call.epoch)
        elif kind == "failure":
            self.breaker.record_failure(call.permit, self.now, duration)
            self.model.outcome(call.epoch, self.now, failed=True, duration=duration)
        else:
            self.breaker.record_success(call.permit, self.now, duration)
            self.model.outcome(call.epoch, self.now, failed=False, duration=duration)

    @rule(outcome=OUTCOMES)
    def call(self, outcome: tuple[str, float]) -> None:
        """Admit and finish in one step, as most calls do."""
        call = self._admit()
        if call is not None:
            self._finish(call, outcome)

    @rule(target=calls)
    def hold(self) -> object:
        """Admit a call that stays in flight until `finish`: concurrent calls and probes."""
        call = self._admit()
        if call is None:
            return multiple()
        self.outstanding.append(call)
        return call

    @precondition(lambda self: self.model.state is BreakerState.HALF_OPEN)
    @rule(target=calls)
    def probe(self) -> object:
        """`hold`, made likely in half-open, where the probe limit is at stake."""
        return self.hold()

    @rule(call=consumes(calls), outcome=OUTCOMES)
    def finish(self, call: Call, outcome: tuple[str, float]) -> None:
        self.outstanding.remove(call)
        self._finish(call, outcome)

    # -- time --------------------------------------------------------------

    @rule(
        step=st.sampled_from(["deadline", 0.5, "just_before", 0.0, 1.0, 2.5, OPEN_FOR]),
        passivate=st.booleans(),
    )
    def tick(self, step: float | str, passivate: bool = False) -> None:
        """Let time pass; while open, land exactly on the half-open deadline or on the
        float just before it (the edge rule: half-open at ``opened_at + duration``).

        An idle actor may be passivated meanwhile: its breaker then resumes from
        the serialised snapshot, and must carry on as if nothing happened.
        """
        if passivate:
            self.control("resume")
        if isinstance(step, float):
            self.now += step
        elif self.model.state is BreakerState.OPEN:
            deadline = self.model.reopen_at()
            self.now = deadline if step == "deadline" else math.nextafter(deadline, -math.inf)
        self.model.tick(self.now)

    @precondition(lambda self: self.model.state is BreakerState.OPEN)
    @rule(early=st.booleans())
    def wait_out(self, early: bool) -> None:
        """The same jump as `tick`, made likely whenever the circuit is open."""
        self.tick("just_before" if early else "deadline")

    # -- manual control and persistence ------------------------------------

    @rule(action=st.sampled_from(["resume", "reset", "force_open", "disable"]))
    def control(self, action: str) -> None:
        """An operator's kill switch, bypass or reset, or the breaker resumed from storage."""
        if action == "resume":
            snapshot = self.breaker.snapshot()
            self.breaker = CircuitBreaker(
                self.config, CircuitBreakerState.from_dict(snapshot.to_dict())
            )
            assert self.breaker.snapshot() == snapshot
        elif action == "reset":
            self.breaker.reset()
            self.model.close()
        elif action == "force_open":
            self.breaker.force_open()
            self.model.enter(BreakerState.FORCED_OPEN)
        else:
            self.breaker.disable()
            self.model.enter(BreakerState.DISABLED)

    @precondition(
        lambda self: self.model.state in (BreakerState.FORCED_OPEN, BreakerState.DISABLED)
    )
    @rule()
    def operator_resets(self) -> None:
        """Forced-open and disabled last until a reset; make one likely."""
        self.control("reset")

    # -- invariants --------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        assert self.breaker.state(self.now) is self.model.state
        retry_after = self.breaker.retry_after(self.now)
        if self.model.state is BreakerState.OPEN:
            # Never admits while open before its open duration ends.
            assert 0 < retry_after == self.model.reopen_at() - self.now
        elif self.model.state is BreakerState.FORCED_OPEN:
            assert retry_after == math.inf
        else:
            assert retry_after == 0.0

    @invariant()
    def probes_bounded(self) -> None:
        snapshot = self.breaker.snapshot()
        if self.breaker.state(self.now) is BreakerState.HALF_OPEN:
            live = [c for c in self.outstanding if c.permit == self.breaker.generation]
            assert len(live) == snapshot.half_open_in_flight == self.model.probes_out
            assert len(live) <= self.config.half_open_probes
        else:
            assert snapshot.half_open_in_flight == 0

    @invariant()
    def snapshot_round_trips(self) -> None:
        snapshot = self.breaker.snapshot()
        assert CircuitBreakerState.from_dict(snapshot.to_dict()) == snapshot


TestBreakerMachine = BreakerMachine.TestCase
# At least 200 runs whatever the profile; never fewer than the profile asks for.
TestBreakerMachine.settings = settings(max_examples=max(200, settings().max_examples))


# -- the original package's cases, and the pinned edge rules -------------------


def _trip(breaker: CircuitBreaker, now: float, failures: int) -> None:
    for _ in range(failures):
        permit = breaker.admit(now)
        assert permit is not None
        breaker.record_failure(permit, now)


def test_defaults() -> None:
    config = Breaker()
    assert config.failure_threshold == 5
    assert config.failure_rate_threshold is None
    assert config.open_duration == 60.0
    assert config.half_open_probes == 1
    assert config.success_threshold == 1


def test_fifth_consecutive_failure_opens() -> None:
    breaker = CircuitBreaker(Breaker())
    _trip(breaker, 0.0, 4)
    assert breaker.state(0.0) is BreakerState.CLOSED
    _trip(breaker, 1.0, 1)
    assert breaker.state(1.0) is BreakerState.OPEN
    assert breaker.opened_at == 1.0
    assert breaker.admit(1.0) is None


def test_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(Breaker())
    _trip(breaker, 0.0, 4)
    permit = breaker.admit(0.0)
    assert permit is not None
    breaker.record_success(permit, 0.0)
    assert breaker.consecutive_failures == 0
    _trip(breaker, 0.0, 4)
    assert breaker.state(0.0) is BreakerState.CLOSED


def test_half_open_exactly_at_the_deadline() -> None:
    breaker = CircuitBreaker(Breaker())
    _trip(breaker, 100.0, 5)
    just_before = math.nextafter(160.0, 0.0)
    assert breaker.admit(just_before) is None
    assert breaker.state(just_before) is BreakerState.OPEN
    assert breaker.retry_after(just_before) > 0
    assert breaker.state(160.0) is BreakerState.HALF_OPEN
    assert breaker.retry_after(160.0) == 0.0


def test_half_open_failure_reopens_with_a_new_opened_at() -> None:
    breaker = CircuitBreaker(Breaker())
    _trip(breaker, 0.0, 5)
    probe = breaker.admit(60.0)
    assert probe is not None
    assert breaker.admit(60.0) is None  # one probe at a time by default
    breaker.record_failure(probe, 61.5)
    assert breaker.state(61.5) is BreakerState.OPEN
    assert breaker.opened_at == 61.5
    assert breaker.state(121.4) is BreakerState.OPEN
    assert breaker.state(121.5) is BreakerState.HALF_OPEN


def test_half_open_success_closes() -> None:
    breaker = CircuitBreaker(Breaker())
    _trip(breaker, 0.0, 5)
    probe = breaker.admit(60.0)
    assert probe is not None
    breaker.record_success(probe, 60.2)
    assert breaker.state(60.2) is BreakerState.CLOSED
    assert breaker.opened_at is None
    _trip(breaker, 61.0, 4)  # the count starts over
    assert breaker.state(61.0) is BreakerState.CLOSED


def test_success_threshold_needs_that_many_probe_successes() -> None:
    breaker = CircuitBreaker(Breaker(success_threshold=2))
    _trip(breaker, 0.0, 5)
    first = breaker.admit(60.0)
    assert first is not None
    breaker.record_success(first, 60.0)
    assert breaker.state(60.0) is BreakerState.HALF_OPEN
    second = breaker.admit(60.0)
    assert second is not None
    breaker.record_success(second, 60.0)
    assert breaker.state(60.0) is BreakerState.CLOSED


def test_a_cancelled_probe_gives_its_permit_back() -> None:
    breaker = CircuitBreaker(Breaker(half_open_probes=2))
    _trip(breaker, 0.0, 5)
    first, second = breaker.admit(60.0), breaker.admit(60.0)
    assert first is not None
    assert second is not None
    assert breaker.admit(60.0) is None
    breaker.release(first)
    assert breaker.admit(60.0) is not None
    assert breaker.admit(60.0) is None


def test_stale_permits_are_ignored() -> None:
    """A slow call admitted while closed cannot close a breaker that has gone half-open."""
    breaker = CircuitBreaker(Breaker(failure_threshold=1))
    slow_call = breaker.admit(0.0)
    assert slow_call is not None
    _trip(breaker, 0.0, 1)
    probe = breaker.admit(60.0)
    assert probe is not None
    breaker.record_success(slow_call, 60.0)
    assert breaker.state(60.0) is BreakerState.HALF_OPEN
    breaker.release(slow_call)  # nor take the probe's place
    assert breaker.admit(60.0) is None
    breaker.record_failure(slow_call, 60.0)
    assert breaker.state(60.0) is BreakerState.HALF_OPEN


def test_growing_open_duration_is_capped() -> None:
    config = Breaker(open_duration=60.0, open_duration_multiplier=2.0, max_open_duration=200.0)
    assert [config.open_duration_for(n) for n in (1, 2, 3, 4)] == [60.0, 120.0, 200.0, 200.0]
    assert config.open_duration_for(10**9) == 200.0
    breaker = CircuitBreaker(config)
    _trip(breaker, 0.0, 5)
    probe = breaker.admit(60.0)
    assert probe is not None
    breaker.record_failure(probe, 60.0)
    assert breaker.state(179.0) is BreakerState.OPEN
    assert breaker.state(180.0) is BreakerState.HALF_OPEN


def test_failure_rate_equal_to_the_threshold_opens() -> None:
    breaker = CircuitBreaker(
        Breaker(
            failure_threshold=None, failure_rate_threshold=0.3, window_size=10, minimum_calls=10
        )
    )
    for i in range(10):
        permit = breaker.admit(0.0)
        assert permit is not None
        if i < 3:
            breaker.record_failure(permit, 0.0)
        else:
            assert breaker.state(0.0) is BreakerState.CLOSED
            breaker.record_success(permit, 0.0)
    assert breaker.state(0.0) is BreakerState.OPEN


def test_minimum_calls_above_a_count_window_still_trips() -> None:
    """As resilience4j: a count window of 4 cannot hold the default 10 calls, so 4 will do."""
    breaker = CircuitBreaker(
        Breaker(failure_threshold=None, failure_rate_threshold=0.5, window_size=4)
    )
    _trip(breaker, 0.0, 3)
    assert breaker.state(0.0) is BreakerState.CLOSED
    _trip(breaker, 0.0, 1)
    assert breaker.state(0.0) is BreakerState.OPEN


def test_a_slow_call_rule_alone_is_a_valid_breaker() -> None:
    breaker = CircuitBreaker(
        Breaker(failure_threshold=None, slow_call_duration=1.0, window_size=2, minimum_calls=2)
    )
    for _ in range(2):
        permit = breaker.admit(0.0)
        assert permit is not None
        breaker.record_success(permit, 0.0, duration=1.0)
    assert breaker.state(0.0) is BreakerState.OPEN


def test_time_window_forgets_old_seconds() -> None:
    breaker = CircuitBreaker(
        Breaker(
            failure_threshold=None,
            failure_rate_threshold=1.0,
            sliding_window="time",
            window_size=2,
            minimum_calls=2,
        )
    )
    _trip(breaker, 10.5, 1)
    _trip(breaker, 12.0, 1)  # second 10 has left the window (11, 12]
    assert breaker.state(12.0) is BreakerState.CLOSED
    _trip(breaker, 12.9, 1)
    assert breaker.state(12.9) is BreakerState.OPEN


def test_forced_open_and_disabled() -> None:
    breaker = CircuitBreaker(Breaker(failure_threshold=1))
    breaker.force_open()
    assert breaker.admit(0.0) is None
    assert breaker.retry_after(1e9) == math.inf
    assert breaker.state(1e9) is BreakerState.FORCED_OPEN
    breaker.disable()
    permit = breaker.admit(0.0)
    assert permit is not None
    breaker.record_failure(permit, 0.0)  # recorded nowhere
    assert breaker.state(0.0) is BreakerState.DISABLED
    breaker.reset()
    assert breaker.state(0.0) is BreakerState.CLOSED
    assert breaker.admit(0.0) is not None


def test_rebuilt_open_breaker_keeps_its_deadline() -> None:
    breaker = CircuitBreaker(Breaker())
    _trip(breaker, 5.0, 5)
    data = breaker.snapshot().to_dict()
    assert data["state"] == "open"
    assert data["opened_at"] == 5.0
    resumed = CircuitBreaker(Breaker(), CircuitBreakerState.from_dict(data))
    assert resumed.state(64.9) is BreakerState.OPEN
    assert resumed.state(65.0) is BreakerState.HALF_OPEN


@pytest.mark.parametrize(
    "data",
    [
        {"state": "ajar"},
        {"generation": "one"},
        {"outcomes": [1, "x"]},
        {"unknown": 1},
    ],
)
def test_bad_snapshot_is_a_config_error(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="CircuitBreakerState"):
        CircuitBreakerState.from_dict(data)


def test_open_snapshot_without_opened_at_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"state\.opened_at"):
        CircuitBreaker(Breaker(), CircuitBreakerState(state=BreakerState.OPEN))
