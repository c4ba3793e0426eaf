"""One calendar on each backend the contract tests run against: Radicale, Xandikos, the in-memory fake and the
Google and Graph emulators.

A backend joins the contract suite (tests/providers/test_contract.py) as one more parameter of `remote`: a
`Remote` with its provider, an empty calendar, and `seed`, which writes a neutral `SeedEvent` the way
another client of that backend would (CalDAV and the fake store its iCalendar text, `fixtures.ical`; Google
its event resources, `fixtures.google_events`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sync.providers.google.provider import GoogleProvider, GoogleShared
from sync.providers.memory import MemoryProvider
from sync.providers.microsoft.provider import MicrosoftProvider, MicrosoftShared
from tests.caldav_servers import CalDAVServer
from tests.emulators.google import GoogleEmulator
from tests.emulators.graph import GraphEmulator
from tests.providers.fixtures import SeedEvent, google_events, google_id, ical
from tests.providers.support import Remote, caldav, google_config, graph_config, oauth_tokens, seed_graph, token_cache


def _memory() -> Remote:
    memory, calendar = MemoryProvider(), "/john/work/"
    memory.add_calendar(calendar, "Work")

    def seed(event: SeedEvent) -> str:
        memory.put(calendar, f"{event.name}.ics", ical(event))
        return f"{event.name}.ics"

    def stale(cursor: str) -> str:
        memory.invalidate_cursors()
        return cursor

    return Remote("memory", memory, calendar, seed, lambda: memory.remove_calendar(calendar), stale)


def _caldav(server: CalDAVServer) -> Remote:
    url = server.new_calendar()
    return Remote(server.name, caldav(server), url, lambda event: server.put(url, f"{event.name}.ics", ical(event)),
                  lambda: server.delete(url), lambda _: "sync:http://radicale.org/ns/sync/expired-long-ago")


@pytest.fixture
async def google_remote(google: GoogleEmulator) -> AsyncIterator[Remote]:
    """John's primary calendar: its id is his email, so the emulator marks him `self` among attendees."""
    calendar = "john@example.com"
    account = google.add_account(calendar)
    shared = GoogleShared()
    provider = GoogleProvider(oauth_tokens(google.grant(calendar)), google_config(google), shared, account=calendar)

    def seed(event: SeedEvent) -> str:
        for resource in google_events(event):
            google.put_event(calendar, resource)
        return google_id(event)

    def stale(cursor: str) -> str:
        google.expire_sync_tokens(calendar)
        return cursor

    yield Remote("google", provider, calendar, seed, lambda: account.entries.clear(), stale, stores_malformed=False)
    shared.close()


@pytest.fixture
async def microsoft_remote(graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Remote]:
    """John's default Outlook calendar; msal trusts the emulator through REQUESTS_CA_BUNDLE, aiohttp through
    the shared session's SSL context."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_bundle_path))
    owner = "john@example.com"
    account = graph.add_account(owner)
    calendar = account.default_calendar_id
    shared = MicrosoftShared(ssl_context=graph.client_ssl_context())
    provider = MicrosoftProvider(await asyncio.to_thread(token_cache, graph, owner), graph_config(graph), shared)
    seeded: dict[str, str] = {}

    def seed(event: SeedEvent) -> str:
        seeded[event.name] = seed_graph(graph, calendar, owner, event, seeded.get(event.name))
        return seeded[event.name]

    def stale(cursor: str) -> str:
        graph.expire_delta_tokens(calendar)
        return cursor

    yield Remote("microsoft", provider, calendar, seed, lambda: account.entries.clear(), stale)
    await shared.close()


@pytest.fixture(params=["radicale", "xandikos", "memory", "google", "microsoft"])
def remote(request: pytest.FixtureRequest) -> Remote:
    if request.param == "memory":
        return _memory()
    if request.param in ("google", "microsoft"):
        remote: Remote = request.getfixturevalue(f"{request.param}_remote")
        return remote
    return _caldav(request.getfixturevalue(str(request.param)))
