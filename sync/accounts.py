"""Users, their connections, their calendars and their sync settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.models import (
    Access,
    ConflictCalendar,
    Connection,
    ConnectionStatus,
    Provider,
    RemoteCalendar,
    SyncMode,
    SyncSettings,
    User,
    Workspace,
)
from storage.secrets import SecretBox
from storage.types import utcnow
from sync import state
from sync.errors import Conflict, Invalid, NotFound
from sync.providers.base import InvalidCredentials, ProviderError, ProviderFactory, Unreachable

DEFAULT_WORKSPACE = "Default workspace"


async def default_workspace(db: Database) -> str:
    """The workspace API-created objects belong to; created once, safely from several processes."""
    async with db.write() as session:
        found = await session.scalar(select(col(Workspace.id)).where(col(Workspace.slack_team_id).is_(None))
                                     .order_by(col(Workspace.created_at)).limit(1))
        if found is not None:
            return str(found)
        workspace = Workspace(name=DEFAULT_WORKSPACE)
        session.add(workspace)
        return workspace.id


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


async def create_user(db: Database, workspace_id: str, name: str, email: str, timezone: str,
                      slack_user_id: str | None) -> User:
    async with db.write() as session:
        taken = await session.scalar(select(col(User.id)).where(
            col(User.workspace_id) == workspace_id, col(User.email) == email.lower()))
        if taken is not None:
            raise Conflict(f"a user with email {email} already exists", code="email_taken")
        user = User(workspace_id=workspace_id, name=name, email=email.lower(), timezone=timezone,
                    slack_user_id=slack_user_id)
        session.add(user)
    return user


# Connections ---------------------------------------------------------------------------------------


async def connect(
    db: Database, secrets: SecretBox, providers: ProviderFactory, user_id: str, provider: Provider,
    username: str, password: str, url: str | None,
) -> tuple[Connection, list[RemoteCalendar]]:
    """Check the credentials against the server, then save them encrypted with the calendars found."""
    async with db.session() as session:
        await get_user(session, user_id)
    credentials = {"username": username, "password": password}
    try:
        calendars = await providers(provider, credentials, url).list_calendars()
    except InvalidCredentials as exc:
        raise Invalid("the server refused this username and password", code="invalid_credentials") from exc
    except (Unreachable, ProviderError, ValueError) as exc:
        raise Invalid(f"the calendar server cannot be reached: {exc}", code="unreachable") from exc
    async with db.write() as session:
        connection = Connection(user_id=user_id, provider=provider, account=username, server_url=url,
                                credentials=secrets.seal(credentials), status=ConnectionStatus.OK)
        session.add(connection)
        await session.flush()
        rows = [RemoteCalendar(connection_id=connection.id, remote_id=c.remote_id, name=c.name, access=c.access,
                               due_at=utcnow()) for c in calendars]
        session.add_all(rows)
    return connection, rows


async def list_connections(db: Database, user_id: str) -> list[Connection]:
    async with db.session() as session:
        await get_user(session, user_id)
        return list(await session.scalars(select(Connection).where(col(Connection.user_id) == user_id)
                                          .order_by(col(Connection.created_at))))


async def disconnect(db: Database, connection_id: str) -> None:
    """Blocked slots and imported mirrors go, pushing stops; copies in the remote calendar stay."""
    async with db.write() as session:
        connection = await session.get(Connection, connection_id)
        if connection is None:
            raise NotFound(f"no connection {connection_id}")
        calendar_ids = list(await session.scalars(
            select(col(RemoteCalendar.id)).where(col(RemoteCalendar.connection_id) == connection_id)))
        await state.remove_connection_mirrors(session, calendar_ids)
        await session.execute(update(SyncSettings).where(col(SyncSettings.linked_calendar_id).in_(calendar_ids))
                              .values(linked_calendar_id=None))
        await session.execute(delete(ConflictCalendar).where(col(ConflictCalendar.calendar_id).in_(calendar_ids)))
        await session.execute(delete(RemoteCalendar).where(col(RemoteCalendar.connection_id) == connection_id))
        await session.delete(connection)


# Calendars and settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UserCalendar:
    calendar: RemoteCalendar
    is_linked: bool
    is_conflict: bool


async def user_calendars(db: Database, user_id: str) -> list[UserCalendar]:
    async with db.session() as session:
        await get_user(session, user_id)
        settings = await session.get(SyncSettings, user_id)
        conflicts = set(await session.scalars(select(col(ConflictCalendar.calendar_id))
                                              .where(col(ConflictCalendar.user_id) == user_id)))
        calendars = await session.scalars(
            select(RemoteCalendar).join(Connection, col(Connection.id) == col(RemoteCalendar.connection_id))
            .where(col(Connection.user_id) == user_id).order_by(col(RemoteCalendar.name)))
        linked = settings.linked_calendar_id if settings else None
        return [UserCalendar(c, c.id == linked, c.id in conflicts) for c in calendars]


@dataclass(frozen=True)
class Settings:
    linked_calendar_id: str | None
    conflict_calendar_ids: list[str]
    mode: SyncMode
    window_days_back: int
    window_days_ahead: int

    def as_json(self) -> dict[str, Any]:
        return {"linked_calendar_id": self.linked_calendar_id, "conflict_calendar_ids": self.conflict_calendar_ids,
                "mode": self.mode, "window_days_back": self.window_days_back,
                "window_days_ahead": self.window_days_ahead}


async def get_settings(db: Database, user_id: str) -> Settings:
    async with db.session() as session:
        await get_user(session, user_id)
        return await _settings(session, user_id)


async def _settings(session: AsyncSession, user_id: str) -> Settings:
    row = await session.get(SyncSettings, user_id) or SyncSettings(user_id=user_id)
    conflicts = sorted(await session.scalars(select(col(ConflictCalendar.calendar_id))
                                             .where(col(ConflictCalendar.user_id) == user_id)))
    return Settings(row.linked_calendar_id, conflicts, SyncMode(row.mode), row.window_days_back,
                    row.window_days_ahead)


async def put_settings(
    db: Database, user_id: str, linked_calendar_id: str | None, conflict_calendar_ids: list[str] | None,
    mode: SyncMode, window_days_back: int | None, window_days_ahead: int | None,
) -> Settings:
    """The linked calendar needs full access and is a conflict calendar unless a list says otherwise.

    A change of linked calendar or mode makes the affected calendars relist everything at their next
    cycle, so existing events are re-read under the new rules (P4, one-way <-> two-way).
    """
    async with db.write() as session:
        await get_user(session, user_id)
        owned = {c.id: c for c in await session.scalars(
            select(RemoteCalendar).join(Connection, col(Connection.id) == col(RemoteCalendar.connection_id))
            .where(col(Connection.user_id) == user_id))}
        if linked_calendar_id is not None:
            linked = owned.get(linked_calendar_id)
            if linked is None:
                raise Invalid(f"linked_calendar_id: no calendar {linked_calendar_id} of this user")
            if linked.access != Access.FULL:
                raise Invalid("the linked calendar must grant full access (read and write)",
                              code="linked_calendar_needs_full_access")
        if conflict_calendar_ids is None:
            conflict_calendar_ids = [linked_calendar_id] if linked_calendar_id else []
        unknown = [c for c in conflict_calendar_ids if c not in owned]
        if unknown:
            raise Invalid(f"conflict_calendar_ids: no calendar {unknown[0]} of this user")

        row = await session.get(SyncSettings, user_id)
        before = await _settings(session, user_id)
        if row is None:
            row = SyncSettings(user_id=user_id)
            session.add(row)
        row.linked_calendar_id, row.mode = linked_calendar_id, mode
        if window_days_back is not None:
            row.window_days_back = window_days_back
        if window_days_ahead is not None:
            row.window_days_ahead = window_days_ahead
        await session.execute(delete(ConflictCalendar).where(col(ConflictCalendar.user_id) == user_id))
        session.add_all(ConflictCalendar(user_id=user_id, calendar_id=c) for c in dict.fromkeys(conflict_calendar_ids))
        await session.flush()
        after = await _settings(session, user_id)
        if before != after:
            await session.execute(update(RemoteCalendar).where(col(RemoteCalendar.id).in_(list(owned)))
                                  .values(last_full_sync_at=None, due_at=utcnow()))
    return after


async def confirm_removals(db: Database, calendar_id: str) -> None:
    """The user confirmed a held mass deletion: the next cycle applies it (the Slack button calls this)."""
    async with db.write() as session:
        calendar = await session.get(RemoteCalendar, calendar_id)
        if calendar is None:
            raise NotFound(f"no calendar {calendar_id}")
        calendar.removals_confirmed, calendar.due_at = True, utcnow()
