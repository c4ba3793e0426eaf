"""What only the Google provider does, on the Google emulator through the real client libraries: access roles,
the busy rules on listed events, recurring series re-read whole, a token going stale in the middle of paging,
free/busy-only calendars, rate limits, conditional writes, batch creates, push channels, and OAuth tokens
refreshed, rotated or revoked, also through the sync engine."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httplib2
import pytest
from sqlalchemy import select

from storage.db import Database
from storage.enums import Access, ConnectionStatus, Provider
from storage.models import BlockedSlot, Connection, EventLink, Notice, RemoteCalendar
from storage.secrets import SecretBox
from sync import accounts, credentials
from sync.engine import SyncEngine
from sync.events import RemoteObject
from sync.providers.base import (
    ChangeSet,
    EventDraft,
    ExchangedAccount,
    GrantRevoked,
    InvalidCredentials,
    OAuthTokens,
    PreconditionFailed,
    RateLimited,
    ReadContext,
    RemoteCalendarInfo,
    TimeWindow,
    Unreachable,
    WriteResult,
)
from sync.providers.google.provider import GoogleProvider, GoogleShared
from sync.providers.registry import open_provider
from tests.emulators.google import Account, Failure, GoogleEmulator
from tests.factories import select_calendars
from tests.integration.conftest import book
from tests.providers.fixtures import SeedEvent, Weekly, google_events, google_id
from tests.providers.support import CONTEXT, DRAFT, START, google_config, oauth_tokens

JOHN = "john@example.com"
PARIS = ZoneInfo("Europe/Paris")
WINDOW = CONTEXT.window  # March and April 2026
NOW = datetime(2026, 3, 2, 8, tzinfo=UTC)
"""The engine's clock: its window (30 days back, 60 ahead by default) covers March 2026."""


def paris(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=PARIS)


def utc(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def event(event_id: str, start: datetime, **fields: Any) -> dict[str, Any]:
    """One hour from `start`, as another Google client writes it."""
    return {"id": event_id, "summary": "Meeting", "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()}} | fields


@dataclass
class World:
    google: GoogleEmulator
    john: Account
    shared: GoogleShared
    tokens: OAuthTokens

    def provider(self, *, retries: int = 1, tokens: OAuthTokens | None = None) -> GoogleProvider:
        return GoogleProvider(tokens or self.tokens, google_config(self.google, retries=retries), self.shared,
                              account=JOHN)

    def put(self, *resources: dict[str, Any], calendar: str = JOHN) -> None:
        for resource in resources:
            self.google.put_event(calendar, resource)

    def count(self, method: str | None = None) -> int:
        return self.google.count(method)


@pytest.fixture
async def world(google: GoogleEmulator) -> AsyncIterator[World]:
    john = google.add_account(JOHN)
    shared = GoogleShared()
    yield World(google, john, shared, oauth_tokens(google.grant(JOHN)))
    shared.close()


def read(provider: GoogleProvider, changes: ChangeSet, context: ReadContext = CONTEXT) -> dict[str, RemoteObject]:
    return {item.remote_id: provider.read(item, context) for item in changes.changed}


# Calendars and reading ----------------------------------------------------------------------------------


async def test_calendars_come_with_their_access_their_names_and_the_primary_one(world: World) -> None:
    world.john.add_calendar("team@group.calendar.google.com", "Team", "writer", summary_override="My team")
    world.john.add_calendar("holidays@group.v.calendar.google.com", "Holidays", "reader")
    world.john.add_calendar("shared@group.calendar.google.com", "Shared", "writerWithoutPrivateAccess")
    world.john.add_calendar("boss@example.com", "Boss", "freeBusyReader")
    assert await world.provider().list_calendars() == [
        RemoteCalendarInfo(JOHN, JOHN, Access.FULL, primary=True),  # its id is the account's email
        RemoteCalendarInfo("team@group.calendar.google.com", "My team", Access.FULL),
        RemoteCalendarInfo("holidays@group.v.calendar.google.com", "Holidays", Access.READ),
        RemoteCalendarInfo("shared@group.calendar.google.com", "Shared", Access.READ),
        RemoteCalendarInfo("boss@example.com", "Boss", Access.FREEBUSY),
    ]


async def test_declined_invitations_are_free_unless_someone_else_declined(world: World) -> None:
    world.put(event("declined1", paris(3, 4, 10), attendees=[
                  {"email": "boss@example.com", "responseStatus": "accepted"},
                  {"email": JOHN, "responseStatus": "declined"}]),  # Google marks John `self`
              event("otherdeclined", paris(3, 4, 12), attendees=[
                  {"email": "ann@example.com", "responseStatus": "declined"},
                  {"email": JOHN, "responseStatus": "accepted"}]))
    provider = world.provider()
    read_back = read(provider, await provider.changes(JOHN, None, WINDOW))
    assert [o.busy for o in read_back["declined1"].occurrences] == [False]
    assert [o.busy for o in read_back["otherdeclined"].occurrences] == [True]


async def test_a_transparent_all_day_event_is_free_and_covers_the_day_in_the_users_zone(world: World) -> None:
    world.put({"id": "offsite1", "summary": "Offsite", "start": {"date": "2026-03-06"}, "end": {"date": "2026-03-07"},
               "transparency": "transparent"})
    provider = world.provider()
    (day,) = read(provider, await provider.changes(JOHN, None, WINDOW))["offsite1"].occurrences
    assert (day.start, day.end, day.all_day, day.busy) == (utc(3, 5, 23), utc(3, 6, 23), True, False)


@pytest.mark.parametrize(("event_type", "busy"), [
    ("default", True), ("fromGmail", True), ("focusTime", True), ("outOfOffice", True),
    ("workingLocation", False), ("birthday", False),
])
async def test_each_event_type_blocks_or_not(world: World, event_type: str, busy: bool) -> None:
    world.put(event("kind1", paris(3, 4, 10), eventType=event_type))
    provider = world.provider()
    listed = read(provider, await provider.changes(JOHN, None, WINDOW))["kind1"]
    assert [o.busy for o in listed.occurrences] == [busy]  # listed and stored either way


# Recurring series -----------------------------------------------------------------------------------------


STANDUP = SeedEvent("standup", paris(3, 2, 9), paris(3, 2, 10), "Stand-up",
                    weekly=Weekly(5, cancelled=frozenset({1})))


async def test_cancelled_instances_are_left_out_and_a_changed_series_is_read_whole(world: World) -> None:
    master, cancelled = google_events(STANDUP)
    world.put(master, cancelled)
    provider, series = world.provider(), google_id(STANDUP)
    first = await provider.changes(JOHN, None, WINDOW)
    assert [item.remote_id for item in first.changed] == [series]  # one item for the whole series
    starts = [o.start for o in read(provider, first)[series].occurrences]
    assert starts == [utc(3, 2, 8), utc(3, 16, 8), utc(3, 23, 8), utc(3, 30, 7)]  # 9 March cancelled

    third = master | {"id": f"{series}_20260316T080000Z", "recurringEventId": series, "status": "cancelled",
                      "originalStartTime": {"dateTime": "2026-03-16T09:00:00+01:00", "timeZone": "Europe/Paris"}}
    third.pop("recurrence")
    world.put(third)  # another client cancels one more instance
    instances_before = world.count("events.instances")
    later = await provider.changes(JOHN, first.cursor, WINDOW)
    assert world.count("events.instances") == instances_before + 1  # the series, read whole again
    (item,) = later.changed
    occurrences = read(provider, later)[series].occurrences
    assert [o.start for o in occurrences] == [utc(3, 2, 8), utc(3, 23, 8), utc(3, 30, 7)]
    assert item.etag != first.changed[0].etag and not later.full

    world.google.delete_event(JOHN, series)  # the whole series
    gone = await provider.changes(JOHN, later.cursor, WINDOW)
    assert series in gone.removed or read(provider, gone)[series].cancelled


async def test_a_token_going_stale_in_the_middle_of_paging_restarts_the_listing_once(world: World) -> None:
    world.google.page_size_cap = 2
    world.put(*(event(f"e{n}abcd", paris(3, 4 + n, 10)) for n in range(5)))
    world.google.fail_after_pages(JOHN, pages=1)
    provider = world.provider()
    first = await provider.changes(JOHN, None, WINDOW)
    assert first.full and sorted(i.remote_id for i in first.changed) == [f"e{n}abcd" for n in range(5)]
    assert first.cursor is not None
    starts = [r for r in world.google.requests if r.method == "events.list" and "pageToken" not in r.params]
    assert len(starts) == 2  # the listing that went stale after one page, and the one that completed

    world.put(*(event(f"e{n}abcd", paris(3, 20 + n, 10)) for n in range(3)))  # changes listed on two pages
    world.google.fail_after_pages(JOHN, pages=1)
    again = await provider.changes(JOHN, first.cursor, WINDOW)
    assert again.full and sorted(i.remote_id for i in again.changed) == [f"e{n}abcd" for n in range(5)]
    assert [o.start for o in read(provider, again)["e0abcd"].occurrences] == [utc(3, 20, 9)]


# Free/busy only -------------------------------------------------------------------------------------------


async def test_a_free_busy_calendar_is_read_as_busy_periods_in_chunks_of_90_days(world: World) -> None:
    world.google.add_account("boss@example.com")  # whose calendar's zone is UTC
    world.john.add_calendar("boss@example.com", "Boss", "freeBusyReader")
    world.put(event("meet1", paris(3, 4, 10)), event("meet2", paris(3, 4, 11)),  # one busy stretch
              event("lunch1", paris(3, 5, 12), transparency="transparent"),
              {"id": "trip1", "summary": "Trip", "start": {"date": "2026-05-28"}, "end": {"date": "2026-06-03"}},
              calendar="boss@example.com")
    window = TimeWindow(utc(3, 1), utc(3, 1) + timedelta(days=120))  # the trip spans the chunks' boundary
    provider = world.provider()
    first = await provider.changes("boss@example.com", None, window)
    assert world.count("freebusy.query") == 2 and first.full and first.cursor == "freebusy:2026-03-01"
    context = replace(CONTEXT, window_start=window.start, window_end=window.end)
    read_back = read(provider, first, context)
    assert sorted(read_back) == ["freebusy/20260304T090000Z-20260304T110000Z",
                                 "freebusy/20260528T000000Z-20260603T000000Z"]
    assert all([(o.busy, o.title) for o in obj.occurrences] == [(True, None)] for obj in read_back.values())

    lists = world.count("calendarList.list")
    again = await world.provider().changes("boss@example.com", first.cursor, window)  # a new cycle
    assert world.count("calendarList.list") == lists and world.count("events.list") == 0  # straight to freebusy
    assert [i.remote_id for i in again.changed] == [i.remote_id for i in first.changed]  # unchanged ids


# Failures -------------------------------------------------------------------------------------------------


async def test_a_rate_limit_is_retried_by_the_library_then_answered(world: World) -> None:
    world.google.fail(Failure(403, "rateLimitExceeded"), method="events.list")
    listing = await world.provider(retries=1).changes(JOHN, None, WINDOW)
    assert listing.full and world.count("events.list") == 2


async def test_a_rate_limit_that_lasts_is_rate_limited_with_googles_retry_after(world: World) -> None:
    world.google.fail(Failure(429, "rateLimitExceeded", times=2, retry_after=7), method="events.list")
    with pytest.raises(RateLimited) as limited:
        await world.provider(retries=1).changes(JOHN, "sync:abc", WINDOW)
    assert limited.value.retry_after == 7 and world.count("events.list") == 2
    world.google.fail(Failure(403, "quotaExceeded"), method="events.list")
    with pytest.raises(RateLimited):  # not retried: usage limits last
        await world.provider(retries=1).changes(JOHN, "sync:abc", WINDOW)
    assert world.count("events.list") == 3


async def test_a_401_even_after_refreshing_is_invalid_credentials(world: World) -> None:
    world.google.fail(Failure(401, "authError", times=3), method="calendarList.list")
    with pytest.raises(InvalidCredentials):
        await world.provider().list_calendars()
    assert world.count("token") == 2  # google-auth refreshed twice before giving up


async def test_an_unreachable_server_is_unreachable(world: World) -> None:
    config = google_config(world.google, retries=0)
    closed = replace(config, google=replace(config.google, api_url="http://127.0.0.1:9/"))
    with pytest.raises(Unreachable):
        await GoogleProvider(world.tokens, closed, world.shared).list_calendars()


async def test_a_revoked_refresh_token_is_grant_revoked_and_no_token_is_shown(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world.google.revoke(JOHN)
    provider = world.provider()
    with pytest.raises(GrantRevoked) as revoked:
        await provider.changes(JOHN, None, WINDOW)
    shown = f"{revoked.value} {provider!r} {caplog.text}"
    assert "invalid_grant" in str(revoked.value)
    assert world.tokens.access_token not in shown and world.tokens.refresh_token not in shown


# Writes ---------------------------------------------------------------------------------------------------


async def test_our_event_has_our_id_and_marker_and_writes_are_conditional(world: World) -> None:
    provider = world.provider()
    created = await provider.create(JOHN, DRAFT)
    stored = world.google.event(JOHN, DRAFT.appointment_id)
    assert stored is not None and created.remote_id == DRAFT.appointment_id
    assert stored["extendedProperties"]["private"] == {"croco_appointment": DRAFT.appointment_id}
    assert "attendees" not in stored  # nobody is invited on our behalf

    world.put(stored | {"summary": "Edited by John"})  # John edits it in Google Calendar
    with pytest.raises(PreconditionFailed):
        await provider.update(JOHN, created.remote_id, DRAFT, created.etag)
    with pytest.raises(PreconditionFailed):
        await provider.delete(JOHN, created.remote_id, created.etag)
    assert (world.google.event(JOHN, DRAFT.appointment_id) or {})["summary"] == "Edited by John"


async def test_a_copy_the_user_deleted_is_found_on_create_and_revived_by_the_update(world: World) -> None:
    provider = world.provider()
    await provider.create(JOHN, DRAFT)
    world.google.delete_event(JOHN, DRAFT.appointment_id)
    again = await provider.create(JOHN, DRAFT)
    assert again.existed
    await provider.update(JOHN, again.remote_id, DRAFT, again.etag)
    assert (world.google.event(JOHN, DRAFT.appointment_id) or {})["status"] == "confirmed"


def drafts(count: int) -> list[EventDraft]:
    return [EventDraft(f"{n:08x}c0c0", START + timedelta(hours=n), START + timedelta(hours=n + 1), f"Visit {n}")
            for n in range(count)]


@pytest.fixture
def http_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URI of every HTTP request httplib2 sends (the emulator counts a batch's inner calls, not it)."""
    sent: list[str] = []
    real = httplib2.Http.request

    def counted(self: httplib2.Http, uri: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(uri)
        return real(self, uri, *args, **kwargs)

    monkeypatch.setattr(httplib2.Http, "request", counted)
    return sent


async def test_create_many_sends_one_batch_per_50_and_finds_existing_copies(
    world: World, http_requests: list[str]
) -> None:
    provider = world.provider()
    written = await provider.create(JOHN, drafts(1)[0])  # before a crash
    http_requests.clear()
    batch = world.google.root_url + "batch/calendar/v3"
    results = await provider.create_many(JOHN, drafts(3))
    assert http_requests[0] == batch and len(http_requests) == 2  # the batch, then reading the existing copy
    assert [(r.remote_id, r.existed) for r in results if isinstance(r, WriteResult)] == [
        ("00000000c0c0", True), ("00000001c0c0", False), ("00000002c0c0", False)]
    assert results[0] == replace(written, existed=True)

    http_requests.clear()
    many = await provider.create_many(JOHN, drafts(53))
    assert http_requests.count(batch) == 2 and world.count("events.get") == 1 + 3
    assert all(isinstance(r, WriteResult) for r in many) and len(world.google.events(JOHN)) == 53


async def test_one_failed_create_in_a_batch_fails_alone(world: World) -> None:
    world.google.fail(Failure(403, "forbidden"), method="events.insert")
    first, second = await world.provider().create_many(JOHN, drafts(2))
    assert not isinstance(first, WriteResult) and "forbidden" in str(first)
    assert isinstance(second, WriteResult) and not second.existed


# Push channels --------------------------------------------------------------------------------------------


async def test_a_channel_lasts_what_google_grants_and_stopping_twice_is_done(world: World) -> None:
    world.google.channel_lifetime = timedelta(days=7)
    provider = world.provider()
    channel = await provider.watch(JOHN, "c0ffee01", "http://127.0.0.1:9/webhooks/google", "tok-1", timedelta(days=30))
    live = world.google.channels["c0ffee01"]
    assert (live.address, live.token, live.calendar_id) == ("http://127.0.0.1:9/webhooks/google", "tok-1", JOHN)
    assert channel.resource_id == live.resource_id
    assert channel.expires_at == datetime.fromtimestamp(live.expiration_ms / 1000, UTC)  # the answer's, not ours
    assert channel.expires_at < datetime.now(UTC) + timedelta(days=8)
    await provider.stop_watching(channel)
    assert "c0ffee01" not in world.google.channels
    await provider.stop_watching(channel)  # already stopped: done


# Through the sync engine ---------------------------------------------------------------------------------


@dataclass
class Synced:
    db: Database
    box: SecretBox
    engine: SyncEngine
    user_id: str
    calendars: list[RemoteCalendar]

    async def connection(self) -> tuple[Connection, OAuthTokens]:
        async with self.db.session() as session:
            (connection,) = await session.scalars(select(Connection))
        tokens = credentials.unseal(self.box, connection.credentials)
        assert isinstance(tokens, OAuthTokens)
        return connection, tokens

    async def rows(self, model: type[Any]) -> list[Any]:
        async with self.db.session() as session:
            return list(await session.scalars(select(model)))


async def connect(world: World, db: Database, box: SecretBox, *, linked: bool = False) -> Synced:
    """John connects Google (the OAuth callback's tokens), with his primary and a team calendar as conflict
    calendars (the primary one linked if `linked`)."""
    world.john.add_calendar("team@group.calendar.google.com", "Team", "writer")
    factory: Callable[..., Any] = functools.partial(open_provider, config=google_config(world.google),
                                                    google=world.shared)
    workspace = await accounts.default_workspace(db)
    user = await accounts.create_user(db, workspace, "John", JOHN, "Europe/Paris", None)
    _, calendars = await accounts.connect(db, box, factory, user.id, Provider.GOOGLE,
                                          ExchangedAccount(JOHN, world.tokens), None, now=NOW)
    primary = next(c for c in calendars if c.remote_id == JOHN)
    await select_calendars(db, user, linked=primary if linked else None, conflicts=calendars)
    return Synced(db, box, SyncEngine(db, box, factory, clock=lambda: NOW), user.id, calendars)


async def test_an_idle_cycle_is_one_request_and_rotated_tokens_are_stored(
    world: World, db: Database, secret_box: SecretBox
) -> None:
    world.put(event("block1", paris(3, 4, 10)))
    synced = await connect(world, db, secret_box)
    primary = next(c for c in synced.calendars if c.remote_id == JOHN)
    assert (await synced.engine.sync_calendar(primary.id)).error is None
    before = world.count()
    report = await synced.engine.sync_calendar(primary.id)
    assert report.error is None and report.tally.blocked_slots == 1
    assert world.count() - before == 1 and world.google.requests[-1].params.get("syncToken")

    world.google.expire_access_tokens()  # the next call gets a 401: google-auth refreshes and retries
    assert (await synced.engine.sync_calendar(primary.id)).error is None
    _, stored = await synced.connection()
    assert stored.access_token != world.tokens.access_token and stored.refresh_token == world.tokens.refresh_token
    assert stored.expires_at > datetime.now(UTC)
    tokens_before = world.count("token")
    assert (await synced.engine.sync_calendar(primary.id)).error is None
    assert world.count("token") == tokens_before  # the stored token works: no refresh


async def test_a_revoked_grant_breaks_the_connection_once_and_keeps_its_slots(
    world: World, db: Database, secret_box: SecretBox
) -> None:
    synced = await connect(world, db, secret_box)
    world.put(event("block1", paris(3, 4, 10)))
    world.put(event("block2", paris(3, 4, 12)), calendar="team@group.calendar.google.com")
    for calendar in synced.calendars:
        assert (await synced.engine.sync_calendar(calendar.id)).error is None
    assert len(await synced.rows(BlockedSlot)) == 2

    world.google.revoke(JOHN)
    reports = [await synced.engine.sync_calendar(c.id) for c in synced.calendars + synced.calendars]
    assert "invalid_grant" in str(reports[0].error)
    connection, stored = await synced.connection()
    assert connection.status == ConnectionStatus.BROKEN and stored == world.tokens
    assert len(await synced.rows(BlockedSlot)) == 2  # availability does not silently open
    assert [n.kind for n in await synced.rows(Notice)] == ["connection_broken"]


async def test_the_engine_pushes_several_bookings_in_one_batch(
    world: World, db: Database, secret_box: SecretBox, http_requests: list[str]
) -> None:
    synced = await connect(world, db, secret_box, linked=True)
    booked = [await book(synced, START + timedelta(days=n)) for n in range(3)]
    http_requests.clear()
    primary = next(c for c in synced.calendars if c.remote_id == JOHN)
    report = await synced.engine.sync_calendar(primary.id)
    assert report.error is None and report.tally.pushed == 3
    assert http_requests.count(world.google.root_url + "batch/calendar/v3") == 1
    assert world.count("events.insert") == 3
    links = await synced.rows(EventLink)
    assert sorted(link.remote_id for link in links) == sorted(booked)  # our ids: a crash would adopt them
    assert all(link.etag for link in links)


async def test_an_all_day_event_is_read_in_the_users_zone_by_the_engine(
    world: World, db: Database, secret_box: SecretBox
) -> None:
    world.put({"id": "vacation1", "summary": "Holiday", "start": {"date": "2026-03-06"}, "end": {"date": "2026-03-07"}})
    synced = await connect(world, db, secret_box)
    primary = next(c for c in synced.calendars if c.remote_id == JOHN)
    assert (await synced.engine.sync_calendar(primary.id)).error is None
    (slot,) = await synced.rows(BlockedSlot)
    assert (slot.start, slot.end, slot.busy) == (utc(3, 5, 23), utc(3, 6, 23), True)  # 6 March in Paris
