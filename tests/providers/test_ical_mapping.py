"""The iCalendar mapping (sync/providers/caldav/ical.py) on recorded-style .ics files: busy or free, recurrence, time zones,
our own events, and bad data that fails alone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sync.events import Attendee, ItemEvents, Response
from sync.providers.base import BadRemoteData, EventDraft, ReadContext, RemoteItem
from sync.providers.caldav.ical import content_hash, events, write_event

ICS = Path(__file__).parent / "ics"
PARIS = ZoneInfo("Europe/Paris")
MARCH = ReadContext(PARIS, "john@example.com", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))


def read(name: str, context: ReadContext = MARCH, **kwargs: str) -> ItemEvents:
    return events(RemoteItem(f"/john/work/{name}", '"e1"', (ICS / name).read_text()), context, **kwargs)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_dr_michel_is_busy_with_guests_organizer_and_the_room_marked() -> None:
    item = read("michel.ics")
    (event,) = item.events
    assert (event.start, event.end, event.busy, event.cancelled, event.all_day) == (
        utc(2026, 3, 2, 12), utc(2026, 3, 2, 13), True, False, False)
    assert (event.title, event.uid, event.occurrence_key, event.organizer) == (
        "Appointment with Dr. Michel", "5F1C2D0A-michel@example", "", "john@example.com")
    assert event.attendees == (
        Attendee("michel@example.com", "Dr. Michel", Response.ACCEPTED, False),
        Attendee("john@example.com", "John", Response.ACCEPTED, False),
        Attendee("room1@example.com", "Room 1", Response.NEEDS_ACTION, True),
    )
    assert event.our_appointment_id is None and event.last_modified == utc(2026, 2, 21, 9)
    guests = [g.email for g in item.remote_object().occurrences[0].guests]
    assert guests == ["michel@example.com", "john@example.com"]  # the room is never a contact


@pytest.mark.parametrize(("name", "busy"), [
    ("free.ics", False),  # TRANSP:TRANSPARENT
    ("declined.ics", False),  # the user declined (matched case-insensitively)
    ("someone_else_declined.ics", True),  # another guest declined: still busy for the user
])
def test_busy_or_free(name: str, busy: bool) -> None:
    (event,) = read(name).events
    assert event.busy is busy and not event.cancelled


def test_declined_under_the_account_address_is_free_too() -> None:
    """An iCloud account invited under its Apple ID, not the address the user gave Croco."""
    other_user = ReadContext(PARIS, "j.doe@work.example", MARCH.window_start, MARCH.window_end)
    assert read("declined.ics", other_user).events[0].busy
    assert not read("declined.ics", other_user, account_email="john@example.com").events[0].busy


def test_cancelled_event_counts_as_deleted() -> None:
    item = read("cancelled.ics")
    assert item.cancelled and [e.cancelled for e in item.events] == [True]
    assert not item.events[0].busy
    removed = item.remote_object()
    assert removed.cancelled and removed.occurrences == () and removed.etag == '"e1"'


def test_weekly_series_with_exdate_an_override_and_a_cancelled_instance() -> None:
    item = read("recurring.ics")
    shown = [(e.occurrence_key, e.start, e.title, e.cancelled) for e in item.events]
    assert shown == [
        ("20260302T080000Z", utc(2026, 3, 2, 8), "Stand-up", False),
        # 9 March is an EXDATE
        ("20260316T080000Z", utc(2026, 3, 16, 14), "Stand-up (moved)", False),  # keyed by its original start
        ("20260323T080000Z", utc(2026, 3, 23, 8), "Stand-up", True),
        ("20260330T070000Z", utc(2026, 3, 30, 7), "Stand-up", False),  # 09:00 in Paris after the DST change
    ]
    assert not item.cancelled and item.last_modified == utc(2026, 3, 1, 12)  # the latest of its components
    occurrences = item.remote_object().occurrences
    assert [o.key for o in occurrences] == ["20260302T080000Z", "20260316T080000Z", "20260330T070000Z"]


def test_only_occurrences_inside_the_window() -> None:
    window = ReadContext(PARIS, "john@example.com", utc(2026, 3, 10), utc(2026, 3, 20))
    assert [e.occurrence_key for e in read("recurring.ics", window).events] == ["20260316T080000Z"]
    assert read("michel.ics", window).events == ()


def test_all_day_event_over_the_dst_change_covers_whole_paris_days() -> None:
    (event,) = read("all_day_dst.ics").events
    assert event.all_day and (event.start, event.end) == (utc(2026, 3, 27, 23), utc(2026, 3, 29, 22))
    assert event.end - event.start == (utc(2026, 3, 29, 22) - utc(2026, 3, 27, 23))  # 47 hours, not 48


def test_daily_all_day_series_follows_the_users_midnight_and_keys_by_date() -> None:
    item = read("all_day_daily.ics")
    assert [(e.occurrence_key, e.start, e.end) for e in item.events] == [
        ("20260328", utc(2026, 3, 27, 23), utc(2026, 3, 28, 23)),
        ("20260329", utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)),  # the 23-hour day
        ("20260330", utc(2026, 3, 29, 22), utc(2026, 3, 30, 22)),
    ]
    new_york = ReadContext(ZoneInfo("America/New_York"), "john@example.com", MARCH.window_start, MARCH.window_end)
    assert [e.occurrence_key for e in read("all_day_daily.ics", new_york).events] == ["20260328", "20260329",
                                                                                      "20260330"]


def test_floating_time_is_read_in_the_users_zone() -> None:
    (paris,) = read("floating.ics").events
    assert (paris.start, paris.end) == (utc(2026, 3, 2, 8), utc(2026, 3, 2, 8, 45))
    new_york = ReadContext(ZoneInfo("America/New_York"), "john@example.com", MARCH.window_start, MARCH.window_end)
    (there,) = read("floating.ics", new_york).events
    assert there.start == utc(2026, 3, 2, 14)


def test_unknown_tzid_falls_back_to_the_users_zone_with_a_warning() -> None:
    item = read("unknown_tzid.ics")
    (event,) = item.events
    assert (event.start, event.end) == (utc(2026, 3, 2, 8), utc(2026, 3, 2, 9))
    assert item.warnings == ("unknown time zone 'Mars/Olympus_Mons' read as the user's time zone",)
    assert read("michel.ics").warnings == ()


def test_tasks_and_journal_entries_are_ignored() -> None:
    item = read("todo_and_journal.ics")
    assert item.events == () and not item.cancelled and item.remote_object().occurrences == ()


@pytest.mark.parametrize(("name", "reason"), [
    ("backwards.ics", "DTEND is before DTSTART"),
    ("no_dtstart.ics", "event has no DTSTART"),
    ("broken_dtstart.ics", "unreadable DTSTART"),
    ("garbage.ics", "malformed iCalendar: ValueError"),
])
def test_bad_data_raises_bad_remote_data_with_the_item_and_the_reason(name: str, reason: str) -> None:
    with pytest.raises(BadRemoteData) as caught:
        read(name)
    assert (caught.value.remote_id, caught.value.reason) == (f"/john/work/{name}", reason)


def test_our_pushed_event_is_recognised_by_its_marker_or_its_uid() -> None:
    draft = EventDraft("a1b2c3", utc(2026, 3, 4, 9), utc(2026, 3, 4, 10), "Consultation", sequence=2)
    data = write_event(draft)
    assert "UID:a1b2c3@croco" in data and "X-CROCO-APPOINTMENT:a1b2c3" in data and "ATTENDEE" not in data
    item = events(RemoteItem("/john/work/a1b2c3.ics", None, data), MARCH)
    (event,) = item.events
    assert (item.our_appointment_id, event.our_appointment_id) == ("a1b2c3", "a1b2c3")
    assert (event.start, event.end, event.title, event.busy) == (draft.start, draft.end, "Consultation", True)
    uid_only = data.replace("X-CROCO-APPOINTMENT:a1b2c3\r\n", "")
    assert events(RemoteItem("/x.ics", None, uid_only), MARCH).our_appointment_id == "a1b2c3"
    assert item.remote_object().appointment_id == "a1b2c3"


def test_content_hash_ignores_what_servers_rewrite_and_sees_what_people_change() -> None:
    original = (ICS / "michel.ics").read_text()
    rewritten = (
        original.replace("PRODID:-//Apple Inc.//macOS 15//EN", "PRODID:-//Radicale//NONSGML//EN")
        .replace("DTSTAMP:20260220T101500Z", "DTSTAMP:20260301T000000Z")
        .replace("LAST-MODIFIED:20260221T090000Z\n", "")
        .replace("SUMMARY:Appointment with Dr. Michel\n", "").replace("END:VEVENT", "SUMMARY:Appointment with Dr. Michel\nEND:VEVENT")
        .replace("\n", "\r\n")
    )
    assert content_hash(rewritten) == content_hash(original) == read("michel.ics").events[0].content_hash
    assert content_hash(original.replace("Dr. Michel\n", "Dr. Michel (moved)\n")) != content_hash(original)
