"""The daily agenda: written once per opted-in user and local day, from 08:00 to noon in the user's zone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
from sqlalchemy import select

from croco.runtime import Runtime
from croco.serve import _ticker
from croco.settings import Settings
from storage.db import Database
from storage.enums import AppointmentStatus, Origin
from storage.models import Appointment, AppointmentAssignee, BlockedSlot, Notice, RemoteCalendar, User
from storage.secrets import SecretBox
from sync import accounts
from sync.agenda import write_due_agendas
from tests.factories import add_connection, add_user
from tests.sinks import RecordingSink

TOKYO_0805 = datetime(2021, 3, 1, 23, 5, tzinfo=UTC)
"""Tuesday 2 March 08:05 in Tokyo (UTC+9); Monday 1 March 18:05 in New York (UTC-5)."""
NEW_YORK_0805 = datetime(2021, 3, 2, 13, 5, tzinfo=UTC)


def tokyo(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2021, 3, day, hour, minute, tzinfo=UTC) - timedelta(hours=9)


async def opted_in(db: Database, *, email: str, tz: str, opt_in: bool = True) -> User:
    user = await add_user(db, email=email, tz=tz)
    await accounts.put_settings(db, user.id, None, None, None, None, None, now=TOKYO_0805, daily_agenda=opt_in)
    return user


async def agendas(db: Database) -> list[Notice]:
    async with db.session() as session:
        return list(await session.scalars(select(Notice).where(Notice.kind == "agenda").order_by(Notice.dedupe_key)))


async def add_appointment(db: Database, user: User, title: str, start: datetime, minutes: int = 60, *,
                          status: AppointmentStatus = AppointmentStatus.BOOKED, origin: Origin = Origin.SYSTEM) -> str:
    async with db.write() as session:
        appointment = Appointment(start=start, end=start + timedelta(minutes=minutes), title=title, status=status,
                                  origin=origin)
        session.add(appointment)
        await session.flush()
        session.add(AppointmentAssignee(appointment_id=appointment.id, user_id=user.id))
    return appointment.id


async def add_block(db: Database, user: User, calendar: RemoteCalendar, title: str | None, start: datetime,
                    minutes: int = 60, *, busy: bool = True) -> None:
    async with db.write() as session:
        session.add(BlockedSlot(user_id=user.id, remote_calendar_id=calendar.id, remote_id=f"{title}.ics",
                                start=start, end=start + timedelta(minutes=minutes), busy=busy, title=title))


async def test_only_users_whose_morning_it_is_get_one_and_only_once(db: Database) -> None:
    in_tokyo = await opted_in(db, email="aiko@example.com", tz="Asia/Tokyo")
    await opted_in(db, email="bob@example.com", tz="America/New_York")
    await opted_in(db, email="kenji@example.com", tz="Asia/Tokyo", opt_in=False)
    await add_user(db, email="yuki@example.com", tz="Asia/Tokyo")  # never saved settings

    assert await write_due_agendas(db, TOKYO_0805) == 1
    (agenda,) = await agendas(db)
    assert (agenda.user_id, agenda.dedupe_key) == (in_tokyo.id, f"agenda:{in_tokyo.id}:2021-03-02")
    assert agenda.payload["date"] == "2021-03-02" and agenda.payload["timezone"] == "Asia/Tokyo"

    assert await write_due_agendas(db, TOKYO_0805 + timedelta(minutes=1)) == 0  # the next tick
    assert await write_due_agendas(db, TOKYO_0805 + timedelta(hours=3)) == 0
    assert len(await agendas(db)) == 1


async def test_processes_ticking_at_once_write_one_agenda(db: Database) -> None:
    await opted_in(db, email="aiko@example.com", tz="Asia/Tokyo")
    written = await asyncio.gather(*(write_due_agendas(db, TOKYO_0805) for _ in range(4)))
    assert sum(written) == 1 and len(await agendas(db)) == 1


async def test_the_next_day_brings_the_next_agenda(db: Database) -> None:
    user = await opted_in(db, email="aiko@example.com", tz="Asia/Tokyo")
    assert await write_due_agendas(db, TOKYO_0805) == 1
    assert await write_due_agendas(db, TOKYO_0805 + timedelta(days=1)) == 1
    assert [n.dedupe_key for n in await agendas(db)] == [f"agenda:{user.id}:2021-03-02", f"agenda:{user.id}:2021-03-03"]


async def test_sent_from_eight_until_noon_local(db: Database) -> None:
    user = await opted_in(db, email="bob@example.com", tz="America/New_York")
    assert await write_due_agendas(db, NEW_YORK_0805 - timedelta(minutes=6)) == 0  # 07:59
    assert await write_due_agendas(db, NEW_YORK_0805 + timedelta(hours=4)) == 0  # 12:05: too late for that day
    assert await write_due_agendas(db, NEW_YORK_0805 + timedelta(minutes=85)) == 1  # 09:30: down at 08:00, caught up
    (agenda,) = await agendas(db)
    assert agenda.dedupe_key == f"agenda:{user.id}:2021-03-02"


async def test_the_agenda_lists_the_local_day_in_order_and_marks_conflicts(db: Database, secret_box: SecretBox) -> None:
    user = await opted_in(db, email="aiko@example.com", tz="Asia/Tokyo")
    _, (work,) = await add_connection(db, user, secret_box)
    dentist = await add_appointment(db, user, "Dentist", tokyo(2, 10))
    review = await add_appointment(db, user, "Review", tokyo(2, 14), origin=Origin.IMPORTED)
    await add_appointment(db, user, "Cancelled", tokyo(2, 16), status=AppointmentStatus.CANCELLED)
    await add_appointment(db, user, "Yesterday late", tokyo(1, 23), 30)
    await add_appointment(db, user, "Tomorrow early", tokyo(3, 0, 30))
    await add_block(db, user, work, "Gym", tokyo(2, 10, 30))
    await add_block(db, user, work, "Standup", tokyo(2, 9), 30)
    await add_block(db, user, work, "Lunch maybe", tokyo(2, 12), busy=False)  # free: blocks nothing

    assert await write_due_agendas(db, TOKYO_0805) == 1
    (agenda,) = await agendas(db)
    payload = agenda.payload
    assert [(a["appointment_id"], a["title"], a["start"], a["origin"], a["conflicts_with"])
            for a in payload["appointments"]] == [
        (dentist, "Dentist", "2021-03-02T01:00:00+00:00", "system", ["Gym"]),
        (review, "Review", "2021-03-02T05:00:00+00:00", "imported", []),
    ]
    assert [(b["title"], b["calendar_name"], b["start"], b["end"]) for b in payload["blocks"]] == [
        ("Standup", "Calendar 0", "2021-03-02T00:00:00+00:00", "2021-03-02T00:30:00+00:00"),
        ("Gym", "Calendar 0", "2021-03-02T01:30:00+00:00", "2021-03-02T02:30:00+00:00"),
    ]
    assert payload["conflicts"] == 1 and payload["until"] == "2021-03-02T15:00:00+00:00"


async def test_a_free_day_gets_an_agenda_saying_so(db: Database) -> None:
    await opted_in(db, email="aiko@example.com", tz="Asia/Tokyo")
    assert await write_due_agendas(db, TOKYO_0805) == 1
    (agenda,) = await agendas(db)
    assert (agenda.payload["appointments"], agenda.payload["blocks"], agenda.payload["conflicts"]) == ([], [], 0)


async def test_a_crowded_day_keeps_the_earliest_fifty_and_counts_the_rest(db: Database, secret_box: SecretBox) -> None:
    user = await opted_in(db, email="aiko@example.com", tz="Asia/Tokyo")
    _, (work,) = await add_connection(db, user, secret_box)
    for i in range(40):
        await add_appointment(db, user, f"Call {i}", tokyo(2, 8) + timedelta(minutes=10 * i), 10)
    for i in range(30):
        await add_block(db, user, work, f"Event {i}", tokyo(2, 8, 5) + timedelta(minutes=10 * i), 5)

    assert await write_due_agendas(db, TOKYO_0805) == 1
    (agenda,) = await agendas(db)
    payload = agenda.payload
    assert len(payload["appointments"]) + len(payload["blocks"]) == 50
    assert (len(payload["appointments"]), payload["more_appointments"]) == (25, 15)  # 08:00 to 12:00 kept
    assert (len(payload["blocks"]), payload["more_blocks"]) == (25, 5)
    assert payload["appointments"][-1]["title"] == "Call 24" and payload["blocks"][-1]["title"] == "Event 24"


async def test_the_scheduler_writes_and_delivers_the_agenda(db: Database, secret_box: SecretBox) -> None:
    """`croco serve`'s ticker runs the agenda tick (first right away) and the outbox hands it to the sink."""
    user = await opted_in(db, email="aiko@example.com", tz="Asia/Tokyo")
    sink = RecordingSink()
    runtime = Runtime(Settings(scheduler_tick_seconds=600), db, secret_box, clock=lambda: TOKYO_0805,
                      notice_sink=sink)
    async with aiohttp.ClientSession() as http:
        ticker = _ticker(runtime, runtime.engine(), http)
        ticker.start()
        try:
            async with asyncio.timeout(10):
                while not sink.accepted:
                    await asyncio.sleep(0.05)  # polling, bounded by the timeout
        finally:
            await ticker.stop()
    (delivered,) = sink.accepted
    assert (delivered.kind, delivered.user_id, delivered.payload["date"]) == ("agenda", user.id, "2021-03-02")
