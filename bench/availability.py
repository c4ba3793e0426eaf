"""Benchmark: `GET /calendars/{id}/free-slots` for a round robin team, through the HTTP API.

A round robin calendar (09:00-17:00 every day, 30-minute slots) whose members have blocked slots and
appointments over 30 days. Measures p50/p95 of a 7-day free-slots request served by the real app on a
loopback port, counts provider calls while browsing (must be 0), and compares with a reference run in the
same process on the same database: the straightforward way, one SQL overlap query per candidate slot.
Then prints how the time grows with members, with blocked slots (200,000) and with past appointments (20,000
per member: a busy member over five years). Not a test.

    .venv/bin/python bench/availability.py [--requests 60] [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.table import Table
from sqlalchemy import and_, exists, insert, select, text
from sqlmodel import col

from croco.embedded_caldav import free_port
from croco.serve import settle_startup_objects
from storage import migrate
from storage.db import Database
from storage.enums import AppointmentStatus, CalendarKind
from storage.models import Appointment, AppointmentAssignee, BlockedSlot, Connection, RemoteCalendar, User
from storage.secrets import SecretBox, generate_key
from storage.types import new_id
from sync import accounts, availability, teams
from web.app import create_app
from web.context import WebContext

TOKEN = "bench-token"
DAYS = 30
HISTORY_DAYS = 5 * 365
NINE_TO_FIVE = {d: [["09:00", "17:00"]] for d in teams.WEEKDAYS}


class CountingProviders:
    """The provider factory the app gets: browsing must never open a provider."""

    calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        CountingProviders.calls += 1
        raise AssertionError("a provider was opened while browsing free slots")


@dataclass(frozen=True)
class Seeded:
    db: Database
    calendar_id: str
    member_ids: list[str]
    first_day: datetime


async def seed(url: str, members: int, blocked: int, appointments: int, past: int = 0) -> Seeded:
    """Rows written in bulk: members with a conflict calendar each, blocked slots and booked appointments
    spread over the next 30 days at random times of the working day, and `past` appointments per member
    over the five years before."""
    db = Database(url)
    await migrate.upgrade(db.engine)
    rng = random.Random(7)
    workspace = await accounts.default_workspace(db)
    first_day = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    box = SecretBox(generate_key())
    users = [User(workspace_id=workspace, email=f"m{i}@bench.example", name=f"Member {i}", timezone="Europe/Paris")
             for i in range(members)]
    connections = [Connection(user_id=u.id, provider="caldav", account=u.email,
                              credentials=box.seal({"username": "x", "password": "y"})) for u in users]
    calendars = [RemoteCalendar(connection_id=c.id, remote_id="/cal/", name="Work", access="full")
                 for c in connections]
    async with db.write() as session:
        for rows in (users, connections, calendars):
            session.add_all(rows)
            await session.flush()

    def when() -> datetime:
        return first_day + timedelta(days=rng.randrange(DAYS), minutes=rng.randrange(7 * 60, 18 * 60, 15))

    slots = []
    for n in range(blocked):
        member = n % members
        start = when()
        slots.append({"id": new_id(), "user_id": users[member].id, "remote_calendar_id": calendars[member].id,
                      "remote_id": f"ev{n}.ics", "start": start,
                      "end": start + timedelta(minutes=rng.choice((30, 60, 90))), "busy": rng.random() < 0.9,
                      "title": "Meeting", "all_day": False, "fetched_at": first_day})
    async with db.write() as session:
        for start in range(0, len(slots), 5000):
            await session.execute(insert(BlockedSlot), slots[start:start + 5000])
        for user in users:  # as a sync does after writing blocked slots
            await availability.refresh_busy(session, user.id, [(s["start"], s["end"]) for s in slots
                                                               if s["user_id"] == user.id and s["busy"]])
    spec = teams.TeamCalendarSpec(name="Desk", kind=CalendarKind.ROUND_ROBIN, member_ids=[u.id for u in users],
                                  duration_minutes=30, timezone="Europe/Paris", open_hours=NINE_TO_FIVE)
    calendar = (await teams.create_team_calendar(db, workspace, spec)).calendar
    upcoming = [(when(), users[n % members].id) for n in range(appointments)]
    history = ((first_day - timedelta(minutes=rng.randrange(60, HISTORY_DAYS * 24 * 60, 15)), users[n % members].id)
               for n in range(past * members))
    booking = itertools.chain(upcoming, history)
    while chunk := list(itertools.islice(booking, 5000)):
        booked = [{"id": new_id(), "calendar_id": calendar.id, "start": at, "end": at + timedelta(minutes=30),
                   "title": "Booked", "status": "booked", "origin": "system", "busy": True, "version": 1,
                   "created_at": first_day, "updated_at": first_day} for at, _ in chunk]
        assigned = [{"appointment_id": row["id"], "user_id": user_id, "push_suppressed": False}
                    for row, (_, user_id) in zip(booked, chunk, strict=True)]
        async with db.write() as session:
            await session.execute(insert(Appointment), booked)
            await session.execute(insert(AppointmentAssignee), assigned)
    if db.is_postgresql:
        async with db.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    return Seeded(db, calendar.id, [u.id for u in users], first_day)


def windows(seeded: Seeded, count: int) -> list[tuple[datetime, datetime]]:
    rng = random.Random(11)
    starts = [seeded.first_day + timedelta(days=rng.randrange(DAYS - 7)) for _ in range(count)]
    return [(s, s + timedelta(days=7)) for s in starts]


async def through_http(seeded: Seeded, ranges: list[tuple[datetime, datetime]]) -> list[float]:
    """Milliseconds per request, measured by the client on a real loopback connection."""
    context = WebContext(db=seeded.db, secrets=SecretBox(generate_key()), api_token=TOKEN, webhook_secret="x",
                         providers=CountingProviders())
    runner = web.AppRunner(create_app(context), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settle_startup_objects()  # as `croco serve` does once it listens
    timings = []
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            url = f"http://127.0.0.1:{port}/api/v1/calendars/{seeded.calendar_id}/free-slots"
            for start, end in [ranges[0], *ranges]:  # the first one warms the connection and caches
                began = time.perf_counter()
                async with client.get(url, params={"start": start.isoformat(), "end": end.isoformat()}) as response:
                    assert response.status == 200, await response.text()
                    await response.json()
                timings.append((time.perf_counter() - began) * 1000)
    finally:
        await runner.cleanup()
    return timings[1:]


async def per_slot_sql(seeded: Seeded, start: datetime, end: datetime) -> int:
    """The reference: for every candidate slot, one query for the members busy then (no HTTP around it)."""
    team = await teams.get_team_calendar(seeded.db, seeded.calendar_id)
    rules = availability.Rules.of(team.calendar, team.member_ids)
    offered = 0
    async with seeded.db.session() as session:
        for slot in availability.open_slots(rules, start, end):
            slot_end = slot + rules.duration
            blocking = exists().where(
                col(BlockedSlot.user_id) == col(User.id), col(BlockedSlot.busy).is_(True),
                col(BlockedSlot.start) < slot_end, col(BlockedSlot.end) > slot)
            booked = exists().where(
                col(AppointmentAssignee.user_id) == col(User.id),
                col(AppointmentAssignee.appointment_id) == col(Appointment.id),
                col(Appointment.status) == AppointmentStatus.BOOKED,
                col(Appointment.start) < slot_end, col(Appointment.end) > slot)
            free = await session.scalar(select(col(User.id)).where(
                col(User.id).in_(team.member_ids), and_(~blocking, ~booked)).limit(1))
            offered += free is not None
    return offered


async def timed(action: Callable[[], Awaitable[Any]]) -> float:
    began = time.perf_counter()
    await action()
    return (time.perf_counter() - began) * 1000


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100)[int(share * 100) - 1] if len(values) > 1 else values[0]


async def measure(url: str, members: int, blocked: int, appointments: int, past: int, requests: int
                  ) -> dict[str, float]:
    seeded = await seed(url, members, blocked, appointments, past)
    try:
        ranges = windows(seeded, requests)
        ours = await through_http(seeded, ranges)
        reference = [await timed(lambda s=s, e=e: per_slot_sql(seeded, s, e))  # type: ignore[misc]
                     for s, e in ranges[: max(5, requests // 6)]]
    finally:
        await seeded.db.dispose()
    return {"p50": statistics.median(ours), "p95": percentile(ours, 0.95),
            "reference_p50": statistics.median(reference)}


def database_url(base: str | None, workdir: Path, name: str) -> str:
    return base or f"sqlite+aiosqlite:///{workdir / name}.db"


async def main(requests: int, base_url: str | None) -> None:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="croco-bench-availability-"))
    if base_url and "postgresql" in base_url:
        console.print("PostgreSQL: each run resets the database's public schema")

    async def run(members: int, blocked: int, appointments: int, past: int = 0) -> dict[str, float]:
        if base_url and "postgresql" in base_url:
            db = Database(base_url)
            async with db.engine.connect() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
                await conn.commit()
            await db.dispose()
        return await measure(database_url(base_url, workdir, f"m{members}-b{blocked}-p{past}"), members, blocked,
                             appointments, past, requests)

    main_run = await run(50, 20_000, 2_000)
    table = Table(title="free-slots, 7 days, round robin of 50 members, 20,000 blocked slots, 2,000 appointments")
    for column in ("measure", "value", "target"):
        table.add_column(column)
    table.add_row("p50 through HTTP", f"{main_run['p50']:.1f} ms", "")
    table.add_row("p95 through HTTP", f"{main_run['p95']:.1f} ms", "< 50 ms")
    table.add_row("provider calls while browsing", str(CountingProviders.calls), "0")
    table.add_row("reference p50 (one SQL query per slot, no HTTP)", f"{main_run['reference_p50']:.1f} ms", "")
    table.add_row("ratio ours / reference (p50)", f"{main_run['p50'] / main_run['reference_p50']:.2f}", "< 1")
    console.print(table)

    growth = Table(title="how the time grows: p50/p95 through HTTP (ms), reference p50 (ms), ratio of the p50s; "
                         "booked over the next 30 days, past: per member over the five years before")
    for column in ("members", "blocked", "booked", "past", "p50", "p95", "reference", "ratio", "target"):
        growth.add_column(column)
    for members, blocked, past in ((10, 20_000, 0), (50, 20_000, 0), (200, 20_000, 0), (50, 2_000, 0),
                                   (50, 200_000, 0), (50, 20_000, 20_000)):
        result = main_run if (members, blocked, past) == (50, 20_000, 0) else await run(members, blocked, 2_000, past)
        growth.add_row(str(members), f"{blocked:,}", "2,000", f"{past:,}", f"{result['p50']:.1f}",
                       f"{result['p95']:.1f}", f"{result['reference_p50']:.1f}",
                       f"{result['p50'] / result['reference_p50']:.3f}",
                       "p95 < 50" if blocked == 200_000 or past else "")
    console.print(growth)
    console.print(f"provider calls in all runs: {CountingProviders.calls}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file per run in a temporary folder")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.database_url))
