"""Availability reads busy time by two bounded ranges (`sync/availability.py` `_overlapping`): rows starting
shortly before the range, and long rows still running. Whatever their length, every row overlapping the
range must be read and no other, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import col

from storage.db import Database
from storage.enums import CalendarKind, Origin
from storage.models import LONG_BUSY, Appointment, AppointmentAssignee, BlockedSlot, Connection, RemoteCalendar
from storage.secrets import SecretBox
from sync import accounts, availability, credentials, teams
from sync.providers.base import AppPassword
from tests.factories import add_connection, insert_as_of

PARIS = ZoneInfo("Europe/Paris")
LOW = datetime(2027, 3, 22, 8, tzinfo=UTC)  # the range asked for: a Monday 09:00 in Paris, for a week
HIGH = LOW + timedelta(days=7)
SECOND = timedelta(seconds=1)
LENGTHS = (timedelta(minutes=30), timedelta(hours=25), LONG_BUSY - SECOND, LONG_BUSY - SECOND / 2, LONG_BUSY,
           LONG_BUSY + SECOND / 2, LONG_BUSY + SECOND, timedelta(days=12), timedelta(days=400))
NUDGES = (-SECOND, -SECOND / 2, timedelta(0), SECOND / 2, SECOND, timedelta(hours=3))


def around(edge: datetime) -> list[tuple[datetime, datetime]]:
    """Rows of every length ending just before, at and just after `edge`, and starting around the point
    LONG_BUSY before it, where the two ranges of the query meet."""
    return ([(edge - length + nudge, edge + nudge) for length in LENGTHS for nudge in NUDGES]
            + [(edge - LONG_BUSY + nudge, edge - LONG_BUSY + nudge + length) for length in LENGTHS for nudge in NUDGES])


def overlapping(rows: dict[str, tuple[datetime, datetime]], low: datetime, high: datetime) -> set[str]:
    return {key for key, (start, end) in rows.items() if start < high and end > low}


async def member_and_calendar(db: Database, box: SecretBox, workspace: str | None = None, *,
                              as_of: bool = False) -> tuple[str, str, str]:
    """Ann, her calendar and a team calendar of hers; `as_of`: into an older schema (a migration's test)."""
    workspace = workspace or await accounts.default_workspace(db)
    user = await accounts.create_user(db, workspace, "Ann", "ann@team.example", "Europe/Paris", None)
    if as_of:
        connection = Connection(user_id=user.id, provider="caldav", account=user.email,
                                credentials=credentials.seal(box, AppPassword(user.email, "pw")))
        remote = RemoteCalendar(connection_id=connection.id, remote_id="/cal0/", name="Calendar 0")
        await insert_as_of(db, connection, remote)
    else:
        _, (remote,) = await add_connection(db, user, box)
    spec = teams.TeamCalendarSpec(name="Desk", kind=CalendarKind.ROUND_ROBIN, member_ids=[user.id],
                                  duration_minutes=30, timezone="Europe/Paris",
                                  open_hours={d: [["09:00", "17:00"]] for d in teams.WEEKDAYS})
    calendar = (await teams.create_team_calendar(db, workspace, spec)).calendar
    return user.id, remote.id, calendar.id


async def view_of(db: Database, calendar_id: str) -> availability.View:
    team = await teams.get_team_calendar(db, calendar_id)
    rules = availability.Rules.of(team.calendar, team.member_ids)
    async with db.session() as session:
        return await availability.load_view(session, rules, LOW, HIGH, LOW, slot_ids=True)


async def test_every_blocked_slot_overlapping_the_range_is_read_whatever_its_length(
    db: Database, secret_box: SecretBox
) -> None:
    user_id, remote_id, calendar_id = await member_and_calendar(db, secret_box)
    view = await view_of(db, calendar_id)
    low, high = LOW - view.rules.buffer_before, HIGH + view.rules.duration + view.rules.buffer_after
    slots = {f"ev{n}": span for n, span in enumerate(around(low) + around(high))}
    async with db.write() as session:
        session.add_all(BlockedSlot(id=f"{key:0>32}", user_id=user_id, remote_calendar_id=remote_id,
                                    remote_id=f"{key}.ics", start=start, end=end, fetched_at=LOW)
                        for key, (start, end) in slots.items())
        await session.flush()
        await availability.refresh_busy(session, user_id, slots.values())

    timeline = (await view_of(db, calendar_id)).busy[user_id]
    read = {b.blocked_slot_id for b in timeline.overlapping(low - timedelta(days=500), high + timedelta(days=500))}
    assert read == {f"{key:0>32}" for key in overlapping(slots, low, high)}
    assert any(end - start > timedelta(days=300) for start, end in (slots[k] for k in overlapping(slots, low, high)))


async def test_every_appointment_overlapping_the_range_is_read_whatever_its_length(
    db: Database, secret_box: SecretBox
) -> None:
    user_id, _, calendar_id = await member_and_calendar(db, secret_box)
    view = await view_of(db, calendar_id)
    margin = availability.APPOINTMENT_MARGIN
    low = LOW - view.rules.buffer_before - margin
    high = HIGH + view.rules.duration + view.rules.buffer_after + margin
    booked = {f"ap{n}": span for n, span in enumerate(around(low) + around(high))}
    async with db.write() as session:
        for key, (start, end) in booked.items():  # imported: a mirrored event of any length, like a holiday
            session.add(Appointment(id=f"{key:0>32}", start=start, end=end, origin=Origin.IMPORTED))
        await session.flush()
        session.add_all(AppointmentAssignee(appointment_id=f"{key:0>32}", user_id=user_id) for key in booked)

    timeline = (await view_of(db, calendar_id)).busy[user_id]
    read = {b.appointment_id for b in timeline.overlapping(low - timedelta(days=500), high + timedelta(days=500))}
    assert read == {f"{key:0>32}" for key in overlapping(booked, low, high)}


async def test_a_holiday_that_began_weeks_before_the_range_still_blocks_it(
    db: Database, secret_box: SecretBox
) -> None:
    user_id, remote_id, calendar_id = await member_and_calendar(db, secret_box)
    async with db.write() as session:
        session.add(BlockedSlot(user_id=user_id, remote_calendar_id=remote_id, remote_id="leave.ics",
                                start=LOW - timedelta(days=20), end=LOW + timedelta(days=2), all_day=True,
                                fetched_at=LOW))
        await session.flush()
        await availability.refresh_busy(session, user_id, [(LOW - timedelta(days=20), LOW + timedelta(days=2))])
    slots = await availability.free_slots_of(db, calendar_id, LOW, HIGH, LOW)
    assert slots and min(s.start for s in slots) >= LOW + timedelta(days=2)
    async with db.session() as session:  # the database flagged it long, whoever wrote it
        assert await session.scalar(select(col(BlockedSlot.long)).where(col(BlockedSlot.user_id) == user_id))
