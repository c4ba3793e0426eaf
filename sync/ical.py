"""iCalendar (RFC 5545) in and out, for iCloud and every CalDAV server.

Busy or free (DESIGN.md section 4): STATUS:CANCELLED is deleted; TRANSP:TRANSPARENT is free; the user's own
PARTSTAT=DECLINED is free; VTODO and VJOURNAL are ignored; everything else is busy. Recurrences are expanded
inside the window with recurring-ical-events (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides). All-day
events cover whole days in the user's time zone; floating times and unknown TZIDs are read in it too.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import recurring_ical_events
from icalendar import Calendar, Event, vCalAddress
from icalendar.cal import Component

from sync.plan import Guest, Occurrence, RemoteObject
from sync.providers.base import BadRemoteData, EventDraft, ReadContext

log = logging.getLogger(__name__)

MARKER = "X-CROCO-APPOINTMENT"
UID_SUFFIX = "@croco"
_RESOURCE_TYPES = {"RESOURCE", "ROOM"}


def read_item(remote_id: str, data: str, etag: str | None, context: ReadContext) -> RemoteObject:
    try:
        calendar = Calendar.from_ical(data)
    except Exception as exc:  # icalendar raises ValueError and friends on malformed input
        raise BadRemoteData(remote_id, f"malformed iCalendar: {type(exc).__name__}") from exc
    masters = [c for c in calendar.walk("VEVENT") if "RECURRENCE-ID" not in c] or list(calendar.walk("VEVENT"))
    if not masters:
        return RemoteObject(remote_id, etag, ())  # VTODO / VJOURNAL only: nothing to sync
    master = masters[0]
    _validate(remote_id, master)
    appointment_id = _our_appointment(master)
    if str(master.get("STATUS", "")).upper() == "CANCELLED":
        return RemoteObject(remote_id, etag, (), appointment_id=appointment_id, cancelled=True)

    recurring = any(name in master for name in ("RRULE", "RDATE"))
    try:
        instances = recurring_ical_events.of(calendar).between(
            context.window_start - timedelta(days=1), context.window_end + timedelta(days=1)
        )
    except Exception as exc:
        raise BadRemoteData(remote_id, f"recurrence cannot be expanded: {type(exc).__name__}") from exc
    occurrences = []
    for instance in instances:
        if str(instance.get("STATUS", "")).upper() == "CANCELLED":
            continue
        occurrence = _occurrence(remote_id, instance, recurring, context)
        if occurrence.end > context.window_start and occurrence.start < context.window_end:
            occurrences.append(occurrence)
    occurrences.sort(key=lambda o: (o.start, o.key))
    return RemoteObject(remote_id, etag, tuple(occurrences), appointment_id=appointment_id, updated=_updated(master))


def _validate(remote_id: str, event: Component) -> None:
    if "DTSTART" not in event:
        raise BadRemoteData(remote_id, "event has no DTSTART")
    if "DTEND" in event and "DTSTART" in event:
        start, end = event.decoded("DTSTART"), event.decoded("DTEND")
        if type(start) is type(end) and _comparable(end) < _comparable(start):
            raise BadRemoteData(remote_id, "DTEND is before DTSTART")


def _comparable(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(), UTC)


def _our_appointment(event: Component) -> str | None:
    marker = event.get(MARKER)
    if marker:
        return str(marker)
    uid = str(event.get("UID", ""))
    return uid[: -len(UID_SUFFIX)] if uid.endswith(UID_SUFFIX) else None


def _occurrence(remote_id: str, event: Component, recurring: bool, context: ReadContext) -> Occurrence:
    start_value = event.decoded("DTSTART")
    all_day = not isinstance(start_value, datetime)
    if "DTEND" in event:
        end_value = event.decoded("DTEND")
    elif "DURATION" in event:
        end_value = start_value + event.decoded("DURATION")
    else:  # RFC 5545 3.6.1: a DATE lasts one day, a DATE-TIME no time at all
        end_value = start_value + timedelta(days=1) if all_day else start_value
    start, end = _instant(start_value, context.timezone), _instant(end_value, context.timezone)
    key = ""  # recurring-ical-events stamps RECURRENCE-ID on single events too: only a series has keys
    if recurring:
        recurrence_id = event.decoded("RECURRENCE-ID") if "RECURRENCE-ID" in event else start_value
        key = _instant(recurrence_id, context.timezone).isoformat()
    return Occurrence(
        key=key, start=start, end=end, busy=_busy(event, context.user_email),
        title=str(event.get("SUMMARY", "")) or None, all_day=all_day, guests=_guests(event),
    )


def _instant(value: date | datetime, zone: ZoneInfo) -> datetime:
    """Aware UTC. Dates are midnight in the user's zone; floating times (and unknown TZIDs) are local to it."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), zone).astimezone(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=zone).astimezone(UTC)
    return value.astimezone(UTC)


def _busy(event: Component, user_email: str) -> bool:
    if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return False
    for attendee in _attendees(event):
        if _email(attendee) == user_email.lower() and str(attendee.params.get("PARTSTAT", "")).upper() == "DECLINED":
            return False
    return True


def _attendees(event: Component) -> list[vCalAddress]:
    value: Any = event.get("ATTENDEE", [])
    return list(value) if isinstance(value, list) else [value]


def _email(address: vCalAddress) -> str:
    text = str(address)
    return (text[7:] if text.lower().startswith("mailto:") else text).strip().lower()


def _guests(event: Component) -> tuple[Guest, ...]:
    guests = []
    for attendee in _attendees(event):
        if str(attendee.params.get("CUTYPE", "INDIVIDUAL")).upper() in _RESOURCE_TYPES:
            continue
        email = _email(attendee)
        if "@" in email:
            name = attendee.params.get("CN")
            guests.append(Guest(email, str(name) if name else None))
    return tuple(guests)


def _updated(event: Component) -> datetime | None:
    for name in ("LAST-MODIFIED", "DTSTAMP"):
        if name in event:
            value = event.decoded(name)
            if isinstance(value, datetime):
                return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def write_event(draft: EventDraft) -> str:
    """Our pushed event: UID `<appointment-id>@croco` and X-CROCO-APPOINTMENT mark it as ours (R1)."""
    calendar = Calendar()
    calendar.add("PRODID", "-//CrocoClick//Croco//EN")
    calendar.add("VERSION", "2.0")
    event = Event()
    event.add("UID", f"{draft.appointment_id}{UID_SUFFIX}")
    event.add(MARKER, draft.appointment_id)
    event.add("DTSTAMP", datetime.now(UTC))
    event.add("DTSTART", draft.start.astimezone(UTC))
    event.add("DTEND", draft.end.astimezone(UTC))
    event.add("SUMMARY", draft.title)
    event.add("SEQUENCE", draft.sequence)
    event.add("TRANSP", "OPAQUE")
    calendar.add_component(event)
    return str(calendar.to_ical().decode("utf-8"))
