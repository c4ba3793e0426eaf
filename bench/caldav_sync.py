"""Benchmark: importing a 10,000-event Radicale calendar, then an idle cycle; vdirsyncer as the reference.

Prints the figures and the ratio ours / vdirsyncer's, measured in the same run on the same collection
(times drift between runs on these machines: compare within one run only). Not a test.

    .venv/bin/python bench/caldav_sync.py [--events 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from caldav.async_davclient import AsyncDAVClient
from rich.console import Console
from rich.table import Table

from croco.embedded_caldav import EmbeddedRadicale
from storage import migrate
from storage.db import Database
from storage.enums import Provider, SyncMode
from storage.secrets import SecretBox, generate_key
from sync import accounts
from sync.engine import SyncEngine, start_workers
from sync.providers.base import AppPassword, ProviderConfig, TimeWindow
from sync.providers.registry import open_provider

USER, PASSWORD = "bench", "bench-password"


def seed(collection: Path, events: int, start: datetime) -> None:
    """Write the events straight into Radicale's storage: 10,000 PUTs would measure seeding, not syncing."""
    rng = random.Random(42)
    for n in range(events):
        day = start + timedelta(days=rng.randrange(0, 170), hours=rng.randrange(7, 19))
        recurring = "RRULE:FREQ=WEEKLY;COUNT=10\r\n" if n % 10 == 0 else ""
        (collection / f"event-{n}.ics").write_text(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Croco bench//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:event-{n}@bench\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART:{day:%Y%m%dT%H%M%SZ}\r\nDTEND:{day + timedelta(minutes=45):%Y%m%dT%H%M%SZ}\r\n"
            f"SUMMARY:Meeting {n}\r\n{recurring}"
            f"ATTENDEE;CN=Guest {n % 50}:mailto:guest{n % 50}@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            encoding="utf-8",
        )


class RequestCounter:
    """Counts HTTP requests the CalDAV client sends, by wrapping its single request method."""

    def __init__(self) -> None:
        self.count = 0
        self._original = AsyncDAVClient.request

    def __enter__(self) -> RequestCounter:
        original = self._original

        async def counted(client: AsyncDAVClient, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(client, *args, **kwargs)

        AsyncDAVClient.request = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        AsyncDAVClient.request = self._original  # type: ignore[method-assign]


async def timed(action: Callable[[], Awaitable[Any]]) -> tuple[float, int, Any]:
    with RequestCounter() as counter:
        started = time.perf_counter()
        result = await action()
        return time.perf_counter() - started, counter.count, result


async def croco_cycles(workdir: Path, server_url: str, calendar_url: str) -> dict[str, tuple[float, int, Any]]:
    db = Database(f"sqlite+aiosqlite:///{workdir / 'croco.db'}")
    await migrate.upgrade(db.engine)
    box = SecretBox(generate_key())
    factory = functools.partial(open_provider, config=ProviderConfig(timeout_seconds=600))
    workspace = await accounts.default_workspace(db)
    user = await accounts.create_user(db, workspace, "Bench", "bench@example.com", "Europe/Paris", None)
    _, calendars = await accounts.connect(db, box, factory, user.id, Provider.CALDAV, AppPassword(USER, PASSWORD),
                                          server_url, now=datetime.now(UTC))
    (calendar,) = [c for c in calendars if c.remote_id == calendar_url]
    await accounts.put_settings(db, user.id, calendar.id, None, SyncMode.ONE_WAY, None, None, now=datetime.now(UTC))
    with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        # As `croco serve` runs it: reading on every core, the workers started with the service, not timed.
        engine = SyncEngine(db, box, factory, pool=pool)
        await asyncio.gather(*map(asyncio.wrap_future, start_workers(pool)))
        results = {
            "first import": await timed(lambda: engine.sync_user(user.id)),
            "idle cycle": await timed(lambda: engine.sync_user(user.id)),
        }
    await db.dispose()
    return results


def vdirsyncer_runs(workdir: Path, calendar_url: str) -> dict[str, float]:
    """vdirsyncer 0.21 syncing the same collection to a filesystem storage: first sync, then an idle one."""
    config = workdir / "vdirsyncer.conf"
    config.write_text(
        f'[general]\nstatus_path = "{workdir / "vdir-status"}"\n\n'
        '[pair bench]\na = "bench_remote"\nb = "bench_local"\ncollections = null\n\n'
        f'[storage bench_remote]\ntype = "caldav"\nurl = "{calendar_url}"\n'
        f'username = "{USER}"\npassword = "{PASSWORD}"\n\n'
        f'[storage bench_local]\ntype = "filesystem"\npath = "{workdir / "vdir"}"\nfileext = ".ics"\n'
    )
    (workdir / "vdir").mkdir()
    binary = shutil.which("vdirsyncer", path=str(Path(sys.executable).parent)) or "vdirsyncer"
    command = [binary, "-c", str(config)]
    subprocess.run([*command, "discover"], input="y\n" * 4, text=True, check=True, capture_output=True)
    runs: dict[str, float] = {}
    for name in ("first import", "idle cycle"):
        started = time.perf_counter()
        subprocess.run([*command, "sync"], check=True, capture_output=True, text=True)
        runs[name] = time.perf_counter() - started
    return runs


async def main(events: int) -> None:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="croco-bench-"))
    with EmbeddedRadicale(workdir / "radicale", users={USER: PASSWORD}) as radicale:
        calendar_url = radicale.make_calendar(USER, "bench")
        seed(workdir / "radicale" / "collections" / "collection-root" / USER / "bench", events,
             datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
        console.print(f"{events} events ({events // 10} weekly recurring) in {calendar_url}")
        # Radicale builds its item cache on the first full read; neither side should pay for it.
        warm_up = open_provider("caldav", AppPassword(USER, PASSWORD), radicale.url,
                                config=ProviderConfig(timeout_seconds=600))
        now = datetime.now(UTC)
        await warm_up.changes(calendar_url, None, TimeWindow(now - timedelta(days=1), now + timedelta(days=180)))
        ours = await croco_cycles(workdir, radicale.url, calendar_url)
        reference = vdirsyncer_runs(workdir, calendar_url)

    table = Table(title="CalDAV sync, one calendar (Radicale on loopback)", title_justify="left")
    for column in ("cycle", "croco s", "HTTP requests", "vdirsyncer s", "croco / vdirsyncer"):
        table.add_column(column, justify="right")
    for name, (seconds, requests, _) in ours.items():
        table.add_row(name, f"{seconds:.2f}", str(requests), f"{reference[name]:.2f}",
                      f"{seconds / reference[name]:.2f}")
    console.print(table)
    (report,) = ours["first import"][2]
    console.print(f"first import: {report.tally.fetched} items fetched, {report.tally.blocked_slots} blocked slots "
                  f"(recurring events expanded over the 180-day window)")
    idle_requests = ours["idle cycle"][1]
    console.print(f"idle cycle: {idle_requests} HTTP request(s) for 1 calendar (target: at most 1)")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().events))
