"""Events for the contract suite in no provider's format: each backend writes a `SeedEvent` its own way.

The contract tests seed a calendar with these and check what the provider's reader gives back (times, busy,
title, guests, cancelled), so a backend needs only a writer: CalDAV servers and the in-memory fake store the
iCalendar text of `ical()`; the Google emulator stores the same fields as its API's JSON (`google_events()`), the
Graph emulator as Graph's (`graph_event()`, then `graph_occurrence_edits()` for a series' exceptions).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress

from sync.events import Response


@dataclass(frozen=True)
class SeedAttendee:
    email: str
    name: str | None = None
    response: Response = Response.NEEDS_ACTION
    resource: bool = False  # a room: never a guest


@dataclass(frozen=True)
class Weekly:
    """A weekly series of `count` instances (0 is the first, each at the same wall-clock time) with the usual
    exceptions."""

    count: int
    skipped: frozenset[int] = frozenset()  # removed from the series (EXDATE, a deleted instance)
    moved: dict[int, timedelta] = field(default_factory=dict)  # shifted, and titled "<title> (moved)"
    cancelled: frozenset[int] = frozenset()  # still listed, but cancelled


@dataclass(frozen=True)
class SeedEvent:
    """An event written by someone else. A date `start`/`end` is all day (`end` exclusive); times are aware."""

    name: str  # chosen by the writer: the CalDAV object is `<name>.ics`, its UID `<name>@example`
    start: datetime | date
    end: datetime | date
    title: str = "Event"
    busy: bool = True  # False: shown as free (TRANSP:TRANSPARENT, transparency, showAs)
    cancelled: bool = False
    organizer: str | None = None
    attendees: tuple[SeedAttendee, ...] = ()
    weekly: Weekly | None = None

    def moved_by(self, shift: timedelta) -> SeedEvent:
        """The same event (same name) rescheduled, as its owner would edit it."""
        return replace(self, start=self.start + shift, end=self.end + shift)


def ical(event: SeedEvent) -> str:
    """The iCalendar object a calendar app would store for `event`, VTIMEZONEs included."""
    calendar = Calendar()
    calendar.add("PRODID", "-//Tests//Contract//EN")
    calendar.add("VERSION", "2.0")
    master = _vevent(event, event.start, event.end, event.title, cancelled=event.cancelled)
    calendar.add_component(master)
    series = event.weekly
    if series is not None:
        master.add("RRULE", {"FREQ": "WEEKLY", "COUNT": series.count})
        for n in sorted(series.skipped):
            master.add("EXDATE", [event.start + timedelta(weeks=n)])
        for n in sorted(set(series.moved) | series.cancelled):
            original, shift = event.start + timedelta(weeks=n), series.moved.get(n, timedelta())  # wall-clock times
            title = f"{event.title} (moved)" if n in series.moved else event.title
            override = _vevent(event, original + shift, event.end + timedelta(weeks=n) + shift, title,
                               cancelled=n in series.cancelled)
            override.add("RECURRENCE-ID", original)
            calendar.add_component(override)
    calendar.add_missing_timezones()
    data: bytes = calendar.to_ical()
    return data.decode("utf-8")


def _vevent(event: SeedEvent, start: datetime | date, end: datetime | date, title: str, *, cancelled: bool) -> Event:
    vevent = Event()
    vevent.add("UID", f"{event.name}@example")
    vevent.add("DTSTAMP", datetime(2026, 2, 20, 10, 15, tzinfo=UTC))
    vevent.add("DTSTART", start)
    vevent.add("DTEND", end)
    vevent.add("SUMMARY", title)
    vevent.add("TRANSP", "OPAQUE" if event.busy else "TRANSPARENT")
    if cancelled:
        vevent.add("STATUS", "CANCELLED")
    if event.organizer:
        vevent.add("ORGANIZER", vCalAddress(f"mailto:{event.organizer}"))
    for attendee in event.attendees:
        address = vCalAddress(f"mailto:{attendee.email}")
        if attendee.name:
            address.params["CN"] = attendee.name
        address.params["PARTSTAT"] = attendee.response.upper().replace("_", "-")
        if attendee.resource:
            address.params["CUTYPE"] = "ROOM"
        vevent.add("ATTENDEE", address, encode=False)
    return vevent


_GOOGLE_RESPONSES = {Response.NEEDS_ACTION: "needsAction", Response.ACCEPTED: "accepted",
                     Response.TENTATIVE: "tentative", Response.DECLINED: "declined"}


def google_id(event: SeedEvent) -> str:
    """The event id another Google client would pick for `event`: base32hex (G3), the same for each rewrite."""
    return "seed" + event.name.encode().hex()


def google_events(event: SeedEvent) -> list[dict[str, Any]]:
    """The resources a Google Calendar client would store for `event`: one event, or a series' master (RRULE,
    EXDATE) followed by its exceptions (moved or cancelled instances, keyed by originalStartTime)."""
    master = _google_event(event, google_id(event), event.start, event.end, event.title, cancelled=event.cancelled)
    series = event.weekly
    if series is None:
        return [master]
    assert isinstance(event.start, datetime)
    zone = event.start.tzinfo
    assert isinstance(zone, ZoneInfo)
    master["recurrence"] = [f"RRULE:FREQ=WEEKLY;COUNT={series.count}"] + [
        f"EXDATE;TZID={zone.key}:{event.start + timedelta(weeks=n):%Y%m%dT%H%M%S}" for n in sorted(series.skipped)]
    exceptions = []
    for n in sorted(set(series.moved) | series.cancelled):
        original, shift = event.start + timedelta(weeks=n), series.moved.get(n, timedelta())  # wall-clock times
        title = f"{event.title} (moved)" if n in series.moved else event.title
        instance = _google_event(event, f"{master['id']}_{original.astimezone(UTC):%Y%m%dT%H%M%SZ}", original + shift,
                                 event.end + timedelta(weeks=n) + shift, title, cancelled=n in series.cancelled)
        instance |= {"recurringEventId": master["id"], "originalStartTime": _google_time(original)}
        exceptions.append(instance)
    return [master, *exceptions]


def _google_event(event: SeedEvent, event_id: str, start: datetime | date, end: datetime | date, title: str, *,
                  cancelled: bool) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "id": event_id, "summary": title, "start": _google_time(start), "end": _google_time(end),
        "transparency": "opaque" if event.busy else "transparent", "status": "cancelled" if cancelled else "confirmed",
    }
    if event.organizer:
        resource["organizer"] = {"email": event.organizer}
    if event.attendees:
        resource["attendees"] = [
            {"email": a.email, "responseStatus": _GOOGLE_RESPONSES[a.response]}
            | ({"displayName": a.name} if a.name else {}) | ({"resource": True} if a.resource else {})
            for a in event.attendees
        ]
    return resource


def _google_time(moment: datetime | date) -> dict[str, str]:
    if not isinstance(moment, datetime):
        return {"date": moment.isoformat()}
    zone = moment.tzinfo
    return {"dateTime": moment.isoformat()} | ({"timeZone": zone.key} if isinstance(zone, ZoneInfo) else {})


_GRAPH_RESPONSES = {Response.NEEDS_ACTION: "none", Response.ACCEPTED: "accepted",
                    Response.TENTATIVE: "tentativelyAccepted", Response.DECLINED: "declined"}
_GRAPH_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def graph_event(event: SeedEvent, owner: str) -> dict[str, Any]:
    """The event an Outlook client would write for `event` in `owner`'s calendar: a single instance, or a
    series master with its weekly patternedRecurrence (its exceptions are `graph_occurrence_edits`)."""
    resource: dict[str, Any] = {
        "subject": event.title, "start": _graph_time(event.start), "end": _graph_time(event.end),
        "isAllDay": not isinstance(event.start, datetime), "showAs": "busy" if event.busy else "free",
        "isCancelled": event.cancelled,
    }
    if event.organizer and event.organizer != owner:
        resource |= {"organizer": {"emailAddress": {"address": event.organizer}}, "isOrganizer": False,
                     "responseStatus": {"response": "none"}}
    for attendee in event.attendees:
        if attendee.email == owner and event.organizer != owner:
            resource["responseStatus"] = {"response": _GRAPH_RESPONSES[attendee.response]}
    if event.attendees:
        resource["attendees"] = [
            {"emailAddress": {"address": a.email} | ({"name": a.name} if a.name else {}),
             "type": "resource" if a.resource else "required", "status": {"response": _GRAPH_RESPONSES[a.response]}}
            for a in event.attendees]
    series = event.weekly
    if series is not None:
        resource["recurrence"] = {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [_GRAPH_DAYS[event.start.weekday()]]},
            "range": {"type": "numbered", "startDate": event.start.isoformat()[:10],
                      "numberOfOccurrences": series.count}}
    return resource


def graph_occurrence_edits(event: SeedEvent) -> dict[str, dict[str, Any] | None]:
    """Per occurrence (its original start in UTC, `YYYYMMDDTHHMMSS`, as occurrence ids end): None to delete
    it, else the changes that make it an exception (moved, retitled, cancelled)."""
    series = event.weekly
    if series is None:
        return {}
    assert isinstance(event.start, datetime) and isinstance(event.end, datetime)
    edits: dict[str, dict[str, Any] | None] = {}
    for n in sorted(series.skipped | set(series.moved) | series.cancelled):
        original = event.start + timedelta(weeks=n)  # wall-clock times
        key = f"{original.astimezone(UTC):%Y%m%dT%H%M%S}"
        if n in series.skipped:
            edits[key] = None
            continue
        shift = series.moved.get(n, timedelta())
        changes: dict[str, Any] = {"isCancelled": n in series.cancelled}
        if n in series.moved:
            changes |= {"subject": f"{event.title} (moved)", "start": _graph_time(original + shift),
                        "end": _graph_time(event.end + timedelta(weeks=n) + shift)}
        edits[key] = changes
    return edits


def _graph_time(moment: datetime | date) -> dict[str, str]:
    if not isinstance(moment, datetime):
        return {"dateTime": f"{moment.isoformat()}T00:00:00", "timeZone": "UTC"}
    zone = moment.tzinfo
    return {"dateTime": moment.replace(tzinfo=None).isoformat(), "timeZone": zone.key if isinstance(zone, ZoneInfo)
            else "UTC"}
