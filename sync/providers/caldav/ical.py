"""iCalendar (RFC 5545) in and out, for iCloud and every CalDAV server.

Busy or free (DESIGN.md section 4): STATUS:CANCELLED is cancelled; TRANSP:TRANSPARENT is free; the user's own
PARTSTAT=DECLINED is free; VTODO and VJOURNAL are ignored; everything else is busy. Recurrences are expanded
inside the window with recurring-ical-events (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides), and a single
event reads as recurring-ical-events would read it: a DATE start with a DURATION of hours is that many hours
from midnight, not an all-day event. All-day events cover whole days in the user's time zone; floating times
are read in it too, and so are times in a TZID that neither the object (VTIMEZONE) nor the tz database knows,
with a warning instead of a failure.

Occurrence keys do not depend on the user's time zone (a date, a floating time or a UTC instant as written),
so a user who moves to another zone keeps the same occurrences rather than getting new ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import recurring_ical_events
from icalendar import Calendar, Component, Event

from sync.events import Attendee, ItemEvents, RemoteEvent, RemoteObject, Response
from sync.providers.base import BadRemoteData, EventDraft, ReadContext, RemoteItem, told

MARKER = "X-CROCO-APPOINTMENT"
UID_SUFFIX = "@croco"
PRODID = "-//CrocoClick//Croco//EN"

_TIMES = ("DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "RRULE", "RDATE", "EXDATE")
_RESOURCE_TYPES = {"RESOURCE", "ROOM"}
_RESPONSES = {"ACCEPTED": Response.ACCEPTED, "TENTATIVE": Response.TENTATIVE, "DECLINED": Response.DECLINED,
              "DELEGATED": Response.DELEGATED}
_VOLATILE = {"PRODID", "METHOD", "DTSTAMP", "LAST-MODIFIED", "CREATED", "REV", "UID", "X-WR-CALNAME", "X-RADICALE-NAME"}
"""Left out of the content hash: servers and clients rewrite them without changing the event (vdirsyncer's
IGNORE_PROPS); the UID is the item's identity, compared on its own."""




def read_object(item: RemoteItem, context: ReadContext, *, account_email: str | None = None) -> RemoteObject:
    """`events` as the planner needs it; what had to be guessed is logged. Module-level and free of
    credentials, so the engine can run it in worker processes."""
    return told(events(item, context, account_email=account_email))


def events(item: RemoteItem, context: ReadContext, *, account_email: str | None = None) -> ItemEvents:
    """The occurrences of one calendar object inside the window; BadRemoteData if it cannot be read.

    The user is whoever has `context.user_email` or `account_email` (the calendar account, e.g. an Apple ID).
    """
    remote_id = item.remote_id
    calendar = _parse(remote_id, item.data)
    components = list(calendar.walk("VEVENT"))
    if not components:  # VTODO / VJOURNAL only: nothing to sync
        return ItemEvents(remote_id, item.etag, "", None, cancelled=False, last_modified=None, events=())
    for component in components:
        _validate(remote_id, component, context.timezone)
    master = next((c for c in components if "RECURRENCE-ID" not in c), components[0])
    uid = str(master.get("UID", ""))
    appointment_id = _our_appointment(master)
    recurring = any(name in master for name in ("RRULE", "RDATE")) or any("RECURRENCE-ID" in c for c in components)
    if recurring:
        _align_recurrence_ids(master, components)
    me = {email.lower() for email in (context.user_email, account_email or "") if email}
    digest = content_hash(item.data)
    mapped = []
    dated = not isinstance(master.decoded("DTSTART"), datetime)
    # An EXDATE may remove a single event's only instance: only recurring-ical-events knows which it removes.
    expanded = recurring or "EXDATE" in master
    for instance in _expand(remote_id, calendar, context, dated) if expanded else components:
        start, end, all_day = _bounds(instance, context.timezone)
        if end <= context.window_start or start >= context.window_end:
            continue
        cancelled = _status(instance) == "CANCELLED"
        mapped.append(RemoteEvent(
            remote_id=remote_id, uid=uid, occurrence_key=_key(instance, dated) if recurring else "", start=start,
            end=end, all_day=all_day, busy=not cancelled and _busy(instance, me),
            cancelled=cancelled, title=str(instance.get("SUMMARY", "")) or None, attendees=_attendees(instance),
            organizer=_email(instance["ORGANIZER"]) if "ORGANIZER" in instance else None,
            our_appointment_id=appointment_id, last_modified=_modified(instance), content_hash=digest,
        ))
    mapped.sort(key=lambda event: (event.start, event.occurrence_key))
    modified = [m for m in map(_modified, components) if m is not None]
    return ItemEvents(
        remote_id, item.etag, uid, appointment_id, cancelled=_status(master) == "CANCELLED",
        last_modified=max(modified) if modified else None, events=tuple(mapped),
        warnings=tuple(_unknown_zones(components)),
    )


def content_hash(data: str) -> str:
    """sha256 of the item with volatile properties and VTIMEZONEs left out and lines sorted (vdirsyncer)."""
    lines, in_zone = [], False
    for line in data.replace("\r\n ", "").replace("\r\n\t", "").replace("\n ", "").replace("\n\t", "").splitlines():
        line = line.strip()
        name = line.split(":", 1)[0].split(";", 1)[0].upper()
        if line.upper() in ("BEGIN:VTIMEZONE", "END:VTIMEZONE"):
            in_zone = line.upper() == "BEGIN:VTIMEZONE"
        elif line and not in_zone and name not in _VOLATILE:
            lines.append(line)
    return hashlib.sha256("\r\n".join(sorted(lines)).encode("utf-8")).hexdigest()


def write_event(draft: EventDraft) -> str:
    """Our pushed event: UID `<appointment-id>@croco` and X-CROCO-APPOINTMENT mark it as ours (R1).

    No ATTENDEE lines: on iCloud they would make the server email invitations on our behalf.
    """
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
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
    data: bytes = calendar.to_ical()
    return data.decode("utf-8")


def _parse(remote_id: str, data: str) -> Calendar:
    try:
        return Calendar.from_ical(data)
    except Exception as exc:  # icalendar raises ValueError, IndexError and friends on malformed input
        raise BadRemoteData(remote_id, f"malformed iCalendar: {type(exc).__name__}") from exc


def _validate(remote_id: str, event: Component, zone: ZoneInfo) -> None:
    broken = sorted({name for name, _ in event.errors if name in _TIMES})
    if broken:
        raise BadRemoteData(remote_id, f"unreadable {', '.join(broken)}")
    if "DTSTART" not in event:
        raise BadRemoteData(remote_id, "event has no DTSTART")
    written = recurring_ical_events.EventAdapter(event)  # its span would swap a backwards event's ends
    if _instant(written.raw_end, zone) < _instant(written.raw_start, zone):
        raise BadRemoteData(remote_id, "DTEND is before DTSTART")


def _align_recurrence_ids(master: Component, components: list[Component]) -> None:
    """An override's RECURRENCE-ID rewritten to its series' value type (RFC 5545 3.8.4.4 requires it, some
    clients write a DATE on a timed series or the other way round): recurring-ical-events would otherwise show
    the override next to the instance it replaces. A date takes the series' time of day, a time its date."""
    if "RECURRENCE-ID" in master:  # only overrides, no series to align them with
        return
    first = master.decoded("DTSTART")
    for component in components:
        value = component.decoded("RECURRENCE-ID") if "RECURRENCE-ID" in component else None
        if value is None or isinstance(value, datetime) == isinstance(first, datetime):
            continue
        component.pop("RECURRENCE-ID")
        component.add("RECURRENCE-ID", datetime.combine(value, first.timetz()) if isinstance(first, datetime)
                      else value.date())


def _expand(remote_id: str, calendar: Calendar, context: ReadContext, dated: bool) -> Iterable[Component]:
    """A series' instances near the window (a day of margin covers floating and all-day times); single events
    skip this, they are most items and recurring-ical-events costs a third of reading one (research C5).

    One instance per key: recurring-ical-events gives a DATE series' instance twice when a DATE-TIME RDATE
    falls on its day."""
    margin = timedelta(days=1)
    try:
        instances = recurring_ical_events.of(calendar).between(
            context.window_start - margin, context.window_end + margin
        )
        return list({_key(instance, dated): instance for instance in instances}.values())
    except Exception as exc:  # a broken RRULE, or recurring-ical-events meeting data it cannot handle
        raise BadRemoteData(remote_id, f"recurrence cannot be expanded: {type(exc).__name__}") from exc


def _bounds(event: Component, zone: ZoneInfo) -> tuple[datetime, datetime, bool]:
    """Start, end and all-day, read by recurring-ical-events' own rules so that a single event and an instance
    of a series agree: no end is one day for a DATE and no time for a DATE-TIME (RFC 5545 3.6.1); a DATE start
    with a DURATION of hours, or with a DATE-TIME end, is a timed event from midnight."""
    start, end = recurring_ical_events.EventAdapter(event).span
    return _instant(start, zone), _instant(end, zone), not isinstance(start, datetime)


def _instant(value: date | datetime, zone: ZoneInfo) -> datetime:
    """Aware UTC. Dates are midnight in the user's zone; floating times (and unknown TZIDs) are local to it."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), zone).astimezone(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=zone).astimezone(UTC)
    return value.astimezone(UTC)


def _key(instance: Component, dated: bool) -> str:
    """The instance's original start as written: a date, a floating time, or a UTC instant. A DATE series
    (`dated`) keys by date where a DURATION of hours makes recurring-ical-events give its instances floating
    midnights, so that an override, keyed by its DATE RECURRENCE-ID, keeps the key of the instance it replaces."""
    value = instance.decoded("RECURRENCE-ID") if "RECURRENCE-ID" in instance else instance.decoded("DTSTART")
    if dated and isinstance(value, datetime) and value.tzinfo is None and value.time() == time():
        value = value.date()
    if isinstance(value, datetime) and value.tzinfo is not None:
        return str(value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"))
    return str(value.strftime("%Y%m%dT%H%M%S" if isinstance(value, datetime) else "%Y%m%d"))


def _unknown_zones(components: Iterable[Component]) -> list[str]:
    """TZIDs read as the user's zone because nothing defines them (icalendar then gives a naive time)."""
    unknown = set()
    for component in components:
        for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
            prop = component.get(name)
            tzid = prop.params.get("TZID") if prop is not None and hasattr(prop, "params") else None
            value = component.decoded(name) if tzid else None
            if isinstance(value, datetime) and value.tzinfo is None:
                unknown.add(str(tzid))
    return [f"unknown time zone {tzid!r} read as the user's time zone" for tzid in sorted(unknown)]


def _status(event: Component) -> str:
    return str(event.get("STATUS", "")).upper()


def _busy(event: Component, me: set[str]) -> bool:
    if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return False
    return not any(a.email in me and a.response == Response.DECLINED for a in _attendees(event))


def _attendees(event: Component) -> tuple[Attendee, ...]:
    value: Any = event.get("ATTENDEE", [])
    found = []
    for address in value if isinstance(value, list) else [value]:
        params = getattr(address, "params", {})
        name = params.get("CN")
        found.append(Attendee(
            _email(address), str(name) if name else None, _response(params.get("PARTSTAT")),
            str(params.get("CUTYPE", "INDIVIDUAL")).upper() in _RESOURCE_TYPES,
        ))
    return tuple(a for a in found if a.email)


def _response(partstat: object) -> Response:
    """RFC 5545 PARTSTAT in the neutral vocabulary; a missing or unknown value is no answer yet (its default)."""
    return _RESPONSES.get(str(partstat or "").upper(), Response.NEEDS_ACTION)


def _email(address: object) -> str:
    text = str(address).strip()
    return (text[7:] if text.lower().startswith("mailto:") else text).strip().lower()


def _our_appointment(event: Component) -> str | None:
    marker = event.get(MARKER)
    if marker:
        return str(marker)
    uid = str(event.get("UID", ""))
    return uid[: -len(UID_SUFFIX)] if uid.endswith(UID_SUFFIX) else None


def _modified(event: Component) -> datetime | None:
    for name in ("LAST-MODIFIED", "DTSTAMP"):
        value = event.decoded(name) if name in event else None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None
