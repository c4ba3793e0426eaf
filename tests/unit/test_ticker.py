"""The scheduler's ticks end before `croco serve` closes the database under them.

A tick still running when the database was disposed could wait forever on a connection that no longer
answers (aiosqlite >= 0.22 under SQLAlchemy): `croco serve` then ignored SIGTERM.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from croco.scheduler import Ticker
from storage.db import Database


async def test_stop_ends_a_running_tick_and_gives_back_its_connection(db: Database) -> None:
    started, ended = asyncio.Event(), asyncio.Event()

    async def sync_that_never_finishes() -> None:
        try:
            async with db.session() as session:
                await session.execute(text("SELECT 1"))
                started.set()
                await asyncio.Event().wait()
        finally:
            ended.set()

    ticker = Ticker({"sync": sync_that_never_finishes}, every_seconds=60)
    ticker.start()
    await asyncio.wait_for(started.wait(), timeout=10)
    await asyncio.wait_for(ticker.stop(), timeout=10)
    assert ended.is_set()
    pool = db.engine.pool
    assert isinstance(pool, QueuePool) and pool.checkedout() == 0  # disposing now closes every connection
