"""The background loop: APScheduler 3 ticks that sync due calendars and deliver pending webhooks and notices.

Each tick claims its calendars through leases (`sync.leases`), so any number of `croco serve` processes
can share one PostgreSQL database. A failing tick is logged and the next one runs as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

Tick = Callable[[], Awaitable[object]]


class Ticker:
    """APScheduler plus the ticks it is running: `stop` ends them before the database they use closes.

    APScheduler's shutdown cancels a running coroutine job but cannot wait for it. Left to unwind after the
    database was disposed, its session's close could wait forever on an aiosqlite connection whose thread
    had stopped (seen: `croco serve` ignoring SIGTERM now and then). A sync cut short is safe: a cycle is
    crash-safe and the calendar stays due."""

    def __init__(
        self, ticks: dict[str, Tick], every_seconds: float, *, intervals: Mapping[str, float] | None = None
    ) -> None:
        """`intervals` gives some ticks their own period in seconds (notice delivery runs every second)."""
        self.every_seconds = every_seconds
        self.last_tick: datetime | None = None  # when a tick last started: the scheduler is alive
        self._running: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()  # ticks running now
        self._again: set[str] = set()  # ticks asked to run again as soon as they end
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        for name, tick in ticks.items():
            seconds = (intervals or {}).get(name, every_seconds)
            self._scheduler.add_job(
                self._guarded(name, tick), "interval", seconds=seconds, id=name, max_instances=1,
                coalesce=True, next_run_time=datetime.now(UTC),
            )

    def start(self) -> None:
        """Run each tick every `every_seconds`, first right away; one instance of a tick at a time."""
        self.last_tick = datetime.now(UTC)  # alive from now: the first tick is on its way
        self._scheduler.start()

    def run_soon(self, name: str) -> None:
        """Run tick `name` now rather than at its next period (a push notification made a calendar due). One
        running now runs again as soon as it ends: it may have claimed its work before the change."""
        if name in self._busy:
            self._again.add(name)
        elif self._scheduler.running:
            self._scheduler.modify_job(name, next_run_time=datetime.now(UTC))

    def ticked_within(self, intervals: float) -> bool:
        """`/healthz`: a tick started less than `intervals` periods ago (a first one starts at once), on the
        scheduler's own clock (APScheduler's: the wall clock)."""
        last = self.last_tick
        return last is not None and (datetime.now(UTC) - last).total_seconds() < intervals * self.every_seconds

    async def stop(self) -> None:
        """Idempotent: a scheduler never started, or stopped already, has nothing to stop."""
        running = set(self._running)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)  # cancels them
        await asyncio.gather(*running, return_exceptions=True)

    def _guarded(self, name: str, tick: Tick) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            self._busy.add(name)
            self.last_tick = datetime.now(UTC)
            try:
                while True:
                    self._again.discard(name)
                    await tick()
                    if name not in self._again:
                        break
            except asyncio.CancelledError:  # `stop` cut it short: a shutdown, not a failure to log as an error
                log.info("scheduler tick stopped by shutdown", extra={"tick": name})
            except Exception:
                log.exception("scheduler tick failed", extra={"tick": name})
            finally:
                self._running.discard(task)
                self._busy.discard(name)
                self._again.discard(name)

        return run
