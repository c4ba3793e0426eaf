"""`POST /webhooks/google`: a notification of a channel we made marks its calendar due and runs the sync now;
anything else gets a 4xx and triggers nothing. And a disconnect stops the connection's channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from storage.db import Database
from storage.models import RemoteCalendar, User
from storage.secrets import SecretBox
from sync.channels import PushChannels
from sync.providers.base import CalendarProvider, Credentials, ProviderConfig, Unreachable
from sync.providers.memory import MemoryProvider
from tests.factories import add_connection, add_user, select_calendars
from tests.ics import michel
from tests.web.conftest import NOW, TOKEN, Client
from web.app import create_app
from web.context import WebContext

LATER = NOW + timedelta(hours=1)


@dataclass
class Push:
    api: Client
    db: Database
    google: MemoryProvider
    calendar_id: str
    connection_id: str
    syncs_asked: list[None]

    @property
    def channel_id(self) -> str:
        (channel_id,) = self.google.watches
        return channel_id

    @property
    def token(self) -> str:
        return self.google.watches[self.channel_id].token

    async def notify(self, state: str = "exists", *, channel_id: str | None = None, token: str | None = None,
                     number: int = 2) -> tuple[int, str]:
        """What Google posts: headers, no body, no bearer token."""
        headers = {"X-Goog-Channel-ID": channel_id or self.channel_id, "X-Goog-Channel-Token": token or self.token,
                   "X-Goog-Resource-State": state, "X-Goog-Message-Number": str(number),
                   "X-Goog-Resource-ID": "resource-/work/", "X-Goog-Resource-URI": "https://example.invalid/"}
        async with self.api.post("/webhooks/google", headers=headers) as response:
            return response.status, await response.text()

    async def calendar(self) -> RemoteCalendar:
        async with self.db.session() as session:
            found = await session.get(RemoteCalendar, self.calendar_id)
        assert found is not None
        return found


async def watched(db: Database, secret_box: SecretBox, google: MemoryProvider) -> tuple[str, str]:
    """John's Google calendar, linked, with a live channel, due in an hour; its id and its connection's."""
    google.add_calendar("/work/")
    user = await add_user(db)
    connection, (calendar,) = await add_connection(db, user, secret_box, provider="google")
    async with db.write() as session:
        row = await session.get(RemoteCalendar, calendar.id)
        assert row is not None
        row.remote_id = "/work/"
    await select_calendars(db, user, linked=calendar, conflicts=[calendar])

    def open_google(provider: str, credentials: Credentials, server_url: str | None) -> CalendarProvider:
        return google

    await PushChannels(db, secret_box, open_google, "https://croco.example.com", config=ProviderConfig()).renew(NOW)
    async with db.write() as session:
        row = await session.get(RemoteCalendar, calendar.id)
        assert row is not None
        row.due_at = LATER
    return calendar.id, connection.id


def web_context(db: Database, secret_box: SecretBox, google: MemoryProvider,
                syncs_asked: list[None] | None) -> WebContext:
    return WebContext(db=db, secrets=secret_box, api_token=TOKEN, webhook_secret="whsec",
                      providers=lambda *_: google, clock=lambda: NOW,
                      run_sync=None if syncs_asked is None else lambda: syncs_asked.append(None))


@pytest.fixture
async def push(db: Database, secret_box: SecretBox) -> AsyncIterator[Push]:
    google = MemoryProvider(clock=lambda: NOW)
    syncs_asked: list[None] = []
    calendar_id, connection_id = await watched(db, secret_box, google)
    async with TestClient(TestServer(create_app(web_context(db, secret_box, google, syncs_asked)))) as client:
        yield Push(client, db, google, calendar_id, connection_id, syncs_asked)


@pytest.mark.parametrize("state", ["exists", "not_exists"])
async def test_a_change_notified_marks_the_calendar_due_and_runs_the_sync_now(push: Push, state: str) -> None:
    assert await push.notify(state) == (200, "")
    assert (await push.calendar()).due_at == NOW
    assert len(push.syncs_asked) == 1


async def test_the_sync_message_of_a_new_channel_is_answered_and_triggers_nothing(push: Push) -> None:
    assert await push.notify("sync", number=1) == (200, "")
    assert (await push.calendar()).due_at == LATER and push.syncs_asked == []


@pytest.mark.parametrize(("channel_id", "token", "status"), [
    (None, "0" * 64, 403), ("3f1c0c1e-0000-4000-8000-000000000000", None, 404)], ids=["wrong token", "unknown channel"])
async def test_a_notification_we_did_not_ask_for_gets_a_4xx_and_triggers_nothing(
    push: Push, channel_id: str | None, token: str | None, status: int
) -> None:
    assert (await push.notify(channel_id=channel_id, token=token))[0] == status
    assert (await push.calendar()).due_at == LATER and push.syncs_asked == []


async def test_a_channel_token_of_another_calendar_does_not_pass(push: Push, secret_box: SecretBox) -> None:
    assert (await push.notify(token=secret_box.mac("push-channel", "another-calendar")))[0] == 403
    assert (await push.notify(token=secret_box.mac("oauth-state", push.calendar_id)))[0] == 403
    assert (await push.calendar()).due_at == LATER


async def test_a_request_without_googles_headers_is_refused(push: Push) -> None:
    async with push.api.post("/webhooks/google") as response:
        assert response.status == 400
    assert (await push.calendar()).due_at == LATER


async def test_without_a_scheduler_a_notification_syncs_the_calendar_in_the_background(
    db: Database, secret_box: SecretBox
) -> None:
    google = MemoryProvider(clock=lambda: NOW)
    calendar_id, _ = await watched(db, secret_box, google)
    google.put("/work/", "michel.ics", michel("20210302"))
    async with TestClient(TestServer(create_app(web_context(db, secret_box, google, None)))) as client:
        (channel_id, watch), = google.watches.items()
        headers = {"X-Goog-Channel-ID": channel_id, "X-Goog-Channel-Token": watch.token,
                   "X-Goog-Resource-State": "exists"}
        async with client.post("/webhooks/google", headers=headers) as response:
            assert response.status == 200
        async with asyncio.timeout(10):
            while "changes" not in google.calls:
                await asyncio.sleep(0.01)  # polling a background cycle, bounded by the timeout
    async with db.session() as session:
        row = await session.get(RemoteCalendar, calendar_id)
    assert row is not None and row.last_synced_at == NOW


async def test_a_disconnect_stops_the_connections_channels(push: Push) -> None:
    channel_id, token = push.channel_id, push.token
    async with push.api.delete(f"/api/v1/connections/{push.connection_id}",
                               headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 204
    assert push.google.watches == {}
    assert (await push.notify(channel_id=channel_id, token=token))[0] == 404  # its calendar went with it


async def test_a_channel_that_cannot_be_stopped_never_blocks_the_disconnect(push: Push) -> None:
    push.google.fail_next(Unreachable("connection refused"), on="stop_watching")
    async with push.api.delete(f"/api/v1/connections/{push.connection_id}",
                               headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 204
    async with push.db.session() as session:
        assert await session.get(RemoteCalendar, push.calendar_id) is None


async def test_saving_settings_runs_the_channel_job_now(db: Database, secret_box: SecretBox) -> None:
    """A calendar chosen just now gets its channel at once, not at the job's next run minutes later."""
    google = MemoryProvider(clock=lambda: NOW)
    calendar_id, _ = await watched(db, secret_box, google)
    asked: list[None] = []
    context = web_context(db, secret_box, google, None)
    context.run_channels = lambda: asked.append(None)
    async with TestClient(TestServer(create_app(context))) as client:
        async with client.put(f"/api/v1/users/{(await context_user(db))}/sync-settings",
                              json={"linked_calendar_id": calendar_id},
                              headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200, await response.text()
    assert asked == [None]


async def context_user(db: Database) -> str:
    async with db.session() as session:
        (user,) = await session.scalars(select(User))
    return user.id
