"""Microsoft Graph event JSON in the neutral vocabulary (DESIGN.md section 4, provider-apis.md M1 and M2).

An item is a JSON list of Graph event resources: `[event]` for a single event (remote id: its id), or every
`occurrence` and `exception` of one recurring series inside the window (remote id: their `seriesMasterId`).
calendarView delta returns a series expanded into those, never its master (M1); `group_items` puts them
together. Pure and free of any HTTP client, so the engine can run `read_item` in worker processes.

Busy or free: `isCancelled` is cancelled (a cancelled occurrence is left out, a list of only cancelled events
is a cancelled item); `showAs` `free` and `workingElsewhere` are free, `tentative`, `busy`, `oof`, `unknown`
(and a missing or new value) busy; the user's own answer `responseStatus.response: declined` makes it free,
as Google's and iCalendar's declined rules do.

Times: the provider asks for `Prefer: outlook.timezone="UTC"`, so `start`/`end` come as `{dateTime:
"2026-03-02T08:00:00.0000000", timeZone: "UTC"}`. Another IANA zone is read in that zone; a zone we cannot
name (a Windows name such as "Pacific Standard Time", `tzone://Microsoft/Custom`) is read as the user's zone
with a logged warning, as DESIGN section 4 says of unknown TZIDs: the sync goes on, and the guess is told.
`isAllDay` is whole days in the user's time zone. Occurrence keys are `originalStart` as a UTC instant, so a
moved occurrence keeps the key of its slot.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync.events import Attendee, ItemEvents, RemoteEvent, RemoteObject, Response
from sync.providers.base import BadRemoteData, ReadContext, RemoteItem, json_events, told

MARKER_PROPERTY_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name croco_appointment"
"""Our single-value extended property (M2): its value is the appointment an event of ours shows. The GUID is
Croco's own property set, made once for this purpose; no other application writes into it."""

FREE_SHOW_AS = frozenset({"free", "workingElsewhere"})
_RESPONSES = {"accepted": Response.ACCEPTED, "organizer": Response.ACCEPTED,
              "tentativelyAccepted": Response.TENTATIVE, "declined": Response.DECLINED}
"""Graph's `none` and `notResponded` (and anything else) are no answer yet."""
_VOLATILE = frozenset({"@odata.etag", "changeKey", "lastModifiedDateTime", "createdDateTime", "webLink"})
"""Left out of the content hash: Graph rewrites them without the event changing for a person."""
_SERIES_MEMBERS = frozenset({"occurrence", "exception"})

Event = dict[str, Any]


def group_items(events: Iterable[Event]) -> tuple[list[RemoteItem], list[str]]:
    """calendarView delta's entries as items, in the order they came, and the ids its `@removed` entries name.

    A series becomes one item under its `seriesMasterId` holding its occurrences and exceptions, so the
    planner sees one remote item per series with stable occurrence keys. A later entry for an id wins over an
    earlier one (delta may replay), so an id is never both changed and removed.

    The items are whole only for a whole listing (a first or full round). An incremental round carries just
    the occurrences that changed, and a removed occurrence's id names no item: the provider completes every
    series it touches with that series' instances in the window (`/events/{seriesMasterId}/instances`).
    """
    groups: dict[str, list[Event]] = {}
    removed: dict[str, None] = {}
    for event in events:
        event_id = str(event.get("id") or "")
        if "@removed" in event:
            groups.pop(event_id, None)
            removed[event_id] = None
            continue
        item_id = _item_id(event)
        removed.pop(item_id, None)
        members = groups.setdefault(item_id, [])
        members[:] = [m for m in members if m.get("id") != event_id] + [event]
    items = [RemoteItem(item_id, _etag(members), json.dumps(members)) for item_id, members in groups.items()]
    return items, list(removed)


def _item_id(event: Event) -> str:
    if event.get("type") in _SERIES_MEMBERS and event.get("seriesMasterId"):
        return str(event["seriesMasterId"])
    return str(event.get("id") or "")


def _etag(members: list[Event]) -> str | None:
    """A single event's own etag; a series' changes whenever one of its occurrences does."""
    tags = [str(m.get("@odata.etag") or m.get("changeKey") or "") for m in members]
    if len(members) == 1 and members[0].get("type") not in _SERIES_MEMBERS:
        return tags[0] or None
    return hashlib.sha256("\n".join(sorted(tags)).encode()).hexdigest()


def read_item(item: RemoteItem, context: ReadContext) -> RemoteObject:
    """`events` as the planner needs it; what had to be guessed is logged."""
    return told(events(item, context))


def events(item: RemoteItem, context: ReadContext) -> ItemEvents:
    """The occurrences of one item inside the window; BadRemoteData if an event in it cannot be read."""
    remote_id = item.remote_id
    resources = json_events(remote_id, item.data)
    live = [event for event in resources if not event.get("isCancelled")]
    digest = hashlib.sha256(json.dumps([_stable(e) for e in resources], sort_keys=True).encode()).hexdigest()
    mapped = []
    for event in live:
        start, end, all_day = _bounds(remote_id, event, context.timezone)
        if end <= context.window_start or start >= context.window_end:
            continue
        mapped.append(RemoteEvent(
            remote_id=remote_id, uid=str(event.get("iCalUId") or ""), occurrence_key=_key(event), start=start,
            end=end, all_day=all_day, busy=_busy(event), cancelled=False, title=event.get("subject") or None,
            attendees=_attendees(event), organizer=_address(event.get("organizer")),
            our_appointment_id=_our_appointment(event), last_modified=_updated(event), content_hash=digest,
        ))
    mapped.sort(key=lambda e: (e.start, e.occurrence_key))
    updated = [u for u in map(_updated, resources) if u is not None]
    first = live[0] if live else resources[0]
    return ItemEvents(
        remote_id, item.etag, str(first.get("iCalUId") or ""), _our_appointment(first), cancelled=not live,
        last_modified=max(updated) if updated else None, events=tuple(mapped), warnings=tuple(_unknown_zones(live)),
    )


def _bounds(remote_id: str, event: Event, zone: ZoneInfo) -> tuple[datetime, datetime, bool]:
    if not isinstance(event.get("start"), dict):
        raise BadRemoteData(remote_id, "event has no start")
    if not isinstance(event.get("end"), dict):
        raise BadRemoteData(remote_id, "event has no end")
    all_day = bool(event.get("isAllDay"))
    start = _instant(remote_id, event["start"], zone, all_day)
    end = _instant(remote_id, event["end"], zone, all_day)
    if end < start:
        raise BadRemoteData(remote_id, "end is before start")
    return start, end, all_day


def _instant(remote_id: str, value: dict[str, Any], zone: ZoneInfo, all_day: bool) -> datetime:
    """Aware UTC; an all-day bound is its date at midnight in the user's zone (M2: all-day bounds are midnight)."""
    try:
        moment = datetime.fromisoformat(value["dateTime"])
    except (KeyError, TypeError, ValueError):
        raise BadRemoteData(remote_id, "unreadable start or end") from None
    if all_day:
        return datetime.combine(date(moment.year, moment.month, moment.day), time(), zone).astimezone(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone(value.get("timeZone"), zone))
    return moment.astimezone(UTC)


def _zone(name: object, user_zone: ZoneInfo) -> ZoneInfo:
    if not name or name == "UTC":
        return ZoneInfo("UTC")  # what `Prefer: outlook.timezone="UTC"` gives, and Graph's default (M1)
    return _named_zone(str(name)) or user_zone


def _named_zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _unknown_zones(resources: list[Event]) -> list[str]:
    """Zones read as the user's because the tz database does not know them (DESIGN section 4)."""
    names = {str(bound.get("timeZone")) for event in resources for bound in (event.get("start"), event.get("end"))
             if isinstance(bound, dict) and bound.get("timeZone") not in (None, "", "UTC")}
    return [f"unknown time zone {name[:64]!r} read as the user's time zone"
            for name in sorted(names) if _named_zone(name) is None]


def _key(event: Event) -> str:
    """'' for a single event; an occurrence's original start (stable even if it was moved), else its own id."""
    if event.get("type") not in _SERIES_MEMBERS:
        return ""
    try:
        moment = datetime.fromisoformat(str(event["originalStart"]))
    except (KeyError, ValueError):
        return str(event.get("id", ""))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _busy(event: Event) -> bool:
    if event.get("showAs") in FREE_SHOW_AS:
        return False
    answer = event.get("responseStatus")
    return not (isinstance(answer, dict) and answer.get("response") == "declined")


def _address(person: object) -> str | None:
    """`{emailAddress: {address, name}}`, as attendees and the organizer carry it, as a lowercase address."""
    email = person.get("emailAddress") if isinstance(person, dict) else None
    address = email.get("address") if isinstance(email, dict) else None
    return str(address).strip().lower() if address else None


def _attendees(event: Event) -> tuple[Attendee, ...]:
    found = event.get("attendees")
    mapped = []
    for attendee in found if isinstance(found, list) else []:
        address = _address(attendee)
        if address is None:
            continue
        status = attendee.get("status")
        response = status.get("response") if isinstance(status, dict) else None
        answer = _RESPONSES.get(str(response), Response.NEEDS_ACTION)
        name = attendee["emailAddress"].get("name") or None
        mapped.append(Attendee(address, name, answer, attendee.get("type") == "resource"))
    return tuple(mapped)


def _our_appointment(event: Event) -> str | None:
    found = event.get("singleValueExtendedProperties")
    for prop in found if isinstance(found, list) else []:
        if isinstance(prop, dict) and str(prop.get("id", "")).lower() == MARKER_PROPERTY_ID.lower():
            return str(prop["value"]) if prop.get("value") else None
    return None


def _updated(event: Event) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(event["lastModifiedDateTime"]))
    except (KeyError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stable(event: Event) -> Event:
    return {key: value for key, value in event.items() if key not in _VOLATILE}
