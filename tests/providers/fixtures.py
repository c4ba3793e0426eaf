"""Events for the contract suite in no provider's format: each backend writes a `SeedEvent` its own way.

The contract tests seed a calendar with these and check what the provider's reader gives back (times, busy,
title, guests, cancelled), so a backend needs only a writer: CalDAV servers and the in-memory fake store the
iCalendar text of `ical()`; a Google or Graph emulator would post the same fields as its API's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

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
