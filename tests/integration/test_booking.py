"""Booking on team calendars against the database (SQLite and PostgreSQL): who gets the appointment,
what stays bookable, and that concurrent bookings never double-book (`sync/booking.py`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from storage.db import Database
from storage.enums import Action, CalendarKind, Origin, Trigger
from storage.models import (
    Appointment,
    AppointmentAssignee,
    AppointmentContact,
    Automation,
    AutomationRun,
    BlockedSlot,
    CalendarMember,
    Contact,
    RemoteCalendar,
)
from storage.secrets import SecretBox
from sync import accounts, availability, teams
from sync.booking import Booking, BookingRequest, rank_members
from sync.errors import Conflict, Invalid
from tests.factories import add_connection, select_calendars

PARIS = ZoneInfo("Europe/Paris")
MONDAY = date(2027, 3, 22)  # the Sunday after is the spring-forward night in Europe, not in New York
NOW = datetime(2027, 3, 22, 6, tzinfo=UTC)
NINE_TO_FIVE = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def at(day: date, hour: int, minute: int = 0, zone: ZoneInfo = PARIS) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)


def request(start: datetime, who: str = "Ada", member_id: str | None = None) -> BookingRequest:
    return BookingRequest(start, who, f"{who.lower()}@example.com", member_id=member_id)


@dataclass
class Team:
    db: Database
    box: SecretBox
    workspace_id: str
    users: dict[str, str]  # name -> id

    async def calendar(self, kind: CalendarKind, *names: str, **rules: object) -> str:
        spec = teams.TeamCalendarSpec(
            name=f"{kind.value} desk", kind=kind, member_ids=[self.users[n] for n in names], duration_minutes=60,
            timezone="Europe/Paris", open_hours=rules.pop("open_hours", NINE_TO_FIVE), **rules,  # type: ignore[arg-type]
        )
        return (await teams.create_team_calendar(self.db, self.workspace_id, spec)).calendar.id

    async def busy(self, name: str, start: datetime, end: datetime, *, busy: bool = True) -> None:
        """An external event already synced into a conflict calendar of the member."""
        async with self.db.session() as session:
            user = await accounts.get_user(session, self.users[name])
        _, (calendar,) = await add_connection(self.db, user, self.box)
        await select_calendars(self.db, user, linked=calendar, conflicts=[calendar])
        async with self.db.write() as session:
            session.add(BlockedSlot(user_id=user.id, remote_calendar_id=calendar.id, remote_id="ev.ics",
                                    start=start, end=end, busy=busy, title="Dentist", fetched_at=NOW))
            await session.flush()
            await availability.refresh_busy(session, user.id, [(start, end)])

    def booking(self, **kwargs: object) -> Booking:
        return Booking(self.db, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]

    async def free(self, calendar_id: str, day: date = MONDAY, member_id: str | None = None) -> list[str]:
        slots = await availability.free_slots_of(self.db, calendar_id, at(day, 0), at(day, 23, 59), NOW,
                                                 member_id=member_id)
        return [s.start.astimezone(PARIS).strftime("%H:%M") for s in slots]

    def name_of(self, user_id: str) -> str:
        return next(name for name, uid in self.users.items() if uid == user_id)

    async def assignees(self, appointment_id: str) -> list[str]:
        async with self.db.session() as session:
            ids = await session.scalars(select(AppointmentAssignee.user_id).where(
                AppointmentAssignee.appointment_id == appointment_id))
            return sorted(self.name_of(i) for i in ids)


@pytest.fixture
async def team(db: Database, secret_box: SecretBox) -> Team:
    workspace = await accounts.default_workspace(db)
    zones = {"ann": "Europe/Paris", "bob": "America/New_York", "cy": "Asia/Tokyo"}
    users = {name: (await accounts.create_user(db, workspace, name.title(), f"{name}@team.example", zone, None)).id
             for name, zone in zones.items()}
    return Team(db, secret_box, workspace, users)


# Each kind -----------------------------------------------------------------------------------------


async def test_round_robin_gives_each_booking_to_one_free_member(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann", "bob")
    await team.busy("ann", at(MONDAY, 9), at(MONDAY, 10))
    booking = team.booking()
    first = await booking.book(calendar, request(at(MONDAY, 9)))
    assert await team.assignees(first.id) == ["bob"]  # ann is busy then
    assert "09:00" not in await team.free(calendar)  # both taken now
    second = await booking.book(calendar, request(at(MONDAY, 11), "Bea"))
    assert await team.assignees(second.id) == ["ann"]  # bob has had his turn


async def test_round_robin_order_priority_then_weight_then_least_recently_booked(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann", "bob", "cy")
    ann, bob, cy = (team.users[n] for n in ("ann", "bob", "cy"))
    async with team.db.write() as session:
        for user_id, created in ((ann, NOW - timedelta(hours=1)), (bob, NOW - timedelta(days=2))):
            appointment = Appointment(calendar_id=calendar, start=NOW - timedelta(days=3), end=NOW - timedelta(days=3),
                                      created_at=created)
            session.add(appointment)
            await session.flush()
            session.add(AppointmentAssignee(appointment_id=appointment.id, user_id=user_id))
    async with team.db.session() as session:
        # one booking each (cy none): cy is furthest below their share; then bob, booked longer ago than ann
        assert await rank_members(session, calendar, [ann, bob, cy], NOW) == [cy, bob, ann]
    async with team.db.write() as session:
        await session.execute(update(CalendarMember).where(CalendarMember.user_id == cy).values(priority=1))
        await session.execute(update(CalendarMember).where(CalendarMember.user_id == ann).values(weight=300))
    async with team.db.session() as session:
        # cy drops to a lower priority; ann's weight gives her the larger share still to fill
        assert await rank_members(session, calendar, [ann, bob, cy], NOW) == [ann, bob, cy]


async def test_service_books_the_chosen_member_or_any_free_one(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.SERVICE, "ann", "bob")
    await team.busy("bob", at(MONDAY, 10), at(MONDAY, 11))
    assert "10:00" not in await team.free(calendar, member_id=team.users["bob"])
    assert "10:00" in await team.free(calendar)
    booking = team.booking()
    with pytest.raises(Conflict) as refused:
        await booking.book(calendar, request(at(MONDAY, 10), member_id=team.users["bob"]))
    assert refused.value.code == "slot_unavailable"
    chosen = await booking.book(calendar, request(at(MONDAY, 14), member_id=team.users["bob"]))
    assert await team.assignees(chosen.id) == ["bob"]
    anyone = await booking.book(calendar, request(at(MONDAY, 10), "Bea"))
    assert await team.assignees(anyone.id) == ["ann"]
    with pytest.raises(Invalid):
        await booking.book(calendar, request(at(MONDAY, 15), member_id="not-a-member"))


async def test_collective_books_everyone_and_needs_everyone_free(team: Team) -> None:
    """Members in Paris, New York and Tokyo: bob's all-day event (his New York day) closes Paris' Monday
    from 06:00 to Tuesday 06:00."""
    calendar = await team.calendar(CalendarKind.COLLECTIVE, "ann", "bob", "cy")
    new_york = ZoneInfo("America/New_York")
    await team.busy("bob", at(MONDAY, 0, zone=new_york), at(MONDAY + timedelta(days=1), 0, zone=new_york))
    assert await team.free(calendar) == []
    assert (await team.free(calendar, MONDAY + timedelta(days=1)))[0] == "09:00"
    with pytest.raises(Conflict):
        await team.booking().book(calendar, request(at(MONDAY, 9)))
    booked = await team.booking().book(calendar, request(at(MONDAY + timedelta(days=1), 9)))
    assert await team.assignees(booked.id) == ["ann", "bob", "cy"]


async def test_class_fills_one_session_seat_by_seat(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.CLASS, "ann", capacity=2)
    booking = team.booking()
    first = await booking.book(calendar, request(at(MONDAY, 9), "Ada"))
    slots = await availability.free_slots_of(team.db, calendar, at(MONDAY, 9), at(MONDAY, 10), NOW)
    assert [(s.seats_left, s.member_ids) for s in slots] == [(1, (team.users["ann"],))]
    with pytest.raises(Conflict) as twice:
        await booking.book(calendar, request(at(MONDAY, 9), "Ada"))
    assert twice.value.code == "already_booked"
    second = await booking.book(calendar, request(at(MONDAY, 9), "Bea"))
    assert second.id == first.id  # one session, two attendees
    with pytest.raises(Conflict) as full:
        await booking.book(calendar, request(at(MONDAY, 9), "Cid"))
    assert "NO_SEATS" in full.value.message
    async with team.db.session() as session:
        attendees = await session.scalars(select(Contact.email).join(
            AppointmentContact, AppointmentContact.contact_id == Contact.id).where(
            AppointmentContact.appointment_id == first.id))
        assert sorted(attendees) == ["ada@example.com", "bea@example.com"]
        sources = set(await session.scalars(select(Contact.source)))
        assert sources == {"booking"}
    offered = await team.free(calendar)
    assert "09:00" not in offered and "10:00" in offered  # full; the host is free again when the class ends


# Limits and what leaves a slot open ----------------------------------------------------------------


async def test_buffers_notice_and_horizon_limit_booking(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann", buffer_after_minutes=30,
                                   min_notice_minutes=4 * 60, max_days_ahead=7, slot_interval_minutes=30)
    await team.busy("ann", at(MONDAY, 13), at(MONDAY, 14))
    offered = await team.free(calendar)
    assert offered[0] == "11:00"  # 4 hours after 07:00 Paris time
    assert "12:00" not in offered and "11:30" in offered  # 12:00-13:00 and its 30 minutes after touch 13:00
    assert "14:00" in offered
    assert await team.free(calendar, MONDAY + timedelta(days=8)) == []
    with pytest.raises(Conflict):
        await team.booking().book(calendar, request(at(MONDAY, 12, 30)))
    with pytest.raises(Conflict):
        await team.booking().book(calendar, request(at(MONDAY, 9, 10)))  # not on the grid


async def test_another_calendars_buffer_reaches_into_a_range_that_starts_after_its_appointment(team: Team) -> None:
    """Browsing from 10:00 still sees a 09:00-10:00 appointment whose own calendar keeps 30 minutes after it."""
    with_buffer = await team.calendar(CalendarKind.ROUND_ROBIN, "ann", buffer_after_minutes=30)
    plain = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    await team.booking().book(with_buffer, request(at(MONDAY, 9)))
    slots = await availability.free_slots_of(team.db, plain, at(MONDAY, 10), at(MONDAY, 12), NOW)
    assert [s.start for s in slots] == [at(MONDAY, 11)]


async def test_a_returning_contact_is_reused_and_each_booking_fires_created(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    async with team.db.write() as session:
        session.add(Automation(workspace_id=team.workspace_id, trigger=Trigger.CREATED, action=Action.SLACK_DM))
    booking = team.booking()
    first = await booking.book(calendar, BookingRequest(at(MONDAY, 9), "Ada", "ada@example.com"))
    second = await booking.book(calendar, BookingRequest(at(MONDAY, 11), "Ada L.", "ADA@example.com"))
    async with team.db.session() as session:
        (contact,) = await session.scalars(select(Contact))
        linked = set(await session.scalars(select(AppointmentContact.appointment_id).where(
            AppointmentContact.contact_id == contact.id)))
        runs = set(await session.scalars(select(AutomationRun.appointment_id)))
    assert linked == runs == {first.id, second.id}


async def test_free_external_event_leaves_the_slot_open(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    await team.busy("ann", at(MONDAY, 13), at(MONDAY, 14), busy=False)
    assert "13:00" in await team.free(calendar)
    await team.booking().book(calendar, request(at(MONDAY, 13)))


async def test_older_sqlite_without_unixepoch_reads_the_same_busy_time(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    await team.busy("ann", at(MONDAY, 13), at(MONDAY, 14))
    await team.booking().book(calendar, request(at(MONDAY, 9)))
    offered = await team.free(calendar)
    monkeypatch.setattr(availability.sqlite3, "sqlite_version_info", (3, 37, 2))
    assert await team.free(calendar) == offered and "13:00" not in offered and "09:00" not in offered


async def test_spring_forward_week_keeps_local_open_hours(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    sunday = MONDAY + timedelta(days=6)  # 28 March 2027: Paris moves to UTC+2
    slots = await availability.free_slots_of(team.db, calendar, at(sunday, 0), at(sunday, 23), NOW)
    assert [s.start for s in slots][:1] == [datetime(2027, 3, 28, 7, tzinfo=UTC)] and len(slots) == 8


# Reschedule and cancel -----------------------------------------------------------------------------


async def test_reschedule_checks_the_members_and_fires_once(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    async with team.db.write() as session:
        session.add(Automation(workspace_id=team.workspace_id, trigger=Trigger.RESCHEDULED, action=Action.SLACK_DM))
    await team.busy("ann", at(MONDAY, 15), at(MONDAY, 16))
    booking = team.booking()
    appointment = await booking.book(calendar, request(at(MONDAY, 9)))
    with pytest.raises(Conflict):
        await booking.reschedule(appointment.id, start=at(MONDAY, 15))
    moved = await booking.reschedule(appointment.id, start=at(MONDAY, 11))
    assert (moved.start, moved.end) == (at(MONDAY, 11), at(MONDAY, 12))
    assert "09:00" in await team.free(calendar) and "11:00" not in await team.free(calendar)
    renamed = await booking.reschedule(appointment.id, title="Follow-up")
    assert renamed.title == "Follow-up"
    async with team.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AutomationRun)) == 1


async def test_cancel_frees_the_slot_and_fires_once(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    async with team.db.write() as session:
        session.add(Automation(workspace_id=team.workspace_id, trigger=Trigger.CANCELLED, action=Action.SLACK_DM))
    booking = team.booking()
    appointment = await booking.book(calendar, request(at(MONDAY, 9)))
    assert "09:00" not in await team.free(calendar)
    await booking.cancel(appointment.id)
    await booking.cancel(appointment.id)
    assert "09:00" in await team.free(calendar)
    async with team.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AutomationRun)) == 1
    with pytest.raises(Conflict) as cancelled:
        await booking.reschedule(appointment.id, start=at(MONDAY, 10))
    assert cancelled.value.code == "appointment_cancelled"


async def test_imported_appointments_are_changed_in_their_calendar_only(team: Team) -> None:
    async with team.db.write() as session:
        imported = Appointment(start=at(MONDAY, 9), end=at(MONDAY, 10), origin=Origin.IMPORTED)
        session.add(imported)
    for change in (team.booking().cancel(imported.id), team.booking().reschedule(imported.id, title="x")):
        with pytest.raises(Conflict) as refused:
            await change
        assert refused.value.code == "imported_appointment"


# Refreshing before confirming ----------------------------------------------------------------------


async def test_booking_refreshes_the_member_and_respects_what_the_refresh_found(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann", "bob")
    refreshed: list[str] = []

    async def refresh(user_id: str) -> None:  # the member's calendar now has an event at 09:00
        refreshed.append(team.name_of(user_id))
        await team.busy(team.name_of(user_id), at(MONDAY, 9), at(MONDAY, 10))

    appointment = await team.booking(refresh=refresh).book(calendar, request(at(MONDAY, 9)))
    assert refreshed == ["ann"] and await team.assignees(appointment.id) == ["bob"]


async def test_a_slow_refresh_books_on_the_stored_view_and_says_so(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    never = asyncio.Event()

    async def hanging(user_id: str) -> None:
        await never.wait()

    booking = team.booking(refresh=hanging, budget=0.05)
    with caplog.at_level(logging.WARNING, logger="sync.booking"):
        appointment = await booking.book(calendar, request(at(MONDAY, 9)))
    assert await team.assignees(appointment.id) == ["ann"]
    assert "booking on the stored view" in caplog.text
    never.set()


# Races ---------------------------------------------------------------------------------------------


async def _race(booking: Booking, calendar: str, start: datetime, count: int = 50) -> list[Appointment]:
    results = await asyncio.gather(*(booking.book(calendar, request(start, f"Guest{i}")) for i in range(count)),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, Conflict)]
    booked = [r for r in results if isinstance(r, Appointment)]
    assert len(booked) + len(refused) == count, [r for r in results if not isinstance(r, Appointment | Conflict)]
    assert {r.code for r in refused} <= {"slot_unavailable"}
    return booked


async def test_fifty_concurrent_bookings_of_one_member_book_once(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    booked = await _race(team.booking(), calendar, at(MONDAY, 9))
    assert len(booked) == 1
    async with team.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Appointment)) == 1


async def test_fifty_concurrent_bookings_of_the_last_seat_seat_one(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.CLASS, "ann", capacity=3)
    booking = team.booking()
    for who in ("Ada", "Bea"):
        await booking.book(calendar, request(at(MONDAY, 9), who))
    assert len(await _race(booking, calendar, at(MONDAY, 9))) == 1
    async with team.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AppointmentContact)) == 3
        assert await session.scalar(select(func.count()).select_from(Appointment)) == 1


async def test_concurrent_bookings_across_calendars_sharing_a_member_never_double_book(team: Team) -> None:
    """ann is on a round robin desk and a service desk: 25 bookings on each at 09:00, one wins overall."""
    desk = await team.calendar(CalendarKind.ROUND_ROBIN, "ann")
    service = await team.calendar(CalendarKind.SERVICE, "ann")
    booking = team.booking()
    results = await asyncio.gather(
        *(booking.book(c, request(at(MONDAY, 9), f"G{i}")) for i in range(25) for c in (desk, service)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Appointment) for r in results) == 1
    assert all(isinstance(r, Appointment | Conflict) for r in results)


async def test_linked_calendars_of_the_assignees_are_due_for_a_push(team: Team) -> None:
    calendar = await team.calendar(CalendarKind.COLLECTIVE, "ann", "bob")
    await team.busy("ann", at(MONDAY, 15), at(MONDAY, 16))  # also gives ann a linked calendar
    async with team.db.write() as session:
        await session.execute(update(RemoteCalendar).values(due_at=NOW + timedelta(hours=1)))
    await team.booking().book(calendar, request(at(MONDAY, 9)))
    async with team.db.session() as session:
        assert set(await session.scalars(select(RemoteCalendar.due_at))) == {NOW}
