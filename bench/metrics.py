"""Benchmark: what a `/metrics` scrape costs with 10,000 calendars and 100,000 notices in the database.

The real app (`web.app.create_app`) on a loopback port, scraped by a client; its four database gauges
(`sync.gauges.read_gauges`: calendars due and sync lag, outbox backlog and its age) are read on every scrape.
Seeded as a team's database looks after a month: 2,000 users with a connection of 5 calendars each, most users
syncing 3 of them (some connections broken, some calendars overdue or leased, the calendars nobody selected
still due since they were listed); notices over 30 days, nearly all delivered, a few failed, 3,000 waiting.

The reference is the same scrape with the gauges handed in rather than read (the values the database gave),
scraped alternately with ours on the same connection: same app, route, middlewares and exposition bytes, so
the difference is what reading the gauges costs. (`/healthz` would not isolate it: it runs another query and
no exposition.) The gauges read alone, without HTTP, and their query plans are printed too. Not a test.

    .venv/bin/python -m bench.metrics [--scrapes 200] [--database-url postgresql+asyncpg://...]

PostgreSQL: the run gets a schema of its own in that database (dropped afterwards), as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from croco.embedded_caldav import free_port
from croco.serve import settle_startup_objects
from storage import migrate
from storage.db import Database
from storage.enums import ConnectionStatus, Provider
from storage.models import ConflictCalendar, Connection, Notice, RemoteCalendar, SyncSettings, User
from storage.secrets import SecretBox, generate_key
from storage.types import new_id
from sync import accounts, gauges
from sync.notices import NoticeKind
from tests.conftest import pg_url_with_schema
from web.app import create_app
from web.context import WebContext

USERS = 2_000
CALENDARS_EACH = 5  # 10,000 calendars
SELECTED_EACH = 3  # the linked calendar and two more checked for conflicts
NOTICES = 100_000
FAILED = 500
UNDELIVERED = 3_000
INTERVAL = timedelta(minutes=5)  # the default sync interval
NOW = datetime.now(UTC).replace(microsecond=0)
CHUNK = 5_000
TARGET_P95_MS = 50.0


@dataclass(frozen=True)
class Seeded:
    db: Database
    expected: gauges.Gauges
    """What the gauges must read, counted while seeding."""


def _rows(model: Any, rows: list[dict[str, Any]]) -> Iterator[Any]:
    for start in range(0, len(rows), CHUNK):
        yield insert(model), rows[start:start + CHUNK]


async def seed(db: Database) -> Seeded:
    """Users, connections, calendars, sync settings and notices, written in bulk; returns the gauges' due values."""
    await migrate.upgrade(db.engine)
    rng = random.Random(18)
    workspace = await accounts.default_workspace(db)
    credentials = SecretBox(generate_key()).seal({"username": "x", "password": "y"})
    providers = [Provider.GOOGLE, Provider.MICROSOFT, Provider.CALDAV, Provider.ICLOUD]
    users, connections, calendars, settings, conflicts = [], [], [], [], []
    due_lags: list[float] = []
    for u in range(USERS):
        user_id, connection_id = new_id(), new_id()
        joined = NOW - timedelta(days=rng.uniform(1, 60))
        broken = rng.random() < 0.03
        selects = rng.random() < 0.9  # the others have not opened their settings yet
        users.append({"id": user_id, "workspace_id": workspace, "email": f"u{u}@bench.example", "name": f"User {u}",
                      "timezone": "Europe/Paris", "slack_user_id": f"U{u:08d}", "created_at": joined})
        connections.append({"id": connection_id, "user_id": user_id, "provider": providers[u % len(providers)],
                            "account": f"u{u}@bench.example", "credentials": credentials,
                            "status": ConnectionStatus.BROKEN if broken else ConnectionStatus.OK, "created_at": joined})
        ids = [new_id() for _ in range(CALENDARS_EACH)]
        for n, calendar_id in enumerate(ids):
            row = {"id": calendar_id, "connection_id": connection_id, "remote_id": f"/cal{n}/", "name": f"Cal {n}",
                   "access": "full", "removals_confirmed": False, "due_at": joined}
            if selects and n < SELECTED_EACH:
                draw = rng.random()
                if draw < 0.02:  # a process is syncing it: claimed, so no due time
                    row.update(due_at=None, lease_owner="other", lease_expires_at=NOW + timedelta(seconds=20))
                elif draw < 0.12:  # overdue: the scheduler is behind
                    row["due_at"] = NOW - timedelta(seconds=rng.uniform(1, 2 * INTERVAL.total_seconds()))
                else:
                    row["due_at"] = NOW + timedelta(seconds=rng.uniform(1, INTERVAL.total_seconds()))
                row["last_synced_at"] = NOW - timedelta(seconds=rng.uniform(1, INTERVAL.total_seconds()))
            calendars.append(row)
            if selects and n < SELECTED_EACH and not broken and row["due_at"] is not None and row["due_at"] <= NOW:
                due_lags.append((NOW - row["due_at"]).total_seconds())
        if selects:
            settings.append({"user_id": user_id, "linked_calendar_id": ids[0], "mode": "one_way",
                             "window_days_back": 1, "window_days_ahead": 180, "daily_agenda": False})
            conflicts += [{"user_id": user_id, "calendar_id": c} for c in ids[:SELECTED_EACH]]
    kinds = list(NoticeKind)
    notices, waiting_ages = [], []
    for n in range(NOTICES):
        user = users[rng.randrange(USERS)]
        row = {"id": new_id(), "user_id": user["id"], "kind": kinds[n % len(kinds)], "payload": {"n": n},
               "dedupe_key": None, "attempts": 1, "next_attempt_at": None, "last_error": None, "failed_at": None,
               "lease_owner": None, "lease_expires_at": None, "delivered_at": None}
        if n < UNDELIVERED:  # waiting: recent, some after a failed attempt
            age = rng.uniform(1, 900)  # seconds
            row.update(created_at=NOW - timedelta(seconds=age), attempts=rng.choice((0, 0, 1, 2)))
            if row["attempts"]:
                row.update(next_attempt_at=NOW + timedelta(seconds=30), last_error="slack answered 503")
            waiting_ages.append((NOW - row["created_at"]).total_seconds())
        else:
            created = NOW - timedelta(seconds=rng.uniform(900, 30 * 86_400))
            row["created_at"] = created
            if n < UNDELIVERED + FAILED:
                row.update(failed_at=created + timedelta(seconds=5), last_error="user has no Slack id")
            else:
                row["delivered_at"] = created + timedelta(seconds=rng.uniform(0.2, 5))
        notices.append(row)
    rng.shuffle(notices)  # insertion order is not the order of states
    async with db.write() as session:
        for model, rows in ((User, users), (Connection, connections), (RemoteCalendar, calendars),
                            (SyncSettings, settings), (ConflictCalendar, conflicts), (Notice, notices)):
            for statement, chunk in _rows(model, rows):
                await session.execute(statement, chunk)
    # Statistics, and on PostgreSQL the visibility map (index-only scans): what autovacuum keeps on a live database.
    async with db.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE" if db.is_postgresql else "ANALYZE"))
    expected = gauges.Gauges(len(due_lags), max(due_lags, default=0.0), UNDELIVERED, max(waiting_ages))
    return Seeded(db, expected)


class SwitchableGauges:
    """Stands in for `gauges.read_gauges` during the run: reads the database, or hands `fixed` back."""

    def __init__(self, read: Callable[[Database, datetime], Awaitable[gauges.Gauges]]) -> None:
        self.read = read
        self.fixed: gauges.Gauges | None = None

    async def __call__(self, db: Database, now: datetime) -> gauges.Gauges:
        return self.fixed if self.fixed is not None else await self.read(db, now)


def no_provider(*args: Any, **kwargs: Any) -> Any:
    """The provider factory the app gets: a scrape must never open one."""
    raise AssertionError("a provider was opened during a scrape")


@asynccontextmanager
async def served(db: Database) -> AsyncIterator[tuple[str, SwitchableGauges]]:
    """The app on a loopback port, its clock at NOW (so the gauges are exact), and the gauges' switch."""
    switch = SwitchableGauges(gauges.read_gauges)
    context = WebContext(db=db, secrets=SecretBox(generate_key()), api_token="bench-token", webhook_secret="x",
                         providers=no_provider, clock=lambda: NOW)
    runner = web.AppRunner(create_app(context), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settle_startup_objects()  # as `croco serve` does once it listens
    gauges.read_gauges = switch  # type: ignore[assignment]  # web.app looks it up on every scrape
    try:
        yield f"http://127.0.0.1:{port}/metrics", switch
    finally:
        gauges.read_gauges = switch.read
        await runner.cleanup()


def scraped_gauges(body: str) -> gauges.Gauges:
    values = {family.name: family.samples[0].value for family in text_string_to_metric_families(body)
              if family.type == "gauge" and family.samples}
    return gauges.Gauges(int(values["croco_calendars_due"]), values["croco_sync_lag_seconds"],
                            int(values["croco_outbox_undelivered"]), values["croco_outbox_oldest_undelivered_seconds"])


@dataclass(frozen=True)
class Scrapes:
    ours: list[float]
    reference: list[float]
    alone: list[float]
    gauges: gauges.Gauges
    size: int


async def scrape(seeded: Seeded, count: int) -> Scrapes:
    """Ours and the reference alternately, on one keep-alive connection; milliseconds seen by the client."""
    ours, reference, sizes = [], [], set()
    async with served(seeded.db) as (url, switch), aiohttp.ClientSession() as client:
        async def once() -> tuple[float, str]:
            began = time.perf_counter()
            async with client.get(url) as response:
                assert response.status == 200, await response.text()
                body = await response.text()
            return (time.perf_counter() - began) * 1000, body

        _, body = await once()  # warms the connection, the pool and the caches
        first = scraped_gauges(body)
        switch.fixed = first
        for _ in range(count):
            for fixed, timings in ((None, ours), (first, reference)):
                switch.fixed = fixed
                took, body = await once()
                timings.append(took)
                sizes.add(len(body.splitlines()))
                assert scraped_gauges(body) == first
    alone = []
    for _ in range(count):
        began = time.perf_counter()
        await gauges.read_gauges(seeded.db, NOW)
        alone.append((time.perf_counter() - began) * 1000)
    return Scrapes(ours, reference, alone, first, max(sizes))


@contextmanager
def statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """The SQL the engine sends inside the block, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def plans(db: Database) -> list[str]:
    """The plan of each gauge query as the database runs it (PostgreSQL: with actual times)."""
    with statements(db) as sent:
        await gauges.read_gauges(db, NOW)
    explain = "EXPLAIN (ANALYZE, COSTS OFF) " if db.is_postgresql else "EXPLAIN QUERY PLAN "
    shown = []
    async with db.engine.connect() as conn:
        for statement, parameters in (s for s in sent if s[0].lstrip().upper().startswith("SELECT")):
            rows = (await conn.exec_driver_sql(explain + statement, parameters)).all()
            lines = [row[0] for row in rows] if db.is_postgresql else [f"{row[1]:>3} {row[3]}" for row in rows]
            shown.append("\n".join([" ".join(statement.split()), *lines]))
    return shown


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100)[int(share * 100) - 1]


@asynccontextmanager
async def database(base_url: str | None) -> AsyncIterator[Database]:
    """A new SQLite file, or a schema of our own in the PostgreSQL database given (dropped afterwards)."""
    if base_url is None:
        db = Database(f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp(prefix='croco-bench-metrics-')) / 'croco.db'}")
        try:
            yield db
        finally:
            await db.dispose()
        return
    schema = f"bench_metrics_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(base_url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(pg_url_with_schema(base_url, schema))
    try:
        yield db
    finally:
        await db.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def main(count: int, base_url: str | None) -> None:
    console = Console(width=140)
    async with database(base_url) as db:
        began = time.perf_counter()
        seeded = await seed(db)
        seeding = time.perf_counter() - began
        result = await scrape(seeded, count)
        shown = await plans(db)
    backend = "PostgreSQL" if db.is_postgresql else "SQLite"
    assert result.gauges == seeded.expected, (result.gauges, seeded.expected)

    def ms(values: list[float]) -> str:
        return f"p50 {statistics.median(values):.2f} ms, p95 {percentile(values, 0.95):.2f} ms"

    load = os.getloadavg()[0]
    table = Table(title=f"/metrics over HTTP ({backend}; {USERS * CALENDARS_EACH:,} calendars, {NOTICES:,} notices, "
                        f"seeded in {seeding:.1f} s; {count} scrapes each, alternating; load average {load:.1f} "
                        f"on {os.cpu_count()} CPUs)", title_justify="left")
    for column in ("measure", "ours", "reference", "ratio", "target"):
        table.add_column(column, justify="right")
    ours_p95, reference_p95 = percentile(result.ours, 0.95), percentile(result.reference, 0.95)
    table.add_row("scrape, gauges read from the database", ms(result.ours),
                  f"same scrape, gauges handed in: {ms(result.reference)}",
                  f"{statistics.median(result.ours) / statistics.median(result.reference):.2f} (p50), "
                  f"{ours_p95 / reference_p95:.2f} (p95)", f"p95 < {TARGET_P95_MS:.0f} ms")
    table.add_row("what the gauges add (ours - reference)",
                  f"p50 {statistics.median(result.ours) - statistics.median(result.reference):.2f} ms", "", "", "")
    table.add_row("read_gauges alone (2 queries, no HTTP)", ms(result.alone), "", "", "")
    for label, shown_by in (("calendars due / sync lag", lambda g: f"{g.calendars_due:,} / {g.sync_lag_seconds:.0f} s"),
                            ("outbox undelivered / oldest",
                             lambda g: f"{g.outbox_undelivered:,} / {g.outbox_oldest_undelivered_seconds:.0f} s")):
        table.add_row(label, shown_by(result.gauges), f"seeded {shown_by(seeded.expected)}", "", "equal")
    table.add_row("exposition", f"{result.size} lines", "", "", "")
    console.print(table)
    console.print(f"p95 {ours_p95:.2f} ms: {'under' if ours_p95 < TARGET_P95_MS else 'OVER'} "
                  f"the {TARGET_P95_MS:.0f} ms target")
    console.print("query plans of read_gauges:", style="bold")
    for plan in shown:
        console.print(plan, markup=False, highlight=False)
        console.print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.scrapes, arguments.database_url))
