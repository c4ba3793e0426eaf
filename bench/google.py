"""Benchmark: what syncing Google calendars costs in requests and time, on the Google emulator of the tests.

The sync engine runs as `croco serve` runs it (SQLite, the real google-api-python-client), against the
emulator in this process. Figures, each with its reference from the same run:

- first import of a calendar of 5,000 events (10% of them weekly series): requests and seconds, against the
  bare transfer (the same events.list pages fetched with the client library and nothing done with them);
- requests per idle cycle per calendar: an hour of scheduler ticks on a clock we move, without push
  (target 1 a cycle) and with a live channel per calendar (target 0 between safety polls);
- quota: requests per user per hour at the default settings, against Google's published 600 requests per
  minute per user (provider-apis.md G6).

Prints the figures; not a test.

    .venv/bin/python -m bench.google [--events 5000] [--calendars 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httplib2
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
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
from sync.providers.base import ExchangedAccount, GoogleConfig, OAuthTokens, ProviderConfig
from sync.providers.google.provider import GoogleShared
from sync.providers.registry import open_provider
from tests.clocks import ManualClock
from tests.emulators.google import CLIENT_ID, CLIENT_SECRET, GoogleEmulator

ACCOUNT = "bench@example.com"
DEFAULTS = Settings()
HOUR = timedelta(hours=1)
PER_USER_PER_MINUTE = 600
"""Google's published per-user quota (provider-apis.md G6): 600 requests a minute per user per project."""


def seed(emulator: GoogleEmulator, calendar_id: str, count: int, start: datetime) -> None:
    """`count` one-hour events over the coming 180 days, every tenth a weekly series of 10."""
    for n in range(count):
        begins = start + timedelta(days=(n * 7) % 180, hours=8 + n % 9)
        event: dict[str, Any] = {"id": f"ev{n:06d}", "summary": f"Event {n}",
                                 "start": {"dateTime": begins.isoformat(), "timeZone": "UTC"},
                                 "end": {"dateTime": (begins + HOUR).isoformat(), "timeZone": "UTC"}}
        if n % 10 == 0:
            event["recurrence"] = ["RRULE:FREQ=WEEKLY;COUNT=10"]
        emulator.put_event(calendar_id, event)


class Bench:
    def __init__(self, emulator: GoogleEmulator, db: Database, clock: ManualClock) -> None:
        self.emulator, self.db, self.clock, self.box = emulator, db, clock, SecretBox(generate_key())
        self.config = ProviderConfig(timeout_seconds=600, google=GoogleConfig(
            CLIENT_ID, CLIENT_SECRET, emulator.root_url, emulator.auth_url, emulator.token_url))
        self.shared = GoogleShared()
        self.providers = functools.partial(open_provider, config=self.config, google=self.shared)
        self.engine = SyncEngine(db, self.box, self.providers, clock=clock,
                                 interval=timedelta(seconds=DEFAULTS.sync_interval_seconds),
                                 safety_poll=timedelta(seconds=DEFAULTS.push_safety_poll_seconds))

    def tokens(self) -> OAuthTokens:
        granted = self.emulator.grant(ACCOUNT)
        return OAuthTokens(granted["access_token"], granted["refresh_token"],
                           self.clock() + timedelta(seconds=int(granted["expires_in"])),
                           tuple(str(granted["scope"]).split()))

    async def connect(self) -> str:
        workspace = await accounts.default_workspace(self.db)
        user = await accounts.create_user(self.db, workspace, "Bench", ACCOUNT, "Europe/Paris", None)
        _, calendars = await accounts.connect(self.db, self.box, self.providers, user.id, Provider.GOOGLE,
                                              ExchangedAccount(ACCOUNT, self.tokens()), None, now=self.clock())
        (primary,) = [c for c in calendars if c.remote_id == ACCOUNT]
        await accounts.put_settings(self.db, user.id, primary.id, [c.id for c in calendars], SyncMode.ONE_WAY,
                                    None, None, now=self.clock())
        return user.id

    async def timed_import(self, user_id: str) -> tuple[float, int, int]:
        before = self.emulator.count()
        started = time.perf_counter()
        reports = await self.engine.sync_user(user_id)
        assert all(r.error is None for r in reports), [r.error for r in reports]
        return time.perf_counter() - started, self.emulator.count() - before, sum(r.tally.fetched for r in reports)

    async def bare_transfer(self) -> tuple[float, int]:
        """The reference: the same listing with the client library alone (pages fetched, nothing read)."""
        tokens = self.tokens()
        credentials = Credentials(tokens.access_token, refresh_token=tokens.refresh_token,  # type: ignore[no-untyped-call]
                                  token_uri=self.emulator.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        service = build("calendar", "v3", static_discovery=True, cache_discovery=False,
                        client_options={"api_endpoint": self.emulator.root_url + "calendar/v3/"},
                        http=AuthorizedHttp(credentials, http=httplib2.Http(proxy_info=None)))
        now, loop = self.clock(), asyncio.get_running_loop()
        before = self.emulator.count()
        started = time.perf_counter()
        token: str | None = None
        while True:
            page = await loop.run_in_executor(self.shared.pool, service.events().list(
                calendarId=ACCOUNT, singleEvents=True, showDeleted=True, maxResults=2500, pageToken=token,
                timeMin=(now - timedelta(days=1)).isoformat(), timeMax=(now + timedelta(days=180)).isoformat(),
            ).execute)
            token = page.get("nextPageToken")
            if token is None:
                return time.perf_counter() - started, self.emulator.count() - before

    async def ticks(self, channels: PushChannels | None, span: timedelta = HOUR) -> tuple[int, int]:
        """The scheduler's ticks over `span` of our clock: (requests, calendars synced)."""
        before, synced = self.emulator.count(), 0
        end = self.clock() + span
        while self.clock() < end:
            if channels is not None:
                await channels.renew(self.clock())
            synced += len(await self.engine.run_due())
            self.clock.later(timedelta(seconds=DEFAULTS.scheduler_tick_seconds))
        return self.emulator.count() - before, synced


async def main(events: int, calendars: int) -> None:
    console = Console(width=120)
    workdir = Path(tempfile.mkdtemp(prefix="croco-bench-google-"))
    clock = ManualClock(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    emulator = GoogleEmulator()
    await emulator.start()
    account = emulator.add_account(ACCOUNT)
    for n in range(1, calendars):
        account.add_calendar(f"team{n}@group.calendar.google.com", f"Team {n}", "writer")
    seed(emulator, ACCOUNT, events, clock())
    db = Database(f"sqlite+aiosqlite:///{workdir / 'croco.db'}")
    await migrate.upgrade(db.engine)
    bench = Bench(emulator, db, clock)
    try:
        user_id = await bench.connect()
        import_seconds, import_requests, fetched = await bench.timed_import(user_id)
        transfer_seconds, transfer_requests = await bench.bare_transfer()
        clock.later(timedelta(seconds=DEFAULTS.sync_interval_seconds))
        polled, polled_cycles = await bench.ticks(None)
        channels = PushChannels(db, bench.box, bench.providers, "http://127.0.0.1:9/")
        await channels.renew(clock())
        clock.later(timedelta(seconds=DEFAULTS.sync_interval_seconds))
        first, _ = await bench.ticks(channels, timedelta(seconds=DEFAULTS.scheduler_tick_seconds))
        between = timedelta(seconds=DEFAULTS.push_safety_poll_seconds) - 2 * timedelta(
            seconds=DEFAULTS.scheduler_tick_seconds)
        pushed, pushed_cycles = await bench.ticks(channels, between)
    finally:
        bench.shared.close()
        await db.dispose()
        await emulator.close()

    table = Table(title=f"Google sync (SQLite, the Google emulator on loopback, {calendars} calendars)",
                  title_justify="left")
    for column in ("measure", "ours", "reference", "ratio", "target"):
        table.add_column(column, justify="right")
    table.add_row(f"first import, {fetched} items ({events} events)", f"{import_seconds:.2f} s, {import_requests} req",
                  f"bare transfer {transfer_seconds:.2f} s, {transfer_requests} req",
                  f"{import_seconds / transfer_seconds:.2f}", "")
    per_cycle = polled / max(polled_cycles, 1)
    table.add_row("idle cycle without push", f"{per_cycle:.2f} req/calendar ({polled_cycles} cycles in 1 h)",
                  "", "", "1")
    table.add_row("idle cycles with a live channel, between safety polls",
                  f"{pushed} req ({pushed_cycles} cycles in {between.total_seconds() / 60:.0f} min)",
                  f"{polled} req polling for 1 h", f"{pushed / max(polled, 1):.2f}", "0")
    table.add_row("a safety poll with a live channel", f"{first / calendars:.2f} req/calendar",
                  f"every {DEFAULTS.push_safety_poll_seconds} s", "", "1")
    quota = PER_USER_PER_MINUTE * 60
    hourly_lists = 1  # the calendar list, refreshed hourly (sync/calendar_lists.py)
    with_push = (first + pushed) * 3600 / DEFAULTS.push_safety_poll_seconds + hourly_lists
    table.add_row("quota per user per hour, polling", f"{polled + hourly_lists} req", f"{quota} allowed (G6)",
                  f"{(polled + hourly_lists) / quota:.4f}", "well under 1")
    table.add_row("quota per user per hour, push", f"{with_push:.0f} req", f"{quota} allowed (G6)",
                  f"{with_push / quota:.4f}", "well under 1")
    console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--calendars", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.calendars))
