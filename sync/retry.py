"""What every at-least-once delivery in `sync/` shares: exponential backoff, and claiming rows without waiting.

Webhook runs (`sync.firing`) and notices (`sync.outbox`) are both claimed before the network call, sent with no
transaction open, and recorded afterwards; these are the parts that would otherwise be written twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Select

from storage.db import Database

S = TypeVar("S", bound=Select[Any])


@dataclass(frozen=True)
class Backoff:
    first: timedelta
    cap: timedelta

    def after(self, attempts: int) -> timedelta:
        """The wait after `attempts` failed attempts: `first`, doubling each time, capped at `cap`."""
        delay: timedelta = self.first * (2 ** max(attempts - 1, 0))
        return min(delay, self.cap)


def skip_locked(db: Database, query: S, of: Any) -> S:
    """PostgreSQL: lock the claimed rows of `of`, skipping rows another claimer holds, so concurrent claimers
    take disjoint sets without waiting. SQLite needs nothing: `Database.write` serialises claimers."""
    return query.with_for_update(of=of, skip_locked=True) if db.is_postgresql else query
