"""Retries: the `Retry` policy and `Backoff`, its delays with jitter.

Delays grow as ``initial * multiplier ** (n - 1)`` for the n-th retry, capped at
``max_delay`` (the original's 1 s, x2, 30 s). Jitter spreads retries of many
callers apart so a recovering provider is not hit by a synchronised wave:
``full`` draws from [0, d] (AWS's recommendation, and our default), ``equal``
from [d/2, d], ``decorrelated`` from [initial, 3 * previous] capped, ``none``
is d itself. Randomness comes from the caller's `random.Random`, so a seeded
run repeats exactly.
"""

from __future__ import annotations

import random
from typing import Literal

import msgspec

from . import _validate as check
from ._errors import ConfigError

__all__ = ["DEFAULT_RETRYABLE_STATUSES", "Backoff", "Jitter", "Retry"]

Jitter = Literal["full", "equal", "decorrelated", "none"]
JITTERS: tuple[Jitter, ...] = ("full", "equal", "decorrelated", "none")

DEFAULT_RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})


class Retry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How often and how patiently a failed call is tried again.

    ``attempts`` counts the first call: 3 is one call and two retries.
    ``deadline`` bounds the whole call, retries and waits included (seconds).
    """

    attempts: int = 3
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: Jitter = "full"
    retryable_statuses: frozenset[int] = DEFAULT_RETRYABLE_STATUSES
    deadline: float | None = None

    def __post_init__(self) -> None:
        check.integer("attempts", self.attempts, 1)
        check.non_negative("initial_delay", self.initial_delay)
        check.at_least("multiplier", self.multiplier, 1)
        check.at_least("max_delay", self.max_delay, self.initial_delay)
        check.one_of("jitter", self.jitter, JITTERS)
        if not isinstance(self.retryable_statuses, frozenset | set):
            raise ConfigError(
                "retryable_statuses", self.retryable_statuses, "must be a set of HTTP statuses"
            )
        for status in self.retryable_statuses:
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
                raise ConfigError("retryable_statuses", status, "must be HTTP statuses 100-599")
        if self.deadline is not None:
            check.positive("deadline", self.deadline)

    @classmethod
    def none(cls) -> Retry:
        """One attempt, no retry."""
        return cls(attempts=1)


class Backoff:
    """Delays before each retry of one `Retry` policy, drawn from an injected RNG."""

    __slots__ = ("policy", "rng")

    def __init__(self, policy: Retry, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng

    def base(self, retry: int) -> float:
        """The un-jittered delay before the ``retry``-th retry (1-based), capped."""
        policy = self.policy
        if retry < 1:
            raise ConfigError("retry", retry, "retries are numbered from 1")
        try:
            grown = policy.initial_delay * policy.multiplier ** (retry - 1)
        except OverflowError:
            # Past every float; but zero grows to zero however often it is multiplied.
            return policy.max_delay if policy.initial_delay > 0 else 0.0
        return min(policy.max_delay, grown)

    def delay(self, retry: int, previous: float | None = None) -> float:
        """The delay before the ``retry``-th retry; ``previous`` feeds decorrelated jitter."""
        jitter = self.policy.jitter
        if jitter == "decorrelated":
            low = self.policy.initial_delay
            high = max(low, 3 * (previous if previous is not None else low))
            return min(self.policy.max_delay, self.rng.uniform(low, high))
        base = self.base(retry)
        if jitter == "full":
            return self.rng.uniform(0.0, base)
        if jitter == "equal":
            return base / 2 + self.rng.uniform(0.0, base / 2)
        return base
