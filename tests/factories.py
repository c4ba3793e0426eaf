"""Rows for tests, written straight to the database (the API has its own tests)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect
from sqlmodel import SQLModel

from storage.db import Database
from storage.enums import Access, ConnectionStatus, SyncMode
from storage.models import ConflictCalendar, Connection, RemoteCalendar, SyncSettings, User, Workspace
from storage.secrets import SecretBox
from sync import credentials
from sync.providers.base import AppPassword, Credentials, TimeWindow

ANY_TIME = TimeWindow(datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
"""A window every test event falls in: for provider calls that are not about the window."""


async def add_user(db: Database, *, name: str = "John", email: str = "john@example.com", tz: str = "Europe/Paris") -> User:
    async with db.write() as session:
        workspace = Workspace(name="Acme")
        session.add(workspace)
        await session.flush()
        user = User(workspace_id=workspace.id, email=email, name=name, timezone=tz)
        session.add(user)
    return user


async def add_connection(
    db: Database, user: User, box: SecretBox, *, calendars: int = 1, provider: str = "caldav",
    status: ConnectionStatus = ConnectionStatus.OK, server_url: str | None = None,
    login: Credentials | None = None,
) -> tuple[Connection, list[RemoteCalendar]]:
    async with db.write() as session:
        connection = Connection(
            user_id=user.id, provider=provider, account=user.email, server_url=server_url, status=status,
            credentials=credentials.seal(box, login or AppPassword(user.email, "pw")),
        )
        session.add(connection)
        await session.flush()
        rows = [
            RemoteCalendar(connection_id=connection.id, remote_id=f"/cal{i}/", name=f"Calendar {i}", access=Access.FULL)
            for i in range(calendars)
        ]
        session.add_all(rows)
    return connection, rows


async def tables_holding(db: Database, *secrets: str) -> list[str]:
    """The tables in which any column of any row contains one of `secrets` in clear (the sealed one included)."""
    found = []
    async with db.session() as session:
        for table in SQLModel.metadata.sorted_tables:
            for row in (await session.execute(table.select())).all():
                cells = [value if isinstance(value, bytes) else str(value).encode() for value in row]
                if any(secret.encode() in cell for secret in secrets for cell in cells):
                    found.append(table.name)
    return found


async def select_calendars(
    db: Database, user: User, *, linked: RemoteCalendar | None, conflicts: list[RemoteCalendar],
    mode: SyncMode = SyncMode.ONE_WAY,
) -> None:
    async with db.write() as session:
        session.add(SyncSettings(user_id=user.id, linked_calendar_id=linked.id if linked else None, mode=mode))
        session.add_all(ConflictCalendar(user_id=user.id, calendar_id=c.id) for c in conflicts)


async def insert_as_of(db: Database, *rows: SQLModel) -> None:
    """Rows written into an older schema, as a migration's test needs: only the columns its tables have, so
    fields the models gained since are left out."""
    async with db.engine.begin() as conn:
        for row in rows:
            table = SQLModel.metadata.tables[type(row).__tablename__]  # type: ignore[index]
            name = table.name
            present = {c["name"] for c in await conn.run_sync(lambda sync, name=name: inspect(sync).get_columns(name))}
            await conn.execute(table.insert().values({c.name: getattr(row, c.name) for c in table.columns
                                                      if c.name in present}))
