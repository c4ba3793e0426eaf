"""Team calendars (Round Robin, Service, Class, Collective): their rules and members."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from storage.db import Database
from storage.models import Calendar, CalendarKind, CalendarMember, User
from sync.errors import Invalid, NotFound

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAY = [["00:00", "24:00"]]


@dataclass(frozen=True)
class TeamCalendar:
    calendar: Calendar
    member_ids: list[str]

    def as_json(self) -> dict[str, Any]:
        c = self.calendar
        return {
            "id": c.id, "name": c.name, "kind": c.kind, "member_ids": self.member_ids,
            "duration_minutes": c.duration_minutes, "slot_interval_minutes": c.slot_interval_minutes,
            "timezone": c.timezone, "open_hours": c.open_hours, "capacity": c.capacity,
            "buffer_before_minutes": c.buffer_before_minutes, "buffer_after_minutes": c.buffer_after_minutes,
            "min_notice_minutes": c.min_notice_minutes, "max_days_ahead": c.max_days_ahead,
        }


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def validate_open_hours(open_hours: dict[str, list[list[str]]]) -> dict[str, list[list[str]]]:
    """Ranges per weekday, "HH:MM"-"HH:MM" with 24:00 allowed as an end, ordered and not overlapping."""
    for day, ranges in open_hours.items():
        if day not in WEEKDAYS:
            raise Invalid(f"open_hours: unknown day {day!r} (use {', '.join(WEEKDAYS)})")
        previous_end = -1
        for start, end in sorted(ranges):
            if _minutes(start) >= _minutes(end):
                raise Invalid(f"open_hours.{day}: {start}-{end} ends before it starts")
            if _minutes(start) < previous_end:
                raise Invalid(f"open_hours.{day}: ranges overlap")
            previous_end = _minutes(end)
    return {day: sorted(open_hours.get(day, [])) for day in WEEKDAYS if day in open_hours}


async def create_team_calendar(db: Database, workspace_id: str, fields: dict[str, Any]) -> TeamCalendar:
    member_ids: list[str] = list(dict.fromkeys(fields.pop("member_ids")))
    kind = CalendarKind(fields["kind"])
    if kind == CalendarKind.CLASS:
        fields.setdefault("capacity", 1)
    elif fields.get("capacity") is not None:
        raise Invalid("capacity: only class calendars have seats")
    if kind in (CalendarKind.CLASS, CalendarKind.SERVICE) and not member_ids:
        raise Invalid("member_ids: at least one member is needed")
    fields["open_hours"] = validate_open_hours(fields.get("open_hours") or {d: ALL_DAY for d in WEEKDAYS})
    fields["slot_interval_minutes"] = fields.get("slot_interval_minutes") or fields["duration_minutes"]
    async with db.write() as session:
        known = set(await session.scalars(select(col(User.id)).where(
            col(User.id).in_(member_ids), col(User.workspace_id) == workspace_id)))
        missing = [m for m in member_ids if m not in known]
        if missing:
            raise Invalid(f"member_ids: no user {missing[0]}")
        calendar = Calendar(workspace_id=workspace_id, **{k: v for k, v in fields.items() if v is not None})
        session.add(calendar)
        await session.flush()
        session.add_all(CalendarMember(calendar_id=calendar.id, user_id=m, position=i)
                        for i, m in enumerate(member_ids))
    return TeamCalendar(calendar, member_ids)


async def get_team_calendar(db: Database, calendar_id: str) -> TeamCalendar:
    async with db.session() as session:
        calendar = await session.get(Calendar, calendar_id)
        if calendar is None:
            raise NotFound(f"no calendar {calendar_id}")
        members = await session.scalars(select(col(CalendarMember.user_id))
                                        .where(col(CalendarMember.calendar_id) == calendar_id)
                                        .order_by(col(CalendarMember.position)))
        return TeamCalendar(calendar, list(members))
