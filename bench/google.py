"""Benchmark: what syncing Google calendars costs in requests and time, on the Google emulator of the tests.

The sync engine runs as `croco serve` runs it (SQLite, the real google-api-python-client), against the
emulator in this process. Figures, each with its reference from the same run (bench/support.py):

- first import of a calendar of 5,000 events (10% of them weekly series): requests and seconds, against the
  bare transfer (the same events.list pages fetched with the client library and nothing done with them);
- requests per idle cycle per calendar: an hour of scheduler ticks on a clock we move, without push
  (target 1 a cycle) and with a live channel per calendar (target 0 between safety polls);
- quota: requests per user per hour at the default settings, against Google's published 600 requests per
  minute per user (provider-apis.md G6).

    .venv/bin/python -m bench.google [--events 5000] [--calendars 3]
"""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta

import httplib2
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build

from bench import support
from storage.enums import Provider
from sync.channels import PushChannels
from sync.providers.base import ExchangedAccount, GoogleConfig, OAuthTokens, ProviderConfig
from sync.providers.google.provider import GoogleShared
from sync.providers.registry import open_provider
from tests.clocks import ManualClock
from tests.emulators.google import CLIENT_ID, CLIENT_SECRET, GoogleEmulator
from tests.providers.fixtures import google_events

QUOTA = support.Quota("user", 600 * 60, support.HOUR, "G6")
"""Google's published per-user quota (provider-apis.md G6): 600 requests a minute per user per project."""


def tokens(emulator: GoogleEmulator, clock: ManualClock) -> OAuthTokens:
    granted = emulator.grant(support.ACCOUNT)
    return OAuthTokens(granted["access_token"], granted["refresh_token"],
                       clock() + timedelta(seconds=int(granted["expires_in"])), tuple(str(granted["scope"]).split()))


async def bare_transfer(emulator: GoogleEmulator, shared: GoogleShared, clock: ManualClock) -> None:
    """The reference: the same listing with the client library alone (pages fetched, nothing read)."""
    granted = tokens(emulator, clock)
    credentials = Credentials(granted.access_token, refresh_token=granted.refresh_token,  # type: ignore[no-untyped-call]
                              token_uri=emulator.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    service = build("calendar", "v3", static_discovery=True, cache_discovery=False,
                    client_options={"api_endpoint": emulator.root_url + "calendar/v3/"},
                    http=AuthorizedHttp(credentials, http=httplib2.Http(proxy_info=None)))
    now, loop = clock(), asyncio.get_running_loop()
    token: str | None = None
    while True:
        page = await loop.run_in_executor(shared.pool, service.events().list(
            calendarId=support.ACCOUNT, singleEvents=True, showDeleted=True, maxResults=2500, pageToken=token,
            timeMin=(now - timedelta(days=1)).isoformat(), timeMax=(now + timedelta(days=180)).isoformat(),
        ).execute)
        token = page.get("nextPageToken")
        if token is None:
            return


async def main(events: int, calendars: int) -> None:
    clock = support.bench_clock()
    emulator = GoogleEmulator()
    await emulator.start()
    account = emulator.add_account(support.ACCOUNT)
    for n in range(1, calendars):
        account.add_calendar(f"team{n}@group.calendar.google.com", f"Team {n}", "writer")
    for event in support.calendar_events(events, clock()):
        for resource in google_events(event):
            emulator.put_event(support.ACCOUNT, resource)
    db = await support.sqlite_database("croco-bench-google-")
    shared = GoogleShared()
    config = ProviderConfig(timeout_seconds=600, google=GoogleConfig(
        CLIENT_ID, CLIENT_SECRET, emulator.root_url, emulator.auth_url, emulator.token_url))
    bench = support.EngineBench(db, clock, functools.partial(open_provider, config=config, google=shared),
                                emulator.count)
    try:
        login = ExchangedAccount(support.ACCOUNT, tokens(emulator, clock))
        imported = await bench.timed_import(await bench.connect(Provider.GOOGLE, login, support.ACCOUNT))
        _, transfer = await support.timed(emulator.count, bare_transfer(emulator, shared, clock))
        idle = await bench.idle(PushChannels(db, bench.box, bench.providers, "http://127.0.0.1:9/", config=config))
    finally:
        shared.close()
        await db.dispose()
        await emulator.close()
    support.report("Google sync (the Google emulator on loopback)", events, calendars, imported, transfer, idle,
                   QUOTA)


if __name__ == "__main__":
    support.run(main, __doc__)
