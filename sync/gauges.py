"""The freshness and backlog gauges of `/metrics` (API.md "Operations"), read from the database at scrape time, so
several `croco serve` processes sharing one database report the same figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import col

from storage.db import Database
from storage.models import Notice, RemoteCalendar
from sync import leases


@dataclass(frozen=True)
class Gauges:
    """The database's figures at one moment, the same whichever process reads them."""

    calendars_due: int  # selected calendars of working connections past their due time
    sync_lag_seconds: float  # how far past its due time the most overdue one is (0: none is)
    outbox_undelivered: int  # notices neither delivered nor failed for good
    outbox_oldest_undelivered_seconds: float  # the age of the oldest of them (0: none)


async def read_gauges(db: Database, now: datetime) -> Gauges:
    """Two aggregate queries (bench/metrics.py measures them at 10,000 calendars and 100,000 notices).

    Calendars: the syncable ones themselves, filtered by due time, rather than calendars whose id is among
    them, which looked each one up a second time. The selection is the narrow side: calendars nobody selected
    keep the due time they were listed with, so `due_at <= now` holds for all of them.
    Notices: an index-only range of `ix_notice_delivery` (undelivered, not failed, by creation time)."""
    async with db.session() as session:
        due = (await session.execute(
            leases.syncable().with_only_columns(func.count(), func.min(col(RemoteCalendar.due_at)))
            .where(col(RemoteCalendar.due_at) <= now)
        )).one()
        pending = (await session.execute(
            select(func.count(), func.min(col(Notice.created_at)))
            .where(col(Notice.delivered_at).is_(None), col(Notice.failed_at).is_(None))
        )).one()
    return Gauges(int(due[0]), _seconds_since(due[1], now), int(pending[0]), _seconds_since(pending[1], now))


def _seconds_since(moment: datetime | None, now: datetime) -> float:
    return max((now - moment).total_seconds(), 0.0) if moment is not None else 0.0
