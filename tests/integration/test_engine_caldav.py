"""The sync engine against a real Radicale: the product example and the rules a user would notice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from storage.db import Database
from storage.enums import SyncMode
from storage.models import (
    Appointment,
    AutomationRun,
    BlockedSlot,
    Connection,
    Contact,
    EventLink,
    Notice,
    RemoteCalendar,
)
from storage.secrets import SecretBox
from sync import state
from sync.providers.base import ProviderConfig
from sync.providers.caldav.provider import CalDAVProvider
from tests.caldav_servers import CalDAVAccount
from tests.factories import ANY_TIME
from tests.ics import michel, vevent
from tests.integration.conftest import DAY, D, World, book, make_world, paris

# The product example --------------------------------------------------------------------------------


async def test_one_way_dr_michel_is_only_a_blocked_slot(one_way: World) -> None:
    one_way.put("michel.ics", michel(D))
    summary = await one_way.sync()
    (slot,) = await one_way.rows(BlockedSlot)
    assert (slot.start, slot.end, slot.busy, slot.title) == (
        paris(DAY, 13), paris(DAY, 14), True, "Appointment with Dr. Michel")
    assert summary["blocked_slots"] == 1 and summary["appointments_created"] == 0
    assert await one_way.count(Appointment) == 0 and await one_way.count(Contact) == 0
    assert await one_way.count(AutomationRun) == 0


async def test_two_way_dr_michel_is_an_appointment_a_contact_and_automations_once(two_way: World) -> None:
    two_way.put("michel.ics", michel(D))
    summary = await two_way.sync()
    (appointment,) = await two_way.rows(Appointment)
    assert (appointment.start, appointment.end, appointment.origin) == (paris(DAY, 13), paris(DAY, 14), "imported")
    (contact,) = await two_way.rows(Contact)  # not John himself, not the room
    assert (contact.name, contact.email, contact.source) == ("Dr. Michel", "michel@example.com", "two_way_import")
    (run,) = await two_way.rows(AutomationRun)
    assert run.contact_id == contact.id and run.appointment_id == appointment.id
    assert summary["contacts_created"] == 1 and await two_way.count(BlockedSlot) == 0
    kinds = sorted(n.kind for n in await two_way.rows(Notice))
    assert kinds == ["automation", "contact_created"]

    again = await two_way.sync()  # idempotent: nothing new, nobody told twice
    assert again["appointments_created"] == 0 and await two_way.count(Appointment) == 1
    assert await two_way.count(Contact) == 1 and await two_way.count(AutomationRun) == 1
    assert await two_way.count(Notice) == 2


async def test_two_way_edit_reschedules_and_delete_cancels(two_way: World) -> None:
    two_way.put("michel.ics", michel(D))
    await two_way.sync()
    moved = michel(D).replace(f"{D}T130000", f"{D}T160000").replace(f"{D}T140000", f"{D}T170000")
    two_way.put("michel.ics", moved)
    second = await two_way.sync()
    assert second["appointments_updated"] == 1, second
    (appointment,) = await two_way.rows(Appointment)
    assert appointment.start == paris(DAY, 16)
    provider = CalDAVProvider(two_way.account.url, two_way.account.username, two_way.account.password,
                              ProviderConfig())
    await provider.delete(two_way.calendar_url, "michel.ics", None)
    assert (await two_way.sync())["appointments_cancelled"] == 1
    (appointment,) = await two_way.rows(Appointment)
    assert appointment.status == "cancelled"


# Busy or free, recurrence, bad data -----------------------------------------------------------------


async def test_free_cancelled_and_declined_events_do_not_block(one_way: World) -> None:
    one_way.put("free.ics", vevent("free", f"DTSTART:{D}T080000Z", f"DTEND:{D}T090000Z", "TRANSP:TRANSPARENT"))
    one_way.put("cancelled.ics", vevent("cancelled", f"DTSTART:{D}T090000Z", f"DTEND:{D}T100000Z",
                                        "STATUS:CANCELLED"))
    one_way.put("declined.ics", vevent("declined", f"DTSTART:{D}T100000Z", f"DTEND:{D}T110000Z",
                                       "ATTENDEE;PARTSTAT=DECLINED:mailto:john@example.com"))
    one_way.put("busy.ics", vevent("busy", f"DTSTART:{D}T110000Z", f"DTEND:{D}T120000Z",
                                   "ATTENDEE;PARTSTAT=DECLINED:mailto:someone.else@example.com"))
    await one_way.sync()
    slots = {s.remote_id.rsplit("/", 1)[-1]: s.busy for s in await one_way.rows(BlockedSlot)}
    assert slots == {"free.ics": False, "declined.ics": False, "busy.ics": True}


async def test_recurring_event_with_exdate_and_an_override(one_way: World) -> None:
    override_day = (DAY + timedelta(days=1)).strftime("%Y%m%d")
    one_way.put("standup.ics", vevent(
        "standup", f"DTSTART;TZID=Europe/Paris:{D}T093000", f"DTEND;TZID=Europe/Paris:{D}T094500",
        "RRULE:FREQ=DAILY;COUNT=4", f"EXDATE;TZID=Europe/Paris:{(DAY + timedelta(days=2)).strftime('%Y%m%d')}T093000",
        "SUMMARY:Stand-up",
    ).replace("END:VCALENDAR", (
        f"BEGIN:VEVENT\r\nUID:standup\r\nDTSTAMP:20260101T000000Z\r\n"
        f"RECURRENCE-ID;TZID=Europe/Paris:{override_day}T093000\r\n"
        f"DTSTART;TZID=Europe/Paris:{override_day}T110000\r\nDTEND;TZID=Europe/Paris:{override_day}T111500\r\n"
        "SUMMARY:Stand-up (moved)\r\nEND:VEVENT\r\nEND:VCALENDAR")))
    await one_way.sync()
    starts = sorted(s.start for s in await one_way.rows(BlockedSlot))
    assert starts == [paris(DAY, 9, 30), paris(DAY + timedelta(days=1), 11), paris(DAY + timedelta(days=3), 9, 30)]


async def test_all_day_event_covers_the_users_whole_day(one_way: World) -> None:
    one_way.put("offsite.ics", vevent("offsite", f"DTSTART;VALUE=DATE:{D}",
                                      f"DTEND;VALUE=DATE:{(DAY + timedelta(days=1)).strftime('%Y%m%d')}"))
    await one_way.sync()
    (slot,) = await one_way.rows(BlockedSlot)
    assert (slot.start, slot.end, slot.all_day) == (paris(DAY, 0), paris(DAY + timedelta(days=1), 0), True)


async def test_malformed_item_is_skipped_and_reported_while_the_rest_syncs(one_way: World) -> None:
    one_way.put("michel.ics", michel(D))
    one_way.put("backwards.ics", vevent("backwards", f"DTSTART:{D}T150000Z", f"DTEND:{D}T140000Z"))
    summary = await one_way.sync()
    assert [s["reason"] for s in summary["skipped"]] == ["DTEND is before DTSTART"]  # type: ignore[index]
    assert await one_way.count(BlockedSlot) == 1
    (notice,) = await one_way.rows(Notice)
    assert notice.kind == "item_skipped"


# Cursor, credentials, collection --------------------------------------------------------------------


async def test_invalid_sync_token_relists_without_duplicates_or_notices(two_way: World) -> None:
    two_way.put("michel.ics", michel(D))
    await two_way.sync()
    notices = await two_way.count(Notice)
    async with two_way.db.write() as session:
        await session.execute(update(RemoteCalendar).values(sync_cursor="http://radicale.org/ns/sync/expired"))
    summary = await two_way.sync()
    assert summary["error"] is None and summary["appointments_created"] == 0
    assert await two_way.count(Appointment) == 1 and await two_way.count(Contact) == 1
    assert await two_way.count(Notice) == notices


async def test_revoked_password_breaks_the_connection_keeps_slots_and_tells_once(
    db: Database, secret_box: SecretBox, radicale: CalDAVAccount
) -> None:
    """Radicale only: it checks passwords, as iCloud does (the Xandikos fixture runs without auth)."""
    one_way = await make_world(db, secret_box, radicale, SyncMode.ONE_WAY)
    one_way.put("michel.ics", michel(D))
    await one_way.sync()
    async with one_way.db.write() as session:
        await session.execute(update(Connection).values(
            credentials=secret_box.seal({"username": "john", "password": "revoked-app-password"})))
    summary = await one_way.sync()
    assert "refused" in str(summary["error"])
    (connection,) = await one_way.rows(Connection)
    assert connection.status == "broken"
    assert await one_way.count(BlockedSlot) == 1  # availability does not silently open
    assert [n.kind for n in await one_way.rows(Notice)] == ["connection_broken"]
    assert await one_way.engine.sync_user(one_way.user_id) == []  # broken connections are not polled


# Push ------------------------------------------------------------------------------------------------


async def test_booked_appointment_is_pushed_once_and_its_copy_ignored_on_pull(one_way: World) -> None:
    appointment_id = await book(one_way, paris(DAY, 10))
    assert (await one_way.sync())["pushed"] == 1
    summary = await one_way.sync()
    assert summary["pushed"] == 0 and await one_way.count(BlockedSlot) == 0  # R1: our copy is not a conflict
    listing = await CalDAVProvider(one_way.account.url, one_way.account.username, one_way.account.password,
                                   ProviderConfig()).changes(one_way.calendar_url, None, ANY_TIME)
    assert [i.remote_id.rsplit("/", 1)[-1] for i in listing.changed] == [f"{appointment_id}.ics"]


async def test_crash_after_the_remote_write_converges_without_a_duplicate(
    one_way: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after Radicale stored our event, before the link was committed."""
    appointment_id = await book(one_way, paris(DAY, 10))

    class Crash(BaseException):  # the process dies: nothing of it catches this
        pass

    async def die(*_: object, **__: object) -> None:
        raise Crash()

    monkeypatch.setattr(state, "record_push", die)
    with pytest.raises(Crash):
        await one_way.engine.sync_calendar(one_way.calendar_id)
    monkeypatch.undo()

    await one_way.engine.sync_calendar(one_way.calendar_id)
    await one_way.engine.sync_calendar(one_way.calendar_id)
    listing = await CalDAVProvider(one_way.account.url, one_way.account.username, one_way.account.password,
                                   ProviderConfig()).changes(one_way.calendar_url, None, ANY_TIME)
    assert [i.remote_id.rsplit("/", 1)[-1] for i in listing.changed] == [f"{appointment_id}.ics"]
    (link,) = await one_way.rows(EventLink)
    assert link.appointment_id == appointment_id and await one_way.count(BlockedSlot) == 0


async def test_r7_one_way_remote_delete_keeps_the_booking_and_asks(one_way: World) -> None:
    appointment_id = await book(one_way, paris(DAY, 10))
    await one_way.sync()
    provider = CalDAVProvider(one_way.account.url, one_way.account.username, one_way.account.password,
                              ProviderConfig())
    await provider.delete(one_way.calendar_url, f"{appointment_id}.ics", None)
    await one_way.sync()
    await one_way.sync()
    (appointment,) = await one_way.rows(Appointment)
    assert appointment.status == "booked"
    assert (await provider.changes(one_way.calendar_url, None, ANY_TIME)).changed == ()  # not re-pushed
    (notice,) = [n for n in await one_way.rows(Notice) if n.kind == "pushed_event_deleted"]
    assert notice.payload["actions"] == ["restore_to_calendar", "cancel_appointment"]
