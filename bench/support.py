"""What the provider benches (bench/google.py, bench/microsoft.py) share: the calendar they import, the sync
engine as `croco serve` runs it on SQLite with a clock we move, the idle hours they measure, the table they
print (the figures; they are not tests) and their command line.

Each bench brings its emulator, its provider factory, its bare transfer (the reference for the import) and
its provider's quota; the figures and their layout are the same for every provider.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from croco.settings import Settings
from storage import migrate
from storage.db import Database
from storage.enums import Provider, SyncMode
from storage.secrets import SecretBox, generate_key
from sync import accounts
from sync.channels import PushChannels
from sync.engine import SyncEngine
from sync.providers.base import ExchangedAccount, ProviderFactory
from tests.clocks import ManualClock
from tests.providers.fixtures import SeedEvent, Weekly

ACCOUNT = "bench@example.com"
DEFAULTS = Settings()
HOUR = timedelta(hours=1)
TICK = timedelta(seconds=DEFAULTS.scheduler_tick_seconds)
HOURLY_LISTS = 1
"""Requests an hour for the calendar list, refreshed hourly (sync/calendar_lists.py)."""

T = TypeVar("T")


def bench_clock() -> ManualClock:
    """Now, to the hour: the emulators' tokens and channels run on the wall clock, the engine on this one."""
    return ManualClock(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))


def calendar_events(count: int, start: datetime) -> list[SeedEvent]:
    """`count` one-hour events over the 180 days from `start`, every tenth a weekly series of 10."""
    events = []
    for n in range(count):
        begins = start.astimezone(ZoneInfo("UTC")) + timedelta(days=(n * 7) % 180, hours=8 + n % 9)
        events.append(SeedEvent(f"ev{n:06d}", begins, begins + HOUR, f"Event {n}",
                                weekly=Weekly(10) if n % 10 == 0 else None))
    return events


async def sqlite_database(prefix: str) -> Database:
    """A migrated SQLite database in a new temporary directory, as `croco serve` uses by default."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    db = Database(f"sqlite+aiosqlite:///{workdir / 'croco.db'}")
    await migrate.upgrade(db.engine)
    return db


@dataclass(frozen=True)
class Transfer:
    seconds: float
    requests: int


async def timed(count: Callable[[], int], work: Awaitable[T]) -> tuple[T, Transfer]:
    """`work`'s result, with the seconds it took and the requests (`count`, an emulator's) it made."""
    before = count()
    started = time.perf_counter()
    result = await work
    return result, Transfer(time.perf_counter() - started, count() - before)


@dataclass(frozen=True)
class Imported(Transfer):
    fetched: int
    """Items the engine was handed (a series' occurrences are one)."""


@dataclass(frozen=True)
class Idle:
    """An hour polling, then a live channel per calendar: its first (safety) poll and the idle ticks after it."""

    polled: int
    polled_cycles: int
    safety_poll: int
    pushed: int
    pushed_cycles: int
    between: timedelta


@dataclass(frozen=True)
class Quota:
    """A provider's published request limit: `allowed` requests per `window` per `per` (a user, a mailbox)."""

    per: str
    allowed: int
    window: timedelta
    source: str  # the provider-apis.md section

    def scaled(self, hourly: float) -> float:
        return hourly * (self.window / HOUR)


class EngineBench:
    """The engine with the defaults of `croco serve` (sync interval, safety poll) on `clock`; `count` is the
    emulator's count of requests so far."""

    def __init__(self, db: Database, clock: ManualClock, providers: ProviderFactory, count: Callable[[], int]) -> None:
        self.db, self.clock, self.providers, self.count = db, clock, providers, count
        self.box = SecretBox(generate_key())
        self.engine = SyncEngine(db, self.box, providers, clock=clock,
                                 interval=timedelta(seconds=DEFAULTS.sync_interval_seconds),
                                 safety_poll=timedelta(seconds=DEFAULTS.push_safety_poll_seconds))

    async def connect(self, provider: Provider, exchanged: ExchangedAccount, primary: str) -> str:
        """A user with the account connected: `primary` (a remote id) linked, every calendar checked for conflicts."""
        workspace = await accounts.default_workspace(self.db)
        user = await accounts.create_user(self.db, workspace, "Bench", ACCOUNT, "Europe/Paris", None)
        _, calendars = await accounts.connect(self.db, self.box, self.providers, user.id, provider, exchanged,
                                              None, now=self.clock())
        (linked,) = [c for c in calendars if c.remote_id == primary]
        await accounts.put_settings(self.db, user.id, linked.id, [c.id for c in calendars], SyncMode.ONE_WAY,
                                    None, None, now=self.clock())
        return user.id

    async def timed_import(self, user_id: str) -> Imported:
        reports, transfer = await timed(self.count, self.engine.sync_user(user_id))
        assert all(r.error is None for r in reports), [r.error for r in reports]
        return Imported(transfer.seconds, transfer.requests, sum(r.tally.fetched for r in reports))

    async def ticks(self, channels: PushChannels | None, span: timedelta) -> tuple[int, int]:
        """The scheduler's ticks over `span` of our clock: (requests, calendars synced)."""
        before, synced = self.count(), 0
        end = self.clock() + span
        while self.clock() < end:
            if channels is not None:
                await channels.renew(self.clock())
            synced += len(await self.engine.run_due())
            self.clock.later(TICK)
        return self.count() - before, synced

    async def idle(self, channels: PushChannels) -> Idle:
        """After the import: an hour of polling, then channels made, their first poll, and the idle ticks up
        to the next safety poll."""
        interval = timedelta(seconds=DEFAULTS.sync_interval_seconds)
        self.clock.later(interval)
        polled, polled_cycles = await self.ticks(None, HOUR)
        upkeep = await channels.renew(self.clock())
        assert upkeep.created and not upkeep.failed, upkeep
        self.clock.later(interval)
        safety_poll, _ = await self.ticks(channels, TICK)
        between = timedelta(seconds=DEFAULTS.push_safety_poll_seconds) - 2 * TICK
        pushed, pushed_cycles = await self.ticks(channels, between)
        return Idle(polled, polled_cycles, safety_poll, pushed, pushed_cycles, between)


Row = tuple[str, str, str, str, str]
"""measure, ours, reference, ratio, target"""


def report(title: str, events: int, calendars: int, imported: Imported, transfer: Transfer, idle: Idle,
           quota: Quota, extra: Sequence[Row] = ()) -> None:
    """The figures, each against its reference from the same run; `extra` are a provider's own, after the idle ones."""
    table = Table(title=f"{title} (SQLite, {calendars} calendars)", title_justify="left")
    for column in ("measure", "ours", "reference", "ratio", "target"):
        table.add_column(column, justify="right")
    table.add_row(f"first import, {imported.fetched} items ({events} events)",
                  f"{imported.seconds:.2f} s, {imported.requests} req",
                  f"bare transfer {transfer.seconds:.2f} s, {transfer.requests} req",
                  f"{imported.seconds / transfer.seconds:.2f}", "")
    table.add_row("idle cycle without push",
                  f"{idle.polled / max(idle.polled_cycles, 1):.2f} req/calendar ({idle.polled_cycles} cycles in 1 h)",
                  "", "", "1")
    table.add_row("idle cycles with a live channel, between safety polls",
                  f"{idle.pushed} req ({idle.pushed_cycles} cycles in {idle.between.total_seconds() / 60:.0f} min)",
                  f"{idle.polled} req polling for 1 h", f"{idle.pushed / max(idle.polled, 1):.2f}", "0")
    table.add_row("a safety poll with a live channel", f"{idle.safety_poll / calendars:.2f} req/calendar",
                  f"every {DEFAULTS.push_safety_poll_seconds} s", "", "1")
    for row in extra:
        table.add_row(*row)
    polling = quota.scaled(idle.polled + HOURLY_LISTS)
    pushing = quota.scaled((idle.safety_poll + idle.pushed) * HOUR.total_seconds() / DEFAULTS.push_safety_poll_seconds
                           + HOURLY_LISTS)
    allowed = f"{quota.allowed} allowed ({quota.source})"
    minutes = quota.window.total_seconds() / 60
    span = "hour" if minutes == 60 else f"{minutes:.0f} min"
    for case, requests in (("polling", polling), ("push", pushing),
                           ("push, with the daily full listing", pushing + imported.requests)):
        table.add_row(f"quota per {quota.per} per {span}, {case}", f"{requests:.0f} req", allowed,
                      f"{requests / quota.allowed:.4f}", "well under 1")
    Console(width=120).print(table)


def run(main: Callable[[int, int], Coroutine[Any, Any, None]], doc: str) -> None:
    """A bench's command line: `--events` in the imported calendar, `--calendars` of the account."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--calendars", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.calendars))
