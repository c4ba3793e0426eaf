"""Queries shared by more than one service, so each has one definition and one test surface."""

from __future__ import annotations

import zlib
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import (
    Appointment,
    AppointmentAssignee,
    BlockedSlot,
    ConflictCalendar,
    Connection,
    RemoteCalendar,
    Workspace,
)


async def serialize(session: AsyncSession, name: str) -> None:
    """Hold a lock named `name` until the transaction ends, so check-then-insert runs one process at a time.

    PostgreSQL: a transaction-scoped advisory lock. SQLite needs nothing here: `Database.write()` already
    took the database write lock with BEGIN IMMEDIATE.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(name.encode())})


async def default_workspace(session: AsyncSession) -> Workspace | None:
    found: Workspace | None = await session.scalar(select(Workspace).where(col(Workspace.is_default)).limit(1))
    return found


async def team_workspace(session: AsyncSession, slack_team_id: str) -> Workspace | None:
    found: Workspace | None = await session.scalar(
        select(Workspace).where(col(Workspace.slack_team_id) == slack_team_id))
    return found


async def user_calendars(session: AsyncSession, user_id: str) -> list[RemoteCalendar]:
    """Every calendar of every connection of the user, by name."""
    return list(await session.scalars(
        select(RemoteCalendar).join(Connection, col(Connection.id) == col(RemoteCalendar.connection_id))
        .where(col(Connection.user_id) == user_id).order_by(col(RemoteCalendar.name), col(RemoteCalendar.id))
    ))


async def connection_calendar_ids(session: AsyncSession, connection_id: str) -> list[str]:
    return list(await session.scalars(
        select(col(RemoteCalendar.id)).where(col(RemoteCalendar.connection_id) == connection_id)
    ))


async def conflict_calendar_ids(session: AsyncSession, user_id: str) -> list[str]:
    return sorted(await session.scalars(
        select(col(ConflictCalendar.calendar_id)).where(col(ConflictCalendar.user_id) == user_id)
    ))


async def blocked_slots_between(
    session: AsyncSession, user_id: str, start: datetime, end: datetime
) -> list[BlockedSlot]:
    """The user's blocked slots overlapping [start, end), by start."""
    return list(await session.scalars(
        select(BlockedSlot).where(
            col(BlockedSlot.user_id) == user_id, col(BlockedSlot.start) < end, col(BlockedSlot.end) > start
        ).order_by(col(BlockedSlot.start), col(BlockedSlot.id))
    ))


async def appointments_between(
    session: AsyncSession, user_id: str, start: datetime, end: datetime
) -> list[Appointment]:
    """Appointments assigned to the user overlapping [start, end), any origin and status, by start."""
    return list(await session.scalars(
        select(Appointment)
        .join(AppointmentAssignee, col(AppointmentAssignee.appointment_id) == col(Appointment.id))
        .where(col(AppointmentAssignee.user_id) == user_id, col(Appointment.start) < end, col(Appointment.end) > start)
        .order_by(col(Appointment.start), col(Appointment.id))
    ))
