"""The iCalendar mapping (sync/providers/caldav/ical.py) on recorded-style .ics files: busy or free, recurrence, time zones,
our own events, and bad data that fails alone; occurrences checked against recurring-ical-events itself, on
fixtures that mix DATE and DATE-TIME values and on generated series."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events
from hypothesis import given
from hypothesis import strategies as st
from icalendar import Calendar, Event

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


# The same occurrences as recurring-ical-events --------------------------------------------------------------

Span = tuple[datetime, datetime, bool]  # start, end, all-day


def instant(value: date | datetime) -> datetime:
    """How the module says it reads a time: a date at midnight and a floating time in the user's zone (Paris)."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    return (value if value.tzinfo else value.replace(tzinfo=PARIS)).astimezone(UTC)


def expected(data: str) -> list[Span]:
    """recurring-ical-events' occurrences of the whole file (every fixture lies inside MARCH); an instance it
    gives twice (a DATE series and a DATE-TIME RDATE on one of its days) counts once."""
    found = recurring_ical_events.of(Calendar.from_ical(data)).all()
    return sorted({o.decoded("RECURRENCE-ID"): (instant(o.decoded("DTSTART")), instant(o.decoded("DTEND")),
                                                not isinstance(o.decoded("DTSTART"), datetime)) for o in found}.values())


def ours(data: str) -> list[Span]:
    read = events(RemoteItem("/john/work/x.ics", None, data), MARCH).events
    keys = [e.occurrence_key for e in read]
    assert len(set(keys)) == len(keys), keys  # an instance is never shown twice
    return sorted((e.start, e.end, e.all_day) for e in read)


@pytest.mark.parametrize("name", [
    "exdate_date_on_timed.ics", "exdate_timed_on_date.ics", "exdate_on_single.ics",
    "rdate_date_on_timed.ics", "rdate_timed_on_date.ics",
    "date_duration.ics", "date_duration_daily.ics", "date_no_end.ics", "date_start_timed_end.ics",
    "recurring.ics", "all_day_daily.ics", "all_day_dst.ics", "floating.ics", "michel.ics",
])
def test_occurrences_are_those_recurring_ical_events_gives(name: str) -> None:
    data = (ICS / name).read_text()
    assert ours(data) == expected(data)


def test_a_date_start_with_a_duration_of_hours_blocks_those_hours_from_local_midnight() -> None:
    """DURATION:PT10H on a DATE: ten hours from Paris midnight, a timed event, alone or in a daily series."""
    assert ours((ICS / "date_duration.ics").read_text()) == [(utc(2026, 3, 1, 23), utc(2026, 3, 2, 9), False)]
    assert [(e.occurrence_key, e.start, e.end) for e in read("date_duration_daily.ics").events] == [
        (f"2026030{day}", utc(2026, 3, day - 1, 23), utc(2026, 3, day, 9)) for day in (2, 3, 4)]


def test_an_override_in_a_date_series_with_a_duration_keeps_its_instances_key() -> None:
    """Moving one day of a ten-hour daily series must not make its occurrence a new one."""
    data = (ICS / "date_duration_daily.ics").read_text()
    moved = data.replace("END:VCALENDAR", "BEGIN:VEVENT\nUID:du2\nDTSTAMP:20260220T101500Z\n"
                         "RECURRENCE-ID;VALUE=DATE:20260303\nDTSTART;VALUE=DATE:20260303\nDURATION:PT4H\n"
                         "SUMMARY:Workshop (short)\nEND:VEVENT\nEND:VCALENDAR")
    shown = [(e.occurrence_key, e.end, e.title) for e in events(RemoteItem("/x.ics", None, moved), MARCH).events]
    assert shown == [("20260302", utc(2026, 3, 2, 9), "Workshop"), ("20260303", utc(2026, 3, 3, 3), "Workshop (short)"),
                     ("20260304", utc(2026, 3, 4, 9), "Workshop")]


def test_a_date_start_without_an_end_is_one_whole_day() -> None:
    (event,) = read("date_no_end.ics").events
    assert (event.start, event.end, event.all_day) == (utc(2026, 3, 1, 23), utc(2026, 3, 2, 23), True)


def test_a_date_start_with_a_timed_end_is_a_timed_event_from_midnight() -> None:
    (event,) = read("date_start_timed_end.ics").events
    assert (event.start, event.end, event.all_day) == (utc(2026, 3, 1, 23), utc(2026, 3, 2, 11), False)


def test_an_exdate_of_the_other_type_removes_its_instance() -> None:
    assert [e.occurrence_key for e in read("exdate_date_on_timed.ics").events] == [
        "20260302T080000Z", "20260316T080000Z", "20260323T080000Z"]  # 9 March is excluded as a DATE
    assert [e.occurrence_key for e in read("exdate_timed_on_date.ics").events] == [
        "20260302", "20260304", "20260305"]


def test_an_exdate_on_a_single_event_removes_its_only_instance() -> None:
    """Nothing left to block, as in recurring-ical-events (the EXDATE is a DATE on a timed event, too)."""
    assert read("exdate_on_single.ics").events == ()


def test_an_rdate_of_the_other_type_adds_an_instance() -> None:
    assert [e.occurrence_key for e in read("rdate_date_on_timed.ics").events] == [
        "20260302T080000Z", "20260309T080000Z", "20260319T230000Z"]  # 20 March at the series' midnight
    assert [(e.occurrence_key, e.all_day) for e in read("rdate_timed_on_date.ics").events] == [
        ("20260302", True), ("20260303", True), ("20260320", True)]
    on_an_instance = (ICS / "rdate_timed_on_date.ics").read_text().replace("20260320T100000Z", "20260303T100000Z")
    assert [e.occurrence_key for e in events(RemoteItem("/x.ics", None, on_an_instance), MARCH).events] == [
        "20260302", "20260303"]  # the same day once, though recurring-ical-events gives it twice


@pytest.mark.parametrize(("name", "as_its_series_writes_it"), [
    ("recurrence_id_date_on_timed.ics",
     ("RECURRENCE-ID;VALUE=DATE:20260309", "RECURRENCE-ID;TZID=Europe/Paris:20260309T090000")),
    ("recurrence_id_timed_on_date.ics",
     ("RECURRENCE-ID;TZID=Europe/Paris:20260303T090000", "RECURRENCE-ID;VALUE=DATE:20260303")),
])
def test_an_override_whose_recurrence_id_has_the_other_type_replaces_its_instance(
    name: str, as_its_series_writes_it: tuple[str, str]
) -> None:
    """Not shown next to it: the same occurrences as recurring-ical-events gives once the RECURRENCE-ID has
    DTSTART's value type (as RFC 5545 requires), under the instance's own key."""
    data = (ICS / name).read_text()
    assert as_its_series_writes_it[0] in data
    well_typed = data.replace(*as_its_series_writes_it)
    assert ours(data) == expected(well_typed) == ours(well_typed)
    keys = [(e.occurrence_key, e.title) for e in read(name).events]
    assert keys == [(e.occurrence_key, e.title) for e in events(RemoteItem("/x.ics", None, well_typed), MARCH).events]
    assert len(keys) == 3 and sum("(moved)" in str(title) for _, title in keys) == 1


KINDS = ("date", "floating", "paris", "utc")


def written(kind: str, day: date, hour: int) -> date | datetime:
    """A time on `day` written as a DATE, a floating DATE-TIME, one in Paris or one in UTC."""
    if kind == "date":
        return day
    naive = datetime.combine(day, time(hour))
    return naive if kind == "floating" else naive.replace(tzinfo=PARIS if kind == "paris" else UTC)


@st.composite
def series(draw: st.DrawFn) -> tuple[str, str]:
    """A small event: single or daily/weekly, with EXDATEs, RDATEs and overrides whose values may be of the
    other type than DTSTART. Returns the file and the same file with every RECURRENCE-ID of DTSTART's type
    (what recurring-ical-events matches; the other type is shown next to its instance, see above)."""
    kind, first = draw(st.sampled_from(KINDS)), date(2026, 3, 2) + timedelta(days=draw(st.integers(0, 6)))
    hour = draw(st.integers(0, 23))
    start = written(kind, first, hour)
    master = Event()
    master.add("UID", "generated@example")
    master.add("DTSTAMP", datetime(2026, 2, 20, tzinfo=UTC))
    master.add("SUMMARY", "Generated")
    master.add("DTSTART", start)
    end = draw(st.sampled_from(["none", "dtend", "duration"]))
    length = draw(st.sampled_from([timedelta(minutes=30), timedelta(hours=10), timedelta(days=1),
                                   timedelta(days=1, hours=2)]))
    if end == "dtend":
        master.add("DTEND", start + (timedelta(days=length.days or 1) if kind == "date" else length))
    elif end == "duration":
        master.add("DURATION", length)
    step = draw(st.sampled_from([None, 1, 7]))
    count = draw(st.integers(1, 4)) if step else 1
    if step:
        master.add("RRULE", {"FREQ": "DAILY" if step == 1 else "WEEKLY", "COUNT": count})
    days = [first + timedelta(days=(step or 0) * n) for n in range(count)]
    for n in draw(st.lists(st.integers(0, count - 1), max_size=2, unique=True)):
        master.add("EXDATE", [written(draw(st.sampled_from(KINDS)), days[n], hour)])
    for offset in draw(st.lists(st.integers(10, 20), max_size=2, unique=True)):
        master.add("RDATE", [written(draw(st.sampled_from(KINDS)), first + timedelta(days=offset), hour)])
    moved = [(days[n], draw(st.booleans())) for n in draw(st.lists(st.integers(0, count - 1), max_size=2,
                                                                     unique=True))] if step else []

    def calendar(well_typed: bool) -> str:
        result = Calendar()
        result.add("PRODID", "-//Tests//EN")
        result.add("VERSION", "2.0")
        result.add_component(master)
        for day, other_type in moved:
            override = Event()
            for name in ("UID", "DTSTAMP"):
                override.add(name, master.decoded(name))
            override.add("SUMMARY", "Moved")
            recurrence_id = ("floating" if kind == "date" else "date") if other_type and not well_typed else kind
            override.add("RECURRENCE-ID", written(recurrence_id, day, hour))
            override.add("DTSTART", written(kind, day + timedelta(days=1), (hour + 1) % 24))
            result.add_component(override)
        return str(result.to_ical().decode("utf-8"))

    return calendar(False), calendar(True)


@given(series())
def test_generated_series_give_the_occurrences_of_recurring_ical_events(files: tuple[str, str]) -> None:
    data, well_typed = files
    assert ours(data) == expected(well_typed)
