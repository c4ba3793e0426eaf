"""What every at-least-once delivery in `sync/` shares: exponential backoff.

Webhook runs (`sync.firing`) and notices (`sync.outbox`) are both claimed before the network call
(`Database.skip_locked`), sent with no transaction open, and recorded afterwards, then retried this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Backoff:
    first: timedelta
    cap: timedelta

    def after(self, attempts: int) -> timedelta:
        """The wait after `attempts` failed attempts: `first`, doubling each time, capped at `cap`."""
        delay: timedelta = self.first * (2 ** max(attempts - 1, 0))
        return min(delay, self.cap)

