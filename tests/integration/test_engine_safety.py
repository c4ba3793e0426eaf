"""Safety rules and conflict rules of the engine against a real Radicale (DESIGN.md section 4)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from storage.db import Database
from storage.enums import SyncMode
from storage.models import Appointment, BlockedSlot, Notice, RemoteCalendar
from storage.secrets import SecretBox
from sync.actions import Actions
from sync.engine import CalendarReport, SyncEngine
from sync.providers.base import CalendarProvider, EventDraft, ProviderConfig, WriteResult
from sync.providers.caldav.provider import CalDAVProvider
from tests.caldav_servers import CalDAVAccount
from tests.factories import ANY_TIME
from tests.ics import michel, vevent
from tests.integration.conftest import DAY, NOW, D, World, book, make_world, paris


def caldav(world: World) -> CalDAVProvider:
    return CalDAVProvider(world.account.url, world.account.username, world.account.password, ProviderConfig())


async def notices(world: World, kind: str) -> list[Notice]:
    return [n for n in await world.rows(Notice) if n.kind == kind]


async def test_all_day_event_on_a_dst_change_covers_23_hours(one_way: World) -> None:
    # Paris springs forward on 28 March 2021: four weeks after the injected NOW, inside its sync window.
    one_way.put("dst.ics", vevent("dst", "DTSTART;VALUE=DATE:20210328", "DTEND;VALUE=DATE:20210329"))
    await one_way.sync()
    (slot,) = await one_way.rows(BlockedSlot)
    assert slot.all_day and (slot.end - slot.start) == timedelta(hours=23)
    assert slot.start.isoformat() == "2021-03-27T23:00:00+00:00"


async def test_mass_deletion_is_held_until_the_user_confirms(one_way: World) -> None:
    for i in range(20):
        one_way.put(f"e{i}.ics", vevent(f"e{i}", f"DTSTART:{DAY:%Y%m%d}T{i % 10:02d}0000Z",
                                        f"DTEND:{DAY:%Y%m%d}T{i % 10:02d}3000Z"))
    await one_way.sync()
    provider = caldav(one_way)
    for i in range(11):
        await provider.delete(one_way.calendar_url, f"e{i}.ics", None)
    await one_way.sync()
    await one_way.sync()  # held again: still one notice
    assert await one_way.count(BlockedSlot) == 20
    (held,) = await notices(one_way, "mass_deletion_held")
    assert held.payload["removing"] == 11 and held.payload["actions"] == ["confirm_removals"]
    (calendar,) = await one_way.rows(RemoteCalendar, RemoteCalendar.id == one_way.calendar_id)
    assert calendar.removals_held_of == 20

    for i in range(3):  # new events block at once, and do not dilute the held share (11 of 23 is under half)
        one_way.put(f"new{i}.ics", vevent(f"new{i}", f"DTSTART:{DAY:%Y%m%d}T1{i}0000Z",
                                          f"DTEND:{DAY:%Y%m%d}T1{i}3000Z"))
    await one_way.sync()
    await one_way.sync()
    assert await one_way.count(BlockedSlot) == 23

    actions = Actions(one_way.db, one_way.engine)  # the button, clicked twice at once, then once more
    clicks = await asyncio.gather(*(actions.confirm_held_removals(one_way.user_id) for _ in range(2)))
    assert sorted(clicks) == [0, 11]
    assert await actions.confirm_held_removals(one_way.user_id) == 0
    assert await one_way.count(BlockedSlot) == 12
    (calendar,) = await one_way.rows(RemoteCalendar, RemoteCalendar.id == one_way.calendar_id)
    assert calendar.removals_held_of is None and not calendar.removals_confirmed


async def test_deleted_collection_is_reported_and_keeps_availability_closed(one_way: World) -> None:
    one_way.put("busy.ics", vevent("busy", f"DTSTART:{DAY:%Y%m%d}T100000Z", f"DTEND:{DAY:%Y%m%d}T110000Z"))
    await one_way.sync()
    one_way.account.delete(one_way.calendar_url)
    summary = await one_way.sync()
    assert "no longer exists" in str(summary["error"])
    assert await one_way.count(BlockedSlot) == 1
    (calendar,) = await one_way.rows(RemoteCalendar, RemoteCalendar.id == one_way.calendar_id)
    assert calendar.last_error and "no longer exists" in calendar.last_error


async def _pushed(world: World) -> tuple[str, CalDAVProvider]:
    appointment_id = await book(world, paris(DAY, 10))
    await world.sync()
    return appointment_id, caldav(world)


async def _edit_remotely(world: World, provider: CalDAVProvider, appointment_id: str) -> None:
    """The user drags our event to 15:00 in their calendar app."""
    moved = EventDraft(appointment_id, paris(DAY, 15), paris(DAY, 16), "Consultation")
    await provider.update(world.calendar_url, f"{appointment_id}.ics", moved, None)


async def test_r6_one_way_remote_edit_is_reverted_and_the_user_told(one_way: World) -> None:
    appointment_id, provider = await _pushed(one_way)
    await _edit_remotely(one_way, provider, appointment_id)
    await one_way.sync()
    (item,) = (await provider.changes(one_way.calendar_url, None, ANY_TIME)).changed
    assert f"DTSTART:{paris(DAY, 10):%Y%m%dT%H%M%SZ}" in item.data
    (appointment,) = await one_way.rows(Appointment)
    assert appointment.start == paris(DAY, 10)
    (notice,) = await notices(one_way, "remote_edit_reverted")
    assert notice.payload["lost"]["start"] == paris(DAY, 15).isoformat()
    await one_way.sync()  # the restored copy is ours again: no second revert
    assert len(await notices(one_way, "remote_edit_reverted")) == 1


async def test_r6_two_way_remote_edit_reschedules_the_appointment(db: Database, secret_box: SecretBox,
                                                                   caldav_server: CalDAVAccount) -> None:
    world = await make_world(db, secret_box, caldav_server, SyncMode.TWO_WAY)
    appointment_id, provider = await _pushed(world)
    await _edit_remotely(world, provider, appointment_id)
    await world.sync()
    (appointment,) = await world.rows(Appointment)
    assert (appointment.start, appointment.status) == (paris(DAY, 15), "booked")
    assert len(await notices(world, "remote_edit_applied")) == 1
    assert (await world.sync())["pushed"] == 0  # nothing to write back


async def test_two_engines_on_one_database_sync_each_calendar_once(db: Database, secret_box: SecretBox,
                                                                   radicale: CalDAVAccount) -> None:
    worlds = [await make_world(db, secret_box, radicale, SyncMode.ONE_WAY, f"user{n}@example.com") for n in range(6)]
    first = SyncEngine(db, secret_box, worlds[0].engine.providers, owner="process-a", clock=worlds[0].clock)
    second = SyncEngine(db, secret_box, worlds[0].engine.providers, owner="process-b", clock=worlds[0].clock)
    a, b = await asyncio.gather(first.run_due(), second.run_due())
    synced = [r.calendar_id for r in a + b]
    assert sorted(synced) == sorted(w.calendar_id for w in worlds)  # every calendar once, none twice
    assert all(r.error is None for r in a + b)
    assert await first.run_due() == [] and await second.run_due() == []  # not due again until the interval


async def test_due_times_window_and_stamps_follow_the_injected_clock(two_way: World) -> None:
    """The world's clock is five years before today. Connecting made the calendar due at that time, so the
    scheduler on that clock syncs it; the window is around it; imports and cancellations carry its time."""
    (calendar,) = await two_way.rows(RemoteCalendar, RemoteCalendar.id == two_way.calendar_id)
    assert calendar.due_at == NOW
    two_way.put("michel.ics", michel(D))
    week_ago = NOW - timedelta(days=7)
    two_way.put("old.ics", vevent("old", f"DTSTART:{week_ago:%Y%m%dT%H%M%SZ}", f"DTEND:{week_ago:%Y%m%dT235900Z}"))
    two_way.clock.now = imported_at = NOW + timedelta(minutes=5)
    assert [r.calendar_id for r in await two_way.engine.run_due()] == [two_way.calendar_id]
    (appointment,) = await two_way.rows(Appointment)  # a week ago is out of the window
    assert (appointment.start, appointment.created_at, appointment.updated_at) == (paris(DAY, 13), imported_at,
                                                                                    imported_at)

    await caldav(two_way).delete(two_way.calendar_url, "michel.ics", None)
    two_way.clock.now = cancelled_at = NOW + timedelta(minutes=10)
    await two_way.sync()
    (appointment,) = await two_way.rows(Appointment)
    assert (appointment.status, appointment.updated_at) == ("cancelled", cancelled_at)


class _BlockingUpdates:
    """A CalDAV provider whose `update` waits for `release`: a calendar server that takes its time."""

    def __init__(self, provider: CalendarProvider) -> None:
        self._provider = provider
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._provider, name)

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        self.entered.set()
        await self.release.wait()
        return await self._provider.update(calendar_id, remote_id, draft, etag)


async def _restoring_slowly(world: World) -> tuple[str, CalDAVProvider, _BlockingUpdates, asyncio.Task[CalendarReport]]:
    """Our copy edited remotely (R6 one-way), and a cycle writing it back, held inside the server's update."""
    appointment_id, provider = await _pushed(world)
    await _edit_remotely(world, provider, appointment_id)
    slow = _BlockingUpdates(provider)
    engine = SyncEngine(world.db, world.engine.secrets, lambda *_: slow)  # type: ignore[arg-type,return-value]
    cycle = asyncio.create_task(engine.sync_calendar(world.calendar_id))
    await asyncio.wait_for(slow.entered.wait(), 30)
    return appointment_id, provider, slow, cycle


async def _shows_our_time(world: World, provider: CalDAVProvider, appointment_id: str) -> bool:
    (item,) = [i for i in (await provider.changes(world.calendar_url, None, ANY_TIME)).changed
               if appointment_id in i.remote_id]
    return f"DTSTART:{paris(DAY, 10):%Y%m%dT%H%M%SZ}" in item.data


async def test_restoring_a_copy_holds_no_transaction_while_the_server_answers(one_way: World) -> None:
    """A slow calendar server must not block bookings: the restore's write happens after the pull commits."""
    appointment_id, provider, slow, cycle = await _restoring_slowly(one_way)
    try:
        await asyncio.wait_for(book(one_way, paris(DAY, 12)), 5)  # a booking meanwhile: db.write() at once
        assert len(await notices(one_way, "remote_edit_reverted")) == 1  # told before the write is done
    finally:
        slow.release.set()
        report = await cycle
    assert report.error is None
    assert await _shows_our_time(one_way, provider, appointment_id)


async def test_a_crash_before_the_restore_is_written_plans_it_again(one_way: World) -> None:
    appointment_id, provider, _, cycle = await _restoring_slowly(one_way)
    cycle.cancel()  # the process dies with the restore not written
    with contextlib.suppress(asyncio.CancelledError):
        await cycle
    await one_way.sync()
    assert await _shows_our_time(one_way, provider, appointment_id)
    assert len(await notices(one_way, "remote_edit_reverted")) == 1
