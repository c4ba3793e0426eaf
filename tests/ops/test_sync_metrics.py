"""Sync cycles and provider requests as `/metrics` shows them (API.md "Operations"), and the one log line
per cycle: a sync through Radicale, a server that cannot be reached, refused credentials, and the Google and
Microsoft HTTP layers on their emulators.

The counters are the process's: each test reads what its own events added (after minus before)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from sqlalchemy import update
from sqlmodel import col

from croco.embedded_caldav import free_port
from storage.db import Database
from storage.enums import Provider, SyncMode
from storage.models import Connection, RemoteCalendar
from storage.secrets import SecretBox
from sync import credentials
from sync.providers.base import AppPassword, ProviderError, Unreachable
from sync.providers.google.provider import GoogleProvider, GoogleShared
from sync.providers.microsoft.provider import MicrosoftProvider, MicrosoftShared
from sync.telemetry import counting_requests
from tests.caldav_servers import CalDAVServer
from tests.emulators.google import Failure, GoogleEmulator
from tests.emulators.graph import GraphEmulator
from tests.ics import michel
from tests.integration.conftest import D, World, make_world
from tests.ops.scrape import Scrape, scrape
from tests.providers.support import CONTEXT, DRAFT, google_config, graph_config, oauth_tokens, token_cache
from tests.web.conftest import Client

JOHN = "john@example.com"
REQUESTS = "croco_provider_requests_total"


@dataclass(frozen=True)
class Moved:
    """What the samples of one scrape added to those of an earlier one."""

    before: Scrape
    after: Scrape

    def value(self, name: str, **labels: str) -> float:
        return self.after.value(name, **labels) - self.before.value(name, **labels)

    def total(self, name: str, **labels: str) -> float:
        return self.after.total(name, **labels) - self.before.total(name, **labels)


class Watch:
    """Scrapes `/metrics` before and after what a test does."""

    def __init__(self, api: Client) -> None:
        self._api = api
        self._before: Scrape | None = None

    async def start(self) -> None:
        self._before = await scrape(self._api)

    async def moved(self) -> Moved:
        assert self._before is not None
        moved = Moved(self._before, await scrape(self._api))
        self._before = moved.after
        return moved


@pytest.fixture
async def watch(api: Client) -> Watch:
    return Watch(api)


@pytest.fixture
async def world(db: Database, secret_box: SecretBox, radicale: CalDAVServer) -> World:
    """John's Radicale calendar, connected and selected (one way): connecting's own requests are done."""
    return await make_world(db, secret_box, radicale, SyncMode.ONE_WAY)


def cycle_line(caplog: pytest.LogCaptureFixture, message: str) -> dict[str, object]:
    (line,) = [record for record in caplog.records if record.name == "sync.engine" and record.message == message]
    return line.__dict__


# Sync cycles through Radicale -------------------------------------------------------------------------


async def test_a_sync_through_radicale_counts_an_ok_cycle_its_duration_and_its_requests(
    world: World, watch: Watch, caplog: pytest.LogCaptureFixture
) -> None:
    world.put("michel.ics", michel(D))
    await watch.start()
    with caplog.at_level(logging.INFO, logger="sync.engine"):
        summary = await world.sync()
    moved = await watch.moved()
    assert summary["blocked_slots"] == 1 and summary["error"] is None
    assert moved.value("croco_sync_cycles_total", provider="caldav", result="ok") == 1
    assert moved.total("croco_sync_cycles_total") == 1
    assert moved.value("croco_sync_cycle_seconds_count", provider="caldav") == 1
    requests = moved.total(REQUESTS, provider="caldav")
    assert requests >= 1 and moved.value(REQUESTS, provider="caldav", status="207") == requests  # multistatus

    line = cycle_line(caplog, "calendar synced")
    assert (line["calendar_id"], line["user_id"], line["provider"]) == (world.calendar_id, world.user_id, "caldav")
    assert (line["result"], line["fetched"], line["changed"], line["error"]) == ("ok", 1, 1, None)
    assert line["requests"] == requests
    duration = line["duration_seconds"]
    assert isinstance(duration, float) and 0 < duration
    assert duration == pytest.approx(moved.value("croco_sync_cycle_seconds_sum", provider="caldav"), abs=0.001)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sync.engine"):
        await world.sync()  # nothing new: one sync-collection request, nothing changed
    moved = await watch.moved()
    line = cycle_line(caplog, "calendar synced")
    assert (line["fetched"], line["changed"], line["requests"]) == (0, 0, 1)
    assert moved.value("croco_sync_cycles_total", provider="caldav", result="ok") == 1
    assert moved.value(REQUESTS, provider="caldav", status="207") == 1


async def test_a_server_that_cannot_be_reached_counts_an_error_cycle_and_an_unreachable_request(
    world: World, db: Database, watch: Watch, caplog: pytest.LogCaptureFixture
) -> None:
    async with db.write() as session:  # the calendar's server went away (nothing listens on the port)
        await session.execute(update(RemoteCalendar).where(col(RemoteCalendar.id) == world.calendar_id)
                              .values(remote_id=f"http://127.0.0.1:{free_port()}/john/calendar/"))
    await watch.start()
    with caplog.at_level(logging.INFO, logger="sync.engine"):
        summary = await world.sync()
    moved = await watch.moved()
    assert summary["error"] == "The calendar server cannot be reached (ConnectionError)"
    assert moved.value("croco_sync_cycles_total", provider="caldav", result="error") == 1
    assert moved.total("croco_sync_cycles_total") == 1
    assert moved.value("croco_sync_cycle_seconds_count", provider="caldav") == 1
    assert moved.total(REQUESTS) == moved.value(REQUESTS, provider="caldav", status="unreachable") == 1

    line = cycle_line(caplog, "calendar sync failed")
    assert line["levelno"] == logging.WARNING and line["calendar_id"] == world.calendar_id
    assert (line["result"], line["error"], line["requests"], line["changed"]) == ("error", summary["error"], 1, 0)
    assert isinstance(line["duration_seconds"], float)


async def test_refused_credentials_count_an_auth_failed_cycle_and_the_401_answers(
    world: World, db: Database, secret_box: SecretBox, radicale: CalDAVServer, watch: Watch,
    caplog: pytest.LogCaptureFixture
) -> None:
    wrong = credentials.seal(secret_box, AppPassword(radicale.username, "not the password"))
    async with db.write() as session:  # the password was changed on the server
        await session.execute(update(Connection).where(col(Connection.user_id) == world.user_id)
                              .values(credentials=wrong))
    await watch.start()
    with caplog.at_level(logging.INFO, logger="sync.engine"):
        summary = await world.sync()
    moved = await watch.moved()
    assert summary["error"] == "The calendar server refused the username or password"
    assert moved.value("croco_sync_cycles_total", provider="caldav", result="auth_failed") == 1
    assert moved.total("croco_sync_cycles_total") == 1
    refused = moved.value(REQUESTS, provider="caldav", status="401")
    assert refused >= 1 and moved.total(REQUESTS) == refused  # Basic at once, then negotiated: refused each time

    line = cycle_line(caplog, "connection broken")
    assert (line["result"], line["error"], line["requests"]) == ("auth_failed", summary["error"], refused)


async def test_labels_name_providers_results_and_statuses_never_a_user_or_a_calendar(
    world: World, radicale: CalDAVServer, api: Client
) -> None:
    world.put("michel.ics", michel(D))
    await world.sync()
    found = await scrape(api)
    assert found.label_values("croco_sync_cycles_total", "provider") <= {p.value for p in Provider}
    assert found.label_values("croco_sync_cycles_total", "result") <= {"ok", "error", "auth_failed"}
    assert found.label_values(REQUESTS, "provider") <= {p.value for p in Provider}
    assert all(status.isdigit() or status == "unreachable" for status in found.label_values(REQUESTS, "status"))
    everything = {value for (_, labels), _ in found.samples.items() for _, value in labels}
    private = (world.user_id, world.calendar_id, world.calendar_url, radicale.username, JOHN)
    assert not [value for value in everything for secret in private if secret in value]


# Provider requests by status ----------------------------------------------------------------------------


@pytest.fixture
async def google_shared() -> AsyncIterator[GoogleShared]:
    shared = GoogleShared()
    yield shared
    shared.close()


def google_provider(google: GoogleEmulator, shared: GoogleShared, *, api_url: str | None = None) -> GoogleProvider:
    config = google_config(google, retries=1)
    if api_url is not None:
        config = replace(config, google=replace(config.google, api_url=api_url))
    return GoogleProvider(oauth_tokens(google.grant(JOHN)), config, shared, account=JOHN)


async def test_google_requests_are_counted_by_status_retries_included_and_in_the_cycle_that_made_them(
    google: GoogleEmulator, google_shared: GoogleShared, watch: Watch
) -> None:
    google.add_account(JOHN)
    provider = google_provider(google, google_shared)
    google.fail(Failure(403, "rateLimitExceeded"), method="events.list")  # the library retries it
    await watch.start()
    with counting_requests() as cycle:  # as the engine counts a cycle's: the calls run on a thread pool
        await provider.list_calendars()
        await provider.changes(JOHN, None, CONTEXT.window)
    moved = await watch.moved()
    sent = google.count()
    assert moved.value(REQUESTS, provider="google", status="403") == 1
    assert moved.value(REQUESTS, provider="google", status="200") == sent - 1
    assert moved.total(REQUESTS) == cycle[0] == sent

    created = await provider.create_many(JOHN, [DRAFT])  # one batch POST, whatever it carries
    moved = await watch.moved()
    assert not isinstance(created[0], ProviderError)
    assert moved.total(REQUESTS, provider="google") == moved.value(REQUESTS, provider="google", status="200") == 1


async def test_a_google_that_cannot_be_reached_is_counted_unreachable_for_each_attempt(
    google: GoogleEmulator, google_shared: GoogleShared, watch: Watch
) -> None:
    google.add_account(JOHN)
    provider = google_provider(google, google_shared, api_url=f"http://127.0.0.1:{free_port()}/")
    await watch.start()
    with pytest.raises(Unreachable):
        await provider.list_calendars()
    moved = await watch.moved()
    attempts = moved.value(REQUESTS, provider="google", status="unreachable")
    assert attempts == 2 and moved.total(REQUESTS) == attempts  # the call and the library's one retry


@pytest.fixture
async def microsoft(graph: GraphEmulator, graph_shared: MicrosoftShared) -> MicrosoftProvider:
    graph.add_account(JOHN)
    return MicrosoftProvider(await asyncio.to_thread(token_cache, graph, JOHN), graph_config(graph), graph_shared)


async def test_microsoft_requests_are_counted_by_status_a_batch_once(
    graph: GraphEmulator, microsoft: MicrosoftProvider, watch: Watch
) -> None:
    await watch.start()
    recorded, discoveries = graph.count(), graph.discoveries
    graph.expire_access_tokens()  # msal refreshes first: the sign-in service's requests count too
    with counting_requests() as cycle:
        (calendar,) = await microsoft.list_calendars()
        await microsoft.changes(calendar.remote_id, None, CONTEXT.window)
    moved = await watch.moved()
    sent = graph.count() - recorded + graph.discoveries - discoveries  # Graph's, msal's token and discovery GETs
    assert graph.count("token") >= 1 and graph.discoveries > discoveries
    assert moved.value(REQUESTS, provider="microsoft", status="401") == 1  # the expired token, refreshed once
    assert sent >= 4 and moved.value(REQUESTS, provider="microsoft", status="200") == sent - 1
    assert moved.total(REQUESTS) == cycle[0] == sent

    batches = graph.count("batch")
    created = await microsoft.create_many(calendar.remote_id, [DRAFT, replace(DRAFT, appointment_id="e5f6a7b8")])
    assert not any(isinstance(result, ProviderError) for result in created)
    moved = await watch.moved()
    assert moved.total(REQUESTS) == moved.value(REQUESTS, provider="microsoft", status="200")
    assert moved.total(REQUESTS) == graph.count("batch") - batches == 2  # the marker lookups, then the creates

    await microsoft.delete(calendar.remote_id, "AAMkAGone", None)  # already gone: Graph answers 404, done
    moved = await watch.moved()
    assert moved.total(REQUESTS) == moved.value(REQUESTS, provider="microsoft", status="404") == 1


async def test_a_graph_that_cannot_be_reached_is_counted_unreachable(
    graph: GraphEmulator, graph_shared: MicrosoftShared, watch: Watch
) -> None:
    graph.add_account(JOHN)
    config = graph_config(graph)
    config = replace(config, microsoft=replace(config.microsoft, graph_url=f"https://127.0.0.1:{free_port()}/v1.0/"))
    provider = MicrosoftProvider(await asyncio.to_thread(token_cache, graph, JOHN), config, graph_shared)
    await watch.start()
    discoveries = graph.discoveries
    with pytest.raises(Unreachable):
        await provider.list_calendars()
    moved = await watch.moved()
    assert moved.value(REQUESTS, provider="microsoft", status="unreachable") == 1
    assert moved.total(REQUESTS) == 1 + graph.discoveries - discoveries  # and the sign-in service's discovery

