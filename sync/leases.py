"""Which process syncs which calendar: due calendars are claimed with a lease.

PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint sets without waiting.
SQLite: the claim runs in a BEGIN IMMEDIATE transaction (`Database.write`), which serialises claimers.
A lease that expires (the process died) makes the calendar claimable again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import CompoundSelect, or_, select, union, update
from sqlmodel import col

from storage.db import Database
from storage.enums import ConnectionStatus
from storage.models import ConflictCalendar, Connection, RemoteCalendar, SyncSettings

DEFAULT_LEASE = timedelta(minutes=10)


def _selected_calendars() -> CompoundSelect[tuple[str | None]]:
    """Calendars some user has chosen as linked or conflict: only those are synced."""
    return union(
        select(col(SyncSettings.linked_calendar_id)).where(col(SyncSettings.linked_calendar_id).is_not(None)),
        select(col(ConflictCalendar.calendar_id)),
    )


async def claim_due(
    db: Database, owner: str, now: datetime, *, limit: int = 50, lease: timedelta = DEFAULT_LEASE,
    user_id: str | None = None, include_not_due: bool = False,
) -> list[str]:
    """Claim up to `limit` due calendars for `owner`; returns their ids, the longest-waiting first.

    `include_not_due` claims calendars that are not due yet too ("sync now"), still skipping leased ones.
    """
    query = (
        select(col(RemoteCalendar.id))
        .join(Connection, col(Connection.id) == col(RemoteCalendar.connection_id))
        .where(
            col(Connection.status) == ConnectionStatus.OK,
            col(RemoteCalendar.id).in_(_selected_calendars()),
            or_(col(RemoteCalendar.lease_expires_at).is_(None), col(RemoteCalendar.lease_expires_at) <= now),
        )
        .order_by(col(RemoteCalendar.due_at).is_not(None), col(RemoteCalendar.due_at))
        .limit(limit)
    )
    if not include_not_due:
        query = query.where(or_(col(RemoteCalendar.due_at).is_(None), col(RemoteCalendar.due_at) <= now))
    if user_id is not None:
        query = query.where(col(Connection.user_id) == user_id)
    async with db.write() as session:
        if db.is_postgresql:
            query = query.with_for_update(of=RemoteCalendar, skip_locked=True)
        ids = list(await session.scalars(query))
        if ids:
            await session.execute(
                update(RemoteCalendar)
                .where(col(RemoteCalendar.id).in_(ids))
                .values(lease_owner=owner, lease_expires_at=now + lease)
            )
    return ids


async def release(db: Database, calendar_id: str, owner: str, *, next_due: datetime) -> None:
    """Give the calendar back and say when it is due again. A lease lost to another owner is left alone."""
    async with db.write() as session:
        await session.execute(
            update(RemoteCalendar)
            .where(col(RemoteCalendar.id) == calendar_id, col(RemoteCalendar.lease_owner) == owner)
            .values(lease_owner=None, lease_expires_at=None, due_at=next_due)
        )
