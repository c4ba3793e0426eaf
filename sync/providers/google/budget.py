"""A per-account request budget: Google counts requests per minute per user (provider-apis.md G6: 600), and a
process that syncs every calendar of an account, writes, and answers push notifications could reach that.

A token bucket spent at half Google's rate leaves the rest to the user's other apps and to retries. A request
that finds the bucket nearly empty waits for it to refill, if that is brief; when it would be long, the call
is refused with RateLimited so the engine postpones the calendar instead of holding a cycle for minutes.
Used on the event loop only (no lock): the provider spends before it hands a call to its thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sync.providers.base import RateLimited

REQUESTS_PER_MINUTE = 300
LONGEST_WAIT = 5.0
"""Seconds a call may wait for the budget; beyond that it is RateLimited."""


class RequestBudget:
    """`per_minute` requests a minute in the long run, in bursts of up to `burst` (which with a minute's refill
    stays under Google's sliding-window limit: 60 + 300 < 600)."""

    def __init__(
        self, per_minute: int = REQUESTS_PER_MINUTE, *, burst: int = 60, longest_wait: float = LONGEST_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate, self._burst, self._longest_wait, self._clock = per_minute / 60.0, float(burst), longest_wait, clock
        self._tokens, self._at = self._burst, clock()

    def reserve(self, cost: int = 1) -> float:
        """Take `cost` requests and say how many seconds to wait before sending them; RateLimited (nothing
        taken) if that would be longer than the longest wait. Waiting callers queue: each takes its share
        of future refills, so the next one waits longer."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        wait = max(0.0, (cost - self._tokens) / self._rate)
        if wait > self._longest_wait:
            raise RateLimited("the account's Google request budget is spent for now", wait)
        self._tokens -= cost
        return wait
