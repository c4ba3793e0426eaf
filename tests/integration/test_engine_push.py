"""Push rules P1-P5 and the two-way rules on our own events (R7, R8), on Radicale and Xandikos."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from storage.db import Database
from storage.enums import Provider, SyncMode
from storage.models import Appointment, AutomationRun, BlockedSlot, Contact, EventLink, Notice, RemoteCalendar
from storage.secrets import SecretBox
from sync import accounts, state
from sync.providers.base import AppPassword, ProviderConfig
from sync.providers.caldav.provider import CalDAVProvider
from tests.caldav_servers import CalDAVAccount
from tests.factories import ANY_TIME
from tests.ics import michel, vevent
from tests.integration.conftest import DAY, NOW, D, World, book, make_world, paris


def caldav(world: World) -> CalDAVProvider:
    return CalDAVProvider(world.account.url, world.account.username, world.account.password, ProviderConfig())


async def remote_names(world: World, calendar_url: str | None = None) -> list[str]:
    listing = await caldav(world).changes(calendar_url or world.calendar_url, None, ANY_TIME)
    return sorted(item.remote_id.rsplit("/", 1)[-1] for item in listing.changed)


async def change_appointment(world: World, appointment_id: str, **values: object) -> None:
    async with world.db.write() as session:
        await session.execute(update(Appointment).where(Appointment.id == appointment_id).values(  # type: ignore[arg-type]
            version=Appointment.version + 1, **({"updated_at": NOW} | values)))


async def test_p2_rescheduled_appointment_updates_the_copy(one_way: World) -> None:
    appointment_id = await book(one_way, paris(DAY, 10))
    await one_way.sync()
    await change_appointment(one_way, appointment_id, start=paris(DAY, 11), end=paris(DAY, 12))
    assert (await one_way.sync())["pushed"] == 1
    (item,) = (await caldav(one_way).changes(one_way.calendar_url, None, ANY_TIME)).changed
    assert f"DTSTART:{paris(DAY, 11):%Y%m%dT%H%M%SZ}" in item.data
    assert not [n for n in await one_way.rows(Notice) if n.kind == "remote_edit_reverted"]  # our own change


async def test_p3_cancelled_appointment_removes_the_copy(one_way: World) -> None:
    appointment_id = await book(one_way, paris(DAY, 10))
    await one_way.sync()
    await change_appointment(one_way, appointment_id, status="cancelled")
    await one_way.sync()
    assert await remote_names(one_way) == [] and await one_way.count(EventLink) == 0


async def test_p4_new_linked_calendar_moves_the_copy(one_way: World) -> None:
    appointment_id = await book(one_way, paris(DAY, 10))
    await one_way.sync()
    new_url = one_way.account.new_calendar()
    async with one_way.db.session() as session:
        known = {c.remote_id: c.id for c in await session.scalars(select(RemoteCalendar))}
    if new_url not in known:  # the calendar appeared after connecting: reconnecting lists it
        await accounts.connect(one_way.db, one_way.engine.secrets, one_way.engine.providers, one_way.user_id,
                               Provider.CALDAV, AppPassword(one_way.account.username, one_way.account.password),
                               one_way.account.url, now=NOW)
        async with one_way.db.session() as session:
            known = {c.remote_id: c.id for c in await session.scalars(select(RemoteCalendar))}
    await accounts.put_settings(one_way.db, one_way.user_id, known[new_url], [], SyncMode.ONE_WAY, None, None,
                                now=NOW)
    await one_way.sync()
    assert await remote_names(one_way, new_url) == [f"{appointment_id}.ics"]
    assert await remote_names(one_way) == []  # the old linked calendar is not synced any more, yet cleaned


async def test_p5_without_a_linked_calendar_nothing_is_pushed(db: Database, secret_box: SecretBox,
                                                              caldav_server: CalDAVAccount) -> None:
    world = await make_world(db, secret_box, caldav_server, SyncMode.ONE_WAY)
    await accounts.put_settings(db, world.user_id, None, [world.calendar_id], SyncMode.ONE_WAY, None, None, now=NOW)
    await book(world, paris(DAY, 10))
    assert (await world.sync())["pushed"] == 0 and await remote_names(world) == []


async def test_r3_conflict_only_calendar_blocks_even_in_two_way(db: Database, secret_box: SecretBox,
                                                                caldav_server: CalDAVAccount) -> None:
    world = await make_world(db, secret_box, caldav_server, SyncMode.TWO_WAY)
    await accounts.put_settings(db, world.user_id, None, [world.calendar_id], SyncMode.TWO_WAY, None, None, now=NOW)
    world.put("michel.ics", michel(D))
    await world.sync()
    assert await world.count(BlockedSlot) == 1 and await world.count(Appointment) == 0
    assert await world.count(Contact) == 0


async def test_r7_two_way_remote_delete_cancels_and_fires(two_way: World) -> None:
    appointment_id = await book(two_way, paris(DAY, 10))
    await two_way.sync()
    await caldav(two_way).delete(two_way.calendar_url, f"{appointment_id}.ics", None)
    assert (await two_way.sync())["appointments_cancelled"] == 1
    (appointment,) = await two_way.rows(Appointment)
    assert appointment.status == "cancelled" and await remote_names(two_way) == []


async def edit_remotely(world: World, appointment_id: str, start: datetime, end: datetime, at: datetime) -> None:
    """A calendar app moves our event, stamping LAST-MODIFIED `at` (R8 compares it with the appointment's)."""
    world.put(f"{appointment_id}.ics", vevent(
        f"{appointment_id}@croco", f"X-CROCO-APPOINTMENT:{appointment_id}", f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
        f"DTEND:{end:%Y%m%dT%H%M%SZ}", "SUMMARY:Consultation", f"LAST-MODIFIED:{at:%Y%m%dT%H%M%SZ}",
    ))


@pytest.mark.parametrize("calendar_later", [True, False])
async def test_r8_both_changed_the_later_change_wins(two_way: World, calendar_later: bool) -> None:
    """Both stamps are on the injected clock's time line, years before today: the later one wins."""
    appointment_id = await book(two_way, paris(DAY, 10))
    await two_way.sync()
    local_at, remote_at = (NOW, NOW + timedelta(minutes=1)) if calendar_later else (NOW + timedelta(minutes=1), NOW)
    await change_appointment(two_way, appointment_id, start=paris(DAY, 11), end=paris(DAY, 12), updated_at=local_at)
    await edit_remotely(two_way, appointment_id, paris(DAY, 15), paris(DAY, 16), remote_at)
    await two_way.sync()
    (appointment,) = await two_way.rows(Appointment)
    winner, loser = (paris(DAY, 15), paris(DAY, 11)) if calendar_later else (paris(DAY, 11), paris(DAY, 15))
    assert appointment.start == winner
    (notice,) = [n for n in await two_way.rows(Notice) if n.kind == "both_changed"]
    assert notice.payload["winner"] == ("calendar" if calendar_later else "croco")
    assert notice.payload["lost"]["start"] == loser.isoformat()


async def test_crash_during_a_two_way_import_leaves_no_duplicates(two_way: World, monkeypatch: pytest.MonkeyPatch) -> None:
    two_way.put("michel.ics", michel(D))

    class Crash(BaseException):  # the process dies: nothing of it catches this
        pass

    original = state.count_slots

    async def die(*_: object, **__: object) -> int:
        raise Crash()  # after every action of the plan, before the commit

    monkeypatch.setattr(state, "count_slots", die)
    with pytest.raises(Crash):
        await two_way.engine.sync_calendar(two_way.calendar_id)
    monkeypatch.setattr(state, "count_slots", original)
    await two_way.engine.sync_calendar(two_way.calendar_id)
    await two_way.engine.sync_calendar(two_way.calendar_id)
    assert await two_way.count(Appointment) == 1 and await two_way.count(Contact) == 1
    assert await two_way.count(AutomationRun) == 1



async def test_disconnect_removes_slots_and_mirrors_and_leaves_remote_copies(two_way: World) -> None:
    two_way.put("michel.ics", michel(D))
    appointment_id = await book(two_way, paris(DAY, 10))
    await two_way.sync()
    (connection_id,) = {c.connection_id for c in await two_way.rows(RemoteCalendar)}
    await accounts.disconnect(two_way.db, connection_id)
    appointments = {a.id: a.origin for a in await two_way.rows(Appointment)}
    assert appointments == {appointment_id: "system"}  # the imported mirror is gone, the booking stays
    assert await two_way.count(EventLink) == 0 and await two_way.count(BlockedSlot) == 0
    assert await remote_names(two_way) == sorted([f"{appointment_id}.ics", "michel.ics"])  # remote untouched
