"""What only the Microsoft provider does, on the Graph emulator through the real msal and aiohttp: every showAs
value, cancelled events, a series with exceptions read whole, an expired delta token, throttling, idempotent and
conditional writes, and msal's token cache refreshed, rotated or revoked, also through the sync engine."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.enums import Access, ConnectionStatus, Provider
from storage.models import BlockedSlot, Connection, Notice, RemoteCalendar
from storage.secrets import SecretBox
from sync import accounts, credentials
from sync.engine import SyncEngine
from sync.events import RemoteObject
from sync.providers.base import (
    ChangeSet,
    EventDraft,
    GrantRevoked,
    InvalidCredentials,
    PreconditionFailed,
    RateLimited,
    RemoteCalendarInfo,
    TokenCache,
    Unreachable,
)
from sync.providers.microsoft.provider import MicrosoftProvider, MicrosoftShared
from sync.providers.registry import open_provider
from tests.emulators.graph import Account, Failure, GraphEmulator
from tests.factories import select_calendars
from tests.providers.fixtures import SeedEvent, Weekly
from tests.providers.support import CONTEXT, DRAFT, START, graph_config, seed_graph, token_cache

JOHN = "john@example.com"
PARIS = ZoneInfo("Europe/Paris")
WINDOW = CONTEXT.window  # March and April 2026
NOW = datetime(2026, 3, 2, 8, tzinfo=UTC)
"""The engine's clock: its window (30 days back, 60 ahead by default) covers March 2026."""
STANDUP = SeedEvent("standup", datetime(2026, 3, 2, 9, tzinfo=PARIS), datetime(2026, 3, 2, 9, 30, tzinfo=PARIS),
                    "Stand-up", weekly=Weekly(4, moved={1: timedelta(hours=6)}, cancelled=frozenset({2})))


def utc(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def event(subject: str, start: datetime, **fields: Any) -> dict[str, Any]:
    """One hour from `start`, as another Outlook client writes it."""
    return {"subject": subject, "start": {"dateTime": f"{start.astimezone(UTC):%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
            "end": {"dateTime": f"{start.astimezone(UTC) + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}",
                    "timeZone": "UTC"}} | fields


@dataclass
class World:
    graph: GraphEmulator
    john: Account
    shared: MicrosoftShared
    cache: TokenCache
    waits: list[float]

    @property
    def calendar(self) -> str:
        return self.john.default_calendar_id

    def provider(self, cache: TokenCache | None = None) -> MicrosoftProvider:
        return MicrosoftProvider(cache or self.cache, graph_config(self.graph), self.shared, sleep=self.wait)

    async def wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def put(self, resource: dict[str, Any]) -> str:
        return str(self.graph.put_event(self.calendar, resource)["id"])


@pytest.fixture
async def world(graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_bundle_path))  # msal's requests trust the emulator
    john = graph.add_account(JOHN)
    shared = MicrosoftShared(ssl_context=graph.client_ssl_context())
    yield World(graph, john, shared, await asyncio.to_thread(token_cache, graph, JOHN), [])
    await shared.close()


def read(provider: MicrosoftProvider, changes: ChangeSet) -> dict[str, RemoteObject]:
    return {item.remote_id: provider.read(item, CONTEXT) for item in changes.changed}


# Calendars and reading ----------------------------------------------------------------------------------


async def test_calendars_come_with_their_access_and_the_default_one(world: World) -> None:
    shared = world.john.add_calendar("Team", can_edit=False)
    found = await world.provider().list_calendars()
    assert found == [RemoteCalendarInfo(world.calendar, "Calendar", Access.FULL, primary=True),
                     RemoteCalendarInfo(shared, "Team", Access.READ)]


@pytest.mark.parametrize(("show_as", "busy"), [("free", False), ("workingElsewhere", False), ("tentative", True),
                                               ("busy", True), ("oof", True), ("unknown", True)])
async def test_each_show_as_value_blocks_or_not(world: World, show_as: str, busy: bool) -> None:
    remote_id = world.put(event("Meeting", utc(3, 4, 9), showAs=show_as))
    provider = world.provider()
    (occurrence,) = read(provider, await provider.changes(world.calendar, None, WINDOW))[remote_id].occurrences
    assert occurrence.busy is busy


async def test_a_cancelled_event_is_read_as_cancelled(world: World) -> None:
    remote_id = world.put(event("Called off", utc(3, 4, 9), isCancelled=True))
    provider = world.provider()
    cancelled = read(provider, await provider.changes(world.calendar, None, WINDOW))[remote_id]
    assert cancelled.cancelled and cancelled.occurrences == ()


async def test_a_series_with_a_moved_and_a_cancelled_occurrence_is_one_item_read_whole_again(world: World) -> None:
    series = seed_graph(world.graph, world.calendar, JOHN, STANDUP)
    provider = world.provider()
    first = await provider.changes(world.calendar, None, WINDOW)
    assert [item.remote_id for item in first.changed] == [series]
    assert [(o.start, o.title) for o in read(provider, first)[series].occurrences] == [
        (utc(3, 2, 8), "Stand-up"), (utc(3, 9, 14), "Stand-up (moved)"), (utc(3, 23, 8), "Stand-up")]

    world.graph.edit_occurrence(world.calendar, f"{series}_20260323T080000", {"subject": "Retro"})
    later = await provider.changes(world.calendar, first.cursor, WINDOW)
    assert world.graph.count("events.instances") == 1 and not later.full
    (item,) = later.changed  # the whole series, not just the occurrence delta named
    assert [(o.start, o.title) for o in provider.read(item, CONTEXT).occurrences] == [
        (utc(3, 2, 8), "Stand-up"), (utc(3, 9, 14), "Stand-up (moved)"), (utc(3, 23, 8), "Retro")]
    assert item.etag != first.changed[0].etag

    world.graph.delete_event(world.calendar, series)
    gone = await provider.changes(world.calendar, later.cursor, WINDOW)
    assert gone.changed == () and series in gone.removed


async def test_an_expired_delta_token_lists_everything_again(world: World) -> None:
    ids = {world.put(event(f"Meeting {n}", utc(3, 4 + n, 9))) for n in range(3)}
    provider = world.provider()
    first = await provider.changes(world.calendar, None, WINDOW)
    world.graph.expire_delta_tokens(world.calendar)
    again = await provider.changes(world.calendar, first.cursor, WINDOW)
    assert again.full and {item.remote_id for item in again.changed} == ids and len(again.changed) == 3
    assert (await provider.changes(world.calendar, again.cursor, WINDOW)).changed == ()


# Throttling and failures --------------------------------------------------------------------------------


async def test_a_short_retry_after_is_waited_and_a_long_one_is_rate_limited(world: World) -> None:
    world.graph.fail(Failure(429, retry_after=2), method="calendars.list")
    world.graph.fail(Failure(503, "ServiceUnavailable", retry_after=3), method="calendars.list")
    assert len(await world.provider().list_calendars()) == 1
    assert world.waits == [2, 3] and world.graph.count("calendars.list") == 3

    world.graph.fail(Failure(429, retry_after=120), method="calendars.list")
    with pytest.raises(RateLimited) as limited:
        await world.provider().list_calendars()
    assert limited.value.retry_after == 120 and world.waits == [2, 3]


async def test_a_mailbox_gets_at_most_four_requests_at_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten calls at once: four reach Graph, the others wait for a slot (M5)."""
    provider = world.provider()
    await provider.list_calendars()  # the token, once
    answer, in_flight, most = world.graph._calendars_list, 0, 0
    four, release = asyncio.Event(), asyncio.Event()

    async def held(context: Any) -> Any:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == 4:
            four.set()
        await release.wait()
        in_flight -= 1
        return answer(context)

    monkeypatch.setattr(world.graph, "_calendars_list", held)
    calls = asyncio.gather(*(provider.list_calendars() for _ in range(10)))
    await asyncio.wait_for(four.wait(), 10)
    assert world.shared.slots(world.cache.home_account_id).locked()  # the other six wait here, not at Graph
    release.set()
    assert len(await calls) == 10 and most == 4


async def test_a_401_even_after_refreshing_is_invalid_credentials(world: World) -> None:
    world.graph.fail(Failure(401, "InvalidAuthenticationToken", times=2), method="calendars.list")
    with pytest.raises(InvalidCredentials):
        await world.provider().list_calendars()
    assert world.graph.count("calendars.list") == 2


async def test_an_unreachable_graph_is_unreachable(world: World) -> None:
    config = graph_config(world.graph)
    closed = replace(config, microsoft=replace(config.microsoft, graph_url="https://127.0.0.1:9/v1.0"))
    with pytest.raises(Unreachable):
        await MicrosoftProvider(world.cache, closed, world.shared).list_calendars()


async def test_a_revoked_consent_is_grant_revoked_and_no_token_is_shown(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world.graph.revoke(JOHN)
    provider = world.provider()
    with pytest.raises(GrantRevoked) as revoked:
        await provider.changes(world.calendar, None, WINDOW)
    shown = f"{revoked.value!r} {revoked.value} {provider!r} {caplog.text}"
    assert "invalid_grant" in str(revoked.value)
    assert not any(secret in shown for secret in world.graph.issued_secrets())


# Writes ---------------------------------------------------------------------------------------------------


async def test_a_retried_create_finds_the_first_event(world: World) -> None:
    provider = world.provider()
    first = await provider.create(world.calendar, DRAFT)
    again = await provider.create(world.calendar, DRAFT)
    assert again.existed and again.remote_id == first.remote_id
    (stored,) = world.graph.events(world.calendar)
    assert stored["transactionId"] == DRAFT.appointment_id and stored["subject"] == "Consultation"


async def test_a_create_answered_503_is_retried_after_retry_after_and_makes_one_event(world: World) -> None:
    world.graph.fail(Failure(503, "ServiceUnavailable", retry_after=1), method="events.create")
    created = await world.provider().create(world.calendar, DRAFT)
    assert [e["id"] for e in world.graph.events(world.calendar)] == [created.remote_id]
    assert world.waits == [1] and world.graph.count("events.create") == 2


async def test_writes_are_conditional_on_the_etag(world: World) -> None:
    provider = world.provider()
    created = await provider.create(world.calendar, DRAFT)
    moved = EventDraft(DRAFT.appointment_id, START + timedelta(hours=2), START + timedelta(hours=3), "Moved", 1)
    updated = await provider.update(world.calendar, created.remote_id, moved, created.etag)
    assert world.graph.requests[-1].http_method == "PATCH"
    with pytest.raises(PreconditionFailed):
        await provider.update(world.calendar, created.remote_id, DRAFT, created.etag)
    with pytest.raises(PreconditionFailed):
        await provider.delete(world.calendar, created.remote_id, created.etag)
    (stored,) = world.graph.events(world.calendar)
    assert (stored["subject"], stored["start"]["dateTime"][:19]) == ("Moved", "2026-03-04T11:00:00")
    await provider.delete(world.calendar, created.remote_id, updated.etag)
    await provider.delete(world.calendar, created.remote_id, updated.etag)  # gone: done
    assert world.graph.events(world.calendar) == []


# Through the sync engine ---------------------------------------------------------------------------------


@dataclass
class Synced:
    db: Database
    box: SecretBox
    engine: SyncEngine
    calendars: list[RemoteCalendar]

    async def stored(self) -> tuple[Connection, TokenCache]:
        async with self.db.session() as session:
            (connection,) = await session.scalars(select(Connection))
        cache = credentials.unseal(self.box, connection.credentials)
        assert isinstance(cache, TokenCache)
        return connection, cache

    async def rows(self, model: type[Any]) -> list[Any]:
        async with self.db.session() as session:
            return list(await session.scalars(select(model)))


async def connect(world: World, db: Database, box: SecretBox) -> Synced:
    """John's Outlook connection as connecting stores it (msal's cache, sealed), its calendars his conflicts."""
    factory = functools.partial(open_provider, config=graph_config(world.graph), microsoft=world.shared)
    workspace = await accounts.default_workspace(db)
    user = await accounts.create_user(db, workspace, "John", JOHN, "Europe/Paris", None)
    found = await factory("microsoft", world.cache, None).list_calendars()
    async with db.write() as session:
        connection = Connection(user_id=user.id, provider=Provider.MICROSOFT, account=JOHN,
                                credentials=credentials.seal(box, world.cache), status=ConnectionStatus.OK,
                                calendars_listed_at=NOW)
        session.add(connection)
        await session.flush()
        calendars = [RemoteCalendar(connection_id=connection.id, remote_id=c.remote_id, name=c.name, access=c.access,
                                    due_at=NOW) for c in found]
        session.add_all(calendars)
    await select_calendars(db, user, linked=None, conflicts=calendars)
    return Synced(db, box, SyncEngine(db, box, factory, clock=lambda: NOW), calendars)


def refresh_token(cache: TokenCache) -> str:
    (token,) = json.loads(cache.serialized)["RefreshToken"].values()
    return str(token["secret"])


async def test_an_idle_cycle_is_one_request_and_every_rotated_refresh_token_is_stored(
    world: World, db: Database, secret_box: SecretBox
) -> None:
    world.put(event("Meeting", utc(3, 4, 9)))
    synced = await connect(world, db, secret_box)
    (calendar,) = synced.calendars
    assert (await synced.engine.sync_calendar(calendar.id)).error is None
    before = world.graph.count()
    report = await synced.engine.sync_calendar(calendar.id)
    assert report.error is None and report.tally.blocked_slots == 1
    assert world.graph.count() - before == 1 and "$deltatoken" in world.graph.requests[-1].params

    seen = [refresh_token(world.cache)]
    for _ in range(3):
        world.graph.expire_access_tokens()  # Graph answers 401: msal refreshes, and the refresh token rotates
        assert (await synced.engine.sync_calendar(calendar.id)).error is None
        _, stored = await synced.stored()
        assert refresh_token(stored) not in seen  # the engine stored the new cache every time
        seen.append(refresh_token(stored))
    tokens_before = world.graph.count("token")
    assert (await synced.engine.sync_calendar(calendar.id)).error is None
    assert world.graph.count("token") == tokens_before  # the stored access token works: no refresh


async def test_providers_opened_one_after_another_ask_the_sign_in_service_for_its_configuration_once(
    world: World
) -> None:
    """Every sync opens a provider, and msal a new app: without the process's shared discovery cache each would
    fetch the authority's OpenID configuration again, doubling an idle cycle's requests."""
    world.graph.expire_access_tokens()
    before = world.graph.discoveries  # connecting asked once already, with msal's app of its own
    for _ in range(3):
        assert await world.provider().list_calendars()
    assert world.graph.discoveries - before == 1


async def test_a_revoked_consent_breaks_the_connection_once_and_keeps_its_slots(
    world: World, db: Database, secret_box: SecretBox
) -> None:
    world.john.add_calendar("Team")
    world.put(event("Meeting", utc(3, 4, 9)))
    synced = await connect(world, db, secret_box)
    for calendar in synced.calendars:
        assert (await synced.engine.sync_calendar(calendar.id)).error is None
    world.graph.revoke(JOHN)
    reports = [await synced.engine.sync_calendar(c.id) for c in synced.calendars + synced.calendars]
    assert "invalid_grant" in str(reports[0].error)
    connection, _ = await synced.stored()
    assert connection.status == ConnectionStatus.BROKEN
    assert len(await synced.rows(BlockedSlot)) == 1  # availability does not silently open
    assert [n.kind for n in await synced.rows(Notice)] == ["connection_broken"]


async def test_an_expired_delta_token_resyncs_without_duplicates(
    world: World, db: Database, secret_box: SecretBox
) -> None:
    for n in range(3):
        world.put(event(f"Meeting {n}", utc(3, 4 + n, 9)))
    synced = await connect(world, db, secret_box)
    (calendar,) = synced.calendars
    assert (await synced.engine.sync_calendar(calendar.id)).error is None
    slots = sorted((s.remote_id, s.start) for s in await synced.rows(BlockedSlot))
    world.graph.expire_delta_tokens(world.calendar)
    assert (await synced.engine.sync_calendar(calendar.id)).error is None
    assert sorted((s.remote_id, s.start) for s in await synced.rows(BlockedSlot)) == slots and len(slots) == 3
