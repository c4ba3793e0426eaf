"""Why a slot can or cannot be booked (DESIGN.md section 5): every candidate of a day with its reasons.

The answer comes from the same `availability.check` the booking page and the booking use. A CONFLICT names
the external event behind it: its calendar, when it was fetched, and its title, but the title only to the
member who owns the event (a colleague sees that the time is taken, not what it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.enums import ConnectionStatus
from storage.models import Appointment, BlockedSlot, Connection, RemoteCalendar
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


def _reasons(
    finding: Finding, sources: dict[str, _Source], titles: dict[str, str], viewer_id: str | None
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
        reason["event"] = {
            "appointment_id": busy.appointment_id, "calendar_id": busy.calendar_id,
            "title": titles.get(busy.appointment_id) if own else None,
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
        "calendar_id": source.calendar_id, "title": source.title if own else None,
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


async def _appointment_titles(session: AsyncSession, appointment_ids: list[str]) -> dict[str, str]:
    if not appointment_ids:
        return {}
    rows = await session.execute(
        select(col(Appointment.id), col(Appointment.title)).where(col(Appointment.id).in_(set(appointment_ids)))
    )
    return dict(rows.tuples().all())
