"""Why a slot can or cannot be booked (DESIGN.md section 5): every candidate of a day with its reasons.

The answer comes from the same `availability.check` the booking page and the booking use. A CONFLICT names
the external event behind it: its calendar, when it was fetched, and its title, but the title only to the
member who owns the event (a colleague sees that the time is taken, not what it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.enums import ConnectionStatus
from storage.models import Appointment, BlockedSlot, Calendar, CalendarMember, Connection, RemoteCalendar, User
from sync.availability import Busy, Finding, Reason, Rules, check, day_grid, load_view, open_slots
from sync.payloads import rfc3339
from sync.teams import get_team_calendar


@dataclass(frozen=True)
class _Source:
    """Where a blocked slot came from, for naming it."""

    calendar_id: str
    calendar_name: str
    title: str | None
    fetched_at: datetime
    broken: str | None  # the connection's error when it is broken: the block may be out of date


async def troubleshoot(
    db: Database, calendar_id: str, day: date, now: datetime, *, viewer_id: str | None = None
) -> list[dict[str, Any]]:
    team = await get_team_calendar(db, calendar_id)
    rules = Rules.of(team.calendar, team.member_ids)
    candidates = day_grid(rules, day)
    if not candidates:
        return []
    opened = set(open_slots(rules, candidates[0], candidates[-1] + timedelta(microseconds=1)))
    async with db.session() as session:
        view = await load_view(session, rules, candidates[0], candidates[-1] + rules.duration, now, slot_ids=True)
        checks = [check(view, start, detailed=True) for start in candidates]
        busy = [f.busy for c in checks for f in c.findings if f.busy is not None]
        sources = await _sources(session, [b.blocked_slot_id for b in busy if b.blocked_slot_id])
        titles = await _appointment_titles(session, [b.appointment_id for b in busy if b.appointment_id])

    items = []
    for result in checks:
        reasons = [] if result.start in opened else [{"code": Reason.OUTSIDE_HOURS.value}]
        for finding in result.findings:
            reasons.extend(_reasons(finding, sources, titles, viewer_id))
        items.append({
            "start": rfc3339(result.start), "end": rfc3339(result.end),
            "available": result.available and result.start in opened,
            "member_ids": list(result.member_ids), "reasons": reasons,
        })
    return items


async def troubleshoot_between(
    db: Database, calendar_id: str, start: datetime, end: datetime, now: datetime, *, viewer_id: str | None = None
) -> list[dict[str, Any]]:
    """The items of `troubleshoot` whose slot starts in [start, end), over every day of the calendar's time
    zone that the span touches: a day of a user in another zone is two part-days of the calendar."""
    zone = ZoneInfo((await get_team_calendar(db, calendar_id)).calendar.timezone)
    first, last = start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date()
    items: list[dict[str, Any]] = []
    for offset in range((last - first).days + 1):
        items.extend(item for item in await troubleshoot(db, calendar_id, first + timedelta(days=offset), now,
                                                         viewer_id=viewer_id)
                     if start <= datetime.fromisoformat(item["start"]) < end)
    return items


def _reasons(
    finding: Finding, sources: dict[str, _Source], titles: dict[str, tuple[str, str | None]], viewer_id: str | None
) -> list[dict[str, Any]]:
    reason: dict[str, Any] = {"code": finding.code.value}
    if finding.user_id is not None:
        reason["user_id"] = finding.user_id
    if finding.detail is not None:
        reason["detail"] = finding.detail
    busy = finding.busy
    if busy is None:
        return [reason]
    own = viewer_id is not None and viewer_id == busy.user_id
    if busy.appointment_id is not None:
        reason["detail"] = f"appointment {busy.appointment_id}" + (" (its buffer)" if busy.start != busy.core_start
                                                                    or busy.end != busy.core_end else "")
        start, end = busy.span
        title, calendar_name = titles.get(busy.appointment_id, (None, None))
        reason["event"] = {
            "appointment_id": busy.appointment_id, "calendar_id": busy.calendar_id,
            "calendar_name": calendar_name, "title": title if own else None,
            "start": rfc3339(start), "end": rfc3339(end), "fetched_at": None,
        }
        return [reason]
    source = sources.get(busy.blocked_slot_id or "")
    if source is None:
        return [reason]
    reason["detail"] = f"busy in {source.calendar_name}"
    reason["event"] = _event(busy, source, own)
    if source.broken is None:
        return [reason]
    stale = {"code": Reason.STALE.value, "user_id": busy.user_id, "event": reason["event"],
             "detail": f"the connection that feeds {source.calendar_name} is broken ({source.broken}): "
                       "this event may have changed since it was fetched"}
    return [reason, stale]


def _event(busy: Busy, source: _Source, own: bool) -> dict[str, Any]:
    start, end = busy.span
    return {
        "calendar_id": source.calendar_id, "calendar_name": source.calendar_name,
        "title": source.title if own else None,
        "start": rfc3339(start), "end": rfc3339(end), "fetched_at": rfc3339(source.fetched_at),
    }


async def _sources(session: AsyncSession, slot_ids: list[str]) -> dict[str, _Source]:
    if not slot_ids:
        return {}
    rows = await session.execute(
        select(col(BlockedSlot.id), col(RemoteCalendar.id), col(RemoteCalendar.name), col(BlockedSlot.title),
               col(BlockedSlot.fetched_at), col(Connection.status), col(Connection.last_error))
        .join(RemoteCalendar, col(RemoteCalendar.id) == col(BlockedSlot.remote_calendar_id))
        .join(Connection, col(Connection.id) == col(RemoteCalendar.connection_id))
        .where(col(BlockedSlot.id).in_(set(slot_ids)))
    )
    return {
        slot_id: _Source(calendar_id, name, title, fetched_at,
                         (error or "broken") if status == ConnectionStatus.BROKEN else None)
        for slot_id, calendar_id, name, title, fetched_at, status, error in rows.tuples()
    }


async def _appointment_titles(
    session: AsyncSession, appointment_ids: list[str]
) -> dict[str, tuple[str, str | None]]:
    """Each appointment's title and its team calendar's name (None for an imported one)."""
    if not appointment_ids:
        return {}
    rows = await session.execute(
        select(col(Appointment.id), col(Appointment.title), col(Calendar.name))
        .outerjoin(Calendar, col(Calendar.id) == col(Appointment.calendar_id))
        .where(col(Appointment.id).in_(set(appointment_ids)))
    )
    return {appointment_id: (title, name) for appointment_id, title, name in rows.tuples()}


@dataclass(frozen=True)
class MemberCalendar:
    """A team calendar a user is a member of, with every member's name: `/croco why` says whose time is taken."""

    id: str
    name: str
    timezone: str
    member_names: tuple[tuple[str, str], ...]  # (user id, name), in the members' order


async def calendars_of_member(db: Database, user_id: str) -> list[MemberCalendar]:
    """The team calendars `user_id` is a member of, by name."""
    async with db.session() as session:
        calendars = list(await session.scalars(
            select(Calendar).join(CalendarMember, col(CalendarMember.calendar_id) == col(Calendar.id))
            .where(col(CalendarMember.user_id) == user_id).order_by(col(Calendar.name), col(Calendar.id))))
        if not calendars:
            return []
        rows = await session.execute(
            select(col(CalendarMember.calendar_id), col(User.id), col(User.name))
            .join(User, col(User.id) == col(CalendarMember.user_id))
            .where(col(CalendarMember.calendar_id).in_([c.id for c in calendars]))
            .order_by(col(CalendarMember.position)))
    names: dict[str, list[tuple[str, str]]] = {c.id: [] for c in calendars}
    for calendar_id, member_id, name in rows.tuples():
        names[calendar_id].append((member_id, name))
    return [MemberCalendar(c.id, c.name, c.timezone, tuple(names[c.id])) for c in calendars]
