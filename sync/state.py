"""The database side of a sync cycle: what is known about a calendar, and applying planned actions to it.

Everything here runs inside the caller's transaction; nothing commits. Remote writes are not done here.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.enums import AppointmentStatus, ContactSource, Origin, Trigger
from storage.models import (
    Appointment,
    AppointmentAssignee,
    AppointmentContact,
    BlockedSlot,
    Contact,
    EventLink,
    RemoteCalendar,
    User,
)
from storage.types import new_id
from sync import availability, firing
from sync.events import Occurrence
from sync.notices import Conflict, ContactCreated, notify
from sync.plan import ImportedCopy, Known, Link, PushedCopy, Wanted, fingerprint


@dataclass
class Tally:
    """What one cycle did to one calendar, as `POST /users/{id}/sync` reports it."""

    fetched: int = 0
    blocked_slots: int = 0
    appointments_created: int = 0
    appointments_updated: int = 0
    appointments_cancelled: int = 0
    contacts_created: int = 0
    pushed: int = 0
    removed: int = 0  # known items gone from the calendar (a confirmed mass deletion reports it)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def appointment_fingerprint(appointment: Appointment) -> str:
    return fingerprint(appointment.start, appointment.end, appointment.title)


# Loading ---------------------------------------------------------------------------------------------


async def load_known(
    session: AsyncSession, calendar: RemoteCalendar, user: User, window_start: datetime, *, linked: bool
) -> Known:
    slots: dict[str, list[Occurrence]] = defaultdict(list)
    columns = (BlockedSlot.remote_id, BlockedSlot.start, BlockedSlot.end, BlockedSlot.busy, BlockedSlot.title,
               BlockedSlot.all_day)
    # Plain rows, not ORM objects: a large calendar has tens of thousands, read on every cycle.
    for remote_id, start, end, busy, title, all_day in await session.execute(
        select(*map(col, columns)).where(col(BlockedSlot.remote_calendar_id) == calendar.id)
    ):
        slots[remote_id].append(Occurrence("", start, end, busy, title, all_day))

    imports: dict[str, dict[str, ImportedCopy]] = defaultdict(dict)
    pushes: dict[str, PushedCopy] = {}
    rows = await session.execute(
        select(EventLink, Appointment)
        .join(Appointment, col(Appointment.id) == col(EventLink.appointment_id))
        .where(col(EventLink.remote_calendar_id) == calendar.id, col(EventLink.user_id) == user.id)
    )
    for link, appointment in rows.tuples():
        if link.imported:
            if appointment.status == AppointmentStatus.BOOKED and appointment.end > window_start:
                imports[link.remote_id][link.occurrence_key] = ImportedCopy(
                    appointment.id, appointment.start, appointment.end, appointment.title or None, appointment.busy
                )
        else:
            pushes[link.remote_id] = PushedCopy(
                appointment.id, link.remote_id, link.etag, link.content_hash or "",
                appointment_fingerprint(appointment), appointment.updated_at,
            )

    expected: dict[str, str] = {}
    if linked:
        linked_ids = {p.appointment_id for p in pushes.values()}
        for appointment in await wanted_appointments(session, user.id, window_start):
            if appointment.id not in linked_ids:
                expected[appointment.id] = appointment_fingerprint(appointment)
    return Known(
        slots={k: tuple(v) for k, v in slots.items()}, imports=imports, pushes=pushes, expected_pushes=expected
    )


async def booked_appointments(
    session: AsyncSession, user_id: str, window_start: datetime, *, pushable_only: bool = False
) -> list[Appointment]:
    """Booked system appointments of the user ending after `window_start`; `pushable_only` leaves out
    those the user chose to keep out of their calendar (R7 one-way)."""
    query = (
        select(Appointment)
        .join(AppointmentAssignee, col(AppointmentAssignee.appointment_id) == col(Appointment.id))
        .where(
            col(AppointmentAssignee.user_id) == user_id,
            col(Appointment.origin) == Origin.SYSTEM,
            col(Appointment.status) == AppointmentStatus.BOOKED,
            col(Appointment.end) > window_start,
        )
    )
    if pushable_only:
        query = query.where(col(AppointmentAssignee.push_suppressed).is_(False))
    return list(await session.scalars(query))


async def wanted_appointments(session: AsyncSession, user_id: str, window_start: datetime) -> list[Appointment]:
    """Booked system appointments of the user that belong in the linked calendar (P1)."""
    return await booked_appointments(session, user_id, window_start, pushable_only=True)


async def push_inputs(
    session: AsyncSession, user_id: str, window_start: datetime
) -> tuple[list[Wanted], list[Link], dict[str, Appointment]]:
    """What should be in the linked calendar and where our copies are, over the same appointments."""
    wanted = await wanted_appointments(session, user_id, window_start)
    rows = await session.execute(
        select(EventLink, Appointment)
        .join(Appointment, col(Appointment.id) == col(EventLink.appointment_id))
        .where(
            col(EventLink.user_id) == user_id, col(EventLink.imported).is_(False), col(Appointment.end) > window_start
        )
    )
    links, appointments = [], {a.id: a for a in wanted}
    for link, appointment in rows.tuples():
        links.append(_as_link(link))
        appointments[appointment.id] = appointment
    return [Wanted(a.id, appointment_fingerprint(a)) for a in wanted], links, appointments


async def push_links(session: AsyncSession, user_id: str, appointment_id: str) -> list[Link]:
    """Where the user's copies of one appointment are (one link at most per calendar)."""
    rows = await session.scalars(
        select(EventLink).where(
            col(EventLink.user_id) == user_id, col(EventLink.appointment_id) == appointment_id,
            col(EventLink.imported).is_(False),
        )
    )
    return [_as_link(link) for link in rows]


def _as_link(link: EventLink) -> Link:
    return Link(link.appointment_id, link.remote_calendar_id, link.remote_id, link.etag, link.content_hash or "")


async def count_slots(session: AsyncSession, calendar_id: str) -> int:
    total = await session.scalar(
        select(func.count()).select_from(BlockedSlot).where(col(BlockedSlot.remote_calendar_id) == calendar_id)
    )
    return int(total or 0)


# Applying --------------------------------------------------------------------------------------------


INSERT_BATCH = 1000
"""Blocked slots written per statement: a 10,000-event import writes 17,000 rows."""


class SlotWriter:
    """A cycle's blocked slots: old ones deleted as items change, new ones written in one batched insert
    at the end (a first import writes tens of thousands of rows; one statement per item costs seconds),
    and the user's busy periods refreshed over the busy time that changed."""

    def __init__(self, user: User, calendar: RemoteCalendar, now: datetime) -> None:
        self._user, self._calendar, self._now = user, calendar, now
        self._rows: list[dict[str, object]] = []
        self._changed: list[availability.Span] = []

    async def set(
        self, session: AsyncSession, item_id: str, occurrences: tuple[Occurrence, ...], *, replacing: bool
    ) -> None:
        """`replacing` when the item had slots: a new item needs no delete."""
        if replacing:
            deleted = await session.execute(
                delete(BlockedSlot).where(
                    col(BlockedSlot.remote_calendar_id) == self._calendar.id, col(BlockedSlot.remote_id) == item_id
                ).returning(col(BlockedSlot.start), col(BlockedSlot.end), col(BlockedSlot.busy))
            )
            self._changed.extend((start, end) for start, end, busy in deleted.tuples() if busy)
        self._changed.extend((o.start, o.end) for o in occurrences if o.busy)
        self._rows.extend(
            {"id": new_id(), "user_id": self._user.id, "remote_calendar_id": self._calendar.id,
             "remote_id": item_id, "start": o.start, "end": o.end, "busy": o.busy, "title": o.title,
             "all_day": o.all_day, "fetched_at": self._now}
            for o in occurrences
        )

    async def flush(self, session: AsyncSession) -> None:
        connection = await session.connection()
        for start in range(0, len(self._rows), INSERT_BATCH):  # as Core: no ORM bulk work
            await connection.execute(insert(BlockedSlot), self._rows[start:start + INSERT_BATCH])
            await asyncio.sleep(0)  # preparing a batch's parameters holds the event loop: let others run between
        self._rows = []
        await availability.refresh_busy(session, self._user.id, self._changed)
        self._changed = []


async def import_occurrence(
    session: AsyncSession, user: User, calendar: RemoteCalendar, item_id: str, occurrence: Occurrence, tally: Tally,
    bookings: list[Appointment], now: datetime,
) -> None:
    """R2 two-way: appointment + link + a contact per guest + `appointment.created`, + a conflict notice."""
    appointment = Appointment(
        start=occurrence.start, end=occurrence.end, title=occurrence.title or "", origin=Origin.IMPORTED,
        busy=occurrence.busy, created_at=now, updated_at=now,
    )
    session.add(appointment)
    await session.flush()
    session.add(AppointmentAssignee(appointment_id=appointment.id, user_id=user.id))
    session.add(EventLink(
        appointment_id=appointment.id, user_id=user.id, remote_calendar_id=calendar.id, remote_id=item_id,
        occurrence_key=occurrence.key, imported=True, content_hash=fingerprint(occurrence.start, occurrence.end,
                                                                                occurrence.title),
    ))
    contact_ids: list[str] = []
    for guest in occurrence.guests:
        if guest.email.lower() == user.email.lower():
            continue
        contact, created = await contact_for(session, user.workspace_id, guest.email, guest.name)
        contact_ids.append(contact.id)
        session.add(AppointmentContact(appointment_id=appointment.id, contact_id=contact.id))
        if created:
            tally.contacts_created += 1
            created_notice = ContactCreated(contact.id, contact.name, contact.email, appointment.id)
            await notify(session, user.id, created_notice, dedupe_key=f"contact:{contact.id}")
    tally.appointments_created += 1
    await notify_conflicts(session, user, bookings, calendar.id, item_id, (occurrence,))
    targets: list[str | None] = [*contact_ids] or [None]  # automations run for each guest, or once without one
    for contact_id in targets:
        await firing.fire(
            session, user.workspace_id, appointment, Trigger.CREATED, contact_id=contact_id,
            notify_user_ids=[user.id], occasion=contact_id or "",
        )


async def contact_for(
    session: AsyncSession, workspace_id: str, email: str, name: str | None,
    source: ContactSource = ContactSource.TWO_WAY_IMPORT,
) -> tuple[Contact, bool]:
    """The workspace's contact for this email, created if new (one per email per workspace, also when two
    transactions add the same person at once: the loser reads the winner's row)."""
    email = email.strip().lower()
    query = select(Contact).where(col(Contact.workspace_id) == workspace_id, col(Contact.email) == email)
    existing = await session.scalar(query)
    if existing is not None:
        return existing, False
    contact = Contact(workspace_id=workspace_id, email=email, name=name or email.split("@")[0], source=source)
    try:
        async with session.begin_nested():
            session.add(contact)
    except IntegrityError:
        winner = await session.scalar(query)
        assert winner is not None
        return winner, False
    return contact, True


async def notify_conflicts(
    session: AsyncSession, user: User, bookings: list[Appointment], calendar_id: str, item_id: str,
    occurrences: tuple[Occurrence, ...],
) -> None:
    """A busy remote event landing on one of the user's booked appointments: tell them (a double booking).

    `bookings` is loaded once per cycle (`booked_appointments`), so checking costs no query per event.
    """
    for occurrence in occurrences:
        if not occurrence.busy:
            continue
        for booking in bookings:
            if booking.start < occurrence.end and booking.end > occurrence.start:
                conflict = Conflict(booking.id, booking.title, occurrence.title, calendar_id, occurrence.start,
                                    occurrence.end)
                await notify(session, user.id, conflict,
                             dedupe_key=f"conflict:{booking.id}:{calendar_id}:{item_id}:{occurrence.start.isoformat()}")


async def reschedule(
    session: AsyncSession, appointment: Appointment, start: datetime, end: datetime, title: str, *,
    workspace_id: str, notify_user_ids: list[str], now: datetime,
) -> None:
    """The one way an appointment's times or title change, whether the API moved it or its calendar event
    did (R2, R6, R8): stamped `now` (the injected clock; R8 compares it), `appointment.rescheduled` fired
    once per move."""
    moved = (start, end) != (appointment.start, appointment.end)
    appointment.start, appointment.end, appointment.title = start, end, title
    appointment.version += 1
    appointment.updated_at = now
    if moved:
        await firing.fire(
            session, workspace_id, appointment, Trigger.RESCHEDULED,
            contact_id=await first_contact(session, appointment.id), notify_user_ids=notify_user_ids,
            occasion=f"v{appointment.version}",
        )


async def cancel(
    session: AsyncSession, appointment: Appointment, *, workspace_id: str, notify_user_ids: list[str], now: datetime
) -> bool:
    """The one way an appointment is cancelled, by the API or by its deleted calendar event (R5, R7): stamped
    `now`, `appointment.cancelled` fired once. Returns False if it was not booked (nothing changes)."""
    if appointment.status != AppointmentStatus.BOOKED:
        return False
    appointment.status = AppointmentStatus.CANCELLED
    appointment.version += 1
    appointment.updated_at = now
    await firing.fire(
        session, workspace_id, appointment, Trigger.CANCELLED,
        contact_id=await first_contact(session, appointment.id), notify_user_ids=notify_user_ids,
    )
    return True


async def update_appointment_times(
    session: AsyncSession, user: User, appointment_id: str, occurrence: Occurrence, now: datetime
) -> Appointment | None:
    """The appointment follows the user's calendar event (`reschedule`); an imported one its busy flag too."""
    appointment = await session.get(Appointment, appointment_id)
    if appointment is None:
        return None
    if appointment.origin == Origin.IMPORTED:
        appointment.busy = occurrence.busy
    await reschedule(session, appointment, occurrence.start, occurrence.end, occurrence.title or appointment.title,
                     workspace_id=user.workspace_id, notify_user_ids=[user.id], now=now)
    return appointment


async def cancel_appointment(session: AsyncSession, user: User, appointment_id: str, now: datetime) -> bool:
    """The user's calendar event went: its appointment is cancelled (`cancel`)."""
    appointment = await session.get(Appointment, appointment_id)
    return appointment is not None and await cancel(
        session, appointment, workspace_id=user.workspace_id, notify_user_ids=[user.id], now=now
    )


async def drop_import(session: AsyncSession, appointment_id: str) -> None:
    """Remove an imported mirror quietly (mode changed, or disconnect): no automations, no notice."""
    appointment = await session.get(Appointment, appointment_id)
    if appointment is not None and appointment.origin == Origin.IMPORTED:
        await session.delete(appointment)


async def record_push(
    session: AsyncSession, user: User, calendar: RemoteCalendar, appointment_id: str, item_id: str,
    etag: str | None, printed: str, now: datetime,
) -> None:
    link = await session.scalar(
        select(EventLink).where(
            col(EventLink.appointment_id) == appointment_id, col(EventLink.user_id) == user.id,
            col(EventLink.remote_calendar_id) == calendar.id,
        )
    )
    if link is None:
        link = EventLink(appointment_id=appointment_id, user_id=user.id, remote_calendar_id=calendar.id,
                         remote_id=item_id)
        session.add(link)
    link.remote_id, link.etag, link.content_hash, link.last_seen_at = item_id, etag, printed, now


async def forget_push(session: AsyncSession, user_id: str, calendar_id: str, appointment_id: str) -> None:
    await session.execute(
        delete(EventLink).where(
            col(EventLink.appointment_id) == appointment_id, col(EventLink.user_id) == user_id,
            col(EventLink.remote_calendar_id) == calendar_id, col(EventLink.imported).is_(False),
        )
    )


async def suppress_push(session: AsyncSession, user_id: str, appointment_id: str, *, suppressed: bool = True) -> None:
    """R7 one-way: keep the appointment out of the user's linked calendar (False: restored to it)."""
    assignee = await session.get(AppointmentAssignee, (appointment_id, user_id))
    if assignee is not None:
        assignee.push_suppressed = suppressed


async def first_contact(session: AsyncSession, appointment_id: str) -> str | None:
    contact_id: str | None = await session.scalar(
        select(col(AppointmentContact.contact_id)).where(col(AppointmentContact.appointment_id) == appointment_id)
    )
    return contact_id


async def remove_connection_mirrors(session: AsyncSession, calendar_ids: list[str]) -> None:
    """Disconnect: blocked slots (and the busy periods they made) and imported mirrors of these calendars go;
    remote copies stay."""
    imported = select(col(EventLink.appointment_id)).where(
        col(EventLink.remote_calendar_id).in_(calendar_ids), col(EventLink.imported).is_(True)
    )
    await session.execute(
        delete(Appointment).where(and_(col(Appointment.id).in_(imported), col(Appointment.origin) == Origin.IMPORTED))
    )
    deleted = await session.execute(
        delete(BlockedSlot).where(col(BlockedSlot.remote_calendar_id).in_(calendar_ids))
        .returning(col(BlockedSlot.user_id), col(BlockedSlot.start), col(BlockedSlot.end), col(BlockedSlot.busy))
    )
    changed: dict[str, list[availability.Span]] = defaultdict(list)
    for user_id, start, end, busy in deleted.tuples():
        if busy:
            changed[user_id].append((start, end))
    for user_id, spans in changed.items():
        await availability.refresh_busy(session, user_id, spans)
    await session.execute(delete(EventLink).where(col(EventLink.remote_calendar_id).in_(calendar_ids)))
