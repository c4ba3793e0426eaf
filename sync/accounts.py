"""Users, their connections, their calendars and their sync settings."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage import repositories
from storage.db import Database
from storage.enums import Access, ConnectionStatus, Provider, SyncMode
from storage.models import (
    Appointment,
    BlockedSlot,
    ConflictCalendar,
    Connection,
    RemoteCalendar,
    SyncSettings,
    User,
    Workspace,
)
from storage.secrets import SecretBox
from sync import credentials, state
from sync.errors import Conflict, Invalid, NotFound
from sync.notices import ConnectionBroken, notify
from sync.payloads import appointment_payload
from sync.providers.base import (
    AppPassword,
    Credentials,
    ExchangedAccount,
    InvalidCredentials,
    OAuthGrant,
    ProviderError,
    ProviderFactory,
    RemoteCalendarInfo,
)

DEFAULT_WORKSPACE = "Default workspace"


async def default_workspace(db: Database) -> str:
    """The workspace API-created objects belong to; created once, safely from several processes."""
    async with db.write() as session:
        await repositories.serialize(session, "default-workspace")
        found = await repositories.default_workspace(session)
        if found is not None:
            return found.id
        workspace = Workspace(name=DEFAULT_WORKSPACE, is_default=True)
        session.add(workspace)
        return workspace.id


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


async def load_user(db: Database, user_id: str) -> User:
    async with db.session() as session:
        return await get_user(session, user_id)


async def create_user(db: Database, workspace_id: str, name: str, email: str, timezone: str,
                      slack_user_id: str | None) -> User:
    """Emails are unique per workspace; the table's constraint decides, so two racing requests get one 409."""
    user = User(workspace_id=workspace_id, name=name, email=email.lower(), timezone=timezone,
                slack_user_id=slack_user_id)
    try:
        async with db.write() as session:
            session.add(user)
    except IntegrityError as exc:
        raise Conflict(f"a user with email {email} already exists", code="email_taken") from exc
    return user


# Connections ---------------------------------------------------------------------------------------


Login = AppPassword | ExchangedAccount
"""What connecting takes: an app password (CalDAV, iCloud) or the result of an OAuth code exchange."""


async def connect(
    db: Database, secrets: SecretBox, providers: ProviderFactory, user_id: str, provider: Provider,
    login: Login, url: str | None, *, now: datetime,
) -> tuple[Connection, list[RemoteCalendar]]:
    """Check the credentials against the server, then save them encrypted with the calendars found, due `now`.

    `url` None lets the provider pick its own server (iCloud: `ProviderConfig.icloud_url`), so a changed
    setting applies to existing connections too.
    """
    async with db.session() as session:
        await get_user(session, user_id)
    calendars = await check_login(providers, provider, login, url)
    async with db.write() as session:
        return await save_connection(session, secrets, user_id, provider, login, url, calendars, now)


async def check_login(
    providers: ProviderFactory, provider: Provider, login: Login | OAuthGrant, url: str | None
) -> list[RemoteCalendarInfo]:
    """The account's calendars, which proves the credentials work; no transaction may be open meanwhile.
    OAuth tokens alone will do: the account's address may only be known from its calendars (Google)."""
    try:
        return await providers(provider, _credentials_of(login), url).list_calendars()
    except InvalidCredentials as exc:
        raise Invalid("the server refused these credentials", code="invalid_credentials") from exc
    except (ProviderError, ValueError) as exc:  # provider messages never carry credentials (base.py)
        raise Invalid(f"the calendar server cannot be reached: {exc}", code="unreachable") from exc


async def save_connection(
    session: AsyncSession, secrets: SecretBox, user_id: str, provider: Provider, login: Login, url: str | None,
    calendars: list[RemoteCalendarInfo], now: datetime,
) -> tuple[Connection, list[RemoteCalendar]]:
    """A new connection with the calendars `check_login` found, all due at once."""
    connection = Connection(user_id=user_id, provider=provider, account=account_of(login), server_url=url,
                            credentials=credentials.seal(secrets, _credentials_of(login)),
                            status=ConnectionStatus.OK, calendars_listed_at=now)
    session.add(connection)
    await session.flush()
    rows = [RemoteCalendar(connection_id=connection.id, remote_id=c.remote_id, name=c.name, access=c.access,
                           due_at=now) for c in calendars]
    session.add_all(rows)
    return connection, rows


async def renew_connection(
    session: AsyncSession, secrets: SecretBox, connection: Connection, login: Login, url: str | None,
    calendars: list[RemoteCalendarInfo], now: datetime,
) -> tuple[Connection, list[RemoteCalendar]]:
    """Reconnect: new credentials for the same connection, which works again with its calendars, blocked
    slots and settings kept; calendars the account gained are added, and all are due at once."""
    connection.account, connection.server_url = account_of(login), url
    connection.credentials = credentials.seal(secrets, _credentials_of(login))
    connection.status, connection.last_error = ConnectionStatus.OK, None
    connection.calendars_listed_at = now
    known = {c.remote_id: c for c in await session.scalars(
        select(RemoteCalendar).where(col(RemoteCalendar.connection_id) == connection.id))}
    session.add_all(RemoteCalendar(connection_id=connection.id, remote_id=c.remote_id, name=c.name, access=c.access)
                    for c in calendars if c.remote_id not in known)
    await session.flush()
    await session.execute(update(RemoteCalendar).where(col(RemoteCalendar.connection_id) == connection.id)
                          .values(due_at=now))
    rows = await session.scalars(select(RemoteCalendar).where(col(RemoteCalendar.connection_id) == connection.id))
    return connection, list(rows)


def account_of(login: Login) -> str:
    return login.username if isinstance(login, AppPassword) else login.account


def _credentials_of(login: Login | OAuthGrant) -> Credentials:
    return login.tokens if isinstance(login, ExchangedAccount) else login


async def break_connection(db: Database, connection_id: str, reason: str) -> None:
    """The provider refused the connection's credentials (a revoked grant, a changed password), whichever job
    found out: a sync, a channel renewal, a calendar list. Status `broken` and one notice per set of
    credentials that stopped working: the calendars of one connection failing together tell once, and a
    connection renewed with new credentials that break later tells again."""
    async with db.write() as session:
        connection = await session.get(Connection, connection_id)
        if connection is None:  # disconnected meanwhile
            return
        connection.status, connection.last_error = ConnectionStatus.BROKEN, reason
        these_credentials = hashlib.sha256(connection.credentials).hexdigest()[:16]
        broken = ConnectionBroken(connection.id, connection.provider, connection.account, reason)
        await notify(session, connection.user_id, broken, dedupe_key=f"broken:{connection.id}:{these_credentials}")


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
        calendar_ids = await repositories.connection_calendar_ids(session, connection_id)
        await state.remove_connection_mirrors(session, calendar_ids)
        await session.execute(update(SyncSettings).where(col(SyncSettings.linked_calendar_id).in_(calendar_ids))
                              .values(linked_calendar_id=None))
        await session.execute(delete(ConflictCalendar).where(col(ConflictCalendar.calendar_id).in_(calendar_ids)))
        await session.execute(delete(RemoteCalendar).where(col(RemoteCalendar.connection_id) == connection_id))
        await session.delete(connection)


# What the user's calendars brought in ------------------------------------------------------------------


async def blocked_slots(db: Database, user_id: str, start: datetime, end: datetime) -> list[BlockedSlot]:
    async with db.session() as session:
        await get_user(session, user_id)
        return await repositories.blocked_slots_between(session, user_id, start, end)


async def appointments(db: Database, user_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The user's appointments, system and imported, as the API and webhooks show them."""
    async with db.session() as session:
        await get_user(session, user_id)
        return [await appointment_payload(session, a)
                for a in await repositories.appointments_between(session, user_id, start, end)]


async def appointment_json(db: Database, appointment_id: str) -> dict[str, Any]:
    async with db.session() as session:
        appointment = await session.get(Appointment, appointment_id)
        if appointment is None:
            raise NotFound(f"no appointment {appointment_id}")
        return await appointment_payload(session, appointment)


# Calendars and settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UserCalendar:
    calendar: RemoteCalendar
    is_linked: bool
    is_conflict: bool


async def user_calendars(db: Database, user_id: str) -> list[UserCalendar]:
    async with db.session() as session:
        await get_user(session, user_id)
        settings = await _settings(session, user_id)
        conflicts = set(settings.conflict_calendar_ids)
        return [UserCalendar(c, c.id == settings.linked_calendar_id, c.id in conflicts)
                for c in await repositories.user_calendars(session, user_id)]


@dataclass(frozen=True)
class Settings:
    linked_calendar_id: str | None
    conflict_calendar_ids: list[str]
    mode: SyncMode
    window_days_back: int
    window_days_ahead: int
    daily_agenda: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"linked_calendar_id": self.linked_calendar_id, "conflict_calendar_ids": self.conflict_calendar_ids,
                "mode": self.mode, "window_days_back": self.window_days_back,
                "window_days_ahead": self.window_days_ahead, "daily_agenda": self.daily_agenda}


async def get_settings(db: Database, user_id: str) -> Settings:
    async with db.session() as session:
        await get_user(session, user_id)
        return await _settings(session, user_id)


async def _settings(session: AsyncSession, user_id: str) -> Settings:
    """The stored settings, or the defaults when the user never saved any."""
    row = await session.get(SyncSettings, user_id) or SyncSettings(user_id=user_id)
    conflicts = await repositories.conflict_calendar_ids(session, user_id)
    return Settings(row.linked_calendar_id, conflicts, SyncMode(row.mode), row.window_days_back,
                    row.window_days_ahead, row.daily_agenda)


async def put_settings(
    db: Database, user_id: str, linked_calendar_id: str | None, conflict_calendar_ids: list[str] | None,
    mode: SyncMode | None, window_days_back: int | None, window_days_ahead: int | None, *, now: datetime,
    daily_agenda: bool | None = None,
) -> Settings:
    """The linked calendar needs full access and is a conflict calendar unless a list says otherwise.

    `mode`, the window fields and `daily_agenda` left out (None) keep their stored values (or the defaults).

    A change of linked calendar or mode makes the affected calendars relist everything at their next
    cycle (due `now`), so existing events are re-read under the new rules (P4, one-way <-> two-way).
    """
    async with db.write() as session:
        await get_user(session, user_id)
        await repositories.serialize(session, f"sync-settings:{user_id}")  # two PUTs at once: one after the other
        owned = {c.id: c for c in await repositories.user_calendars(session, user_id)}
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
        row.linked_calendar_id = linked_calendar_id
        if mode is not None:
            row.mode = mode
        if window_days_back is not None:
            row.window_days_back = window_days_back
        if window_days_ahead is not None:
            row.window_days_ahead = window_days_ahead
        if daily_agenda is not None:
            row.daily_agenda = daily_agenda
        await session.execute(delete(ConflictCalendar).where(col(ConflictCalendar.user_id) == user_id))
        session.add_all(ConflictCalendar(user_id=user_id, calendar_id=c) for c in dict.fromkeys(conflict_calendar_ids))
        await session.flush()
        after = await _settings(session, user_id)
        if before != after:
            await session.execute(update(RemoteCalendar).where(col(RemoteCalendar.id).in_(list(owned)))
                                  .values(last_full_sync_at=None, due_at=now))
    return after

