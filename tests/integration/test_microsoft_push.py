"""Change notifications on the Graph emulator, through the real provider and our served webhook: a subscription
is made (Graph validates our webhook first), a change becomes a notification that marks the calendar due, a
subscription is renewed in place before it expires, the lifecycle events are handled, and a disconnect deletes
it (provider-apis.md M4)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port
from sqlalchemy import update

from storage.db import Database
from storage.models import RemoteCalendar
from storage.secrets import SecretBox, generate_key
from storage.types import utcnow
from sync.channels import PushChannels, channel_token
from sync.providers.microsoft.provider import MicrosoftShared
from sync.providers.registry import open_provider
from tests.emulators.graph import GraphEmulator, Notification
from tests.factories import add_connection, add_user, select_calendars
from tests.integration.serving import WatchedCalendar
from tests.providers.support import graph_config, token_cache
from tests.web.conftest import TOKEN
from web.app import create_app
from web.context import WebContext

JOHN = "john@example.com"


@dataclass(kw_only=True)
class World(WatchedCalendar):
    graph: GraphEmulator
    channel_runs_asked: list[None]



def meeting(start: datetime) -> dict[str, object]:
    return {"subject": "Meeting", "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}}


@pytest.fixture
async def world(graph: GraphEmulator, db: Database, secret_box: SecretBox,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    """John's default Outlook calendar, linked, behind our API served on a loopback port (the public URL)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_bundle_path))
    account = graph.add_account(JOHN)
    user = await add_user(db, email=JOHN)
    connection, (calendar,) = await add_connection(db, user, secret_box, provider="microsoft",
                                                   login=await asyncio.to_thread(token_cache, graph, JOHN))
    async with db.write() as session:
        await session.execute(update(RemoteCalendar).values(remote_id=account.default_calendar_id))
    await select_calendars(db, user, linked=calendar, conflicts=[calendar])
    shared, port = MicrosoftShared(ssl_context=graph.client_ssl_context()), unused_port()
    syncs_asked, channel_runs_asked = list[None](), list[None]()
    config = graph_config(graph)
    context = WebContext(db=db, secrets=secret_box, api_token=TOKEN, webhook_secret="whsec", provider_config=config,
                         providers=functools.partial(open_provider, config=config, microsoft=shared),
                         public_url=f"http://127.0.0.1:{port}", run_sync=lambda: syncs_asked.append(None),
                         run_channels=lambda: channel_runs_asked.append(None))
    try:
        async with TestClient(TestServer(create_app(context), port=port)) as client:
            client.session.headers["Authorization"] = f"Bearer {TOKEN}"
            yield World(graph=graph, db=db, context=context, api=client, calendar_id=calendar.id,
                        connection_id=connection.id, syncs_asked=syncs_asked, channel_runs_asked=channel_runs_asked)
    finally:
        await shared.close()


async def changes(world: World, count: int) -> list[Notification]:
    return await world.graph.wait_for_notifications(count)


async def test_a_change_in_outlook_reaches_our_webhook_and_marks_the_calendar_due(world: World) -> None:
    await world.renew()
    (subscription,) = world.graph.subscriptions.values()
    row = await world.calendar()
    assert row.push_channel_id == row.push_resource_id == subscription.id
    assert subscription.notification_url == subscription.lifecycle_url == world.context.public_url + "/webhooks/microsoft"
    assert subscription.client_state == channel_token(world.context.secrets, world.calendar_id)
    assert subscription.calendar_ids == {row.remote_id}
    assert row.push_channel_expires_at is not None
    assert timedelta(days=6) < row.push_channel_expires_at - utcnow() < timedelta(minutes=10_080)

    await world.not_due()
    world.graph.put_event(row.remote_id, meeting(utcnow() + timedelta(days=1)))
    (change,) = await changes(world, 1)
    assert (change.kind, change.status_code) == ("created", 202)
    assert await world.due_now()
    assert len(world.syncs_asked) == 1


async def test_the_validation_token_is_echoed_as_plain_text_decoded(world: World) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1 2&3"
    async with world.api.post("/webhooks/microsoft", params={"validationToken": token}) as response:
        assert (response.status, response.content_type, await response.text()) == (200, "text/plain", token)


async def test_a_forged_client_state_is_refused_and_marks_nothing(world: World) -> None:
    await world.renew()
    await world.not_due()
    row = await world.calendar()
    forged = {"value": [{"subscriptionId": row.push_channel_id, "clientState": "guess", "changeType": "updated"}]}
    async with world.api.post("/webhooks/microsoft", json=forged) as response:
        assert response.status == 403
    assert not await world.due_now() and world.syncs_asked == []


async def test_a_notification_of_a_subscription_we_do_not_know_is_404_and_triggers_nothing(world: World) -> None:
    stale = {"value": [{"subscriptionId": "gone", "clientState": "x", "changeType": "updated"}]}
    async with world.api.post("/webhooks/microsoft", json=stale) as response:
        assert response.status == 404
    assert world.syncs_asked == []


async def test_a_body_that_is_not_a_notification_is_400(world: World) -> None:
    async with world.api.post("/webhooks/microsoft", data=b"not json") as response:
        assert response.status == 400


async def test_a_subscription_nearing_its_expiry_is_renewed_in_place(world: World) -> None:
    await world.renew()
    (subscription,) = world.graph.subscriptions.values()
    await world.renew(days=4)
    assert world.graph.count("subscriptions.update") == 0

    await world.renew(days=6.2)  # within a day of its expiry
    assert list(world.graph.subscriptions) == [subscription.id]  # the same subscription, no gap
    row = await world.calendar()
    assert (row.push_channel_id, row.push_channel_expires_at) == (subscription.id, subscription.expiration)
    assert world.graph.count("subscriptions.update") == 1 and world.graph.count("subscriptions.create") == 1


async def test_reauthorization_required_renews_the_subscription_at_the_channel_jobs_next_run(world: World) -> None:
    await world.renew()
    (subscription,) = world.graph.subscriptions.values()
    world.graph.send_lifecycle(subscription.id, "reauthorizationRequired")
    (lifecycle,) = await changes(world, 1)
    assert (lifecycle.kind, lifecycle.status_code) == ("reauthorizationRequired", 202)
    assert len(world.channel_runs_asked) == 1  # the channel job runs now, not in five minutes

    await world.renew()
    assert world.graph.count("subscriptions.update") == 1
    assert list(world.graph.subscriptions) == [subscription.id]
    assert (await world.calendar()).push_channel_expires_at == subscription.expiration


async def test_a_removed_subscription_is_made_again_and_the_calendar_synced(world: World) -> None:
    await world.renew()
    (first,) = world.graph.subscriptions
    await world.not_due()
    world.graph.send_lifecycle(first, "subscriptionRemoved")
    (lifecycle,) = await changes(world, 1)
    assert lifecycle.status_code == 202
    assert await world.due_now()  # changes since the removal came with no notification: a delta sync finds them

    await world.renew()
    (second,) = world.graph.subscriptions
    assert second != first and (await world.calendar()).push_channel_id == second
    assert world.graph.count("subscriptions.delete") == 0  # Graph ended it: nothing to delete


async def test_missed_notifications_make_the_calendar_sync(world: World) -> None:
    await world.renew()
    (subscription,) = world.graph.subscriptions
    await world.not_due()
    world.graph.send_lifecycle(subscription, "missed")
    (lifecycle,) = await changes(world, 1)
    assert lifecycle.status_code == 202
    assert await world.due_now() and len(world.syncs_asked) == 1


async def test_a_disconnect_deletes_the_subscription(world: World) -> None:
    await world.renew()
    assert len(world.graph.subscriptions) == 1
    async with world.api.delete(f"/api/v1/connections/{world.connection_id}") as response:
        assert response.status == 204
    assert world.graph.subscriptions == {}
    assert world.graph.count("subscriptions.delete") == 1


async def test_a_subscription_graph_forgot_is_made_again_when_renewing(world: World) -> None:
    await world.renew()
    (first,) = world.graph.subscriptions
    world.graph.subscriptions.clear()  # dropped on Graph's side with no lifecycle event
    await world.renew(days=6.2)
    (second,) = world.graph.subscriptions
    assert second != first and (await world.calendar()).push_channel_id == second
    assert world.graph.count("subscriptions.update") == 1  # tried in place first: 404


async def test_after_a_key_rotation_every_subscription_is_made_again_with_the_new_client_state(
    world: World, secret_box: SecretBox, secret_key: str
) -> None:
    await world.renew()
    (old,) = world.graph.subscriptions
    await world.not_due()
    rotated = SecretBox(f"{generate_key()},{secret_key}")
    channels = PushChannels(world.db, rotated, world.context.providers, world.context.public_url,
                            config=world.context.provider_config)
    upkeep = await channels.remake_all(utcnow())
    assert (upkeep.stopped, upkeep.created, upkeep.failed) == ([world.calendar_id], [world.calendar_id], [])
    (new,) = world.graph.subscriptions.values()
    assert new.id != old and world.graph.count("subscriptions.delete") == 1
    assert new.client_state == channel_token(rotated, world.calendar_id) != channel_token(secret_box, world.calendar_id)
    assert await world.due_now()  # a change between the two subscriptions is found by a sync
