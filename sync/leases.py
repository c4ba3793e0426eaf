"""Which process syncs which calendar: due calendars are claimed with a short lease, renewed while held.

PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint sets without waiting.
SQLite: the claim runs in a BEGIN IMMEDIATE transaction (`Database.write`), which serialises claimers.
A lease must not outlive its holder: it lasts `LeasePolicy.length` (30 s) unless the holder's heartbeat
renews it, so a process that died (kill -9, power loss) leaves its calendars claimable within one length.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CompoundSelect, Select, case, func, literal, or_, select, union_all, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from storage.db import Database
from storage.enums import ConnectionStatus
from storage.models import ConflictCalendar, Connection, RemoteCalendar, SyncSettings
from storage.types import Clock, UTCDateTime

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(seconds=30)
POLL = timedelta(seconds=0.5)


@dataclass(frozen=True)
class LeasePolicy:
    """How long a claim lasts unrenewed, how often its holder renews it, how often a waiter looks again.

    The heartbeat runs several times per length, so one late renewal (a busy database) does not lose it."""

    length: timedelta = DEFAULT_LEASE
    heartbeat: timedelta = DEFAULT_LEASE / 3
    poll: timedelta = POLL

    @classmethod
    def lasting(cls, length: timedelta) -> LeasePolicy:
        return cls(length, heartbeat=length / 3, poll=min(POLL, length / 10))


DEFAULT_POLICY = LeasePolicy()


def _selected_calendars() -> CompoundSelect[tuple[str | None]]:
    """Calendars some user has chosen as linked or conflict: only those are synced. UNION ALL: an IN needs no
    duplicates removed first (that sort was most of a `/metrics` scrape's cost on SQLite, bench/metrics.py)."""
    return union_all(
        select(col(SyncSettings.linked_calendar_id)).where(col(SyncSettings.linked_calendar_id).is_not(None)),
        select(col(ConflictCalendar.calendar_id)),
    )


def syncable(user_id: str | None = None, only: Collection[str] | None = None) -> Select[tuple[str]]:
    """Selected calendars of working connections (of one user, among `only`, when given)."""
    query = (
        select(col(RemoteCalendar.id))
        .join(Connection, col(Connection.id) == col(RemoteCalendar.connection_id))
        .where(col(Connection.status) == ConnectionStatus.OK, col(RemoteCalendar.id).in_(_selected_calendars()))
    )
    if user_id is not None:
        query = query.where(col(Connection.user_id) == user_id)
    if only is not None:
        query = query.where(col(RemoteCalendar.id).in_(only))
    return query


async def claim_due(
    db: Database, owner: str, now: datetime, *, limit: int = 50, lease: timedelta = DEFAULT_LEASE,
    user_id: str | None = None, include_not_due: bool = False, only: Collection[str] | None = None,
) -> list[str]:
    """Claim up to `limit` due calendars for `owner`; returns their ids, the longest-waiting first.

    `include_not_due` claims calendars that are not due yet too ("sync now"), still skipping leased ones.
    A claimed calendar's due time is cleared: one set while it is held (a push notification, a booking) says
    it changed after the sync may have read it, and `release` keeps it.
    """
    query = (
        syncable(user_id, only)
        .where(or_(col(RemoteCalendar.lease_expires_at).is_(None), col(RemoteCalendar.lease_expires_at) <= now))
        .order_by(col(RemoteCalendar.due_at).is_not(None), col(RemoteCalendar.due_at))
        .limit(limit)
    )
    if not include_not_due:
        query = query.where(or_(col(RemoteCalendar.due_at).is_(None), col(RemoteCalendar.due_at) <= now))
    async with db.write() as session:
        ids = list(await session.scalars(db.skip_locked(query, RemoteCalendar)))
        if ids:
            await session.execute(
                update(RemoteCalendar)
                .where(col(RemoteCalendar.id).in_(ids))
                .values(lease_owner=owner, lease_expires_at=now + lease, due_at=None)
            )
    return ids


async def selected(db: Database, user_id: str) -> list[str]:
    """The user's syncable calendars, leased or not."""
    async with db.session() as session:
        return list(await session.scalars(syncable(user_id).order_by(col(RemoteCalendar.id))))


async def leased(db: Database, now: datetime, *, user_id: str | None = None,
                 only: Collection[str] | None = None) -> list[str]:
    """Syncable calendars whose lease has not run out: some live process is syncing them."""
    async with db.session() as session:
        return list(await session.scalars(
            syncable(user_id, only).where(col(RemoteCalendar.lease_expires_at) > now).order_by(col(RemoteCalendar.id))
        ))


async def renew(db: Database, calendar_ids: Collection[str], owner: str, *, expires_at: datetime) -> int:
    """Extend the leases `owner` still holds among `calendar_ids`; returns how many it holds.

    A calendar already released, or lost to another owner after a lapse, is left alone."""
    async with db.write() as session:
        result = await session.execute(
            update(RemoteCalendar)
            .where(col(RemoteCalendar.id).in_(calendar_ids), col(RemoteCalendar.lease_owner) == owner)
            .values(lease_expires_at=expires_at)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


@asynccontextmanager
async def heartbeat(
    db: Database, calendar_ids: Collection[str], owner: str, policy: LeasePolicy, clock: Clock,
) -> AsyncIterator[None]:
    """Renew the leases of `calendar_ids` every `policy.heartbeat` while the block runs; they lapse
    within one `policy.length` of the process dying. A failed renewal is logged; the next beat tries again."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(policy.heartbeat.total_seconds())
            try:
                await renew(db, calendar_ids, owner, expires_at=clock() + policy.length)
            except SQLAlchemyError:
                log.warning("lease renewal failed", exc_info=True, extra={"owner": owner})

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def release(db: Database, calendar_id: str, owner: str, *, next_due: datetime,
                  watched_due: datetime | None = None) -> None:
    """Give the calendar back and say when it is due again. A lease lost to another owner is left alone.

    A due time set while it was held wins (it changed meanwhile). `watched_due`, later than `next_due`, is the
    safety poll of a calendar with a live push channel (its notifications mark it due): it applies while the
    channel lives, and a channel ending sooner makes the calendar due when it ends."""
    expires, at = col(RemoteCalendar.push_channel_expires_at), functools.partial(literal, type_=UTCDateTime())
    later = at(next_due) if watched_due is None else case(
        (expires >= at(watched_due), at(watched_due)), (expires > at(next_due), expires), else_=at(next_due))
    async with db.write() as session:
        await session.execute(
            update(RemoteCalendar)
            .where(col(RemoteCalendar.id) == calendar_id, col(RemoteCalendar.lease_owner) == owner)
            .values(lease_owner=None, lease_expires_at=None, due_at=func.coalesce(col(RemoteCalendar.due_at), later))
        )
