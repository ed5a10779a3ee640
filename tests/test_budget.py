"""The retry budget: retries stay within ratio * requests plus a floor, whatever the traffic."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from connector import RetryBudget, RetryBudgetLedger

# Windows whose tenth is a power of two and times on a 1/16 s grid keep every
# bucket boundary exact, so the bound below is checked without float fuzz.
WINDOWS = st.sampled_from([2.5, 5.0, 10.0, 20.0])
BUDGETS = st.builds(
    RetryBudget,
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 3.0]),
    min_per_second=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    window=WINDOWS,
)


@dataclass
class Op:
    gap: float
    retry: bool  # a retry asks the budget; otherwise a first attempt is recorded


OPS = st.lists(
    st.builds(Op, gap=st.integers(0, 48).map(lambda n: n / 16), retry=st.booleans()),
    max_size=120,
)


@given(budget=BUDGETS, start=st.sampled_from([0.0, 1000.0, 123_456.5]), ops=OPS)
def test_retries_stay_within_the_budget(budget: RetryBudget, start: float, ops: list[Op]) -> None:
    ledger = RetryBudgetLedger(budget)
    # Fed the same history minus every refused try_spend: a refusal changes nothing.
    shadow = RetryBudgetLedger(budget)
    requests: list[float] = []
    retries: list[float] = []
    now = start
    for op in ops:
        now += op.gap
        if not op.retry:
            ledger.record_request(now)
            shadow.record_request(now)
            requests.append(now)
        elif ledger.try_spend(now):
            assert shadow.try_spend(now)
            retries.append(now)
            recent = sum(1 for r in retries if r >= now - budget.window * 9 / 10)
            in_window = sum(1 for r in requests if r >= now - budget.window)
            assert recent <= budget.ratio * in_window + budget.min_per_second * budget.window
        else:
            assert not ledger.try_spend(now)  # refused twice: the first changed nothing
        assert ledger.totals(now) == shadow.totals(now) == _totals(budget, now, requests, retries)


def _totals(
    budget: RetryBudget, now: float, requests: list[float], retries: list[float]
) -> tuple[int, int]:
    """The module's definition: the ten buckets of ``window / 10`` ending with ``now``'s."""
    width = budget.window / 10
    oldest = math.floor(now / width) - 9
    return (
        sum(1 for t in requests if math.floor(t / width) >= oldest),
        sum(1 for t in retries if math.floor(t / width) >= oldest),
    )


def test_defaults() -> None:
    budget = RetryBudget()
    assert budget.ratio == 0.2
    assert budget.min_per_second == 10.0
    assert budget.window == 10.0


def test_ratio_of_requests() -> None:
    ledger = RetryBudgetLedger(RetryBudget(ratio=0.2, min_per_second=0.0))
    assert not ledger.try_spend(0.0)
    for _ in range(100):
        ledger.record_request(0.0)
    assert ledger.allowance(0.0) == 20.0
    assert all(ledger.try_spend(0.5) for _ in range(20))
    assert not ledger.try_spend(0.5)
    assert ledger.totals(0.5) == (100, 20)


def test_floor_without_requests() -> None:
    ledger = RetryBudgetLedger(RetryBudget(ratio=0.2, min_per_second=10.0, window=10.0))
    assert sum(ledger.try_spend(1.0) for _ in range(150)) == 100


def test_budget_comes_back_as_the_window_slides() -> None:
    ledger = RetryBudgetLedger(RetryBudget(ratio=0.0, min_per_second=1.0, window=10.0))
    assert sum(ledger.try_spend(0.0) for _ in range(20)) == 10
    assert not ledger.try_spend(9.9)  # bucket [0, 1) is still in the window
    assert ledger.try_spend(10.0)  # and now it is not
    assert ledger.totals(10.0) == (0, 1)
    assert ledger.totals(1000.0) == (0, 0)
