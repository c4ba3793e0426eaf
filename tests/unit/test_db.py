"""Write transactions serialise check-then-write on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage import migrate
from storage.db import Database
from storage.models import Workspace


async def test_times_come_back_aware_utc(db: Database) -> None:
    written = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    async with db.write() as session:
        session.add(Workspace(id="w1", name="Acme", created_at=written))
    async with db.session() as session:
        stored = await session.get(Workspace, "w1")
    assert stored is not None and stored.created_at == written and stored.created_at.tzinfo is not None


async def test_naive_times_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with db.write() as session:
            session.add(Workspace(id="w2", name="Acme", created_at=datetime(2026, 1, 1)))


async def test_sqlite_write_transactions_wait_for_each_other(tmp_path: Path) -> None:
    """A second writer cannot even read until the first commits, so check-then-write never races."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    await migrate.upgrade(db.engine)
    count = select(func.count()).select_from(Workspace)
    order: list[str] = []
    first_checked, release_first = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with db.write() as session:
            order.append(f"first saw {await session.scalar(count)}")
            first_checked.set()
            await release_first.wait()
            session.add(Workspace(name="Only"))
        order.append("first committed")

    async def second() -> None:
        await first_checked.wait()
        async with db.write() as session:
            order.append(f"second saw {await session.scalar(count)}")

    first_task, second_task = asyncio.create_task(first()), asyncio.create_task(second())
    # Proving a negative needs a bound: the second writer must still be waiting for the lock.
    done, _ = await asyncio.wait({second_task}, timeout=0.5)
    assert not done, order
    release_first.set()
    await asyncio.gather(first_task, second_task)
    assert order == ["first saw 0", "first committed", "second saw 1"]
    await db.dispose()
