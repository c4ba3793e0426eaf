"""The Microsoft Graph event mapping (sync/providers/microsoft/reading.py) on recorded-style event JSON: one test
per `showAs` value and busy rule, all-day events in the user's zone, a series with a moved and a cancelled
occurrence, our marker, bad data that fails alone, and how calendarView delta entries become items."""

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
from sync.providers.microsoft.reading import MARKER_PROPERTY_ID, events, group_items, read_item

SAMPLES = Path(__file__).parent.parent / "providers" / "microsoft"
PARIS = ZoneInfo("Europe/Paris")
MARCH = ReadContext(PARIS, "john@example.com", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))


def utc(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def event(**fields: Any) -> dict[str, Any]:
    """A plain single event on 4 March, 09:00-10:00 UTC (as `Prefer: outlook.timezone="UTC"` returns it)."""
    base: dict[str, Any] = {
        "@odata.etag": 'W/"DwAAABYAAAB3"', "id": "AAMkplain1=", "type": "singleInstance", "subject": "Meeting",
        "lastModifiedDateTime": "2026-02-22T08:30:00.0000000Z", "iCalUId": "040000008200E0007plain1",
        "isAllDay": False, "isCancelled": False, "showAs": "busy",
        "responseStatus": {"response": "accepted", "time": "2026-02-22T08:31:00Z"},
        "start": {"dateTime": "2026-03-04T09:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-03-04T10:00:00.0000000", "timeZone": "UTC"},
    }
    return base | fields


def read(resources: list[dict[str, Any]], context: ReadContext = MARCH, remote_id: str = "item1") -> ItemEvents:
    return events(RemoteItem(remote_id, 'W/"e1"', json.dumps(resources)), context)


def busy(resource: dict[str, Any]) -> bool:
    (occurrence,) = read([resource]).events
    return occurrence.busy


def test_dr_michel_is_busy_with_guests_organizer_and_the_room_left_out_of_guests() -> None:
    item = read(sample("michel.json"), remote_id="AAMkAGI2TGuLAAA=")
    (meeting,) = item.events
    assert (meeting.start, meeting.end, meeting.busy, meeting.all_day, meeting.occurrence_key) == (
        utc(3, 2, 12), utc(3, 2, 13), True, False, "")
    assert (meeting.title, meeting.organizer) == ("Appointment with Dr. Michel", "john@example.com")
    assert meeting.attendees == (
        Attendee("michel@example.com", "Dr. Michel", Response.ACCEPTED, False),
        Attendee("ann@example.com", "Ann", Response.NEEDS_ACTION, False),
        Attendee("room1@example.com", "Room 1", Response.ACCEPTED, True),
    )
    read_back = item.remote_object()
    assert read_back.occurrences[0].guests == (Guest("michel@example.com", "Dr. Michel"), Guest("ann@example.com", "Ann"))
    assert (read_back.appointment_id, read_back.cancelled, read_back.etag) == (None, False, 'W/"e1"')
    assert read_back.updated == datetime(2026, 2, 21, 9, 0, 0, 765432, tzinfo=UTC)


@pytest.mark.parametrize(("show_as", "expected"), [
    ("free", False),
    ("workingElsewhere", False),
    ("tentative", True),
    ("busy", True),
    ("oof", True),
    ("unknown", True),
])
def test_each_show_as_value(show_as: str, expected: bool) -> None:
    assert busy(event(showAs=show_as)) is expected


def test_an_invitation_the_user_declined_is_free_whatever_it_shows() -> None:
    assert busy(event(responseStatus={"response": "declined", "time": "2026-02-23T10:00:00Z"})) is False
    assert busy(event(responseStatus={"response": "tentativelyAccepted"})) is True
    assert busy(event(responseStatus={"response": "notResponded"})) is True


def test_an_attendee_who_declined_frees_nobody_else() -> None:
    others = event(attendees=[{"type": "required", "status": {"response": "declined"},
                               "emailAddress": {"name": "Ann", "address": "ann@example.com"}}])
    (meeting,) = read([others]).events
    assert meeting.busy and meeting.attendees[0].response is Response.DECLINED


def test_a_cancelled_event_is_a_cancelled_item() -> None:
    read_back = read_item(RemoteItem("AAMkplain1=", 'W/"2"', json.dumps([event(isCancelled=True)])), MARCH)
    assert read_back.cancelled and read_back.occurrences == ()


def test_an_all_day_event_covers_whole_days_in_the_users_zone() -> None:
    holiday = event(isAllDay=True, start={"dateTime": "2026-03-06T00:00:00.0000000", "timeZone": "UTC"},
                    end={"dateTime": "2026-03-08T00:00:00.0000000", "timeZone": "UTC"})
    (paris,) = read([holiday]).events
    assert (paris.start, paris.end, paris.all_day, paris.busy) == (utc(3, 5, 23), utc(3, 7, 23), True, True)
    (there,) = read([holiday], replace(MARCH, timezone=ZoneInfo("America/New_York"))).events
    assert (there.start, there.end) == (utc(3, 6, 5), utc(3, 8, 5))


def test_a_time_in_another_named_zone_is_read_in_that_zone() -> None:
    local = event(start={"dateTime": "2026-03-04T10:00:00.0000000", "timeZone": "America/New_York"},
                  end={"dateTime": "2026-03-04T11:00:00.0000000", "timeZone": "America/New_York"})
    (ny,) = read([local]).events
    assert (ny.start, ny.end) == (utc(3, 4, 15), utc(3, 4, 16))


def test_a_series_leaves_its_cancelled_occurrence_out_and_keys_occurrences_by_their_original_start() -> None:
    item = read(sample("standup.json"), remote_id="AAMkAGI2standup=")
    assert not item.cancelled
    assert [(e.start, e.title, e.occurrence_key) for e in item.events] == [
        (utc(3, 2, 8), "Stand-up", "2026-03-02T08:00:00Z"),
        (utc(3, 16, 14), "Stand-up (moved)", "2026-03-16T08:00:00Z"),  # moved: keeps the key of its slot
        (utc(3, 30, 7), "Stand-up", "2026-03-30T07:00:00Z"),
    ]
    assert item.last_modified == utc(2, 25, 16, 40)  # the latest change of any occurrence


def test_a_series_whose_occurrences_are_all_cancelled_is_cancelled() -> None:
    cancelled = [e for e in sample("standup.json") if e["isCancelled"]]
    assert read(cancelled).cancelled


def test_occurrences_outside_the_window_are_dropped() -> None:
    def spanning(start: str, end: str) -> dict[str, Any]:
        return event(start={"dateTime": start, "timeZone": "UTC"}, end={"dateTime": end, "timeZone": "UTC"})

    assert read([spanning("2026-02-27T10:00:00.0000000", "2026-03-01T00:00:00.0000000")]).events == ()
    assert read([spanning("2026-05-01T00:00:00.0000000", "2026-05-01T01:00:00.0000000")]).events == ()
    across = read([spanning("2026-02-28T22:00:00.0000000", "2026-03-01T02:00:00.0000000")])
    assert [e.start for e in across.events] == [utc(2, 28, 22)]


def test_our_event_is_known_by_its_extended_property() -> None:
    ours = event(singleValueExtendedProperties=[{"id": MARKER_PROPERTY_ID, "value": "a1b2c3d4"}])
    assert read([ours]).remote_object().appointment_id == "a1b2c3d4"
    other = event(singleValueExtendedProperties=[
        {"id": "String {00020329-0000-0000-c000-000000000046} Name croco_appointment", "value": "a1b2c3d4"}])
    assert read([other]).remote_object().appointment_id is None  # the same name in another set is not ours
    assert read([event()]).remote_object().appointment_id is None


@pytest.mark.parametrize(("resources", "reason"), [
    ("{not json", "malformed JSON"),
    ("[]", "not a list of events"),
    (json.dumps([event(start=None)]), "event has no start"),
    (json.dumps([{k: v for k, v in event().items() if k != "end"}]), "event has no end"),
    (json.dumps([event(end={"dateTime": "2026-03-04T08:00:00.0000000", "timeZone": "UTC"})]), "end is before start"),
    (json.dumps([event(start={"dateTime": "on Tuesday", "timeZone": "UTC"})]), "unreadable start or end"),
])
def test_bad_data_fails_with_its_reason(resources: str, reason: str) -> None:
    with pytest.raises(BadRemoteData) as failed:
        events(RemoteItem("bad1", None, resources), MARCH)
    assert (failed.value.remote_id, failed.value.reason) == ("bad1", reason)


def test_a_delta_page_groups_a_series_under_its_master_and_lists_removed_ids() -> None:
    items, removed = group_items(sample("delta.json")["value"])
    assert [item.remote_id for item in items] == ["AAMkAGI2TGuLAAA=", "AAMkAGI2standup="]
    assert removed == ["AAMkAGI2gone="]
    single, series = (read_item(item, MARCH) for item in items)
    assert single.etag == 'W/"DwAAABYAAAB3SvT0s0WBQ6S4sgCNnLp1AAAC0j0q"'
    assert [o.key for o in series.occurrences] == ["2026-03-02T08:00:00Z", "2026-03-16T08:00:00Z"]


def test_a_series_etag_changes_when_one_of_its_occurrences_does() -> None:
    page = sample("delta.json")["value"]
    (_, before), _ = group_items(page)
    page[3]["@odata.etag"] = 'W/"changed"'
    (_, after), _ = group_items(page)
    assert before.etag != after.etag


def test_the_later_delta_entry_for_an_id_wins() -> None:
    first, again = event(subject="First"), event(subject="Again")
    (item,), removed = group_items([first, {"id": first["id"], "@removed": {"reason": "deleted"}}, again])
    assert removed == [] and json.loads(item.data) == [again]
    items, removed = group_items([first, {"id": first["id"], "@removed": {"reason": "deleted"}}])
    assert items == [] and removed == [first["id"]]


def test_the_reader_can_run_in_a_worker_process() -> None:
    reader = pickle.loads(pickle.dumps(read_item))
    assert reader(RemoteItem("item1", 'W/"e1"', json.dumps(sample("michel.json"))), MARCH).etag == 'W/"e1"'


def test_a_zone_the_tz_database_does_not_know_is_read_as_the_users_and_told() -> None:
    """DESIGN section 4: unknown zones fall back to the user's zone and are reported, never fail the item."""
    windows = event(start={"dateTime": "2026-03-04T09:00:00.0000000", "timeZone": "Pacific Standard Time"},
                    end={"dateTime": "2026-03-04T10:00:00.0000000", "timeZone": "Pacific Standard Time"})
    mapped = events(RemoteItem("pst1", None, json.dumps([windows])), MARCH)
    (occurrence,) = mapped.events
    assert occurrence.start == datetime(2026, 3, 4, 9, tzinfo=MARCH.timezone).astimezone(UTC)
    assert mapped.warnings == ("unknown time zone 'Pacific Standard Time' read as the user's time zone",)
