"""The background loop: an APScheduler 3 tick that syncs due calendars and delivers pending webhooks.

Each tick claims its calendars through leases (`sync.leases`), so any number of `croco serve` processes
can share one PostgreSQL database. A failing tick is logged and the next one runs as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

Tick = Callable[[], Awaitable[object]]


def start(ticks: dict[str, Tick], every_seconds: float) -> AsyncIOScheduler:
    """Run each named tick every `every_seconds`, first right away; one instance of a tick at a time."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    for name, tick in ticks.items():
        scheduler.add_job(
            _guarded(name, tick), "interval", seconds=every_seconds, id=name, max_instances=1, coalesce=True,
            next_run_time=datetime.now(UTC),
        )
    scheduler.start()
    return scheduler


def _guarded(name: str, tick: Tick) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            await tick()
        except Exception:
            log.exception("scheduler tick failed", extra={"tick": name})

    return run
