"""The per-account Google request budget (sync/providers/google/budget.py) on a manual clock: bursts go at once,
a nearly empty budget makes callers wait briefly, in turn, and a long wait is refused as RateLimited."""

from __future__ import annotations

import pytest

from sync.providers.base import RateLimited
from sync.providers.google.budget import RequestBudget
from sync.providers.google.provider import GoogleShared


class Seconds:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_goes_at_once_then_each_request_waits_its_turn() -> None:
    clock = Seconds()
    budget = RequestBudget(300, burst=60, clock=clock)  # 5 requests a second
    assert [budget.reserve() for _ in range(60)] == [0.0] * 60
    assert budget.reserve() == pytest.approx(0.2)
    assert budget.reserve() == pytest.approx(0.4)  # queued behind the one before
    clock.now += 0.4
    assert budget.reserve() == pytest.approx(0.2)


def test_the_budget_refills_at_its_rate_up_to_the_burst() -> None:
    clock = Seconds()
    budget = RequestBudget(300, burst=60, clock=clock)
    budget.reserve(60)
    clock.now += 3600  # an idle hour refills no more than one burst
    assert budget.reserve(60) == 0.0
    assert budget.reserve() == pytest.approx(0.2)


def test_a_long_wait_is_refused_and_takes_nothing() -> None:
    clock = Seconds()
    budget = RequestBudget(300, burst=60, longest_wait=5.0, clock=clock)
    budget.reserve(60)
    assert budget.reserve(25) == pytest.approx(5.0)  # a batch of 25 may wait five seconds
    with pytest.raises(RateLimited) as refused:
        budget.reserve()
    assert refused.value.retry_after == pytest.approx(5.2)
    clock.now += 5.0
    assert budget.reserve() == pytest.approx(0.2)  # the refused request took nothing


def test_accounts_have_budgets_of_their_own_shared_by_the_process() -> None:
    clock = Seconds()
    shared = GoogleShared(budget=lambda: RequestBudget(60, burst=1, clock=clock))
    try:
        assert shared.budget("john@example.com") is shared.budget("john@example.com")
        shared.budget("john@example.com").reserve()
        assert shared.budget("ann@example.com").reserve() == 0.0
        assert shared.budget("john@example.com").reserve() == pytest.approx(1.0)
    finally:
        shared.close()
