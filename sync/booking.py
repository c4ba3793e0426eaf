"""Booking, rescheduling and cancelling appointments on team calendars (DESIGN.md section 5).

The availability check and the write happen in one transaction that first locks the members involved
(PostgreSQL: their user rows, FOR UPDATE, in id order; SQLite: `Database.write()` is BEGIN IMMEDIATE), so two
bookings of the same member or of the last seat never both succeed. Before that transaction, the member the
booking is about to take has their calendars refreshed within a time budget: browsing used the stored view.

Changes reach the members' linked calendars through the sync engine (P1-P3): the transaction marks those
calendars due, and the next engine cycle pushes them. Automations fire in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.enums import AppointmentStatus, CalendarKind, ContactSource, Origin, Trigger
from storage.models import (
    Appointment,
    AppointmentAssignee,
    AppointmentContact,
    Calendar,
    CalendarMember,
    RemoteCalendar,
    SyncSettings,
    User,
)
from storage.types import Clock, utcnow
from sync import firing, state
from sync.availability import Finding, Reason, Rules, SlotCheck, check, in_open_hours, load_view
from sync.errors import Conflict, Invalid, NotFound
from sync.teams import get_team_calendar
from sync.telemetry import TELEMETRY

log = logging.getLogger(__name__)

REFRESH_BUDGET = 2.0
"""Seconds a booking waits for the assigned member's calendars to refresh before trusting the stored view."""
FAIRNESS_PERIOD = timedelta(days=30)
"""Round robin weights compare the bookings each member received over this period."""

Refresher = Callable[[str], Awaitable[object]]
"""Syncs one user's calendars now (`SyncEngine.sync_user`)."""


@dataclass(frozen=True)
class BookingRequest:
    start: datetime
    contact_name: str
    contact_email: str
    title: str | None = None
    member_id: str | None = None  # service: the chosen member; round robin and class: a preferred host


class Booking:
    """The booking service: `web/` and `bot/` call it; it never talks to a provider except through `refresh`."""

    def __init__(
        self, db: Database, *, refresh: Refresher | None = None, budget: float = REFRESH_BUDGET,
        clock: Clock = utcnow,
    ) -> None:
        self.db, self.refresh, self.budget, self.clock = db, refresh, budget, clock
        self._refreshing: set[asyncio.Future[list[object]]] = set()

    async def book(self, calendar_id: str, request: BookingRequest) -> Appointment:
        """Counted in `croco_bookings_total` by the calendar's kind: `booked` once committed, `refused` when the
        calendar cannot take it (a `Conflict`: the slot is taken or off the grid, the class full, the contact
        already seated). A bad request (`Invalid`, `NotFound`) is no attempt on the calendar and is not counted."""
        team = await get_team_calendar(self.db, calendar_id)
        rules = Rules.of(team.calendar, team.member_ids)
        rules.check_member_choice(request.member_id)
        try:
            appointment = await self._book(team.calendar, rules, request)
        except Conflict:
            TELEMETRY.bookings.labels(rules.kind.value, "refused").inc()
            raise
        TELEMETRY.bookings.labels(rules.kind.value, "booked").inc()
        return appointment

    async def _book(self, calendar: Calendar, rules: Rules, request: BookingRequest) -> Appointment:
        if not in_open_hours(rules, request.start):
            raise Conflict("the time is not one of the calendar's slots (open hours and interval)",
                           code="slot_unavailable")

        async with self.db.session() as session:
            cached = await self._check(session, rules, request)
            # a new appointment: the members it would take have their latest calendars read first
            chosen = await _assignees(session, rules, cached, self.clock()) if cached.session is None else []
        await self._refresh(chosen, calendar.id)

        async with self.db.write() as session:
            await _lock_users(session, rules.member_ids)
            now = self.clock()
            fresh = await self._check(session, rules, request, now=now)
            return await self._write(session, calendar, rules, request, fresh, now)

    async def _check(
        self, session: AsyncSession, rules: Rules, request: BookingRequest, now: datetime | None = None
    ) -> SlotCheck:
        start = request.start
        view = await load_view(session, rules, start, start + rules.duration, now or self.clock())
        result = check(view, start, member_id=request.member_id)
        if not result.available:
            why = check(view, start, member_id=request.member_id, detailed=True).findings
            raise Conflict(f"the slot at {start.isoformat()} is not available: {_describe(why)}",
                           code="slot_unavailable")
        return result

    async def _refresh(self, user_ids: Sequence[str], calendar_id: str) -> None:
        """Pull the members' calendars before trusting them. Past the budget the booking goes on with what
        is stored, and the refresh finishes in the background (cancelling it would strand its leases)."""
        if self.refresh is None or not user_ids:
            return
        task = asyncio.ensure_future(asyncio.gather(*(self.refresh(u) for u in user_ids)))
        self._refreshing.add(task)
        task.add_done_callback(self._refresh_done)
        done, _ = await asyncio.wait({task}, timeout=self.budget)
        if not done:
            log.warning("calendar refresh over budget: booking on the stored view", extra={
                "calendar_id": calendar_id, "user_ids": list(user_ids), "budget_seconds": self.budget,
            })

    def _refresh_done(self, task: asyncio.Future[list[object]]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("calendar refresh before a booking failed", exc_info=task.exception())

    async def _write(
        self, session: AsyncSession, calendar: Calendar, rules: Rules, request: BookingRequest, slot: SlotCheck,
        now: datetime,
    ) -> Appointment:
        contact, _ = await state.contact_for(
            session, calendar.workspace_id, request.contact_email, request.contact_name, ContactSource.BOOKING
        )
        existing = await session.get(Appointment, slot.session.appointment_id) if slot.session else None
        if existing is not None:  # a seat in the class session
            if await session.get(AppointmentContact, (existing.id, contact.id)) is not None:
                raise Conflict(f"{contact.email} already has a seat in this session", code="already_booked")
            appointment, assignees = existing, list(slot.member_ids)
        else:
            assignees = await _assignees(session, rules, slot, now)
            appointment = Appointment(
                calendar_id=calendar.id, start=request.start, end=request.start + rules.duration,
                title=request.title or _title(calendar, rules, contact.name), created_at=now, updated_at=now,
            )
            session.add(appointment)
            await session.flush()
            session.add_all(AppointmentAssignee(appointment_id=appointment.id, user_id=u) for u in assignees)
        session.add(AppointmentContact(appointment_id=appointment.id, contact_id=contact.id))
        await session.flush()
        await firing.fire(session, calendar.workspace_id, appointment, Trigger.CREATED, contact_id=contact.id,
                          notify_user_ids=assignees, occasion=contact.id)
        await _mark_linked_due(session, assignees, now)
        log.info("appointment booked", extra={
            "calendar_id": calendar.id, "appointment_id": appointment.id, "user_ids": assignees,
        })
        return appointment

    async def reschedule(
        self, appointment_id: str, *, start: datetime | None = None, end: datetime | None = None,
        title: str | None = None,
    ) -> Appointment:
        """New times must be free for every assigned member (their buffers included) and not in the past;
        open hours, notice and horizon are the booking page's rules and do not bind an operator's move."""
        async with self.db.write() as session:
            appointment, assignees = await _editable(session, appointment_id)
            await _lock_users(session, assignees)
            new_start = start or appointment.start
            new_end = end or (new_start + (appointment.end - appointment.start) if start else appointment.end)
            if new_end <= new_start:
                raise Invalid("end must be after start")
            moved, now = (new_start, new_end) != (appointment.start, appointment.end), self.clock()
            if moved:
                await _check_move(session, appointment, assignees, new_start, new_end, now)
            if not moved and (title is None or title == appointment.title):
                return appointment
            await state.reschedule(session, appointment, new_start, new_end,
                                   appointment.title if title is None else title,
                                   workspace_id=await _workspace_of(session, assignees), notify_user_ids=assignees,
                                   now=now)
            await _mark_linked_due(session, assignees, now)
            return appointment

    async def cancel(self, appointment_id: str) -> Appointment:
        """Cancelling twice is harmless: the second call changes and fires nothing."""
        async with self.db.write() as session:
            appointment, assignees = await _editable(session, appointment_id, allow_cancelled=True)
            now = self.clock()
            if await state.cancel(session, appointment, workspace_id=await _workspace_of(session, assignees),
                                  notify_user_ids=assignees, now=now):
                await _mark_linked_due(session, assignees, now)
            return appointment


def _title(calendar: Calendar, rules: Rules, contact_name: str) -> str:
    return calendar.name if rules.kind == CalendarKind.CLASS else f"{calendar.name} with {contact_name}"


def _describe(findings: Sequence[Finding]) -> str:
    codes = dict.fromkeys(f.code.value for f in findings if f.code != Reason.STALE)
    return ", ".join(codes) or "no member is free"


async def _lock_users(session: AsyncSession, user_ids: Sequence[str]) -> None:
    """PostgreSQL: serialize every transaction that books or moves one of these members (no-op on SQLite,
    whose write transaction already holds the database lock)."""
    await session.execute(
        select(col(User.id)).where(col(User.id).in_(sorted(user_ids))).order_by(col(User.id)).with_for_update()
    )


async def _assignees(session: AsyncSession, rules: Rules, slot: SlotCheck, now: datetime) -> list[str]:
    """Collective: everyone. Class session already booked: its host. Otherwise the round robin choice."""
    if rules.kind == CalendarKind.COLLECTIVE:
        return list(rules.member_ids)
    if len(slot.member_ids) == 1:
        return list(slot.member_ids)
    return [(await rank_members(session, rules.calendar_id, slot.member_ids, now))[0]]


async def rank_members(session: AsyncSession, calendar_id: str, candidates: Sequence[str], now: datetime) -> list[str]:
    """Round robin order: highest priority; then weight, as the largest shortfall against the member's share
    of the calendar's bookings over `FAIRNESS_PERIOD` (ties to the higher weight); then least recently booked;
    then the member's position."""
    members = {
        m.user_id: m for m in await session.scalars(
            select(CalendarMember).where(col(CalendarMember.calendar_id) == calendar_id)
        )
    }
    stats = await session.execute(
        select(col(AppointmentAssignee.user_id), func.count(), func.max(col(Appointment.created_at)))
        .join(Appointment, col(Appointment.id) == col(AppointmentAssignee.appointment_id))
        .where(
            col(Appointment.calendar_id) == calendar_id, col(Appointment.status) == AppointmentStatus.BOOKED,
            col(Appointment.created_at) > now - FAIRNESS_PERIOD,
        )
        .group_by(col(AppointmentAssignee.user_id))
    )
    counts: dict[str, int] = {}
    last: dict[str, datetime] = {}
    for user_id, count, latest in stats.tuples():
        counts[user_id], last[user_id] = count, latest
    total = sum(counts.values())
    weights = sum(m.weight for m in members.values()) or 1
    never = datetime.min.replace(tzinfo=now.tzinfo)

    def key(user_id: str) -> tuple[int, float, int, datetime, int]:
        member = members[user_id]
        shortfall = member.weight / weights * (total + 1) - counts.get(user_id, 0)
        return -member.priority, -shortfall, -member.weight, last.get(user_id, never), member.position

    return sorted(candidates, key=key)


async def _editable(
    session: AsyncSession, appointment_id: str, *, allow_cancelled: bool = False
) -> tuple[Appointment, list[str]]:
    appointment = await session.get(Appointment, appointment_id)
    if appointment is None:
        raise NotFound(f"no appointment {appointment_id}")
    if appointment.origin == Origin.IMPORTED:
        raise Conflict("an imported appointment follows its calendar event: change it in that calendar",
                       code="imported_appointment")
    if appointment.status != AppointmentStatus.BOOKED and not allow_cancelled:
        raise Conflict("the appointment is cancelled", code="appointment_cancelled")
    assignees = await session.scalars(
        select(col(AppointmentAssignee.user_id)).where(col(AppointmentAssignee.appointment_id) == appointment_id)
    )
    return appointment, sorted(assignees)


async def _check_move(
    session: AsyncSession, appointment: Appointment, assignees: list[str], start: datetime, end: datetime,
    now: datetime,
) -> None:
    if start < now:
        raise Conflict("an appointment cannot move into the past", code="slot_unavailable")
    calendar = await session.get(Calendar, appointment.calendar_id) if appointment.calendar_id else None
    if calendar is None:
        return
    rules = Rules.of(calendar, assignees)
    view = await load_view(session, rules, start, end, now, exclude_appointment=appointment.id)
    if start in view.sessions:
        raise Conflict("another session of this class starts then", code="slot_unavailable")
    window = (start - rules.buffer_before, end + rules.buffer_after)
    busy = [m for m in assignees if not view.busy[m].free(*window)]
    if busy:
        raise Conflict(f"{len(busy)} of {len(assignees)} assigned members are busy then", code="slot_unavailable")


async def _workspace_of(session: AsyncSession, assignees: Sequence[str]) -> str:
    user = await session.get(User, assignees[0])
    assert user is not None
    return user.workspace_id


async def _mark_linked_due(session: AsyncSession, user_ids: Sequence[str], now: datetime) -> None:
    """The members' linked calendars sync next: the engine pushes the change there (P1-P3)."""
    linked = select(col(SyncSettings.linked_calendar_id)).where(col(SyncSettings.user_id).in_(user_ids))
    await session.execute(update(RemoteCalendar).where(col(RemoteCalendar.id).in_(linked)).values(due_at=now))
