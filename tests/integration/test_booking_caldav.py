"""Bookings against real CalDAV servers: what John's calendar holds blocks the booking, and what is booked
reaches his linked calendar once and leaves it when cancelled (Radicale and Xandikos)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from storage.enums import Action, CalendarKind, Trigger
from storage.models import Appointment, Automation, AutomationRun
from sync import teams
from sync.booking import Booking, BookingRequest
from sync.errors import Conflict
from sync.troubleshoot import troubleshoot
from tests.factories import ANY_TIME
from tests.ics import michel
from tests.integration.conftest import DAY, NOW, D, World, paris
from tests.integration.test_engine_push import caldav, edit_remotely, remote_names


async def johns_desk(world: World) -> str:
    spec = teams.TeamCalendarSpec(name="Consultations", kind=CalendarKind.ROUND_ROBIN, member_ids=[world.user_id],
                                  duration_minutes=60, timezone="Europe/Paris")
    return (await teams.create_team_calendar(world.db, world.workspace_id, spec)).calendar.id


def ada(hour: int) -> BookingRequest:
    return BookingRequest(paris(DAY, hour), "Ada Lovelace", "ada@example.com")


async def test_dr_michel_refuses_the_booking_and_is_named(one_way: World) -> None:
    one_way.put("michel.ics", michel(D))
    desk = await johns_desk(one_way)
    booking = Booking(one_way.db, refresh=one_way.engine.sync_user, clock=one_way.clock)  # the refresh is what syncs it first
    with pytest.raises(Conflict) as refused:
        await booking.book(desk, ada(13))
    assert refused.value.code == "slot_unavailable" and "CONFLICT" in refused.value.message
    items = await troubleshoot(one_way.db, desk, DAY, one_way.clock(), viewer_id=one_way.user_id)
    (one,) = [i for i in items if i["start"] == paris(DAY, 13).isoformat().replace("+00:00", "Z")]
    (conflict,) = one["reasons"]
    assert conflict["event"]["title"] == "Appointment with Dr. Michel"
    assert conflict["event"]["calendar_id"] == one_way.calendar_id


async def test_booking_reaches_the_linked_calendar_once_and_cancelling_removes_it(one_way: World) -> None:
    async with one_way.db.write() as session:
        automation = Automation(workspace_id=one_way.workspace_id, trigger=Trigger.CREATED, action=Action.SLACK_DM)
        session.add(automation)
    desk = await johns_desk(one_way)
    booking = Booking(one_way.db, refresh=one_way.engine.sync_user, clock=one_way.clock)
    appointment = await booking.book(desk, ada(10))

    await one_way.engine.run_due()  # the booking marked John's linked calendar due
    await one_way.sync()  # and again: nothing more is written
    assert await remote_names(one_way) == [f"{appointment.id}.ics"]
    listing = await caldav(one_way).changes(one_way.calendar_url, None, ANY_TIME)
    assert "SUMMARY:Consultations with Ada Lovelace" in listing.changed[0].data
    async with one_way.db.session() as session:
        runs = list(await session.scalars(select(AutomationRun).where(AutomationRun.automation_id == automation.id)))
    assert [(r.appointment_id, r.status) for r in runs] == [(appointment.id, "delivered")]

    await booking.cancel(appointment.id)
    await one_way.engine.run_due()
    assert await remote_names(one_way) == []


async def test_the_api_and_the_calendar_move_and_cancel_through_one_path(two_way: World) -> None:
    """A move by the API, a move in John's calendar and the copy's deletion (R6, R7 two-way): each is stamped
    with the injected clock and fires its automation once, whichever side made it."""
    async with two_way.db.write() as session:
        automations = {t: Automation(workspace_id=two_way.workspace_id, trigger=t, action=Action.SLACK_DM)
                       for t in (Trigger.RESCHEDULED, Trigger.CANCELLED)}
        session.add_all(automations.values())
    booking = Booking(two_way.db, clock=two_way.clock)
    appointment = await booking.book(await johns_desk(two_way), ada(10))
    await two_way.sync()

    async def stamped() -> tuple[str, datetime]:
        (row,) = await two_way.rows(Appointment, Appointment.id == appointment.id)
        return row.status, row.updated_at

    async def runs(trigger: Trigger) -> int:
        return len(await two_way.rows(AutomationRun, AutomationRun.automation_id == automations[trigger].id))

    two_way.clock.now = by_api = NOW + timedelta(minutes=10)
    await booking.reschedule(appointment.id, start=paris(DAY, 11))
    await two_way.sync()  # the copy follows
    assert (await stamped(), await runs(Trigger.RESCHEDULED)) == (("booked", by_api), 1)

    two_way.clock.now = by_calendar = NOW + timedelta(minutes=20)
    await edit_remotely(two_way, appointment.id, paris(DAY, 15), paris(DAY, 16), by_calendar)
    await two_way.sync()
    await two_way.sync()
    assert (await stamped(), await runs(Trigger.RESCHEDULED)) == (("booked", by_calendar), 2)

    two_way.clock.now = deleted = NOW + timedelta(minutes=30)
    await caldav(two_way).delete(two_way.calendar_url, f"{appointment.id}.ics", None)
    await two_way.sync()
    two_way.clock.now = NOW + timedelta(minutes=40)
    await booking.cancel(appointment.id)  # already cancelled: nothing more
    assert (await stamped(), await runs(Trigger.CANCELLED)) == (("cancelled", deleted), 1)
