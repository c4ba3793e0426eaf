"""Engine and session factory for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Select, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

_IMMEDIATE = "croco_immediate"
S = TypeVar("S", bound=Select[Any])


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers run while one writer works.
    # isolation_level=None hands BEGIN to us (`_sqlite_begin`), so a write transaction can take the
    # write lock up front with BEGIN IMMEDIATE instead of failing later on lock upgrade.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")


class Database:
    """Owns the engine; hands out sessions. One instance per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "postgresql":
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
            # `?search_path=croco` runs Croco inside its own schema (tests use one schema per test).
            search_path = parsed.query.get("search_path")
            if isinstance(search_path, str):
                parsed = parsed.difference_update_query(["search_path"])
                kwargs["connect_args"] = {"server_settings": {"search_path": search_path}}
        self.engine: AsyncEngine = create_async_engine(parsed, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = asyncio.Lock() if self.dialect == "sqlite" else None  # one writer at a time (`write`)

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def skip_locked(self, query: S, of: Any) -> S:
        """A claim's query: on PostgreSQL it locks the rows of `of` it takes, skipping rows another claimer
        holds, so concurrent claimers take disjoint sets without waiting. SQLite needs nothing: `write`
        serialises claimers."""
        return query.with_for_update(of=of, skip_locked=True) if self.is_postgresql else query

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that checks then writes (claims, bookings) without a race.

        SQLite: BEGIN IMMEDIATE takes the database write lock first, so a second writer waits. Writers of this
        process queue on an asyncio lock before that, holding no pooled connection: only another process's
        writer is ever waited for inside SQLite's busy timeout, and reads always find a free connection.
        PostgreSQL: an ordinary transaction; callers lock the rows they check (FOR UPDATE).
        Commits on success, rolls back on error.
        """
        async with self._writer or contextlib.nullcontext(), self.engine.connect() as conn:
            conn = await conn.execution_options(**{_IMMEDIATE: True})
            async with AsyncSession(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
