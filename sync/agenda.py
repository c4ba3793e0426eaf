"""The daily agenda: at 08:00 in each opted-in user's time zone, a notice listing the day's appointments and busy
blocks, each appointment that overlaps a busy block marked as a conflict.

The agenda is an outbox notice (`NoticeKind.AGENDA`), so delivery (once, retried, rate-limited) is the outbox's.
Its dedupe key names the user and the local date: any number of ticks and processes write it once.

Due window: from 08:00 until `LAST_SEND` (noon) local. A process that was down at 08:00 still sends at 09:30; past
noon the morning agenda is not worth sending (opting in at 15:00 starts tomorrow, an outage past noon skips a day).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, exists, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage import repositories
from storage.db import Database
from storage.enums import AppointmentStatus
from storage.models import Appointment, BlockedSlot, Notice, SyncSettings, User
from sync.notices import Agenda, AgendaAppointment, AgendaBlock, notify

log = logging.getLogger(__name__)

SEND_AT = time(8)
LAST_SEND = time(12)
"""The agenda of a day is written from SEND_AT until LAST_SEND local time, never later."""
TICK_SECONDS = 60.0
MAX_ITEMS = 50
"""Appointments and blocks kept in one agenda (the earliest); the rest are only counted."""
MAX_CONFLICT_NAMES = 3


def dedupe_key(user_id: str, day: date) -> str:
    return f"agenda:{user_id}:{day.isoformat()}"


@dataclass(frozen=True)
class LocalDay:
    """A user's calendar day: its date and its bounds in UTC (23 or 25 hours long on a DST change)."""

    date: date
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.date, time(), self.zone)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.date + timedelta(days=1), time(), self.zone)


def due_day(timezone: str, now: datetime) -> LocalDay | None:
    """The local day whose agenda is due at `now` in `timezone`, or None outside the send window (or for a zone
    this machine does not know)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    local = now.astimezone(zone)
    return LocalDay(local.date(), zone) if SEND_AT <= local.time() < LAST_SEND else None


async def write_due_agendas(db: Database, now: datetime) -> int:
    """Write the agenda of every opted-in user whose morning it is and who has none for that day yet.

    Two reads find them whatever the number of users: the opted-in users' distinct time zones, then the users of
    the zones in their window with no agenda notice for their local date. Each agenda is written in its own short
    transaction. Returns how many were written.
    """
    async with db.session() as session:
        days = await _due_days(session, now)
        due = await _due_users(session, days) if days else []
    written = 0
    for user_id, day in due:
        async with db.write() as session:
            await repositories.serialize(session, dedupe_key(user_id, day.date))  # two processes: one writes
            agenda = await build_agenda(session, user_id, day)
            if await notify(session, user_id, agenda, dedupe_key=dedupe_key(user_id, day.date)):
                written += 1
                log.info("agenda written", extra={"user_id": user_id, "date": agenda.date,
                                                  "appointments": len(agenda.appointments) + agenda.more_appointments})
    return written


async def _due_days(session: AsyncSession, now: datetime) -> dict[str, LocalDay]:
    zones = await session.scalars(
        select(col(User.timezone)).distinct()
        .join(SyncSettings, col(SyncSettings.user_id) == col(User.id)).where(col(SyncSettings.daily_agenda))
    )
    return {zone: day for zone in zones if (day := due_day(zone, now)) is not None}


async def _due_users(session: AsyncSession, days: dict[str, LocalDay]) -> list[tuple[str, LocalDay]]:
    """The opted-in users of the due zones without an agenda for their date: one query, one `OR` term per date
    (at most a few: the zones in their morning share one or two dates)."""
    zones_by_date: dict[date, list[str]] = defaultdict(list)
    for zone, day in days.items():
        zones_by_date[day.date].append(zone)
    terms = []
    for day_date, zones in zones_by_date.items():
        key = literal("agenda:") + col(User.id) + literal(f":{day_date.isoformat()}")
        terms.append(and_(col(User.timezone).in_(zones), ~exists().where(col(Notice.dedupe_key) == key)))
    rows = await session.execute(
        select(col(User.id), col(User.timezone))
        .join(SyncSettings, col(SyncSettings.user_id) == col(User.id))
        .where(col(SyncSettings.daily_agenda), or_(*terms))
        .order_by(col(User.id))
    )
    return [(user_id, days[zone]) for user_id, zone in rows.tuples()]


async def build_agenda(session: AsyncSession, user_id: str, day: LocalDay) -> Agenda:
    """The agenda of `day`: booked appointments and busy blocks overlapping it, in time order, bounded."""
    start, end = day.start, day.end
    appointments = [a for a in await repositories.appointments_between(session, user_id, start, end)
                    if a.status == AppointmentStatus.BOOKED]
    blocks = [b for b in await repositories.blocked_slots_between(session, user_id, start, end) if b.busy]
    names = {c.id: c.name for c in await repositories.user_calendars(session, user_id)} if blocks else {}
    marked = [_with_conflicts(a, blocks) for a in appointments]
    kept_appointments, kept_blocks = _earliest(marked, [_block(b, names) for b in blocks], MAX_ITEMS)
    return Agenda(
        date=day.date.isoformat(), timezone=day.zone.key, until=end.astimezone(UTC),
        appointments=tuple(kept_appointments), blocks=tuple(kept_blocks),
        more_appointments=len(marked) - len(kept_appointments), more_blocks=len(blocks) - len(kept_blocks),
        conflicts=sum(1 for a in marked if a.conflict_count),
    )


def _with_conflicts(appointment: Appointment, blocks: Iterable[BlockedSlot]) -> AgendaAppointment:
    overlapping = [b for b in blocks if b.start < appointment.end and appointment.start < b.end]
    return AgendaAppointment(
        appointment_id=appointment.id, title=appointment.title, start=appointment.start, end=appointment.end,
        origin=appointment.origin, conflicts_with=tuple(b.title for b in overlapping[:MAX_CONFLICT_NAMES]),
        conflict_count=len(overlapping),
    )


def _block(slot: BlockedSlot, names: dict[str, str]) -> AgendaBlock:
    return AgendaBlock(title=slot.title, calendar_name=names.get(slot.remote_calendar_id, ""), start=slot.start,
                       end=slot.end, all_day=slot.all_day)


def _earliest(
    appointments: list[AgendaAppointment], blocks: list[AgendaBlock], limit: int
) -> tuple[list[AgendaAppointment], list[AgendaBlock]]:
    """The first `limit` items of both lists merged by start (appointments first on a tie), split back."""
    merged = sorted([(a.start, 0, i) for i, a in enumerate(appointments)]
                    + [(b.start, 1, i) for i, b in enumerate(blocks)])[:limit]
    return ([appointments[i] for _, kind, i in merged if kind == 0],
            [blocks[i] for _, kind, i in merged if kind == 1])
