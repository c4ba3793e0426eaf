"""The Alembic migration builds every table and removes it again, on every backend."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlmodel import SQLModel

from storage import migrate
from storage.db import Database


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
