"""Remote events in a provider-neutral vocabulary: what the planner reads and every provider produces.

Each provider maps its own words onto these (DESIGN.md section 4): Google's `responseStatus`, Graph's
`response`, iCalendar's PARTSTAT become a `Response`; `transparency`, `showAs`, TRANSP and the user's own
answer become `busy`; `status: cancelled`, `isCancelled`, STATUS:CANCELLED become `cancelled`. Nothing here
knows a wire format, so the planner and the providers import this module and never each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Response(StrEnum):
    """An attendee's answer to an invitation."""

    NEEDS_ACTION = "needs_action"  # no answer yet (the default everywhere)
    ACCEPTED = "accepted"
    TENTATIVE = "tentative"
    DECLINED = "declined"
    DELEGATED = "delegated"  # iCalendar only: passed on to someone else


@dataclass(frozen=True)
class Guest:
    email: str
    name: str | None = None


@dataclass(frozen=True)
class Occurrence:
    """One instance of a remote event inside the window. `key` is stable within its item ('' if single)."""

    key: str
    start: datetime
    end: datetime
    busy: bool
    title: str | None = None
    all_day: bool = False
    guests: tuple[Guest, ...] = ()


@dataclass(frozen=True)
class RemoteObject:
    """One remote item as listed, already mapped by its provider (cancelled instances are left out)."""

    item_id: str
    etag: str | None
    occurrences: tuple[Occurrence, ...]
    appointment_id: str | None = None  # our marker: the event is one we pushed
    cancelled: bool = False  # the whole item is cancelled (counts as deleted)
    updated: datetime | None = None


@dataclass(frozen=True)
class Attendee:
    email: str
    name: str | None
    response: Response
    is_resource: bool  # a room or a piece of equipment, never a contact


@dataclass(frozen=True)
class RemoteEvent:
    """One occurrence of a remote event, mapped by its provider. Times are aware UTC."""

    remote_id: str
    uid: str
    occurrence_key: str  # '' for a single event; the instance's original start for a recurring one
    start: datetime
    end: datetime
    all_day: bool
    busy: bool
    cancelled: bool
    title: str | None
    attendees: tuple[Attendee, ...]
    organizer: str | None
    our_appointment_id: str | None  # set when we pushed this event
    last_modified: datetime | None
    content_hash: str  # of the whole item, volatile properties left out: equal hashes, same content

    def occurrence(self) -> Occurrence:
        guests = tuple(Guest(a.email, a.name) for a in self.attendees if not a.is_resource)
        return Occurrence(self.occurrence_key, self.start, self.end, self.busy, self.title, self.all_day, guests)


@dataclass(frozen=True)
class ItemEvents:
    """One item read: its occurrences inside the window, and what had to be guessed to read it.

    `cancelled` and `our_appointment_id` belong to the item, not to its occurrences, because an item may have
    no occurrence inside the window and still be ours, or be cancelled as a whole.
    """

    remote_id: str
    etag: str | None
    uid: str
    our_appointment_id: str | None
    cancelled: bool
    last_modified: datetime | None
    events: tuple[RemoteEvent, ...]
    warnings: tuple[str, ...] = ()

    def remote_object(self) -> RemoteObject:
        """What the planner needs: cancelled occurrences are left out, a cancelled item counts as deleted."""
        occurrences = tuple(event.occurrence() for event in self.events if not event.cancelled)
        return RemoteObject(
            self.remote_id, self.etag, occurrences, appointment_id=self.our_appointment_id,
            cancelled=self.cancelled, updated=self.last_modified,
        )
