"""The Alembic migration builds every table and removes it again, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import column, insert, inspect, select, table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel, col

from storage import migrate
from storage.db import Database
from storage.models import Appointment, BlockedSlot


async def _tables(database: Database) -> set[str]:
    async with database.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_creates_every_model_table_and_downgrade_removes_them(database_url: str) -> None:
    database = Database(database_url)
    try:
        await migrate.upgrade(database.engine)
        assert await migrate.current_revision(database.engine) == migrate.head_revision()
        assert set(SQLModel.metadata.tables) <= await _tables(database)

        await migrate.downgrade(database.engine)
        assert await migrate.current_revision(database.engine) is None
        assert not (set(SQLModel.metadata.tables) & await _tables(database))

        await migrate.upgrade(database.engine)
        assert set(SQLModel.metadata.tables) <= await _tables(database)
    finally:
        await database.dispose()


async def test_models_and_migration_agree(db: Database) -> None:
    """A model change without a migration shows up here as a non-empty autogenerate diff."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    def diff(conn: object) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, SQLModel.metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_upgrade_to_0005_flags_the_long_rows_already_stored(db_at_0004: Database) -> None:
    """Rows written before the `long` column existed get it from the database, so availability still finds
    a holiday stored then that began days before the range it is asked about."""
    database = db_at_0004
    moment = datetime(2027, 3, 22, 8, tzinfo=UTC)
    spans = {"holiday": (moment - timedelta(days=10), moment + timedelta(days=1)),
             "meeting": (moment - timedelta(hours=1), moment + timedelta(hours=1))}
    async with database.engine.begin() as conn:  # the 0004 columns only
        user, remote = await _owner_at_0004(conn, moment)
        await conn.execute(insert(BlockedSlot.__table__), [  # type: ignore[arg-type]
            {"id": name, "user_id": user, "remote_calendar_id": remote, "remote_id": name, "start": start,
             "end": end, "busy": True, "all_day": False, "fetched_at": moment} for name, (start, end) in spans.items()])
        await conn.execute(insert(Appointment.__table__), [  # type: ignore[arg-type]
            {"id": name, "start": start, "end": end, "title": "", "status": "booked", "origin": "imported",
             "busy": True, "version": 1, "created_at": moment, "updated_at": moment}
            for name, (start, end) in spans.items()])

    await migrate.upgrade(database.engine)
    async with database.session() as session:
        for model in (BlockedSlot, Appointment):
            flags = dict((await session.execute(select(col(model.id), col(model.long)))).tuples().all())
            assert flags == {"holiday": True, "meeting": False}
    async with database.engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: {i["name"] for t in ("blockedslot", "appointment")
                                                 for i in inspect(c).get_indexes(t)})
    assert {"ix_blockedslot_user_long_end", "ix_appointment_long_end"} <= indexes


async def _owner_at_0004(conn: AsyncConnection, moment: datetime) -> tuple[str, str]:
    """A user with one calendar, written with the columns revision 0004 has (the models have more now)."""
    rows = {
        "workspace": {"id": "w", "name": "Acme", "created_at": moment},
        "user": {"id": "u", "workspace_id": "w", "email": "john@example.com", "name": "John",
                 "timezone": "Europe/Paris", "created_at": moment},
        "connection": {"id": "c", "user_id": "u", "provider": "caldav", "account": "john", "credentials": b"sealed",
                       "status": "ok", "created_at": moment},
        "remotecalendar": {"id": "r", "connection_id": "c", "remote_id": "/cal/", "name": "Calendar", "access": "full",
                           "removals_confirmed": False},
    }
    for name, values in rows.items():
        model = SQLModel.metadata.tables[name]  # its types, but only the columns named (no newer defaults)
        await conn.execute(insert(table(name, *(column(key, model.c[key].type) for key in values))).values(values))
    return "u", "r"


@pytest.fixture
async def db_at_0004(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await migrate.upgrade(database.engine, "0004")
    yield database
    await database.dispose()
