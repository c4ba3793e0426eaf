"""The actions behind notice buttons (API.md "Notices (the outbox) and the actions behind their buttons").

Each is idempotent, so a double click does one thing: restoring writes one copy and the second click finds
nothing missing; confirming applies the held removals once and the second click removes nothing. Cancelling
is `Booking.cancel`, idempotent itself; reconnecting is a new connect link (`ConnectLinks.reconnect`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from sqlalchemy import select, update
from sqlmodel import col

from storage.db import Database
from storage.enums import AppointmentStatus, Origin
from storage.models import Appointment, AppointmentAssignee, Connection, RemoteCalendar
from sync.accounts import get_user
from sync.engine import SyncEngine
from sync.errors import Conflict, Invalid, NotFound
from sync.providers.base import ProviderError

log = logging.getLogger(__name__)


class Actions:
    def __init__(self, db: Database, engine: SyncEngine) -> None:
        """The actions run on the engine's clock: the process has one (`croco.runtime`)."""
        self.db, self.engine, self.clock = db, engine, engine.clock
        self._restoring: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def restore(self, appointment_id: str) -> None:
        """"Restore to calendar" after the user deleted our copy (R7 one-way): write it back now, before any
        pull. Restores of one appointment run one at a time, so two at once write one copy.

        NotFound: no such appointment. Conflict `nothing_to_restore`: no copy is missing (never deleted, already
        restored, cancelled) or no linked calendar syncs to take it. Invalid `unreachable`: the calendar server
        failed; nothing changed, the button still works."""
        lock = self._restoring.setdefault(appointment_id, asyncio.Lock())
        async with lock:
            user_ids = await self._missing_copies(appointment_id)
            try:
                restored = [u for u in user_ids if await self.engine.restore_copy(u, appointment_id)]
            except ProviderError as exc:  # provider messages never carry credentials (base.py)
                raise Invalid(f"the calendar server did not take our copy: {exc}", code="unreachable") from None
        if not restored:
            raise Conflict("no linked calendar to restore the appointment to", code="nothing_to_restore")
        log.info("copy restored", extra={"appointment_id": appointment_id, "user_ids": restored})

    async def _missing_copies(self, appointment_id: str) -> list[str]:
        """The assignees who deleted our copy of a booked appointment from their linked calendar."""
        async with self.db.session() as session:
            appointment = await session.get(Appointment, appointment_id)
            if appointment is None:
                raise NotFound(f"no appointment {appointment_id}")
            user_ids = list(await session.scalars(
                select(col(AppointmentAssignee.user_id)).where(
                    col(AppointmentAssignee.appointment_id) == appointment_id,
                    col(AppointmentAssignee.push_suppressed).is_(True),
                ).order_by(col(AppointmentAssignee.user_id))
            ))
        if not user_ids or appointment.status != AppointmentStatus.BOOKED or appointment.origin != Origin.SYSTEM:
            raise Conflict("no copy of this appointment is missing from a calendar", code="nothing_to_restore")
        return user_ids

    async def confirm_held_removals(self, user_id: str) -> int:
        """The user confirmed the mass deletions sync is holding: every held calendar of the user runs its cycle
        now and applies them. Returns how many items those cycles removed (a second click: 0).

        A calendar another process is syncing right now applies them in its next cycle (not counted)."""
        async with self.db.write() as session:
            await get_user(session, user_id)
            held = select(col(RemoteCalendar.id)).join(
                Connection, col(Connection.id) == col(RemoteCalendar.connection_id)
            ).where(col(Connection.user_id) == user_id, col(RemoteCalendar.removals_held_of).is_not(None))
            held_ids = set(await session.scalars(held))
            # Conditional: a cycle that applied them meanwhile must not leave a confirmation for the next hold.
            await session.execute(
                update(RemoteCalendar)
                .where(col(RemoteCalendar.id).in_(held_ids), col(RemoteCalendar.removals_held_of).is_not(None))
                .values(removals_confirmed=True, due_at=self.clock())
            )
        if not held_ids:
            return 0
        reports = await self.engine.sync_user(user_id)
        removed = sum(r.tally.removed for r in reports if r.calendar_id in held_ids)
        log.info("held removals confirmed", extra={"user_id": user_id, "calendar_ids": sorted(held_ids),
                                                   "removed": removed})
        return removed
