"""Benchmark: what syncing Outlook calendars costs in requests and time, on the Graph emulator of the tests.

The sync engine runs as `croco serve` runs it (SQLite, msal and aiohttp), against the emulator in this process;
change notifications go to our real webhook (`web.app`, served on a loopback port), which Graph validates before
it makes a subscription (M4). Figures, each with its reference from the same run (bench/support.py):

- first import of a calendar of 5,000 events (10% of them weekly series): requests and seconds, against the
  bare transfer (the same calendarView delta pages fetched with plain aiohttp and nothing done with them);
- requests per idle cycle per calendar: an hour of scheduler ticks on a clock we move, without push
  (target 1 a cycle) and with a live subscription per calendar (target 0 between safety polls); and the
  requests to the sign-in service in those hours, which the mailbox's quota does not count;
- quota: requests per mailbox per 10 minutes at the default settings, against Graph's 10,000 requests per
  10 minutes per app and mailbox (provider-apis.md M5).

    .venv/bin/python -m bench.microsoft [--events 5000] [--calendars 3]
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
from aiohttp import web

from bench import support
from storage.enums import Provider
from sync.providers.base import ExchangedAccount, ProviderConfig, TimeWindow
from sync.providers.microsoft.provider import PAGE_SIZE, MicrosoftShared
from sync.providers.registry import open_provider
from tests.emulators.graph import GraphEmulator
from tests.providers.support import graph_config, seed_graph, token_cache
from web.app import create_app
from web.context import WebContext

QUOTA = support.Quota("mailbox", 10_000, timedelta(minutes=10), "M5")
"""Graph's Outlook limit (provider-apis.md M5): 10,000 requests per 10 minutes per app and mailbox."""


def discovery_row(discoveries: int, idle: support.Idle) -> support.Row:
    """The sign-in service's share of the idle hours: the Graph requests of the same hours are the reference."""
    graph_requests = idle.polled + idle.safety_poll + idle.pushed
    return ("sign-in service while idle (msal's OpenID discovery)", f"{discoveries} req",
            f"{graph_requests} Graph req in the same 2 h", f"{discoveries / max(graph_requests, 1):.2f}", "0")


async def bare_transfer(emulator: GraphEmulator, calendar_id: str, window: TimeWindow) -> None:
    """The reference: the calendar's delta listing with aiohttp alone, in the engine's window and page size
    (pages fetched, nothing read)."""
    headers = {"Authorization": f"Bearer {emulator.grant(support.ACCOUNT)['access_token']}",
               "Prefer": f'outlook.timezone="UTC", odata.maxpagesize={PAGE_SIZE}'}
    url: str | None = f"{emulator.graph_url}/me/calendars/{calendar_id}/calendarView/delta"
    params: dict[str, str] | None = {"startDateTime": f"{window.start:%Y-%m-%dT%H:%M:%SZ}",
                                     "endDateTime": f"{window.end:%Y-%m-%dT%H:%M:%SZ}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=emulator.client_ssl_context())) as http:
        while url:
            async with http.get(url, params=params, headers=headers) as response:
                response.raise_for_status()
                url, params = (await response.json()).get("@odata.nextLink"), None


@contextlib.asynccontextmanager
async def served_webhook(bench: support.EngineBench, config: ProviderConfig) -> AsyncIterator[WebContext]:
    """Our web app on a free loopback port, its public URL that port: Graph's validation POST and any
    notification reach `/webhooks/microsoft` as in `croco serve` (whose scheduler runs the syncs: here, us)."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    context = WebContext(db=bench.db, secrets=bench.box, api_token=secrets.token_urlsafe(32),
                         webhook_secret=secrets.token_urlsafe(32), providers=bench.providers,
                         public_url=f"http://127.0.0.1:{listening.getsockname()[1]}", engine=bench.engine,
                         provider_config=config, clock=bench.clock, run_sync=lambda: None)
    runner = web.AppRunner(create_app(context), access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, listening).start()
        yield context
    finally:
        await runner.cleanup()


async def main(events: int, calendars: int) -> None:
    clock = support.bench_clock()
    emulator = GraphEmulator()
    await emulator.start()
    os.environ["REQUESTS_CA_BUNDLE"] = str(emulator.ca_bundle_path)  # msal (requests) trusts the emulator
    account = emulator.add_account(support.ACCOUNT)
    for n in range(1, calendars):
        account.add_calendar(f"Team {n}")
    primary = account.default_calendar_id
    for event in support.calendar_events(events, clock()):
        seed_graph(emulator, primary, support.ACCOUNT, event)
    db = await support.sqlite_database("croco-bench-microsoft-")
    shared = MicrosoftShared(ssl_context=emulator.client_ssl_context())
    config = graph_config(emulator)
    bench = support.EngineBench(db, clock, functools.partial(open_provider, config=config, microsoft=shared),
                                emulator.count)
    try:
        login = ExchangedAccount(support.ACCOUNT, await asyncio.to_thread(token_cache, emulator, support.ACCOUNT))
        imported = await bench.timed_import(await bench.connect(Provider.MICROSOFT, login, primary))
        window = TimeWindow(clock() - timedelta(days=1), clock() + timedelta(days=180))
        _, transfer = await support.timed(emulator.count, bare_transfer(emulator, primary, window))
        async with served_webhook(bench, config) as context:
            before = emulator.discoveries
            idle = await bench.idle(context.channels)
            discoveries = emulator.discoveries - before
    finally:
        await shared.close()
        await db.dispose()
        await emulator.close()
    support.report("Outlook sync (the Graph emulator on loopback, our webhook served)", events, calendars, imported,
                   transfer, idle, QUOTA, [discovery_row(discoveries, idle)])


if __name__ == "__main__":
    support.run(main, __doc__)
