"""Push channels: which calendars get one, renewal before expiry, stopping, failures kept to their calendar, and
what a live channel changes for the sync (the safety poll instead of the interval)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from storage.db import Database
from storage.enums import ConnectionStatus
from storage.models import ConflictCalendar, Connection, Notice, RemoteCalendar, User
from storage.secrets import SecretBox
from sync import channels, credentials, leases
from sync.channels import Change, Notified, PushChannels, Upkeep
from sync.engine import SyncEngine
from sync.providers.base import (
    CalendarGone,
    CalendarProvider,
    Credentials,
    GoogleConfig,
    GrantRevoked,
    MicrosoftConfig,
    OAuthTokens,
    ProviderConfig,
    ProviderError,
    PushChannel,
    RateLimited,
    Unreachable,
)
from sync.providers.memory import MemoryProvider
from tests.clocks import ManualClock
from tests.factories import add_connection, add_user, select_calendars

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
PUBLIC_URL = "https://croco.example.com"
EMULATED = ProviderConfig(google=GoogleConfig(api_url="http://127.0.0.1:9/"),
                          microsoft=MicrosoftConfig(graph_url="https://127.0.0.1:9/v1.0/"))
"""Providers served on this machine, as emulators are: they can call a loopback public URL too."""
INTERVAL, SAFETY_POLL = timedelta(minutes=5), timedelta(hours=1)


class PollOnly:
    """A provider without push (CalDAV): nothing to watch."""

    def rotated_credentials(self) -> None:
        return None


@dataclass
class Accounts:
    """The `ProviderFactory`: every push connection opens the one in-memory Google-like account."""

    google: MemoryProvider
    opened: list[str] = field(default_factory=list)
    unavailable: bool = False  # opening fails, as for a provider whose client is no longer configured

    def __call__(self, provider: str, credentials: Credentials, server_url: str | None) -> CalendarProvider:
        self.opened.append(provider)
        if self.unavailable:
            raise ValueError(f"the {provider} provider is not available")
        if provider == "caldav":
            return PollOnly()  # type: ignore[return-value]
        return self.google.opened_with(credentials)


@dataclass
class World:
    db: Database
    box: SecretBox
    clock: ManualClock
    accounts: Accounts
    user: User
    calendars: list[RemoteCalendar]  # John's Google calendars: 0 linked, 1 conflict, 2 not selected

    @property
    def google(self) -> MemoryProvider:
        return self.accounts.google

    def channels(self, public_url: str = PUBLIC_URL) -> PushChannels:
        return PushChannels(self.db, self.box, self.accounts, public_url, config=EMULATED)

    async def renew(self, public_url: str = PUBLIC_URL) -> Upkeep:
        return await self.channels(public_url).renew(self.clock())

    async def row(self, index: int) -> RemoteCalendar:
        async with self.db.session() as session:
            found = await session.get(RemoteCalendar, self.calendars[index].id)
        assert found is not None
        return found

    def watched(self) -> dict[str, str]:
        """Remote calendar id -> live channel id, on the server."""
        return {w.calendar_id: channel_id for channel_id, w in self.google.watches.items()}


@pytest.fixture
async def world(db: Database, secret_box: SecretBox) -> World:
    clock = ManualClock(NOW)
    google = MemoryProvider(clock=clock)
    for n in range(3):
        google.add_calendar(f"/cal{n}/")
    user = await add_user(db)
    _, calendars = await add_connection(db, user, secret_box, calendars=3, provider="google")
    await select_calendars(db, user, linked=calendars[0], conflicts=calendars[:2])
    return World(db, secret_box, clock, Accounts(google), user, calendars)


async def test_the_selected_calendars_of_a_push_connection_get_a_channel_each(world: World) -> None:
    upkeep = await world.renew()

    assert sorted(world.watched()) == ["/cal0/", "/cal1/"]  # the linked and the conflict calendar, not the third
    assert sorted(upkeep.created) == sorted(c.id for c in world.calendars[:2]) and not upkeep.failed
    for index in (0, 1):
        row = await world.row(index)
        watch = world.google.watches[row.push_channel_id or ""]
        assert watch.address == "https://croco.example.com/webhooks/google"
        assert world.box.verify_mac("push-channel", row.id, watch.token)  # unforgeable without our key
        assert (row.push_resource_id, row.push_channel_expires_at) == (f"resource-/cal{index}/", NOW + timedelta(days=7))
    assert (await world.row(2)).push_channel_id is None

    calls = len(world.google.calls)
    await world.renew()  # live channels: nothing to do, not a single request
    assert len(world.google.calls) == calls


async def test_providers_without_push_and_broken_connections_get_no_channel(world: World) -> None:
    mary = await add_user(world.db, name="Mary", email="mary@example.com")
    _, caldav = await add_connection(world.db, mary, world.box, calendars=1, provider="caldav")
    _, broken = await add_connection(world.db, mary, world.box, calendars=1, provider="google",
                                     status=ConnectionStatus.BROKEN)
    await select_calendars(world.db, mary, linked=caldav[0], conflicts=[caldav[0], broken[0]])
    pushing = world.channels()
    await pushing.renew(NOW)
    await pushing.renew(NOW + timedelta(minutes=5))

    assert sorted(world.watched()) == ["/cal0/", "/cal1/"]  # John's; the broken one's remote id is /cal0/ too
    assert len(world.google.watches) == 2
    assert world.accounts.opened.count("caldav") == 1  # found without push once, then never opened again


@pytest.mark.parametrize("public_url", ["https://croco.example.com/", "http://127.0.0.1:8080", "http://localhost:8080",
                                        "http://[::1]:8080"])
async def test_channels_are_made_for_an_https_or_loopback_public_url(world: World, public_url: str) -> None:
    await world.renew(public_url)
    assert sorted(world.watched()) == ["/cal0/", "/cal1/"]
    addresses = {w.address for w in world.google.watches.values()}
    assert addresses == {public_url.rstrip("/") + "/webhooks/google"}


@pytest.mark.parametrize("public_url", ["http://croco.example.com", "http://10.0.0.7:8080", "not a url"])
async def test_no_channel_when_the_provider_cannot_call_the_public_url(world: World, public_url: str) -> None:
    await world.renew()
    assert len(world.google.watches) == 2

    await world.renew(public_url)  # the URL changed: the channels go, the poll alone keeps calendars fresh
    assert world.google.watches == {}
    assert [(await world.row(i)).push_channel_id for i in range(3)] == [None, None, None]


async def test_the_real_google_gets_no_channel_for_a_loopback_public_url(world: World) -> None:
    """It would refuse the watch (it calls https addresses only), every five minutes: the poll keeps calendars fresh."""
    channels = PushChannels(world.db, world.box, world.accounts, "http://127.0.0.1:8080", config=ProviderConfig())
    assert (await channels.renew(world.clock())).created == [] and world.google.watches == {}
    https = PushChannels(world.db, world.box, world.accounts, PUBLIC_URL, config=ProviderConfig())
    assert len((await https.renew(world.clock())).created) == 2


async def test_a_channel_expiring_within_a_day_is_replaced_by_a_new_one_then_stopped(world: World) -> None:
    await world.renew()
    first = (await world.row(0)).push_channel_id

    world.clock.at(timedelta(days=5, hours=23))  # more than a day left: kept
    await world.renew()
    assert (await world.row(0)).push_channel_id == first

    world.google.calls.clear()
    world.clock.at(timedelta(days=6, hours=1))
    upkeep = await world.renew()
    row = await world.row(0)
    assert row.push_channel_id not in (None, first) and first not in world.google.watches
    assert world.watched()["/cal0/"] == row.push_channel_id
    assert row.push_channel_expires_at == world.clock() + timedelta(days=7)
    assert world.google.calls == ["watch", "stop_watching"] * 2  # the new one first: they overlap, no gap
    assert row.due_at == world.clock()  # what the old channel notified while being replaced: synced once
    assert len(upkeep.created) == 2


async def test_a_channel_past_its_expiry_is_replaced_at_the_next_run(world: World) -> None:
    await world.renew()
    first = (await world.row(1)).push_channel_id
    world.google.watches.clear()  # the server ended them (a missed renewal, a server restart)

    world.clock.at(timedelta(days=8))
    await world.renew()
    row = await world.row(1)
    assert row.push_channel_id != first and world.watched()["/cal1/"] == row.push_channel_id
    assert row.push_channel_expires_at == NOW + timedelta(days=15)


async def test_a_calendar_no_longer_selected_gets_its_channel_stopped(world: World) -> None:
    await world.renew()
    async with world.db.write() as session:  # John unticks his second calendar
        await session.execute(delete(ConflictCalendar).where(ConflictCalendar.calendar_id == world.calendars[1].id))  # type: ignore[arg-type]

    upkeep = await world.renew()
    assert upkeep.stopped == [world.calendars[1].id]
    assert sorted(world.watched()) == ["/cal0/"]
    row = await world.row(1)
    assert (row.push_channel_id, row.push_resource_id, row.push_channel_expires_at) == (None, None, None)


async def test_a_broken_connection_gets_its_channels_stopped(world: World) -> None:
    await world.renew()
    async with world.db.write() as session:
        await session.execute(update(Connection).values(status=ConnectionStatus.BROKEN))
    await world.renew()
    assert world.google.watches == {}
    assert (await world.row(0)).push_channel_id is None


async def test_a_stop_the_server_cannot_take_now_is_tried_again(world: World) -> None:
    await world.renew()
    async with world.db.write() as session:
        await session.execute(update(Connection).values(status=ConnectionStatus.BROKEN))
    world.google.fail_next(Unreachable("connection refused"), on="stop_watching")
    upkeep = await world.renew()
    assert len(upkeep.failed) == 1 and len(world.google.watches) == 1

    await world.renew()
    assert world.google.watches == {}


async def test_a_revoked_grant_met_while_watching_breaks_the_connection_and_tells_once(world: World) -> None:
    """Not left for a sync an hour away: the user hears of it now, once, and no more channels are tried."""
    world.google.fail_next(GrantRevoked(), on="watch")
    upkeep = await world.renew()
    assert world.google.watches == {} and len(upkeep.failed) == 1  # its first calendar: the other one waits
    async with world.db.session() as session:
        (connection,) = await session.scalars(select(Connection))
        notices = list(await session.scalars(select(Notice)))
    assert connection.status == ConnectionStatus.BROKEN
    assert [n.kind for n in notices] == ["connection_broken"]
    world.clock.later(timedelta(minutes=5))
    assert await world.renew() == Upkeep([], [], [])  # a broken connection's calendars are not watched


@pytest.mark.parametrize("error", [Unreachable("connection refused"), RateLimited("slow down", 30),
                                   CalendarGone("gone")], ids=type)
async def test_a_calendar_failing_does_not_stop_the_others_and_is_tried_next_run(
    world: World, caplog: pytest.LogCaptureFixture, error: ProviderError
) -> None:
    world.google.fail_next(error, on="watch")
    with caplog.at_level(logging.WARNING, logger="sync.channels"):
        upkeep = await world.renew()

    (failed,), (created,) = upkeep.failed, upkeep.created  # the first one tried failed; the other one went on
    assert {failed, created} == {c.id for c in world.calendars[:2]}
    async with world.db.session() as session:
        failed_row, created_row = await session.get(RemoteCalendar, failed), await session.get(RemoteCalendar, created)
    assert failed_row is not None and created_row is not None
    assert list(world.watched()) == [created_row.remote_id]
    assert failed_row.push_channel_id is None  # no id of a channel that does not exist
    (logged,) = [r for r in caplog.records if r.getMessage() == "push channel not created"]
    assert (logged.__dict__["user_id"], logged.__dict__["calendar_id"], logged.__dict__["provider"]) == (
        world.user.id, failed, "google")
    async with world.db.session() as session:
        connection = await session.get(Connection, failed_row.connection_id)
    assert connection is not None and connection.status == ConnectionStatus.OK

    world.clock.later(timedelta(minutes=5))
    assert (await world.renew()).created == [failed]
    assert sorted(world.watched()) == ["/cal0/", "/cal1/"]


async def test_a_failed_renewal_keeps_the_old_channel(world: World) -> None:
    await world.renew()
    before = [await world.row(i) for i in (0, 1)]
    world.clock.at(timedelta(days=6, hours=12))
    world.google.fail_next(Unreachable("connection refused"), on="watch")  # the first renewal tried fails
    await world.renew()
    kept = [old for old in before if (await world.row(before.index(old))).push_channel_id == old.push_channel_id]
    (old,) = kept
    row = await world.row(before.index(old))
    assert (row.push_resource_id, row.push_channel_expires_at) == (old.push_resource_id, old.push_channel_expires_at)
    assert world.watched()[old.remote_id] == old.push_channel_id  # still live, renewed at the next run


async def test_the_sync_message_arriving_before_the_watch_answer_is_accepted(world: World) -> None:
    answers: list[Notified] = []

    class Eager(MemoryProvider):
        async def watch(self, calendar_id: str, channel_id: str, address: str, token: str,
                        lifetime: timedelta) -> PushChannel:
            answers.append(await channels.take_notification(world.db, world.box, "google", channel_id, token,
                                                            Change.NONE, NOW))
            return await super().watch(calendar_id, channel_id, address, token, lifetime)

    eager = Eager(clock=world.clock)
    eager.add_calendar("/cal0/")
    eager.add_calendar("/cal1/")
    world.accounts.google = eager
    await world.renew()
    assert answers == [Notified.ACKNOWLEDGED, Notified.ACKNOWLEDGED]


async def test_two_processes_renewing_at_once_make_one_channel_per_calendar(world: World) -> None:
    await asyncio.gather(world.renew(), world.renew())
    assert len(world.google.watches) == 2
    assert sorted(world.watched()) == ["/cal0/", "/cal1/"]
    for index in (0, 1):
        assert world.watched()[f"/cal{index}/"] == (await world.row(index)).push_channel_id


async def test_tokens_a_watch_refreshed_are_kept(db: Database, secret_box: SecretBox) -> None:
    old = OAuthTokens("access-old", "refresh-old", NOW - timedelta(minutes=1))
    new = OAuthTokens("access-new", "refresh-new", NOW + timedelta(hours=1))
    google = MemoryProvider()
    google.add_calendar("/cal0/")
    user = await add_user(db)
    connection, calendars = await add_connection(db, user, secret_box, provider="google", login=old)
    await select_calendars(db, user, linked=calendars[0], conflicts=calendars)
    google.rotate_tokens(new)
    await PushChannels(db, secret_box, Accounts(google), PUBLIC_URL, config=EMULATED).renew(NOW)
    async with db.session() as session:
        stored = await session.get(Connection, connection.id)
    assert stored is not None and credentials.unseal(secret_box, stored.credentials) == new


async def test_stopping_a_connection_stops_its_channels_and_never_raises(world: World) -> None:
    await world.renew()
    world.google.fail_next(Unreachable("connection refused"), on="stop_watching")
    await world.channels().stop_connection(world.calendars[0].connection_id)
    assert len(world.google.watches) == 1  # one stopped; the other failed, logged, and expires by itself

    world.accounts.unavailable = True
    await world.channels().stop_connection(world.calendars[0].connection_id)


# What a live channel changes for the sync ------------------------------------------------------------


def engine(world: World) -> SyncEngine:
    return SyncEngine(world.db, world.box, world.accounts, owner="this-process", interval=INTERVAL,
                      clock=world.clock, safety_poll=SAFETY_POLL)


async def test_a_calendar_with_a_live_channel_is_next_due_after_the_safety_poll(world: World) -> None:
    await world.renew()
    async with world.db.write() as session:  # John's conflict calendar loses its channel
        await session.execute(update(RemoteCalendar).where(RemoteCalendar.id == world.calendars[1].id)  # type: ignore[arg-type]
                              .values(push_channel_id=None, push_resource_id=None, push_channel_expires_at=None))
    reports = await engine(world).run_due()
    assert not any(r.error for r in reports) and len(reports) == 2
    assert (await world.row(0)).due_at == NOW + SAFETY_POLL  # notifications make it due sooner
    assert (await world.row(1)).due_at == NOW + INTERVAL

    world.clock.at(INTERVAL)
    calls = len(world.google.calls)
    await engine(world).run_due()
    assert world.google.calls[calls:] == ["changes"]  # only the calendar without a channel: the idle cost is 0


async def test_a_channel_ending_before_the_safety_poll_makes_the_calendar_due_when_it_ends(world: World) -> None:
    await world.renew()
    ends = NOW + timedelta(minutes=20)
    async with world.db.write() as session:
        await session.execute(update(RemoteCalendar).values(push_channel_expires_at=ends))
    await engine(world).run_due()
    assert (await world.row(0)).due_at == ends


async def test_a_notification_during_the_sync_keeps_the_calendar_due(world: World) -> None:
    await world.renew()
    channel_id = (await world.row(0)).push_channel_id or ""
    token = channels.channel_token(world.box, world.calendars[0].id)
    claimed = await leases.claim_due(world.db, "this-process", NOW)
    # the change lands after the sync read the calendar, before it gave the calendar back
    notified = await channels.take_notification(world.db, world.box, "google", channel_id, token, Change.CHANGED, NOW)
    assert notified == Notified.MARKED_DUE
    await engine(world).sync_claimed(claimed)
    assert (await world.row(0)).due_at == NOW  # due again at once, not in an hour
    assert (await world.row(1)).due_at == NOW + SAFETY_POLL
