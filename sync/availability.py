"""Free slots of team calendars (DESIGN.md section 5).

Everything comes from the database: browsing never calls a provider (external busy time is what the last
sync stored; a booking refreshes its member first, `sync/booking.py`). One evaluation, `check()`, serves the
free-slots list, the booking transaction and the troubleshooter, so the three can never disagree.

A member is busy over a booked appointment (any team calendar, widened by that calendar's buffers), a
blocking blocked slot, or a busy imported appointment. A slot is checked with its own calendar's buffers
around it: a slot whose bare time is free but whose buffer touches busy time is refused (BUFFER).
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from itertools import accumulate
from operator import itemgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Executable,
    Integer,
    Select,
    cast,
    delete,
    extract,
    func,
    insert,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.enums import AppointmentStatus, CalendarKind, Origin
from storage.models import (
    LONG_BUSY,
    Appointment,
    AppointmentAssignee,
    AppointmentContact,
    BlockedSlot,
    BusyPeriod,
    Calendar,
)
from storage.repositories import serialize
from sync.errors import Invalid
from sync.teams import WEEKDAYS, load_team_calendar

APPOINTMENT_MARGIN = timedelta(days=1, minutes=1)
"""Appointments are loaded this far around the range: their own calendar's buffers are at most a day
(web/schemas.py). Blocked slots have no buffers of their own: only the slots' windows count."""


class Reason(StrEnum):
    OUTSIDE_HOURS = "OUTSIDE_HOURS"
    PAST = "PAST"
    MIN_NOTICE = "MIN_NOTICE"
    TOO_FAR = "TOO_FAR"
    BOOKED = "BOOKED"
    CONFLICT = "CONFLICT"
    BUFFER = "BUFFER"
    NO_SEATS = "NO_SEATS"
    MEMBERS_BUSY = "MEMBERS_BUSY"
    STALE = "STALE"


@dataclass(frozen=True)
class Rules:
    """A team calendar's booking rules, in the units the evaluation uses."""

    calendar_id: str
    kind: CalendarKind
    member_ids: tuple[str, ...]
    zone: ZoneInfo
    open_hours: dict[str, list[list[str]]]
    duration: timedelta
    interval: timedelta
    capacity: int
    buffer_before: timedelta
    buffer_after: timedelta
    min_notice: timedelta
    max_ahead: timedelta

    @classmethod
    def of(cls, calendar: Calendar, member_ids: Sequence[str]) -> Rules:
        return cls(
            calendar.id, CalendarKind(calendar.kind), tuple(member_ids), ZoneInfo(calendar.timezone),
            calendar.open_hours, _minutes(calendar.duration_minutes), _minutes(calendar.slot_interval_minutes),
            calendar.capacity or 1, _minutes(calendar.buffer_before_minutes), _minutes(calendar.buffer_after_minutes),
            _minutes(calendar.min_notice_minutes), timedelta(days=calendar.max_days_ahead),
        )

    def check_member_choice(self, member_id: str | None) -> None:
        """A chosen member (service, or a preferred host) must be one of the calendar's; collective books all."""
        if member_id is None:
            return
        if self.kind == CalendarKind.COLLECTIVE:
            raise Invalid("member_id: a collective calendar books every member")
        if member_id not in self.member_ids:
            raise Invalid(f"member_id: {member_id} is not a member of this calendar")


def _minutes(count: int) -> timedelta:
    return timedelta(minutes=count)


# Candidate slots ---------------------------------------------------------------------------------


def _local(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    """A wall-clock time of the calendar as an instant; 24:00 is the next midnight. A time skipped by a DST
    change reads with the offset before it, so 02:30 on a spring-forward night is 03:30 summer time."""
    hours, minutes = map(int, hhmm.split(":"))
    if hours == 24:
        return datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    # In UTC: adding to an aware local time would step in wall-clock time, wrong across a DST change.
    return datetime.combine(day, time(hours, minutes), zone).astimezone(UTC)


def _local_days(start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[date]:
    """Every calendar day (in the calendar's zone) that an open range starting inside [start, end) can be on."""
    day, last = start.astimezone(zone).date() - timedelta(days=1), end.astimezone(zone).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def open_slots(rules: Rules, start: datetime, end: datetime) -> Iterator[datetime]:
    """Slot starts in [start, end) inside open hours: each open range is stepped by the interval in real
    time from its opening, and a slot must end by its closing (so a DST night makes a range shorter or longer,
    never shifts the day's grid)."""
    for day in _local_days(start, end, rules.zone):
        for opens, closes in rules.open_hours.get(WEEKDAYS[day.weekday()], []):
            slot, closing = _local(day, opens, rules.zone), _local(day, closes, rules.zone)
            while slot + rules.duration <= closing:
                if start <= slot < end:
                    yield slot
                slot += rules.interval


def day_grid(rules: Rules, day: date) -> list[datetime]:
    """The troubleshooter's candidates for one day: the open slots, and the interval grid from midnight
    for the hours outside them (so "why not 08:00?" has an answer)."""
    start, end = _local(day, "00:00", rules.zone), _local(day, "24:00", rules.zone)
    opened = list(open_slots(rules, start, end))
    taken = [(s, s + rules.duration) for s in opened]
    closed = []
    slot = start
    while slot + rules.duration <= end:
        if not any(s < slot + rules.duration and slot < e for s, e in taken):
            closed.append(slot)
        slot += rules.interval
    return sorted(opened + closed)


# What members are busy with ----------------------------------------------------------------------


class Busy(NamedTuple):
    """Time one member cannot be booked, in seconds since 1970 (browsing reads thousands of these: plain
    numbers, no datetime per row). `start`/`end` include the booked calendar's buffers."""

    start: int
    end: int
    core_start: int
    core_end: int
    user_id: str
    appointment_id: str | None = None
    calendar_id: str | None = None  # the team calendar of a booked appointment
    blocked_slot_id: str | None = None

    @property
    def span(self) -> tuple[datetime, datetime]:
        """The busy time itself, without buffers."""
        return datetime.fromtimestamp(self.core_start, UTC), datetime.fromtimestamp(self.core_end, UTC)


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


class BlockedRow(NamedTuple):
    """The layout of a blocked-slot row as `load_view` reads it. Timelines keep the database driver's own
    tuples in this order (browsing reads tens of thousands: an object per row costs a third of a request);
    `_busy` names them when a finding needs one."""

    start: int
    end: int
    user_id: str
    blocked_slot_id: str | None


def _busy(item: Busy | Sequence[Any]) -> Busy:
    if isinstance(item, Busy):
        return item
    row = BlockedRow._make(item)
    return Busy(row.start, row.end, row.start, row.end, row.user_id, blocked_slot_id=row.blocked_slot_id)


class Timeline:
    """A member's busy time sorted by start, with the running maximum of ends: one overlap test is a bisect.
    Items are `Busy` or driver rows laid out as `BlockedRow`: both begin with start and end."""

    def __init__(self, items: Iterable[Busy | Sequence[Any]]) -> None:
        self.items = sorted(items, key=itemgetter(0))
        self.starts = list(map(itemgetter(0), self.items))
        self.max_ends = list(accumulate(map(itemgetter(1), self.items), max))

    def free(self, start: datetime, end: datetime) -> bool:
        return self.free_between(_seconds(start), _seconds(end))

    def free_between(self, start: int, end: int) -> bool:
        before = bisect_left(self.starts, end)
        return not before or self.max_ends[before - 1] <= start

    def overlapping(self, start: datetime, end: datetime) -> list[Busy]:
        after = _seconds(start)
        return [_busy(b) for b in self.items[:bisect_left(self.starts, _seconds(end))] if b[1] > after]


@dataclass(frozen=True)
class ClassSession:
    """A booked session of a class calendar: one appointment, one contact per seat taken."""

    appointment_id: str
    member_ids: tuple[str, ...]
    attendees: int


@dataclass
class View:
    """Everything availability needs for one calendar over one range, loaded in one go."""

    rules: Rules
    now: datetime
    busy: dict[str, Timeline]
    sessions: dict[datetime, ClassSession]


async def load_view(
    session: AsyncSession, rules: Rules, start: datetime, end: datetime, now: datetime, *,
    member_ids: Sequence[str] | None = None, exclude_appointment: str | None = None, slot_ids: bool = False,
) -> View:
    """Busy time of the members (all, or `member_ids`) around [start, end); `exclude_appointment` is left
    out, so that rescheduling an appointment does not collide with itself. `slot_ids` reads each blocked
    slot's id too, for the troubleshooter to name its event: browsing reads thousands of rows without them."""
    members = tuple(member_ids if member_ids is not None else rules.member_ids)
    low, high = start - rules.buffer_before, end + rules.duration + rules.buffer_after  # every slot's window
    dialect = session.get_bind().dialect.name
    booked_columns = {
        "start": _epoch(Appointment.start, dialect) - func.coalesce(col(Calendar.buffer_before_minutes), 0) * 60,
        "end": _epoch(Appointment.end, dialect) + func.coalesce(col(Calendar.buffer_after_minutes), 0) * 60,
        "core_start": _epoch(Appointment.start, dialect), "core_end": _epoch(Appointment.end, dialect),
        "user_id": col(AppointmentAssignee.user_id), "appointment_id": col(Appointment.id),
        "calendar_id": col(Appointment.calendar_id), "blocked_slot_id": null(),
    }
    appointments = (
        select(*(booked_columns[name].label(name) for name in Busy._fields))
        .join(AppointmentAssignee, col(AppointmentAssignee.appointment_id) == col(Appointment.id))
        .outerjoin(Calendar, col(Calendar.id) == col(Appointment.calendar_id))
        .where(
            _by_time_first(col(AppointmentAssignee.user_id), dialect).in_(members),
            col(Appointment.status) == AppointmentStatus.BOOKED,
            col(Appointment.busy).is_(True), col(Appointment.id) != (exclude_appointment or ""),
        )
    )
    # The troubleshooter reads each blocking slot; browsing and booking their union, the merged periods
    # (the same busy time: a slot overlaps the union of spans exactly when it overlaps one of them).
    source: type[BlockedSlot | BusyPeriod] = BlockedSlot if slot_ids else BusyPeriod
    blocked_columns = {  # the widest query: only the two times are computed, the rest is read from the index
        "start": _epoch(source.start, dialect), "end": _epoch(source.end, dialect),
        "user_id": col(source.user_id), "blocked_slot_id": col(BlockedSlot.id) if slot_ids else null(),
    }
    blocked = select(*(blocked_columns[name].label(name) for name in BlockedRow._fields)).where(
        col(source.user_id).in_(members))
    if slot_ids:
        blocked = blocked.where(col(BlockedSlot.busy).is_(True))
    connection = await session.connection()
    booked = [Busy._make(row) for row in await _driver_rows(
        connection, _overlapping(appointments, Appointment, low - APPOINTMENT_MARGIN, high + APPOINTMENT_MARGIN))]
    busy: dict[str, list[Busy | Sequence[Any]]] = defaultdict(list)
    for item in booked:
        busy[item.user_id].append(item)
    owner = itemgetter(BlockedRow._fields.index("user_id"))
    for row in await _driver_rows(connection, _overlapping(blocked, source, low, high)):
        busy[owner(row)].append(row)

    sessions: dict[datetime, ClassSession] = {}
    if rules.kind == CalendarKind.CLASS:
        sessions = await _class_sessions(session, rules, booked, low, high, exclude_appointment)
    return View(rules, now, {m: Timeline(busy.get(m, [])) for m in members}, sessions)


def _overlapping(query: Select[Any], model: type[Appointment | BlockedSlot | BusyPeriod], low: datetime,
                 high: datetime) -> CompoundSelect[Any]:
    """The rows of `query` whose `model` time overlaps [low, high), as two index ranges that never reach
    into the history: the rows starting less than LONG_BUSY before `low` (every shorter one that overlaps),
    and the long ones (flagged by the database, few) ending after `low`."""
    since = low - LONG_BUSY
    start, end = col(model.start), col(model.end)
    return union_all(
        query.where(start > since, start < high, end > low),
        query.where(col(model.long) == true(), start <= since, end > low),  # `= true`: what an index serves
    )


Span = tuple[datetime, datetime]

TICK = timedelta(microseconds=1)
"""The databases' time resolution: rows touching [low, high] are the rows overlapping (low - TICK, high + TICK)."""


def merge(spans: Iterable[Span]) -> list[Span]:
    """Disjoint periods covering exactly the spans, touching ones joined, sorted by start."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


async def refresh_busy(session: AsyncSession, user_id: str, changed: Iterable[Span]) -> None:
    """Recompute the user's busy periods after blocked slots spanning `changed` were written or deleted (pass
    both the old and the new times). Only the periods touching the changed time are rebuilt, from the
    blocking slots touching them; the others cannot have changed."""
    changed = list(changed)
    if not changed:
        return
    await serialize(session, f"busy-periods:{user_id}")  # two calendars of one user synced at once
    low, high = min(start for start, _ in changed), max(end for _, end in changed)

    async def touching(model: type[BlockedSlot | BusyPeriod], low: datetime, high: datetime) -> list[Span]:
        query = select(col(model.start), col(model.end)).where(col(model.user_id) == user_id)
        if model is BlockedSlot:
            query = query.where(col(BlockedSlot.busy).is_(True))
        rows = await session.execute(_overlapping(query, model, low - TICK, high + TICK))
        return [(start, end) for start, end in rows.tuples()]

    old = await touching(BusyPeriod, low, high)
    low, high = min([low, *(start for start, _ in old)]), max([high, *(end for _, end in old)])
    await session.execute(delete(BusyPeriod).where(
        col(BusyPeriod.user_id) == user_id, col(BusyPeriod.start) >= low, col(BusyPeriod.start) <= high))
    periods = merge(await touching(BlockedSlot, low, high))
    if periods:
        await session.execute(insert(BusyPeriod), [{"user_id": user_id, "start": s, "end": e} for s, e in periods])


def _by_time_first(column: Any, dialect: str) -> ColumnElement[Any]:
    """SQLite has no statistics to weigh a member's (or a calendar's) years of appointments against the
    week asked for: as an expression (`column || ''`) the column cannot be looked up in an index, so it
    finds the range's appointments by time first. PostgreSQL's statistics choose for themselves."""
    found: ColumnElement[Any] = column.concat("") if dialect == "sqlite" else column
    return found


async def _driver_rows(connection: AsyncConnection, query: Executable) -> Sequence[Sequence[Any]]:
    """The rows as the database driver returns them (tuples, asyncpg records), without a SQLAlchemy `Row`
    each: the query returns plain numbers and strings only, nothing to convert."""
    result = await connection.execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _epoch(column: Any, dialect: str) -> ColumnElement[int]:
    """Seconds since 1970, computed by the database (SQLite: `unixepoch` where it exists, a third faster)."""
    if dialect == "sqlite":
        return cast(func.unixepoch(column) if sqlite3.sqlite_version_info >= (3, 38) else func.strftime("%s", column),
                    Integer)
    return cast(func.floor(extract("epoch", column)), BigInteger)


async def _class_sessions(
    session: AsyncSession, rules: Rules, booked: list[Busy], low: datetime, high: datetime, exclude: str | None,
) -> dict[datetime, ClassSession]:
    attendees = (select(func.count()).where(col(AppointmentContact.appointment_id) == col(Appointment.id))
                 .scalar_subquery())
    sessions = select(col(Appointment.id), col(Appointment.start), attendees).where(
        _by_time_first(col(Appointment.calendar_id), session.get_bind().dialect.name) == rules.calendar_id,
        col(Appointment.origin) == Origin.SYSTEM, col(Appointment.status) == AppointmentStatus.BOOKED,
    )
    rows = await session.execute(_overlapping(sessions, Appointment, low, high))
    hosts: dict[str, list[str]] = defaultdict(list)
    for item in booked:
        hosts[str(item.appointment_id)].append(item.user_id)
    return {
        s_start: ClassSession(aid, tuple(sorted(hosts.get(aid, []))), attendees)
        for aid, s_start, attendees in rows.tuples() if aid != exclude
    }


# Checking a slot ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One reason a slot is not bookable, or a warning about it (STALE)."""

    code: Reason
    user_id: str | None = None
    detail: str | None = None
    busy: Busy | None = None


@dataclass(frozen=True)
class SlotCheck:
    start: datetime
    end: datetime
    member_ids: tuple[str, ...]  # who can take it (class: the session's host)
    seats_left: int | None
    findings: tuple[Finding, ...]
    session: ClassSession | None = None  # the class session this slot would add a seat to

    @property
    def available(self) -> bool:
        return bool(self.member_ids) and not any(f.code != Reason.STALE for f in self.findings)


def check(view: View, start: datetime, *, member_id: str | None = None, detailed: bool = False) -> SlotCheck:
    """Whether the slot at `start` can be booked, and by whom. Without `detailed`, member findings are left
    out (the free-slots list only needs the answer, the troubleshooter needs every reason)."""
    rules = view.rules
    end = start + rules.duration
    findings = list(_timing(view, start))
    if rules.kind == CalendarKind.CLASS and start in view.sessions:
        booked = view.sessions[start]
        seats = rules.capacity - booked.attendees
        if seats <= 0:
            findings.append(Finding(Reason.NO_SEATS, detail=f"all {rules.capacity} seats taken"))
        return SlotCheck(start, end, booked.member_ids if seats > 0 else (), max(seats, 0), tuple(findings), booked)

    members = (member_id,) if member_id is not None else rules.member_ids
    window = (start - rules.buffer_before, end + rules.buffer_after)
    low, high = _seconds(window[0]), _seconds(window[1])
    timelines = view.busy
    free = tuple(m for m in members if timelines[m].free_between(low, high))
    if detailed:
        for m in members:
            findings.extend(_member_findings(view.busy[m], m, start, end, window))
    busy_count = len(members) - len(free)
    if rules.kind == CalendarKind.COLLECTIVE and busy_count:
        free = ()
    if len(members) > 1 and not free:
        findings.append(Finding(Reason.MEMBERS_BUSY, detail=f"{busy_count} of {len(members)} busy"))
    seats_left = rules.capacity if rules.kind == CalendarKind.CLASS else None
    return SlotCheck(start, end, free, seats_left, tuple(findings))


def _timing(view: View, start: datetime) -> Iterator[Finding]:
    rules, now = view.rules, view.now
    if start < now:
        yield Finding(Reason.PAST)
    elif start < now + rules.min_notice:
        yield Finding(Reason.MIN_NOTICE, detail=f"bookable from {now + rules.min_notice:%Y-%m-%d %H:%M} UTC")
    if start > now + rules.max_ahead:
        yield Finding(Reason.TOO_FAR, detail=f"bookable up to {rules.max_ahead.days} days ahead")


def _member_findings(
    timeline: Timeline, user_id: str, start: datetime, end: datetime, window: tuple[datetime, datetime]
) -> Iterator[Finding]:
    for busy in timeline.overlapping(*window):
        if busy.core_start >= _seconds(end) or busy.core_end <= _seconds(start):
            yield Finding(Reason.BUFFER, user_id, busy=busy)
        else:
            yield Finding(Reason.BOOKED if busy.appointment_id else Reason.CONFLICT, user_id, busy=busy)


def free_slots(view: View, start: datetime, end: datetime, *, member_id: str | None = None) -> list[SlotCheck]:
    """The bookable slots starting in [start, end), limited to the booking horizon first (cheap to ask
    for a year: only what can be booked is evaluated)."""
    rules = view.rules
    first = max(start, view.now + rules.min_notice)
    last = min(end, view.now + rules.max_ahead + timedelta(microseconds=1))
    if first >= last:
        return []
    checks = (check(view, s, member_id=member_id) for s in open_slots(rules, first, last))
    return [c for c in checks if c.available]


async def free_slots_of(
    db: Database, calendar_id: str, start: datetime, end: datetime, now: datetime, *, member_id: str | None = None
) -> list[SlotCheck]:
    """`GET /calendars/{id}/free-slots`: one read transaction, no provider call."""
    async with db.session() as session:
        team = await load_team_calendar(session, calendar_id)
        rules = Rules.of(team.calendar, team.member_ids)
        rules.check_member_choice(member_id)
        view = await load_view(session, rules, max(start, now), end, now,
                               member_ids=[member_id] if member_id else None)
    return free_slots(view, start, end, member_id=member_id)


def in_open_hours(rules: Rules, start: datetime) -> bool:
    """Whether `start` is one of the calendar's slots (on the grid, inside open hours)."""
    return any(slot == start for slot in open_slots(rules, start, start + timedelta(microseconds=1)))

