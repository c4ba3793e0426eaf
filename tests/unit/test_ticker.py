"""The scheduler's ticks end before `croco serve` closes the database under them, and deliver notices.

A tick still running when the database was disposed could wait forever on a connection that no longer
answers (aiosqlite >= 0.22 under SQLAlchemy): `croco serve` then ignored SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from croco.runtime import Runtime
from croco.scheduler import Ticker
from croco.serve import _ticker
from croco.settings import Settings
from storage.db import Database
from storage.secrets import SecretBox
from sync.notices import ItemSkipped, notify
from tests.factories import add_user
from tests.sinks import RecordingSink


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


async def test_stopping_a_running_tick_is_a_shutdown_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM while a tick runs (every deploy, with ticks every second) logs no error: an error line would page
    whoever watches the logs for nothing."""
    started = asyncio.Event()

    async def tick() -> None:
        started.set()
        await asyncio.Event().wait()

    ticker = Ticker({"notices": tick}, every_seconds=60)
    ticker.start()
    await asyncio.wait_for(started.wait(), timeout=10)
    with caplog.at_level(logging.INFO):
        await asyncio.wait_for(ticker.stop(), timeout=10)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_with_a_sink_configured_a_new_notice_reaches_it_within_five_seconds(
    db: Database, secret_box: SecretBox
) -> None:
    """API.md: a notice reaches its user within 5 s of the change, whatever the sync tick's period."""
    sink = RecordingSink()
    runtime = Runtime(Settings(scheduler_tick_seconds=600), db, secret_box, notice_sink=sink)
    user = await add_user(db)
    async with aiohttp.ClientSession() as http:
        ticker = _ticker(runtime, runtime.engine(), http)
        ticker.start()
        try:
            for reason in ("DTEND is before DTSTART", "no DTSTART"):  # the second comes after a tick ran
                async with db.write() as session:
                    await notify(session, user.id, ItemSkipped("cal1", "bad.ics", reason))
                async with asyncio.timeout(5):
                    while not any(n.payload["reason"] == reason for n in sink.accepted):
                        await asyncio.sleep(0.05)  # polling, bounded by the timeout
        finally:
            await ticker.stop()
    assert [n.payload["reason"] for n in sink.calls] == ["DTEND is before DTSTART", "no DTSTART"]


async def test_run_soon_runs_a_tick_now_and_once_more_after_a_running_one() -> None:
    """A push notification runs the sync tick at once (API.md: synced within 5 s), whatever its period; one
    arriving while the tick runs gets a run after it, as that tick may have claimed its calendars before."""
    runs: list[int] = []
    ran, go = asyncio.Event(), asyncio.Event()

    async def sync() -> None:
        runs.append(len(runs))
        ran.set()
        if len(runs) == 2:
            await go.wait()  # the second run is still going when the next notification comes

    ticker = Ticker({"sync": sync}, every_seconds=600)
    ticker.start()
    try:
        async with asyncio.timeout(5):
            await ran.wait()  # the first run, at start
            ran.clear()
            ticker.run_soon("sync")
            await ran.wait()
            ran.clear()
            ticker.run_soon("sync")  # while the second run waits
            go.set()
            await ran.wait()
    finally:
        await ticker.stop()
    assert runs == [0, 1, 2]
