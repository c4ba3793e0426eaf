"""The Google event mapping (sync/providers/google/reading.py) on recorded-style event JSON: one test per busy or
free rule and event type, all-day events in the user's zone, recurring series with moved and cancelled
instances, our marker, and bad data that fails alone."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sync.events import Attendee, Guest, ItemEvents, Response
from sync.providers.base import BadRemoteData, ReadContext, RemoteItem
from sync.providers.google.reading import events, read_item

SAMPLES = Path(__file__).parent.parent / "providers" / "google"
PARIS = ZoneInfo("Europe/Paris")
MARCH = ReadContext(PARIS, "john@example.com", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))


def utc(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def sample(name: str) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = json.loads((SAMPLES / name).read_text())
    return resources


def event(**fields: Any) -> dict[str, Any]:
    """A plain single event on 4 March, 10:00-11:00 Paris, with `fields` set over it."""
    base: dict[str, Any] = {
        "kind": "calendar#event", "etag": '"3421850000000000"', "id": "plain1", "status": "confirmed",
        "updated": "2026-02-22T08:30:00.000Z", "summary": "Meeting", "iCalUID": "plain1@google.com",
        "start": {"dateTime": "2026-03-04T10:00:00+01:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2026-03-04T11:00:00+01:00", "timeZone": "Europe/Paris"}, "eventType": "default",
    }
    return base | fields


def read(resources: list[dict[str, Any]], context: ReadContext = MARCH, remote_id: str = "item1") -> ItemEvents:
    return events(RemoteItem(remote_id, '"e1"', json.dumps(resources)), context)


def busy(resource: dict[str, Any]) -> bool:
    (occurrence,) = read([resource]).events
    return occurrence.busy


def test_dr_michel_is_busy_with_guests_organizer_and_the_room_left_out_of_guests() -> None:
    item = read(sample("michel.json"))
    (meeting,) = item.events
    assert (meeting.start, meeting.end, meeting.busy, meeting.all_day, meeting.occurrence_key) == (
        utc(3, 2, 12), utc(3, 2, 13), True, False, "")
    assert (meeting.title, meeting.organizer, meeting.uid) == (
        "Appointment with Dr. Michel", "john@example.com", "5f1c2d0amichel@google.com")
    assert meeting.attendees == (
        Attendee("michel@example.com", "Dr. Michel", Response.ACCEPTED, False),
        Attendee("john@example.com", "John", Response.ACCEPTED, False),
        Attendee("c_1882room1@resource.calendar.google.com", "Room 1", Response.ACCEPTED, True),
    )
    read_back = item.remote_object()
    assert read_back.occurrences[0].guests == (Guest("michel@example.com", "Dr. Michel"), Guest("john@example.com", "John"))
    assert (read_back.appointment_id, read_back.cancelled, read_back.updated) == (None, False, utc(2, 21, 9))


def test_transparent_is_free() -> None:
    assert busy(event(transparency="transparent")) is False
    assert busy(event(transparency="opaque")) is True


def test_an_invitation_the_user_declined_is_free_one_someone_else_declined_is_not() -> None:
    declined = event(attendees=[{"email": "boss@example.com", "organizer": True, "responseStatus": "accepted"},
                                {"email": "john@example.com", "self": True, "responseStatus": "declined"}])
    other = event(attendees=[{"email": "ann@example.com", "responseStatus": "declined"},
                             {"email": "john@example.com", "self": True, "responseStatus": "needsAction"}])
    assert busy(declined) is False
    assert busy(other) is True


@pytest.mark.parametrize(("event_type", "transparency", "expected"), [
    ("default", None, True),
    ("fromGmail", None, True),
    ("focusTime", None, True),
    ("focusTime", "transparent", False),
    ("outOfOffice", None, True),
    ("outOfOffice", "transparent", True),  # away is away, however it is shown
    ("workingLocation", None, False),  # stored, never blocks
    ("birthday", None, False),
])
def test_each_event_type(event_type: str, transparency: str | None, expected: bool) -> None:
    fields: dict[str, Any] = {"eventType": event_type}
    if transparency:
        fields["transparency"] = transparency
    assert busy(event(**fields)) is expected


def test_a_birthday_is_a_free_all_day_event() -> None:
    (day,) = read([event(eventType="birthday", start={"date": "2026-03-06"}, end={"date": "2026-03-07"})]).events
    assert (day.all_day, day.busy, day.start) == (True, False, utc(3, 5, 23))


def test_an_all_day_event_covers_whole_days_in_the_users_zone() -> None:
    holiday = event(start={"date": "2026-03-06"}, end={"date": "2026-03-08"})
    (paris,) = read([holiday]).events
    assert (paris.start, paris.end, paris.all_day, paris.busy) == (utc(3, 5, 23), utc(3, 7, 23), True, True)
    new_york = replace(MARCH, timezone=ZoneInfo("America/New_York"))
    (there,) = read([holiday], new_york).events
    assert (there.start, there.end) == (utc(3, 6, 5), utc(3, 8, 5))


def test_a_transparent_all_day_event_is_free() -> None:
    (day,) = read([event(start={"date": "2026-03-06"}, end={"date": "2026-03-07"}, transparency="transparent")]).events
    assert (day.all_day, day.busy) == (True, False)


def test_a_time_with_an_offset_is_that_instant_and_one_without_is_in_the_events_zone() -> None:
    (offset,) = read([event(start={"dateTime": "2026-03-04T09:00:00Z"}, end={"dateTime": "2026-03-04T18:00:00+09:00"})]).events
    assert (offset.start, offset.end) == (utc(3, 4, 9), utc(3, 4, 9))
    local = event(start={"dateTime": "2026-03-04T10:00:00", "timeZone": "America/New_York"},
                  end={"dateTime": "2026-03-04T11:00:00", "timeZone": "America/New_York"})
    (ny,) = read([local]).events
    assert ny.start == utc(3, 4, 15)


def test_an_unknown_zone_is_read_as_the_users_with_a_warning() -> None:
    item = read([event(start={"dateTime": "2026-03-04T10:00:00", "timeZone": "Mars/Olympus"},
                       end={"dateTime": "2026-03-04T11:00:00", "timeZone": "Mars/Olympus"})])
    assert item.events[0].start == utc(3, 4, 9)
    assert item.warnings == ("unknown time zone 'Mars/Olympus' read as the user's time zone",)


def test_a_cancelled_event_is_a_cancelled_item_even_with_only_its_id() -> None:
    item = read([{"kind": "calendar#event", "etag": '"1"', "id": "gone1", "status": "cancelled"}])
    assert item.cancelled and item.events == ()
    read_back = read_item(RemoteItem("gone1", '"1"', json.dumps([event(status="cancelled")])), MARCH)
    assert read_back.cancelled and read_back.occurrences == ()


def test_a_series_leaves_its_cancelled_instance_out_and_keys_instances_by_their_original_start() -> None:
    item = read(sample("standup.json"), remote_id="standup7q")
    assert not item.cancelled
    assert [(e.start, e.title, e.occurrence_key) for e in item.events] == [
        (utc(3, 2, 8), "Stand-up", "2026-03-02T08:00:00Z"),
        (utc(3, 16, 14), "Stand-up (moved)", "2026-03-16T08:00:00Z"),  # moved: keeps the key of its slot
        (utc(3, 30, 7), "Stand-up", "2026-03-30T07:00:00Z"),
    ]
    assert item.last_modified == utc(2, 25, 16, 40)  # the latest change of any instance


def test_a_series_whose_instances_are_all_cancelled_is_cancelled() -> None:
    cancelled = [i for i in sample("standup.json") if i["status"] == "cancelled"]
    assert read(cancelled).cancelled


def test_all_day_instances_are_keyed_by_date() -> None:
    instance = event(id="daily_20260305", recurringEventId="daily", originalStartTime={"date": "2026-03-05"},
                     start={"date": "2026-03-05"}, end={"date": "2026-03-06"})
    assert read([instance]).events[0].occurrence_key == "2026-03-05"


def test_occurrences_outside_the_window_are_dropped() -> None:
    before = event(start={"dateTime": "2026-02-27T10:00:00Z"}, end={"dateTime": "2026-03-01T00:00:00Z"})
    after = event(start={"dateTime": "2026-05-01T00:00:00Z"}, end={"dateTime": "2026-05-01T01:00:00Z"})
    across = event(start={"dateTime": "2026-02-28T22:00:00Z"}, end={"dateTime": "2026-03-01T02:00:00Z"})
    assert read([before]).events == () and read([after]).events == ()
    assert [e.start for e in read([across]).events] == [utc(2, 28, 22)]


def test_our_event_is_known_by_its_private_marker() -> None:
    ours = event(id="a1b2c3d4", extendedProperties={"private": {"croco_appointment": "a1b2c3d4"}})
    assert read([ours]).remote_object().appointment_id == "a1b2c3d4"
    shared = event(id="a1b2c3d4", extendedProperties={"shared": {"croco_appointment": "a1b2c3d4"}})
    assert read([shared]).remote_object().appointment_id is None  # another attendee's copy may share it
    assert read([event(id="a1b2c3d4")]).remote_object().appointment_id is None  # an id alone is no marker


@pytest.mark.parametrize(("resources", "reason"), [
    ("{not json", "malformed JSON"),
    ("[]", "not a list of events"),
    ('{"id": "x"}', "not a list of events"),
    (json.dumps([event(start=None)]), "event has no start"),
    (json.dumps([{k: v for k, v in event().items() if k != "end"}]), "event has no end"),
    (json.dumps([event(end={"dateTime": "2026-03-04T09:00:00+01:00"})]), "end is before start"),
    (json.dumps([event(start={"dateTime": "on Tuesday"})]), "unreadable start or end"),
])
def test_bad_data_fails_with_its_reason(resources: str, reason: str) -> None:
    with pytest.raises(BadRemoteData) as failed:
        events(RemoteItem("bad1", None, resources), MARCH)
    assert (failed.value.remote_id, failed.value.reason) == ("bad1", reason)


def test_the_reader_can_run_in_a_worker_process() -> None:
    reader = pickle.loads(pickle.dumps(read_item))
    assert reader(RemoteItem("item1", '"e1"', json.dumps(sample("michel.json"))), MARCH).etag == '"e1"'
