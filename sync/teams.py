"""Team calendars (Round Robin, Service, Class, Collective): their rules and members."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.enums import CalendarKind
from storage.models import Calendar, CalendarMember, User
from sync.errors import Invalid, NotFound

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAY = [["00:00", "24:00"]]
HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")
OpenHours = dict[str, list[list[str]]]
ALL_DAY_WEEK: OpenHours = {day: ALL_DAY for day in WEEKDAYS}


@dataclass(frozen=True)
class TeamCalendarSpec:
    """A team calendar as asked for; `create_team_calendar` checks it and fills the defaults."""

    name: str
    kind: CalendarKind
    member_ids: list[str]
    duration_minutes: int
    timezone: str
    slot_interval_minutes: int | None = None  # default: the duration
    open_hours: OpenHours | None = None  # default: every day 00:00-24:00
    capacity: int | None = None  # class only; default 1 seat
    buffer_before_minutes: int = 0
    buffer_after_minutes: int = 0
    min_notice_minutes: int = 0
    max_days_ahead: int = 60


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


def validate_open_hours(open_hours: OpenHours) -> OpenHours:
    """Every weekday with its ranges, sorted: ["HH:MM", "HH:MM"] with 24:00 allowed as an end, start before
    end, no overlaps. A day left out (or given []) is closed."""
    for day, ranges in open_hours.items():
        if day not in WEEKDAYS:
            raise Invalid(f"open_hours: unknown day {day!r} (use {', '.join(WEEKDAYS)})")
        previous_end = -1
        for pair in sorted(ranges):
            if len(pair) != 2 or not all(HHMM.match(t) for t in pair):
                raise Invalid(f"open_hours.{day}: {pair} is not a range [\"HH:MM\", \"HH:MM\"]")
            start, end = map(_minutes, pair)
            if start >= end:
                raise Invalid(f"open_hours.{day}: {pair[0]}-{pair[1]} does not end after it starts")
            if start < previous_end:
                raise Invalid(f"open_hours.{day}: ranges overlap")
            previous_end = end
    return {day: sorted(open_hours.get(day, [])) for day in WEEKDAYS}


async def create_team_calendar(db: Database, workspace_id: str, spec: TeamCalendarSpec) -> TeamCalendar:
    """Members keep the order given (their position: the round robin tiebreak); a repeated id counts once."""
    member_ids = list(dict.fromkeys(spec.member_ids))
    if not member_ids:
        raise Invalid("member_ids: a team calendar needs at least one member")
    capacity = spec.capacity
    if spec.kind == CalendarKind.CLASS:
        capacity = capacity or 1
    elif capacity is not None:
        raise Invalid("capacity: only class calendars have seats")
    fields = asdict(spec) | {
        "open_hours": validate_open_hours(ALL_DAY_WEEK if spec.open_hours is None else spec.open_hours),
        "slot_interval_minutes": spec.slot_interval_minutes or spec.duration_minutes,
        "capacity": capacity,
    }
    del fields["member_ids"]
    async with db.write() as session:
        known = set(await session.scalars(select(col(User.id)).where(
            col(User.id).in_(member_ids), col(User.workspace_id) == workspace_id)))
        missing = [m for m in member_ids if m not in known]
        if missing:
            raise Invalid(f"member_ids: no user {missing[0]}")
        calendar = Calendar(workspace_id=workspace_id, **fields)
        session.add(calendar)
        await session.flush()
        session.add_all(CalendarMember(calendar_id=calendar.id, user_id=m, position=i)
                        for i, m in enumerate(member_ids))
    return TeamCalendar(calendar, member_ids)


async def get_team_calendar(db: Database, calendar_id: str) -> TeamCalendar:
    async with db.session() as session:
        return await load_team_calendar(session, calendar_id)


async def load_team_calendar(session: AsyncSession, calendar_id: str) -> TeamCalendar:
    calendar = await session.get(Calendar, calendar_id)
    if calendar is None:
        raise NotFound(f"no calendar {calendar_id}")
    members = await session.scalars(select(col(CalendarMember.user_id))
                                    .where(col(CalendarMember.calendar_id) == calendar_id)
                                    .order_by(col(CalendarMember.position)))
    return TeamCalendar(calendar, list(members))
