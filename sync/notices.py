"""The transactional outbox: notices for users, written in the same transaction as the change they report.

Each kind has one frozen payload dataclass below; `notify` takes it, so a notice's kind and its fields can
never disagree. `sync.outbox` hands the stored notices to a sink (Slack's DMs) and marks them delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import Appointment, Notice
from sync.events import Occurrence


class NoticeKind(StrEnum):
    CONTACT_CREATED = "contact_created"
    CONFLICT = "conflict"  # an imported busy event overlaps a booked appointment
    REMOTE_EDIT_REVERTED = "remote_edit_reverted"
    REMOTE_EDIT_APPLIED = "remote_edit_applied"
    BOTH_CHANGED = "both_changed"  # R8: one side won, the loser is in the payload
    PUSHED_EVENT_DELETED = "pushed_event_deleted"
    CONNECTION_BROKEN = "connection_broken"
    MASS_DELETION_HELD = "mass_deletion_held"
    ITEM_SKIPPED = "item_skipped"
    AUTOMATION = "automation"  # a `slack_dm` automation fired
    AGENDA = "agenda"  # the daily agenda DM (sync/agenda.py)
    CONNECTED = "connected"  # the browser step of connecting (or renewing) an account succeeded


class Button(StrEnum):
    """The actions a notice offers (API.md); the payload carries the ids each one needs."""

    RESTORE_TO_CALENDAR = "restore_to_calendar"  # needs appointment_id
    CANCEL_APPOINTMENT = "cancel_appointment"  # needs appointment_id
    CONFIRM_REMOVALS = "confirm_removals"  # needs calendar_id (and the notice's user)
    RECONNECT = "reconnect"  # needs connection_id and provider


class Winner(StrEnum):
    CROCO = "croco"
    CALENDAR = "calendar"


@dataclass(frozen=True)
class Side:
    """One version of an event's time and title: the side an edit conflict overrode, so the user can redo it."""

    start: datetime
    end: datetime
    title: str | None

    @classmethod
    def of(cls, event: Occurrence | Appointment | None) -> Side | None:
        return None if event is None else cls(event.start, event.end, event.title)


@dataclass(frozen=True)
class NoticePayload:
    """A notice's content. `to_payload` is its stored JSON: the fields, plus `actions` (the buttons' names)."""

    kind: ClassVar[NoticeKind]

    def buttons(self) -> tuple[Button, ...]:
        return ()

    def to_payload(self) -> dict[str, Any]:
        payload = {f.name: _json(getattr(self, f.name)) for f in fields(self)}
        payload["actions"] = [str(button) for button in self.buttons()]
        return payload


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if isinstance(value, Side):
        return {f.name: _json(getattr(value, f.name)) for f in fields(value)}
    return value


@dataclass(frozen=True)
class ContactCreated(NoticePayload):
    kind = NoticeKind.CONTACT_CREATED
    contact_id: str
    name: str
    email: str
    appointment_id: str


@dataclass(frozen=True)
class Conflict(NoticePayload):
    """A busy external event on a booked appointment: the DM names both, so both titles are here."""

    kind = NoticeKind.CONFLICT
    appointment_id: str
    appointment_title: str
    event_title: str | None
    calendar_id: str
    start: datetime  # the external event's
    end: datetime


@dataclass(frozen=True)
class RemoteEditReverted(NoticePayload):
    """R6 one-way: our copy was written back over the remote edit, which is `lost`."""

    kind = NoticeKind.REMOTE_EDIT_REVERTED
    appointment_id: str
    calendar_id: str
    lost: Side | None


@dataclass(frozen=True)
class RemoteEditApplied(NoticePayload):
    """R6 two-way: the appointment took the remote event's new times."""

    kind = NoticeKind.REMOTE_EDIT_APPLIED
    appointment_id: str
    calendar_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class BothChanged(NoticePayload):
    """R8: the later side won; `start`/`end` are the new times when the calendar won (None when we did)."""

    kind = NoticeKind.BOTH_CHANGED
    appointment_id: str
    calendar_id: str
    winner: Winner
    lost: Side | None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class PushedEventDeleted(NoticePayload):
    """R7: a two-way calendar cancelled the appointment; a one-way one keeps it and asks what to do."""

    kind = NoticeKind.PUSHED_EVENT_DELETED
    appointment_id: str
    calendar_id: str
    cancelled: bool

    def buttons(self) -> tuple[Button, ...]:
        return () if self.cancelled else (Button.RESTORE_TO_CALENDAR, Button.CANCEL_APPOINTMENT)


@dataclass(frozen=True)
class ConnectionBroken(NoticePayload):
    kind = NoticeKind.CONNECTION_BROKEN
    connection_id: str
    provider: str
    account: str
    reason: str

    def buttons(self) -> tuple[Button, ...]:
        return (Button.RECONNECT,)


@dataclass(frozen=True)
class MassDeletionHeld(NoticePayload):
    kind = NoticeKind.MASS_DELETION_HELD
    calendar_id: str
    calendar_name: str
    removing: int
    known: int

    def buttons(self) -> tuple[Button, ...]:
        return (Button.CONFIRM_REMOVALS,)


@dataclass(frozen=True)
class ItemSkipped(NoticePayload):
    kind = NoticeKind.ITEM_SKIPPED
    calendar_id: str
    remote_id: str
    reason: str


@dataclass(frozen=True)
class AutomationFired(NoticePayload):
    """A `slack_dm` automation's message."""

    kind = NoticeKind.AUTOMATION
    trigger: str
    appointment_id: str
    title: str
    start: datetime
    contact_id: str | None


@dataclass(frozen=True)
class AgendaAppointment:
    """An appointment of the agenda's day; `conflicts_with` names the busy blocks it overlaps (a few)."""

    appointment_id: str
    title: str
    start: datetime
    end: datetime
    origin: str
    conflicts_with: tuple[str | None, ...] = ()
    conflict_count: int = 0  # all overlapping busy blocks, `conflicts_with` may name fewer


@dataclass(frozen=True)
class AgendaBlock:
    """A busy blocked slot of the agenda's day, from one of the user's calendars."""

    title: str | None
    calendar_name: str
    start: datetime
    end: datetime
    all_day: bool


@dataclass(frozen=True)
class Agenda(NoticePayload):
    """The daily agenda of one local day (`date`, in `timezone`): at most a bounded number of items, the rest
    counted, so the stored JSON stays small whatever the day holds. `until` is the end of that day (UTC): an
    agenda still undelivered then is out of date."""

    kind = NoticeKind.AGENDA
    date: str  # ISO local date
    timezone: str
    until: datetime
    appointments: tuple[AgendaAppointment, ...]
    blocks: tuple[AgendaBlock, ...]
    more_appointments: int = 0
    more_blocks: int = 0
    conflicts: int = 0  # appointments overlapping a busy block, over the whole day

    def to_payload(self) -> dict[str, Any]:
        payload = super().to_payload()
        payload["appointments"] = [_item(a) for a in self.appointments]
        payload["blocks"] = [_item(b) for b in self.blocks]
        return payload


def _item(item: AgendaAppointment | AgendaBlock) -> dict[str, Any]:
    return {f.name: list(v) if isinstance(v := getattr(item, f.name), tuple) else _json(v) for f in fields(item)}


@dataclass(frozen=True)
class AccountConnected(NoticePayload):
    """The DM after the connect form: the calendars found, so the user goes on to choose settings."""

    kind = NoticeKind.CONNECTED
    connection_id: str
    provider: str
    account: str
    calendars: tuple[str, ...]  # names
    renewed: bool = False


async def notify(
    session: AsyncSession, user_id: str, notice: NoticePayload, *, dedupe_key: str | None = None
) -> bool:
    """Add a notice unless one with the same `dedupe_key` exists. Returns whether it was added.

    The key makes a retried or re-planned cycle (after a crash, after an invalid cursor) tell the user once.
    """
    if dedupe_key is not None:
        existing = await session.scalar(select(col(Notice.id)).where(col(Notice.dedupe_key) == dedupe_key))
        if existing is not None:
            return False
    session.add(Notice(user_id=user_id, kind=notice.kind, payload=notice.to_payload(), dedupe_key=dedupe_key))
    return True
