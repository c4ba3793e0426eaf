"""Google Calendar event JSON in the neutral vocabulary (DESIGN.md section 4, provider-apis.md G2).

An item is a JSON list of event resources: `[event]` for a single event, or the instances of one recurring
series inside the window (the provider lists with `singleEvents=true`, so Google expands the series, moved and
cancelled instances included; masters never appear). Pure and free of the API client, so the engine can run
`read_item` in worker processes.

Busy or free: `status: cancelled` is cancelled (a cancelled instance is left out, a list of only cancelled
events is a cancelled item); `transparency: transparent` is free; an attendee with `self: true` who declined
makes it free; `eventType` `workingLocation` and `birthday` are free (stored, never blocking), `outOfOffice` is
busy whatever its transparency, `focusTime`, `fromGmail` and `default` follow the rules above.

Times: a `date` is a whole day in the user's time zone; a `dateTime` with an offset is that instant, one
without is read in the event's `timeZone` (or the user's, with a warning, if that is unknown). Occurrence keys
are the instance's `originalStartTime` as a UTC instant or a date, so they do not depend on the user's zone.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync.events import Attendee, ItemEvents, RemoteEvent, RemoteObject, Response
from sync.providers.base import BadRemoteData, ReadContext, RemoteItem, json_events, told

MARKER = "croco_appointment"
"""Our private extended property (`extendedProperties.private`): the appointment an event of ours shows."""

FREE_TYPES = frozenset({"workingLocation", "birthday"})
ALWAYS_BUSY_TYPES = frozenset({"outOfOffice"})
_RESPONSES = {"accepted": Response.ACCEPTED, "tentative": Response.TENTATIVE, "declined": Response.DECLINED,
              "needsAction": Response.NEEDS_ACTION}
_VOLATILE = frozenset({"etag", "updated", "created", "htmlLink", "kind", "sequence", "iCalUID"})
"""Left out of the content hash: Google rewrites them without the event changing for a person."""


Event = dict[str, Any]


def read_item(item: RemoteItem, context: ReadContext) -> RemoteObject:
    """`events` as the planner needs it; what had to be guessed is logged (never the event's content)."""
    return told(events(item, context))


def events(item: RemoteItem, context: ReadContext) -> ItemEvents:
    """The occurrences of one item inside the window; BadRemoteData if an event in it cannot be read."""
    remote_id = item.remote_id
    resources = json_events(remote_id, item.data)
    live = [event for event in resources if not _cancelled(event)]
    warnings: list[str] = []
    digest = hashlib.sha256(json.dumps([_stable(e) for e in resources], sort_keys=True).encode()).hexdigest()
    mapped = []
    for event in live:
        start, end, all_day = _bounds(remote_id, event, context.timezone, warnings)
        if end <= context.window_start or start >= context.window_end:
            continue
        mapped.append(RemoteEvent(
            remote_id=remote_id, uid=str(event.get("iCalUID") or ""), occurrence_key=_key(event), start=start,
            end=end, all_day=all_day, busy=_busy(event), cancelled=False, title=event.get("summary") or None,
            attendees=_attendees(event), organizer=_organizer(event), our_appointment_id=_our_appointment(event),
            last_modified=_updated(event), content_hash=digest,
        ))
    mapped.sort(key=lambda e: (e.start, e.occurrence_key))
    updated = [u for u in map(_updated, resources) if u is not None]
    first = live[0] if live else resources[0]
    return ItemEvents(
        remote_id, item.etag, str(first.get("iCalUID") or ""), _our_appointment(first), cancelled=not live,
        last_modified=max(updated) if updated else None, events=tuple(mapped), warnings=tuple(dict.fromkeys(warnings)),
    )


def _cancelled(event: Event) -> bool:
    """A cancelled event may carry nothing but its id (G1): it is never read further."""
    return event.get("status") == "cancelled"


def _bounds(remote_id: str, event: Event, zone: ZoneInfo, warnings: list[str]) -> tuple[datetime, datetime, bool]:
    if not isinstance(event.get("start"), dict):
        raise BadRemoteData(remote_id, "event has no start")
    if not isinstance(event.get("end"), dict):
        raise BadRemoteData(remote_id, "event has no end")
    start, all_day = _instant(remote_id, event["start"], zone, warnings)
    end, _ = _instant(remote_id, event["end"], zone, warnings)
    if end < start:
        raise BadRemoteData(remote_id, "end is before start")
    return start, end, all_day


def _instant(remote_id: str, value: dict[str, Any], zone: ZoneInfo, warnings: list[str]) -> tuple[datetime, bool]:
    """Aware UTC, and whether it was a date (midnight in the user's zone)."""
    try:
        if "date" in value and "dateTime" not in value:
            return datetime.combine(date.fromisoformat(value["date"]), time(), zone).astimezone(UTC), True
        moment = datetime.fromisoformat(value["dateTime"])
    except (KeyError, TypeError, ValueError):
        raise BadRemoteData(remote_id, "unreadable start or end") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_event_zone(value.get("timeZone"), zone, warnings))
    return moment.astimezone(UTC), False


def _event_zone(name: object, fallback: ZoneInfo, warnings: list[str]) -> ZoneInfo:
    if not name:
        return fallback
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        warnings.append(f"unknown time zone {name!r} read as the user's time zone")
        return fallback


def _key(event: Event) -> str:
    """'' for a single event; an instance's original start (stable even if it was moved), else its own id."""
    if not event.get("recurringEventId"):
        return ""
    original = event.get("originalStartTime")
    if isinstance(original, dict):
        if "dateTime" in original:
            try:
                moment = datetime.fromisoformat(original["dateTime"])
            except (TypeError, ValueError):
                return str(event.get("id", ""))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_event_zone(original.get("timeZone"), ZoneInfo("UTC"), []))
            return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if "date" in original:
            return str(original["date"])
    return str(event.get("id", ""))


def _busy(event: Event) -> bool:
    kind = event.get("eventType", "default")
    if kind in FREE_TYPES:
        return False
    if kind in ALWAYS_BUSY_TYPES:
        return True
    if event.get("transparency") == "transparent":
        return False
    return not any(a.get("self") and a.get("responseStatus") == "declined" for a in _attendee_list(event))


def _attendee_list(event: Event) -> list[dict[str, Any]]:
    found = event.get("attendees")
    return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []


def _attendees(event: Event) -> tuple[Attendee, ...]:
    return tuple(
        Attendee(str(a["email"]).strip().lower(), a.get("displayName") or None,
                 _RESPONSES.get(a.get("responseStatus", ""), Response.NEEDS_ACTION), bool(a.get("resource")))
        for a in _attendee_list(event) if a.get("email")
    )


def _organizer(event: Event) -> str | None:
    organizer = event.get("organizer")
    email = organizer.get("email") if isinstance(organizer, dict) else None
    return str(email).strip().lower() if email else None


def _our_appointment(event: Event) -> str | None:
    properties = event.get("extendedProperties")
    private = properties.get("private") if isinstance(properties, dict) else None
    marker = private.get(MARKER) if isinstance(private, dict) else None
    return str(marker) if marker else None


def _updated(event: Event) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(event["updated"]))
    except (KeyError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stable(event: Event) -> Event:
    return {key: value for key, value in event.items() if key not in _VOLATILE}
