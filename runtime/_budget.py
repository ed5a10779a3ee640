"""Retry budget: retries at most ``ratio`` of requests plus a floor, as Finagle does.

Without a budget, three attempts per call triple the load on a provider that is
already failing. The ledger counts requests and retries in a sliding window of
``window`` seconds kept as ten buckets, and admits a retry only while
``retries + 1 <= ratio * requests + min_per_second * window`` over it.
"""

from __future__ import annotations

import math

import msgspec

from . import _validate as check

__all__ = ["RetryBudget", "RetryBudgetLedger"]

_BUCKETS = 10


class RetryBudget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``ratio`` of requests may be retried, plus ``min_per_second`` retries every second."""

    ratio: float = 0.2
    min_per_second: float = 10.0
    window: float = 10.0

    def __post_init__(self) -> None:
        check.non_negative("ratio", self.ratio)
        check.non_negative("min_per_second", self.min_per_second)
        check.positive("window", self.window)


class RetryBudgetLedger:
    """The pure accounting behind `RetryBudget`; every method takes ``now``.

    The window at ``now`` is the ten buckets ending with the one holding
    ``now``: it covers between ``window * 9/10`` and ``window`` seconds.
    """

    __slots__ = (
        "_latest",
        "_latest_end",
        "_latest_start",
        "_requests",
        "_retries",
        "_starts",
        "bucket_width",
        "budget",
    )

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget
        self.bucket_width = budget.window / _BUCKETS
        self._starts = [-1] * _BUCKETS
        self._requests = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._latest = -1
        # The latest bucket's span, so that most calls skip the division.
        self._latest_start = math.inf
        self._latest_end = -math.inf

    def _slot(self, now: float) -> int:
        if self._latest_start <= now < self._latest_end:
            return self._latest % _BUCKETS
        index = math.floor(now / self.bucket_width)
        if index > self._latest:
            for k in range(max(self._latest + 1, index - _BUCKETS + 1), index + 1):
                slot = k % _BUCKETS
                self._starts[slot] = k
                self._requests[slot] = 0
                self._retries[slot] = 0
            self._latest = index
            self._latest_start = index * self.bucket_width
            self._latest_end = (index + 1) * self.bucket_width
        return max(index, self._latest) % _BUCKETS

    def totals(self, now: float) -> tuple[int, int]:
        """(requests, retries) in the window at ``now``."""
        self._slot(now)
        oldest = self._latest - _BUCKETS + 1
        requests = retries = 0
        for slot in range(_BUCKETS):
            if self._starts[slot] >= oldest:
                requests += self._requests[slot]
                retries += self._retries[slot]
        return requests, retries

    def allowance(self, now: float) -> float:
        """Retries the window may hold in all at ``now``."""
        requests, _ = self.totals(now)
        return self.budget.ratio * requests + self.budget.min_per_second * self.budget.window

    def record_request(self, now: float) -> None:
        """A first attempt went out (retries are recorded by `try_spend`)."""
        self._requests[self._slot(now)] += 1

    def try_spend(self, now: float) -> bool:
        """Take one retry from the budget if it has room; False leaves it unchanged."""
        requests, retries = self.totals(now)
        budget = self.budget
        if retries + 1 > budget.ratio * requests + budget.min_per_second * budget.window:
            return False
        self._retries[self._slot(now)] += 1
        return True
