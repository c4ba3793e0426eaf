"""Keeping each connection's list of calendars current (API.md: "calendar lists are refreshed at most hourly and
when the user opens the settings").

A calendar shared with the user after they connected appears here within the hour, or as soon as they open
the settings; a renamed one gets its new name and a changed access level its new level. Neither Google (G4:
"gaining access to a new calendar triggers no notice") nor CalDAV tells us, so we ask.

A calendar the account no longer lists is dropped with what it brought in (its blocked slots and imported
mirrors, as a disconnect does) unless it is the user's linked or a conflict calendar: those stay, so the
user sees their sync fail (`CalendarGone`) in the status instead of a choice silently vanishing.

Refreshing claims the connection first (a conditional update of `calendars_listed_at`), so several processes
never list one connection at once, and holds no transaction across the provider call. A provider failure
leaves the list as it was; a refused login breaks the connection, with one notice (`accounts.break_connection`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.enums import ConnectionStatus
from storage.models import ConflictCalendar, Connection, RemoteCalendar, SyncSettings
from storage.secrets import SecretBox
from sync import accounts, credentials, state
from sync.providers.base import InvalidCredentials, ProviderError, ProviderFactory, RemoteCalendarInfo

log = logging.getLogger(__name__)

REFRESH_EVERY = timedelta(hours=1)
ON_OPEN_AFTER = timedelta(minutes=1)
"""Opening the settings twice within a minute lists the calendars once."""
ON_OPEN_BUDGET_SECONDS = 5.0
"""How long opening the settings waits for the provider before it shows the calendars already known."""


@dataclass(frozen=True)
class ListChanges:
    added: int = 0
    updated: int = 0
    removed: int = 0

    def __add__(self, other: ListChanges) -> ListChanges:
        return ListChanges(self.added + other.added, self.updated + other.updated, self.removed + other.removed)


class CalendarLists:
    def __init__(self, db: Database, secrets: SecretBox, providers: ProviderFactory) -> None:
        self.db, self.secrets, self.providers = db, secrets, providers

    async def refresh_due(self, now: datetime, *, limit: int = 50) -> ListChanges:
        """The scheduler's job: every working connection not listed within the hour."""
        cutoff = now - REFRESH_EVERY
        async with self.db.session() as session:
            due = list(await session.scalars(
                select(col(Connection.id)).where(col(Connection.status) == ConnectionStatus.OK, _listed_before(cutoff))
                .order_by(col(Connection.calendars_listed_at)).limit(limit)))
        total = ListChanges()
        for connection_id in due:
            total += await self.refresh(connection_id, now, listed_before=cutoff)
        return total

    async def refresh_user(self, user_id: str, now: datetime) -> ListChanges:
        """The user opens the settings: their connections, unless listed a minute ago, within a time budget
        (past it the settings show the calendars known, and the listing finishes in the background)."""
        async with self.db.session() as session:
            connections = list(await session.scalars(select(col(Connection.id)).where(
                col(Connection.user_id) == user_id, col(Connection.status) == ConnectionStatus.OK)))
        refreshing = asyncio.gather(*(self.refresh(c, now, listed_before=now - ON_OPEN_AFTER) for c in connections))
        try:
            results = await asyncio.wait_for(asyncio.shield(refreshing), ON_OPEN_BUDGET_SECONDS)
        except TimeoutError:
            log.info("calendar lists still refreshing", extra={"user_id": user_id})
            return ListChanges()
        return sum(results, ListChanges())

    async def refresh(self, connection_id: str, now: datetime, *, listed_before: datetime) -> ListChanges:
        """List one connection's calendars if nobody listed them since `listed_before`, and apply what changed."""
        async with self.db.write() as session:
            claimed = await session.execute(
                update(Connection).where(col(Connection.id) == connection_id, _listed_before(listed_before))
                .values(calendars_listed_at=now))
            mine = claimed.rowcount == 1  # type: ignore[attr-defined]
            connection = await session.get(Connection, connection_id) if mine else None
        if connection is None:
            return ListChanges()
        extra = {"user_id": connection.user_id, "connection_id": connection.id, "provider": connection.provider}
        try:
            provider = self.providers(connection.provider, credentials.unseal(self.secrets, connection.credentials),
                                      connection.server_url)
            listed = await provider.list_calendars()
        except ProviderError as exc:
            log.info("calendar list not refreshed", extra=extra | {"error": str(exc)})
            if isinstance(exc, InvalidCredentials):  # a revoked grant found here is told now, as a sync would
                await accounts.break_connection(self.db, connection.id, str(exc))
            return ListChanges()
        changes = await self._apply(connection, listed, now)
        rotated = provider.rotated_credentials()
        if rotated is not None:
            async with self.db.write() as session:
                row = await session.get(Connection, connection.id)
                if row is not None:
                    row.credentials = credentials.seal(self.secrets, rotated)
        if changes != ListChanges():
            log.info("calendar list refreshed", extra=extra | {"added": changes.added, "updated": changes.updated,
                                                             "removed": changes.removed})
        return changes

    async def _apply(self, connection: Connection, listed: list[RemoteCalendarInfo], now: datetime) -> ListChanges:
        async with self.db.write() as session:
            known = {c.remote_id: c for c in await session.scalars(
                select(RemoteCalendar).where(col(RemoteCalendar.connection_id) == connection.id))}
            selected = await _selected(session, connection.user_id)
            added = [RemoteCalendar(connection_id=connection.id, remote_id=c.remote_id, name=c.name, access=c.access,
                                    due_at=now) for c in listed if c.remote_id not in known]
            session.add_all(added)
            updated = 0
            for info in listed:
                row = known.get(info.remote_id)
                if row is not None and (row.name, row.access) != (info.name, info.access):
                    row.name, row.access = info.name, info.access
                    updated += 1
            listed_ids = {c.remote_id for c in listed}
            gone = [c.id for remote_id, c in known.items() if remote_id not in listed_ids and c.id not in selected]
            if gone:
                await state.remove_connection_mirrors(session, gone)
                await session.execute(delete(RemoteCalendar).where(col(RemoteCalendar.id).in_(gone)))
        return ListChanges(len(added), updated, len(gone))


def _listed_before(cutoff: datetime) -> ColumnElement[bool]:
    return or_(col(Connection.calendars_listed_at).is_(None), col(Connection.calendars_listed_at) <= cutoff)


async def _selected(session: AsyncSession, user_id: str) -> set[str]:
    """The user's linked and conflict calendars."""
    linked = await session.scalar(select(col(SyncSettings.linked_calendar_id))
                                  .where(col(SyncSettings.user_id) == user_id))
    conflicts = await session.scalars(select(col(ConflictCalendar.calendar_id)).where(
        col(ConflictCalendar.user_id) == user_id))
    return set(conflicts) | ({linked} if linked else set())
