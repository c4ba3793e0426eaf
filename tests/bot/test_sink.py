"""Notices reach their user as one Slack DM each, through the real outbox and the real Slack client, against the
emulator: rate limits, server errors and a lost mark-delivered never make two DMs, and a user Slack cannot reach
keeps the notice listed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlmodel import col

from bot.ids import Action
from bot.sink import EVENT_TYPE, SlackNoticeSink
from bot.tokens import SingleWorkspace
from storage.models import Notice
from sync.notices import ConnectionBroken, NoticeKind, NoticePayload, notify
from sync.outbox import Outbox, OutgoingNotice
from tests.bot.conftest import ANN, SlackWorld
from tests.bot.test_blocks_notices import SAMPLES
from tests.clocks import ManualClock
from tests.emulators.slack import BOT_TOKEN, TEAM_ID, Failure
from tests.web.conftest import GOOD_PASSWORD, NOW


class Crash(BaseException):
    """The process dies right after the sink returned: the mark-delivered never happens."""


def outbox(world: SlackWorld, clock: ManualClock, *, sink: Any = None) -> Outbox:
    return Outbox(world.web.db, sink or slack_sink(world), owner="test", clock=clock)


def slack_sink(world: SlackWorld) -> SlackNoticeSink:
    return SlackNoticeSink(SingleWorkspace(BOT_TOKEN, TEAM_ID), world.config)


async def ann(world: SlackWorld, **fields: Any) -> str:
    body = {"name": "Ann Lee", "email": "ann@example.com", "timezone": "America/New_York",
            "slack_user_id": ANN.id} | fields
    response = await world.api.post("/api/v1/users", json=body)
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def notices_for(world: SlackWorld, user_id: str, *payloads: NoticePayload) -> list[str]:
    async with world.web.db.write() as session:
        for payload in payloads:
            await notify(session, user_id, payload)
    async with world.web.db.session() as session:
        return list(await session.scalars(select(col(Notice.id)).where(col(Notice.user_id) == user_id)
                                          .order_by(col(Notice.created_at), col(Notice.id))))


async def listed(world: SlackWorld, user_id: str, **params: str) -> list[dict[str, Any]]:
    return list((await (await world.api.get(f"/api/v1/users/{user_id}/notices", params=params)).json())["items"])


def dm_notice_ids(world: SlackWorld) -> list[str]:
    return [m["metadata"]["event_payload"]["notice_id"] for m in world.slack.messages]


BROKEN = ConnectionBroken("c" * 32, "caldav", "john", "the server refused the credentials")


async def test_every_notice_kind_is_one_dm_to_its_user_marked_with_the_notice_id(world: SlackWorld) -> None:
    user_id = await ann(world)
    ids = await notices_for(world, user_id, *SAMPLES.values())
    clock = ManualClock(NOW)
    assert await outbox(world, clock).deliver_due() == len(SAMPLES)
    clock.later(timedelta(minutes=10))
    assert await outbox(world, clock).deliver_due() == 0

    assert sorted(dm_notice_ids(world)) == sorted(ids)
    assert {m["channel"] for m in world.slack.messages} == {"D0ANN"}
    assert [c.args["users"] for c in world.slack.calls_to("conversations.open")] == [ANN.id] * len(ids)
    assert all(m["text"] and m["blocks"] and m["metadata"]["event_type"] == EVENT_TYPE for m in world.slack.messages)
    assert world.slack.calls_to("conversations.history") == []  # first attempts post straight away
    assert all(n["delivered_at"] for n in await listed(world, user_id))
    assert await listed(world, user_id, undelivered="true") == []


async def test_an_agenda_not_delivered_by_the_end_of_its_day_is_dropped_not_sent_late(world: SlackWorld) -> None:
    user_id = await ann(world)
    await notices_for(world, user_id, SAMPLES[NoticeKind.AGENDA])  # the agenda of 2 March, Paris
    clock = ManualClock(NOW)
    clock.later(timedelta(days=2))
    assert await outbox(world, clock).deliver_due() == 0
    assert world.slack.messages == []
    (notice,) = await listed(world, user_id)
    assert notice["delivered_at"] is None  # still listed, never posted


async def test_a_conflict_dm_names_the_event_and_the_appointment_in_the_users_zone(world: SlackWorld) -> None:
    user_id = await ann(world)
    await notices_for(world, user_id, SAMPLES[NoticeKind.CONFLICT])
    await outbox(world, ManualClock(NOW)).deliver_due()
    (message,) = world.slack.messages
    assert "Appointment with Dr. Michel" in message["text"] and "Consultation with Ada" in message["text"]
    assert "07:00 America/New_York" in str(message["blocks"])


async def test_a_429_is_waited_out_and_posts_once(world: SlackWorld) -> None:
    user_id = await ann(world)
    (notice_id,) = await notices_for(world, user_id, BROKEN)
    world.slack.fail("chat.postMessage", Failure(429, retry_after=1))
    assert await outbox(world, ManualClock(NOW)).deliver_due() == 1  # the client honoured Retry-After and tried again
    assert dm_notice_ids(world) == [notice_id]
    assert len([a for a in world.slack.attempts if a.method == "chat.postMessage"]) == 2


async def test_a_rate_limit_that_lasts_is_retried_after_retry_after(world: SlackWorld) -> None:
    user_id = await ann(world)
    (notice_id,) = await notices_for(world, user_id, BROKEN)
    world.slack.fail("chat.postMessage", *[Failure(429, retry_after=0)] * 3)
    clock = ManualClock(NOW)
    assert await outbox(world, clock).deliver_due() == 0
    async with world.web.db.session() as session:
        stored = await session.get(Notice, notice_id)
        assert stored is not None
        assert stored.last_error == "Slack rate limit" and stored.next_attempt_at == NOW + timedelta(seconds=1)
    clock.later(timedelta(seconds=1))
    assert await outbox(world, clock).deliver_due() == 1
    assert dm_notice_ids(world) == [notice_id]


async def test_a_server_error_then_ok_is_one_dm_never_two(world: SlackWorld) -> None:
    user_id = await ann(world)
    (notice_id,) = await notices_for(world, user_id, BROKEN)
    world.slack.fail("chat.postMessage", Failure(500))
    clock = ManualClock(NOW)
    assert await outbox(world, clock).deliver_due() == 0
    assert world.slack.messages == []
    assert [n["delivered_at"] for n in await listed(world, user_id, undelivered="true")] == [None]
    clock.later(timedelta(minutes=1))
    assert await outbox(world, clock).deliver_due() == 1
    clock.later(timedelta(minutes=10))
    assert await outbox(world, clock).deliver_due() == 0
    assert dm_notice_ids(world) == [notice_id]
    assert len(world.slack.calls_to("conversations.history")) == 1  # the retry looked before posting


async def test_a_dm_posted_whose_mark_delivered_was_lost_is_not_posted_again(world: SlackWorld) -> None:
    user_id = await ann(world)
    (notice_id,) = await notices_for(world, user_id, BROKEN)
    real = slack_sink(world)

    class DiesAfterPosting:
        async def deliver(self, notice: OutgoingNotice) -> None:
            await real.deliver(notice)
            raise Crash

    clock = ManualClock(NOW)
    try:
        await outbox(world, clock, sink=DiesAfterPosting()).deliver_due()
    except Crash:
        pass
    assert dm_notice_ids(world) == [notice_id]
    assert await listed(world, user_id, undelivered="true") != []  # the outbox never heard it was delivered

    clock.later(timedelta(minutes=3))  # the dead deliverer's lease expired: another process claims it (attempt 2)
    assert await outbox(world, clock).deliver_due() == 1
    assert dm_notice_ids(world) == [notice_id]  # found in the DM's history: still one DM
    (history,) = world.slack.calls_to("conversations.history")
    assert history.args["channel"] == "D0ANN" and history.args["include_all_metadata"] in (True, "1", "true")
    assert await listed(world, user_id, undelivered="true") == []


async def test_a_user_without_a_slack_id_keeps_the_notice_undelivered_and_listed(world: SlackWorld) -> None:
    response = await world.api.post("/api/v1/users", json={"name": "Bo", "email": "bo@example.com",
                                                            "timezone": "UTC"})
    user_id = str((await response.json())["id"])
    (notice_id,) = await notices_for(world, user_id, BROKEN)
    clock = ManualClock(NOW)
    assert await outbox(world, clock).deliver_due() == 0
    clock.later(timedelta(hours=1))
    assert await outbox(world, clock).deliver_due() == 0  # failed for good, not retried
    assert world.slack.attempts == []
    assert [n["id"] for n in await listed(world, user_id, undelivered="true")] == [notice_id]
    async with world.web.db.session() as session:
        stored = await session.get(Notice, notice_id)
        assert stored is not None and stored.failed_at == NOW and stored.last_error == "the user has no Slack id"


async def test_a_member_slack_cannot_find_is_failed_for_good(world: SlackWorld) -> None:
    user_id = await ann(world)
    (notice_id,) = await notices_for(world, user_id, BROKEN)
    world.slack.tokens.clear()  # the app was uninstalled: every call is invalid_auth
    assert await outbox(world, ManualClock(NOW)).deliver_due() == 0
    async with world.web.db.session() as session:
        stored = await session.get(Notice, notice_id)
        assert stored is not None and stored.failed_at is not None and stored.last_error == "Slack: invalid_auth"
    assert BOT_TOKEN not in str(stored.last_error)


async def test_connecting_in_the_browser_is_followed_by_a_dm_listing_the_calendars(world: SlackWorld) -> None:
    user_id = await ann(world)
    made = await world.api.post(f"/api/v1/users/{user_id}/connect-links", json={"provider": "caldav"})
    path = urlsplit((await made.json())["url"]).path
    form = {"username": "john", "password": GOOD_PASSWORD, "url": "https://dav.example.com/"}
    submitted = await world.api.post(path, data=form, headers={"Authorization": ""})
    assert submitted.status == 200, await submitted.text()
    again = await world.api.post(path, data=form, headers={"Authorization": ""})
    assert again.status == 410  # the link is spent: no second connection, no second notice

    assert await outbox(world, ManualClock(NOW)).deliver_due() == 1
    (message,) = world.slack.messages
    shown = str(message["blocks"])
    assert "caldav" in message["text"] and "*john*" in shown and "• Work" in shown and "• Holidays (shared)" in shown
    (settings,) = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert (settings["action_id"], settings["text"]["text"]) == (Action.OPEN_SETTINGS, "Choose settings")
    (notice,) = await listed(world, user_id)
    assert notice["kind"] == "connected" and sorted(notice["payload"]["calendars"]) == ["Holidays (shared)", "Work"]
