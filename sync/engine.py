"""The sync engine: the only part of `sync/` that does I/O for a cycle (DESIGN.md sections 2 and 4).

One cycle of one remote calendar:
1. pull: list what changed since the cursor, map items to occurrences (bad items are skipped and
   reported), plan against what the database knows, apply the plan in one transaction;
2. restore (linked calendar only): write back the copies the plan restores (R6, R8), after that commit:
   no transaction is ever held across a network call. Until they are written the cursor stays where it
   was, so a crash before a restore plans it again;
3. push (linked calendar only): create, update or delete our copies, each write followed by the commit
   of its link, so a crash in between is adopted on the next pull instead of written twice.

Failures stay inside their calendar: revoked credentials or a refused token refresh break the connection
(one notice, blocked slots kept and shown stale), a rate limit or an unreachable server postpones the
calendar, anything else is recorded as the calendar's last error. Other calendars go on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.enums import ConnectionStatus, SyncMode
from storage.models import Appointment, ConflictCalendar, Connection, RemoteCalendar, SyncSettings, User
from storage.secrets import SecretBox
from storage.types import Clock, utcnow
from sync import accounts, credentials, leases, state, telemetry
from sync.events import RemoteObject
from sync.notices import (
    BothChanged,
    ItemSkipped,
    MassDeletionHeld,
    PushedEventDeleted,
    RemoteEditApplied,
    RemoteEditReverted,
    Side,
    Winner,
    notify,
)
from sync.plan import (
    ApplyRemoteEdit,
    CalendarRole,
    CancelImport,
    CreateRemote,
    DeleteRemote,
    DropImport,
    ForgetPush,
    HoldRemovals,
    ImportOccurrence,
    Known,
    Listing,
    PlanAction,
    PushAction,
    PushedDeletedRemotely,
    RecordPush,
    Relist,
    RestorePush,
    SetSlots,
    SkipItem,
    UpdateImport,
    Wanted,
    plan,
    plan_pushes,
)
from sync.providers.base import (
    BatchCreator,
    CalendarProvider,
    ChangeSet,
    EventDraft,
    InvalidCredentials,
    PreconditionFailed,
    ProviderError,
    ProviderFactory,
    RateLimited,
    ReadContext,
    Reader,
    ReadResults,
    RemoteItem,
    WriteResult,
    read_items,
)

log = logging.getLogger(__name__)

SYNC_IN_PROGRESS = "sync_in_progress"
"""A manual sync's report on a calendar that another sync still held when it stopped waiting."""
FULL_RESYNC_EVERY = timedelta(hours=24)
"""Incremental cursors do not re-send items whose occurrences slide into the window: relist daily."""
DEFAULT_SAFETY_POLL = timedelta(hours=1)
"""How long a calendar with a live push channel waits for its next sync when no notification comes."""
SYNCED, FAILED, AUTH_FAILED = "ok", "error", "auth_failed"
"""A cycle's outcomes (`croco_sync_cycles_total`): AUTH_FAILED when the credentials were refused and the
connection is broken, FAILED for any other failure."""
YIELD_EVERY = 200
"""Actions applied between two turns of the event loop during a pull (a few milliseconds of work)."""


@dataclass
class CalendarReport:
    calendar_id: str
    tally: state.Tally = field(default_factory=state.Tally)
    error: str | None = None
    retry_after: float | None = None  # the provider asked us to slow down
    changed: int = 0  # changes the cycle's listings applied (plan actions), for its log line

    def as_json(self) -> dict[str, Any]:
        t = self.tally
        return {
            "id": self.calendar_id, "fetched": t.fetched, "blocked_slots": t.blocked_slots,
            "appointments_created": t.appointments_created, "appointments_updated": t.appointments_updated,
            "appointments_cancelled": t.appointments_cancelled, "contacts_created": t.contacts_created,
            "pushed": t.pushed, "skipped": [{"remote_id": r, "reason": why} for r, why in t.skipped],
            "error": self.error,
        }


_NO_CHANGE = (SkipItem, Relist, HoldRemovals)
"""Plan actions that change nothing of the user's: a cycle's `changed` counts the others."""


@dataclass(frozen=True)
class _Outcome:
    """How a cycle ended: its `croco_sync_cycles_total` result, and its log line (with the traceback of a
    failure nobody foresaw)."""

    result: str  # SYNCED, FAILED or AUTH_FAILED
    level: int
    message: str
    unexpected: BaseException | None = None


@dataclass(frozen=True)
class _Context:
    calendar: RemoteCalendar
    connection: Connection
    user: User
    settings: SyncSettings
    role: CalendarRole
    window_start: datetime
    window_end: datetime


@dataclass
class _Cycle:
    """What applying one calendar's plan shares across its actions."""

    known: Known
    bookings: list[Appointment]  # the user's booked appointments, for conflict notices without a query per event
    slots: state.SlotWriter
    tally: state.Tally
    now: datetime
    restores: list[RestorePush] = field(default_factory=list)  # written after the commit
    relist: bool = False  # the listing removed items it never gave us: the next listing is a full one


class SyncEngine:
    def __init__(
        self, db: Database, secrets: SecretBox, providers: ProviderFactory, *, owner: str = "local",
        interval: timedelta = timedelta(minutes=5), clock: Clock = utcnow,
        pool: Executor | None = None, lease: leases.LeasePolicy = leases.DEFAULT_POLICY,
        safety_poll: timedelta = DEFAULT_SAFETY_POLL,
    ) -> None:
        """`pool`: worker processes for reading large listings (the composition root owns and closes it).
        `owner` names this process in leases: it must differ between processes sharing a database.
        `safety_poll` replaces `interval` for a calendar with a live push channel (its notifications make it
        due), as notifications may get lost (provider-apis.md G4)."""
        self.db, self.secrets, self.providers = db, secrets, providers
        self.owner, self.interval, self.clock, self.pool, self.lease = owner, interval, clock, pool, lease
        self.safety_poll = max(safety_poll, interval)

    async def run_due(self, *, limit: int = 50) -> list[CalendarReport]:
        """One scheduler tick: claim due calendars, sync each, give them back with their next due time."""
        claimed = await leases.claim_due(self.db, self.owner, self.clock(), limit=limit, lease=self.lease.length)
        return await self.sync_claimed(claimed)

    async def claim_now(self, user_id: str | None = None, *, only: Collection[str] | None = None) -> list[str]:
        """Claim every selected calendar (of one user, or of all) whether due or not, except leased ones."""
        return await leases.claim_due(
            self.db, self.owner, self.clock(), limit=100_000, lease=self.lease.length, user_id=user_id,
            include_not_due=True, only=only,
        )

    async def sync_user(self, user_id: str) -> list[CalendarReport]:
        """`POST /users/{id}/sync`: every selected calendar of the user now.

        A calendar another sync holds is waited for, up to one lease length (a live holder finishes, a dead
        one's lease runs out), then synced; still held after that, it is reported as `sync_in_progress`. What
        is waited for is every selected calendar not synced yet, not only those leased when asked: a holder
        that lets go between the claim and the look at the leases is claimed at the next turn."""
        reports = await self.sync_claimed(await self.claim_now(user_id))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.lease.length + self.lease.poll).total_seconds()
        while True:
            done = {report.calendar_id for report in reports}
            waiting = [c for c in await leases.selected(self.db, user_id) if c not in done]
            if not waiting or loop.time() >= deadline:
                break
            claimed = await self.claim_now(user_id, only=waiting)
            if not claimed:
                await asyncio.sleep(self.lease.poll.total_seconds())
            reports += await self.sync_claimed(claimed)
        return reports + [CalendarReport(calendar_id, error=SYNC_IN_PROGRESS) for calendar_id in waiting]

    async def sync_claimed(
        self, calendar_ids: Sequence[str], *, each: Callable[[CalendarReport], object] | None = None
    ) -> list[CalendarReport]:
        """Sync calendars this engine holds the leases of, one after the other, renewing the leases
        meanwhile; each is released with its next due time as soon as it is done (and handed to `each`)."""
        reports = []
        async with leases.heartbeat(self.db, calendar_ids, self.owner, self.lease, self.clock):
            for calendar_id in calendar_ids:
                report = await self.sync_calendar(calendar_id)
                wait, now = timedelta(seconds=report.retry_after or 0), self.clock()
                await leases.release(self.db, calendar_id, self.owner, next_due=now + max(self.interval, wait),
                                     watched_due=now + max(self.safety_poll, wait))
                reports.append(report)
                if each is not None:
                    each(report)
        return reports

    async def sync_calendar(self, calendar_id: str) -> CalendarReport:
        """One cycle of one calendar; every failure ends up in the report and on the calendar, never raised.

        Each cycle is counted by its outcome and timed (`croco_sync_cycles_total`, `croco_sync_cycle_seconds`)
        and ends in one log line carrying what it fetched and changed, its error, duration and requests."""
        report = CalendarReport(calendar_id)
        context = await self._context(calendar_id)
        if context is None:
            return report
        provider_name = context.connection.provider
        extra = {"user_id": context.user.id, "calendar_id": calendar_id, "provider": provider_name}
        started = time.perf_counter()
        with telemetry.counting_requests() as requests:
            outcome = await self._cycle(context, report)
        seconds = time.perf_counter() - started
        telemetry.TELEMETRY.sync_cycles.labels(provider_name, outcome.result).inc()
        telemetry.TELEMETRY.sync_cycle_seconds.labels(provider_name).observe(seconds)
        log.log(outcome.level, outcome.message, exc_info=outcome.unexpected, extra=extra | report.as_json() | {
            "result": outcome.result, "changed": report.changed, "duration_seconds": round(seconds, 3),
            "requests": requests[0],
        })
        return report

    async def _cycle(self, context: _Context, report: CalendarReport) -> _Outcome:
        """Pull, restore and push. A failure is recorded on the calendar, or breaks the connection."""
        calendar_id = context.calendar.id
        try:
            provider = self._provider(context.connection, context.user)
            restores, relist = await self._pull(context, provider, report)
            if relist:  # once, and now: the user sees the deleted occurrence go in this sync, not the next
                restores, _ = await self._pull(context, provider, report, full=True)
            if context.role.linked:
                restored = await self._restore(context, provider, restores)
                await self._push(context, provider, report)
                if report.tally.pushed or restored:
                    # Move the cursor past our own writes: a server may leave out an item created and
                    # deleted after a token (RFC 6578), so a copy the user deletes later must be newer.
                    # Restores this pull plans (edited again meanwhile) wait for the next cycle, and so does a
                    # full listing it asks for (its cursor dropped): at most one extra listing per sync.
                    await self._pull(context, provider, CalendarReport(calendar_id))
        except InvalidCredentials as exc:
            report.error = str(exc)
            await accounts.break_connection(self.db, context.connection.id, str(exc))
            return _Outcome(AUTH_FAILED, logging.WARNING, "connection broken")
        except ProviderError as exc:  # rate limited, unreachable, calendar gone: this calendar waits
            report.error = str(exc)
            report.retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            await self._record_error(calendar_id, str(exc))
            return _Outcome(FAILED, logging.WARNING, "calendar sync failed")
        except Exception as exc:  # a bug or a reply nobody foresaw: this calendar records it, the others go on
            report.error = unexpected_error(exc)
            await self._record_error(calendar_id, report.error)
            return _Outcome(FAILED, logging.ERROR, "calendar sync failed unexpectedly", exc)
        return _Outcome(SYNCED, logging.INFO, "calendar synced")

    # Pull --------------------------------------------------------------------------------------------

    async def _pull(
        self, context: _Context, provider: CalendarProvider, report: CalendarReport, *, full: bool = False
    ) -> tuple[list[RestorePush], bool]:
        """Plan and apply one listing (`full`: from no cursor); returns the restores to write once its transaction
        has committed, and whether the plan asks for a full listing (R5 `Relist`: its cursor is dropped)."""
        calendar, now = context.calendar, self.clock()
        relist = full or calendar.last_full_sync_at is None or now - calendar.last_full_sync_at > FULL_RESYNC_EVERY
        changes, listing = await pull_listing(provider, calendar.remote_id, None if relist else calendar.sync_cursor,
                                              ReadContext(ZoneInfo(context.user.timezone), context.user.email,
                                                          context.window_start, context.window_end), self.pool)
        report.tally.fetched += len(changes.changed)

        async with self.db.write() as session:
            known = await state.load_known(
                session, calendar, context.user, context.window_start, linked=context.role.linked
            )
            # Pure and thread-safe; a 10,000-item listing plans for a good part of a second, which would hold
            # the event loop (and every Slack ack and API request behind it) that long.
            result = await asyncio.to_thread(plan, context.role, known, listing,
                                             confirmed_removals=calendar.removals_confirmed,
                                             held_basis=calendar.removals_held_of)
            cycle = _Cycle(known, await state.booked_appointments(session, context.user.id, context.window_start),
                           state.SlotWriter(context.user, calendar, now), report.tally, now)
            for index, action in enumerate(result.actions, 1):
                await self._apply(session, context, cycle, action)
                if index % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # most actions never suspend: let other requests run between them
            await cycle.slots.flush(session)
            report.tally.blocked_slots = await state.count_slots(session, calendar.id)
            row = await session.get(RemoteCalendar, calendar.id)
            assert row is not None
            if not result.held:
                row.removals_held_of, row.removals_confirmed = None, False
                if not cycle.restores:
                    row.sync_cursor = None if cycle.relist else changes.cursor
                    if changes.full:
                        row.last_full_sync_at = now
            row.last_synced_at, row.last_error = now, None
            await credentials.keep_rotated(session, self.secrets, context.connection.id, provider)
        # A later pull of this sync (after our writes) lists from here, not again from before this listing.
        calendar.sync_cursor, calendar.last_full_sync_at = row.sync_cursor, row.last_full_sync_at
        report.tally.removed += result.removed
        report.changed += sum(not isinstance(action, _NO_CHANGE) for action in result.actions)
        return cycle.restores, cycle.relist

    async def _apply(self, session: AsyncSession, context: _Context, cycle: _Cycle, action: PlanAction) -> None:
        user, calendar, tally, now, bookings = context.user, context.calendar, cycle.tally, cycle.now, cycle.bookings
        match action:
            case SetSlots(item_id, occurrences):
                await cycle.slots.set(session, item_id, occurrences, replacing=item_id in cycle.known.slots)
                await state.notify_conflicts(session, user, bookings, calendar.id, item_id, occurrences)
            case ImportOccurrence(item_id, occurrence):
                await state.import_occurrence(session, user, calendar, item_id, occurrence, tally, bookings, now)
            case UpdateImport(appointment_id, _, occurrence, _):  # `state.reschedule` sees a move itself
                await state.update_appointment_times(session, user, appointment_id, occurrence, now)
                tally.appointments_updated += 1
            case CancelImport(appointment_id, _):
                tally.appointments_cancelled += await state.cancel_appointment(session, user, appointment_id, now)
            case DropImport(appointment_id):
                await state.drop_import(session, appointment_id)
            case RecordPush(appointment_id, item_id, etag, printed):
                await state.record_push(session, user, calendar, appointment_id, item_id, etag, printed, now)
            case RestorePush(appointment_id, item_id, etag, remote, both_changed):
                cycle.restores.append(action)
                reverted = (BothChanged(appointment_id, calendar.id, Winner.CROCO, Side.of(remote)) if both_changed
                            else RemoteEditReverted(appointment_id, calendar.id, Side.of(remote)))
                await notify(session, user.id, reverted, dedupe_key=f"restore:{appointment_id}:{etag}")
            case ApplyRemoteEdit(appointment_id, item_id, etag, occurrence, printed, both_changed):
                local = await session.get(Appointment, appointment_id)
                lost = Side.of(local) if both_changed else None
                appointment = await state.update_appointment_times(session, user, appointment_id, occurrence, now)
                if appointment is not None:
                    await state.record_push(session, user, calendar, appointment_id, item_id, etag, printed, now)
                    tally.appointments_updated += 1
                    start, end = occurrence.start, occurrence.end
                    applied = (BothChanged(appointment_id, calendar.id, Winner.CALENDAR, lost, start, end)
                               if both_changed else RemoteEditApplied(appointment_id, calendar.id, start, end))
                    await notify(session, user.id, applied, dedupe_key=f"applied:{appointment_id}:{etag}")
            case PushedDeletedRemotely(appointment_id, item_id, cancel):
                await state.forget_push(session, user.id, calendar.id, appointment_id)
                if cancel:
                    tally.appointments_cancelled += await state.cancel_appointment(session, user, appointment_id, now)
                else:
                    await state.suppress_push(session, user.id, appointment_id)
                await notify(session, user.id, PushedEventDeleted(appointment_id, calendar.id, cancel),
                             dedupe_key=f"deleted:{appointment_id}:{calendar.id}")
            case ForgetPush(appointment_id, _):
                await state.forget_push(session, user.id, calendar.id, appointment_id)
            case SkipItem(item_id, reason):
                tally.skipped.append((item_id, reason))
                await notify(session, user.id, ItemSkipped(calendar.id, item_id, reason),
                             dedupe_key=f"skipped:{calendar.id}:{item_id}:{reason}")
            case Relist(item_ids):
                cycle.relist = True
                log.info("removals name no stored item, listing in full", extra={
                    "user_id": user.id, "calendar_id": calendar.id, "provider": context.connection.provider,
                    "removed": len(item_ids)})
            case HoldRemovals(removing, known_count):
                row = await session.get(RemoteCalendar, calendar.id)
                assert row is not None
                row.removals_held_of = known_count
                await notify(session, user.id, MassDeletionHeld(calendar.id, calendar.name, removing, known_count),
                             dedupe_key=f"held:{calendar.id}:{calendar.sync_cursor}")

    async def _restore(self, context: _Context, provider: CalendarProvider, restores: list[RestorePush]) -> int:
        """Write appointments back over remote edits (system wins), each write followed by the commit of its
        link; a newer remote etag retries once. Returns how many the pull planned: each one held the cursor,
        so a pull must follow even when an appointment has gone meanwhile."""
        for restore in restores:
            async with self.db.session() as session:
                appointment = await session.get(Appointment, restore.appointment_id)
            if appointment is None:
                continue
            draft = draft_for(appointment)
            try:
                written = await provider.update(context.calendar.remote_id, restore.item_id, draft, restore.etag)
            except PreconditionFailed:
                written = await provider.update(context.calendar.remote_id, restore.item_id, draft, None)
            await self._record_push(context, appointment, written)
        return len(restores)

    # Push --------------------------------------------------------------------------------------------

    async def _push(self, context: _Context, provider: CalendarProvider, report: CalendarReport) -> None:
        async with self.db.session() as session:
            wanted, links, appointments = await state.push_inputs(session, context.user.id, context.window_start)
        actions: Sequence[PushAction] = plan_pushes(context.calendar.id, wanted, links)
        creates = [action for action in actions if isinstance(action, CreateRemote)]
        if len(creates) >= 2 and isinstance(provider, BatchCreator):
            await self._create_many(context, provider, [appointments[c.appointment_id] for c in creates], report)
            actions = [action for action in actions if not isinstance(action, CreateRemote)]
        for action in actions:
            if await self._push_one(context, provider, action, appointments[action.appointment_id]):
                report.tally.pushed += 1

    async def _create_many(
        self, context: _Context, provider: CalendarProvider, appointments: list[Appointment], report: CalendarReport
    ) -> None:
        """P1 for several appointments in as few requests as the provider can, then each link committed as
        `_push_one` does (a crash before a commit is adopted on the next pull: the remote ids are ours). A
        copy that failed alone fails the cycle once the others are recorded."""
        assert isinstance(provider, BatchCreator)
        drafts = [draft_for(appointment) for appointment in appointments]
        results = await provider.create_many(context.calendar.remote_id, drafts)
        failure: ProviderError | None = None
        for appointment, draft, result in zip(appointments, drafts, results, strict=True):
            try:
                if isinstance(result, ProviderError):
                    raise result
                written = await self._shown(context, provider, draft, result)
            except PreconditionFailed:
                continue  # edited remotely meanwhile: the next pull sees it
            except ProviderError as exc:
                failure = failure or exc
                continue
            await self._record_push(context, appointment, written)
            report.tally.pushed += 1
        if failure is not None:
            raise failure

    async def restore_copy(self, user_id: str, appointment_id: str) -> bool:
        """"Restore to calendar" (R7 one-way): write our copy of one appointment to the user's linked calendar
        now, and take it back into the pushes (un-suppressed) with its link, in one transaction.

        No pull first: a pull that still saw the copy the user cancelled would apply R7 again. A crash before
        that transaction leaves it suppressed (the copy, if written, is ours again at the next click: `create`
        is idempotent). False when the user has no linked calendar that syncs."""
        async with self.db.session() as session:
            settings = await session.get(SyncSettings, user_id)
            appointment = await session.get(Appointment, appointment_id)
            links = await state.push_links(session, user_id, appointment_id)
        context = await self._context(settings.linked_calendar_id) if settings and settings.linked_calendar_id else None
        if context is None or appointment is None:
            return False
        provider = self._provider(context.connection, context.user)
        wanted = Wanted(appointment_id, state.appointment_fingerprint(appointment))
        return all([await self._push_one(context, provider, action, appointment, restoring=True)
                    for action in plan_pushes(context.calendar.id, [wanted], links)])

    async def _push_one(
        self, context: _Context, provider: CalendarProvider, action: PushAction, appointment: Appointment, *,
        restoring: bool = False,
    ) -> bool:
        """One write (P1-P4) followed by the commit of its link; False when the copy was edited meanwhile."""
        if isinstance(action, DeleteRemote):
            return await self._delete_copy(context, provider, action)
        draft = draft_for(appointment)
        try:
            if isinstance(action, CreateRemote):
                written = await self._shown(context, provider, draft,
                                            await provider.create(context.calendar.remote_id, draft))
            else:
                written = await provider.update(context.calendar.remote_id, action.item_id, draft, action.etag)
        except PreconditionFailed:
            return False  # edited remotely meanwhile: the next pull sees it and applies R6/R8
        await self._record_push(context, appointment, written, restoring=restoring)
        return True

    async def _shown(
        self, context: _Context, provider: CalendarProvider, draft: EventDraft, written: WriteResult
    ) -> WriteResult:
        """A create that found our copy already there: it may show an older version, or be cancelled, so it
        is made to show this one."""
        if not written.existed:
            return written
        return await provider.update(context.calendar.remote_id, written.remote_id, draft, written.etag)

    async def _record_push(
        self, context: _Context, appointment: Appointment, written: WriteResult, *, restoring: bool = False
    ) -> None:
        async with self.db.write() as session:
            await state.record_push(
                session, context.user, context.calendar, appointment.id, written.remote_id, written.etag,
                state.appointment_fingerprint(appointment), self.clock(),
            )
            if restoring:
                await state.suppress_push(session, context.user.id, appointment.id, suppressed=False)

    async def _delete_copy(self, context: _Context, provider: CalendarProvider, action: DeleteRemote) -> bool:
        """P3 and P4: remove our copy, also from a previous linked calendar that may no longer be synced
        at all (through its own connection). Returns whether the copy is gone."""
        calendar, target = context.calendar, provider
        if action.calendar_id != context.calendar.id:
            async with self.db.session() as session:
                other = await session.get(RemoteCalendar, action.calendar_id)
                connection = await session.get(Connection, other.connection_id) if other else None
            if other is None or connection is None or connection.status != ConnectionStatus.OK:
                return False  # gone with its connection, or unreachable until the user reconnects
            calendar, target = other, self._provider(connection, context.user)
        try:
            await target.delete(calendar.remote_id, action.item_id, action.etag)
        except PreconditionFailed:
            return False  # edited remotely meanwhile: the next pull reads it, the next push retries
        async with self.db.write() as session:
            await state.forget_push(session, context.user.id, calendar.id, action.appointment_id)
        return True

    # Context and failures ----------------------------------------------------------------------------

    async def _context(self, calendar_id: str) -> _Context | None:
        async with self.db.session() as session:
            calendar = await session.get(RemoteCalendar, calendar_id)
            if calendar is None:
                return None
            connection = await session.get(Connection, calendar.connection_id)
            assert connection is not None
            user = await session.get(User, connection.user_id)
            assert user is not None
            settings = await session.get(SyncSettings, user.id) or SyncSettings(user_id=user.id)
            conflict = await session.scalar(
                select(col(ConflictCalendar.calendar_id)).where(
                    col(ConflictCalendar.user_id) == user.id, col(ConflictCalendar.calendar_id) == calendar_id
                )
            )
        linked = settings.linked_calendar_id == calendar_id
        if connection.status != ConnectionStatus.OK or not (linked or conflict):
            return None
        now = self.clock()
        role = CalendarRole(linked=linked, conflict=conflict is not None, mode=SyncMode(settings.mode))
        return _Context(
            calendar, connection, user, settings, role,
            now - timedelta(days=settings.window_days_back), now + timedelta(days=settings.window_days_ahead),
        )

    def _provider(self, connection: Connection, user: User) -> CalendarProvider:
        return self.providers(connection.provider, credentials.unseal(self.secrets, connection.credentials),
                              connection.server_url)

    async def _record_error(self, calendar_id: str, error: str) -> None:
        async with self.db.write() as session:
            row = await session.get(RemoteCalendar, calendar_id)
            if row is not None:
                row.last_error = error


PARALLEL_READ_MINIMUM = 400
"""Below this many changed items, reading inline beats shipping them to worker processes."""
READ_CHUNK = 250


async def pull_listing(
    provider: CalendarProvider, calendar_id: str, cursor: str | None, context: ReadContext,
    pool: Executor | None = None,
) -> tuple[ChangeSet, Listing]:
    """Transfer what changed since `cursor` and read it, each batch read (on the pool) while the next one
    downloads; an unreadable item is skipped with its reason, the rest go on.

    A full listing (no cursor) may be large: workers the pool does not have yet are started first
    (`start_workers`), while the server prepares the listing, not while chunks arrive."""
    reading = ListingReader(provider.reader(), context, pool)
    if cursor is None and pool is not None:
        start_workers(pool)
    try:
        changes = await provider.changes(calendar_id, cursor, context.window, on_items=reading.add)
    except BaseException:
        reading.cancel()
        raise
    return changes, await reading.listing(changes)


async def read_listing(
    reader: Reader, changes: ChangeSet, context: ReadContext, pool: Executor | None = None
) -> Listing:
    """Read every changed item of a transferred change set (`ListingReader` with everything at once)."""
    reading = ListingReader(reader, context, pool)
    reading.add(changes.changed)
    return await reading.listing(changes)


class ListingReader:
    """Reads changed items as they arrive (the provider's `on_items`); `listing()` gives the result.

    Parsing iCalendar costs more than downloading it, so a large listing is read on every core: once at least
    PARALLEL_READ_MINIMUM items have arrived, every full READ_CHUNK goes to a worker process at once, while the
    provider downloads the next batch. A smaller listing is read inline at the end. Results keep item order.
    """

    def __init__(self, reader: Reader, context: ReadContext, pool: Executor | None = None) -> None:
        self._reader, self._context, self._pool = reader, context, pool
        self._waiting: list[RemoteItem] = []  # arrived, not yet shipped to a worker
        self._shipped: list[Future[ReadResults]] = []  # on the pool, in item order
        self._received = 0

    def add(self, items: tuple[RemoteItem, ...]) -> None:
        self._waiting += items
        self._received += len(items)
        if self._pool is not None and (self._shipped or self._received >= PARALLEL_READ_MINIMUM):
            while len(self._waiting) >= READ_CHUNK:
                self._ship(READ_CHUNK)

    async def listing(self, changes: ChangeSet) -> Listing:
        """Everything `add` was given, read; it must be exactly `changes.changed` (the provider's promise)."""
        if self._received != len(changes.changed):
            self.cancel()
            raise RuntimeError(f"the provider handed over {self._received} of {len(changes.changed)} changed items")
        try:
            if self._shipped:
                if self._waiting:
                    self._ship(len(self._waiting))
                parts = await asyncio.gather(*map(asyncio.wrap_future, self._shipped))
                results = [result for part in parts for result in part]
            else:
                results = read_items(self._reader, tuple(self._waiting), self._context)
        finally:
            self.cancel()
        objects = tuple(r for r in results if isinstance(r, RemoteObject))
        skipped = tuple(r for r in results if isinstance(r, tuple))
        return Listing(objects, changes.removed, skipped, changes.full, changes.removals_name_occurrences)

    def cancel(self) -> None:
        """Drop the reads not started yet (the transfer failed); one already running is left to finish."""
        for shipped in self._shipped:
            shipped.cancel()
        self._shipped, self._waiting = [], []

    def _ship(self, count: int) -> None:
        assert self._pool is not None
        chunk, self._waiting = tuple(self._waiting[:count]), self._waiting[count:]
        self._shipped.append(self._pool.submit(read_items, self._reader, chunk, self._context))


def start_workers(pool: Executor) -> list[Future[int]]:
    """One trivial task per core: a process pool starts a worker for each task it has no idle worker for.

    A spawned worker imports the main module again, about half a second of CPU that slows the server's
    answer on a small machine (measured on a 10,000-event import, bench/caldav_sync.py): `croco serve` starts
    them once at start-up, and a full listing starts any that are missing."""
    return [pool.submit(os.getpid) for _ in range(os.cpu_count() or 1)]


def unexpected_error(exc: Exception) -> str:
    """What the calendar and the API show for an error nobody foresaw: its class only, as its text may
    carry server content (the log has the traceback)."""
    return f"internal error ({type(exc).__name__})"


def draft_for(appointment: Appointment) -> EventDraft:
    return EventDraft(appointment.id, appointment.start, appointment.end, appointment.title, appointment.version)


