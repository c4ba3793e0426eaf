"""Push on the Google emulator, through the real provider and our served webhook: a channel is made, a change
becomes a notification that marks the calendar due (and a sync brings it in), channels nearing or past their
expiry are replaced, and a disconnect stops them."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port
from sqlalchemy import select, update

from storage.db import Database
from storage.models import BlockedSlot, RemoteCalendar
from storage.secrets import SecretBox
from storage.types import utcnow
from sync.providers.google.provider import GoogleShared
from sync.providers.registry import open_provider
from tests.emulators.google import GoogleEmulator
from tests.factories import add_connection, add_user, select_calendars
from tests.integration.serving import WatchedCalendar
from tests.providers.support import google_config, oauth_tokens
from tests.web.conftest import TOKEN
from web.app import create_app
from web.context import WebContext

JOHN = "john@example.com"


@dataclass(kw_only=True)
class World(WatchedCalendar):
    google: GoogleEmulator


def meeting(start: datetime) -> dict[str, object]:
    return {"id": "meeting1", "summary": "Meeting", "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()}}


async def serve(google: GoogleEmulator, db: Database, secret_box: SecretBox, *,
                scheduler: bool) -> AsyncIterator[World]:
    """John's primary Google calendar, linked, behind our API served on a loopback port (the public URL)."""
    google.add_account(JOHN)
    user = await add_user(db, email=JOHN)
    connection, (calendar,) = await add_connection(db, user, secret_box, provider="google",
                                                   login=oauth_tokens(google.grant(JOHN)))
    async with db.write() as session:
        await session.execute(update(RemoteCalendar).values(remote_id=JOHN))
    await select_calendars(db, user, linked=calendar, conflicts=[calendar])
    shared, syncs_asked, port = GoogleShared(), list[None](), unused_port()
    config = google_config(google)
    context = WebContext(db=db, secrets=secret_box, api_token=TOKEN, webhook_secret="whsec", provider_config=config,
                         providers=functools.partial(open_provider, config=config, google=shared),
                         public_url=f"http://127.0.0.1:{port}",
                         run_sync=(lambda: syncs_asked.append(None)) if scheduler else None)
    try:
        async with TestClient(TestServer(create_app(context), port=port)) as client:
            client.session.headers["Authorization"] = f"Bearer {TOKEN}"
            yield World(google=google, db=db, context=context, api=client, calendar_id=calendar.id,
                        connection_id=connection.id, syncs_asked=syncs_asked)
    finally:
        shared.close()


@pytest.fixture
async def world(google: GoogleEmulator, db: Database, secret_box: SecretBox) -> AsyncIterator[World]:
    async for found in serve(google, db, secret_box, scheduler=True):
        yield found


async def test_a_change_in_google_reaches_our_webhook_and_marks_the_calendar_due(world: World) -> None:
    await world.renew()
    (channel,) = world.google.channels.values()
    row = await world.calendar()
    assert (channel.id, channel.calendar_id) == (row.push_channel_id, JOHN)
    assert channel.address == world.context.public_url + "/webhooks/google"
    (sync,) = await world.google.wait_for_notifications(1)
    assert (sync.state, sync.status_code) == ("sync", 200)  # it may come before the watch's answer: accepted

    await world.not_due()
    world.google.put_event(JOHN, meeting(utcnow() + timedelta(days=1)))
    _, change = await world.google.wait_for_notifications(2)
    assert (change.state, change.status_code) == ("exists", 200)
    due_at = (await world.calendar()).due_at
    assert due_at is not None and due_at <= utcnow()
    assert len(world.syncs_asked) == 1


async def test_without_a_scheduler_the_notified_change_is_synced_in_the_background(
    google: GoogleEmulator, db: Database, secret_box: SecretBox
) -> None:
    async for world in serve(google, db, secret_box, scheduler=False):
        await world.renew()
        await world.google.wait_for_notifications(1)
        await world.not_due()
        world.google.put_event(JOHN, meeting(utcnow() + timedelta(days=1)))
        async with asyncio.timeout(10):
            while True:  # polling the background sync, bounded by the timeout
                async with db.session() as session:
                    if list(await session.scalars(select(BlockedSlot))):
                        break
                await asyncio.sleep(0.05)


async def test_a_channel_nearing_its_expiry_is_replaced_and_the_old_one_stopped(world: World) -> None:
    await world.renew()
    (first,) = world.google.channels
    await world.renew(days=5)
    assert list(world.google.channels) == [first]

    await world.renew(days=6.5)  # within a day of Google's 7
    (second,) = world.google.channels
    assert second != first and (await world.calendar()).push_channel_id == second
    assert world.google.count("events.watch") == 2 and world.google.count("channels.stop") == 1


async def test_a_channel_google_ended_is_replaced_once_past_its_expiry(world: World) -> None:
    await world.renew()
    (first,) = world.google.channels
    await world.google.wait_for_notifications(1)
    world.google.expire_channel(first)
    await world.renew(days=7.1)
    (second,) = world.google.channels
    assert second != first and (await world.calendar()).push_channel_id == second

    await world.google.wait_for_notifications(2)
    await world.not_due()
    world.google.put_event(JOHN, meeting(utcnow() + timedelta(days=1)))
    *_, change = await world.google.wait_for_notifications(3)
    assert (change.channel_id, change.status_code) == (second, 200)


async def test_a_disconnect_stops_the_channel(world: World) -> None:
    await world.renew()
    assert len(world.google.channels) == 1
    async with world.api.delete(f"/api/v1/connections/{world.connection_id}") as response:
        assert response.status == 204
    assert world.google.channels == {}
