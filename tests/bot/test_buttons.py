"""The buttons of notice DMs, clicked in the DM the outbox delivered: each acts once, through the same services as
the REST API, and its outcome replaces the buttons; anyone but the notice's user is refused and nothing happens."""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlmodel import col

from bot.buttons import NOT_YOURS
from bot.ids import Action
from storage.models import AppointmentAssignee, ConnectLink, Notice, RemoteCalendar
from sync.providers.base import InvalidCredentials
from tests.bot.conftest import ANN, SlackWorld
from tests.bot.test_sink import outbox
from tests.clocks import ManualClock
from tests.emulators.slack import TEAM_ID, Member
from tests.ics import vevent
from tests.web.conftest import GOOD_PASSWORD, NOW
from tests.web.test_api import ada, johns_desk, tomorrow_at

BEN = Member("U0BEN", "Ben Ode", "ben@example.com")
CALDAV = {"provider": "caldav", "username": "john", "password": GOOD_PASSWORD, "url": "https://dav.example.com/"}
_ids = itertools.count(1)


async def post(world: SlackWorld, path: str, body: Any, status: int = 201, *, method: str = "POST") -> Any:
    response = await world.api.request(method, path, json=body)
    assert response.status == status, await response.text()
    return await response.json()


async def linked(world: SlackWorld, *, slack_user_id: str = ANN.id, email: str = "ann@example.com") -> dict[str, Any]:
    """A user known by Slack id, her CalDAV Work calendar linked one-way."""
    user = await post(world, "/api/v1/users", {"name": "Ann", "email": email, "timezone": "Europe/Paris",
                                               "slack_user_id": slack_user_id})
    await post(world, f"/api/v1/users/{user['id']}/connections", CALDAV)
    calendars = (await (await world.api.get(f"/api/v1/users/{user['id']}/calendars")).json())["items"]
    work = next(c for c in calendars if c["name"] == "Work")
    await post(world, f"/api/v1/users/{user['id']}/sync-settings", {"linked_calendar_id": work["id"],
                                                                    "mode": "one_way"}, 200, method="PUT")
    return dict(user)


async def deliver(world: SlackWorld) -> None:
    clock = ManualClock(NOW)
    clock.later(timedelta(minutes=next(_ids)))  # past any backoff of an earlier round
    await outbox(world, clock).deliver_due()


async def dm_of(world: SlackWorld, kind: str) -> dict[str, Any]:
    """The DM of the user's notice of `kind` (found by the notice id in its metadata)."""
    async with world.web.db.session() as session:
        ids = set(await session.scalars(select(col(Notice.id)).where(col(Notice.kind) == kind)))
    (found,) = [m for m in world.slack.messages if m["metadata"]["event_payload"]["notice_id"] in ids]
    return copy.deepcopy(found)  # as delivered: a second click of a double click carries the buttons still


def button_of(message: dict[str, Any], action: Action) -> dict[str, Any]:
    (found,) = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == action]
    return dict(found)


async def click(world: SlackWorld, message: dict[str, Any], action: Action, *, user_id: str = ANN.id) -> None:
    """A click on the DM as Slack sends it: the message itself (text, blocks) in the payload."""
    pressed = button_of(message, action)
    await world.sender.interaction({
        "type": "block_actions", "user": {"id": user_id, "team_id": TEAM_ID}, "api_app_id": "A0CROCO",
        "team": {"id": TEAM_ID, "domain": "croco-test"}, "trigger_id": f"{next(_ids)}.trigger",
        "response_url": f"{world.slack.base_url}/response/{next(_ids)}",
        "container": {"type": "message", "channel_id": message["channel"], "message_ts": message["ts"]},
        "channel": {"id": message["channel"]},
        "message": {"ts": message["ts"], "text": message["text"], "blocks": message["blocks"]},
        "actions": [{"type": "button", "action_id": action, "block_id": "notice_actions",
                     "value": pressed["value"], "action_ts": str(time.time())}],
    })


async def deleted_copy(world: SlackWorld) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """R7 one-way: Ann deleted our copy of a booked appointment; the DM offering Restore / Cancel came."""
    user = await linked(world)
    desk = await johns_desk(world.api, user)
    booked = await post(world, f"/api/v1/calendars/{desk['id']}/appointments", ada(tomorrow_at(9)))
    await world.web.drain()
    accounts = world.web.providers.provider  # type: ignore[attr-defined]
    assert f"{booked['id']}.ics" in accounts.calendars["/john/work/"].items
    accounts.remove("/john/work/", f"{booked['id']}.ics")
    await post(world, f"/api/v1/users/{user['id']}/sync", None, 200)
    await deliver(world)
    return user, str(booked["id"]), await dm_of(world, "pushed_event_deleted")


async def updated_text(world: SlackWorld, count: int = 1) -> str:
    calls = await world.slack.wait_for("chat.update", count)
    return str(calls[-1].args["blocks"])


async def test_restore_writes_the_copy_back_and_the_dm_says_so(world: SlackWorld) -> None:
    _, appointment_id, message = await deleted_copy(world)
    assert button_of(message, Action.RESTORE_TO_CALENDAR)["value"] == appointment_id

    await click(world, message, Action.RESTORE_TO_CALENDAR)
    shown = await updated_text(world)
    assert "Restored to your calendar" in shown and "restore_to_calendar" not in shown
    assert f"{appointment_id}.ics" in world.web.providers.provider.calendars["/john/work/"].items  # type: ignore
    async with world.web.db.session() as session:
        assignee = await session.scalar(select(AppointmentAssignee))
        assert assignee is not None and not assignee.push_suppressed
    updated = next(m for m in world.slack.messages if m["ts"] == message["ts"])
    assert "Restored to your calendar" in str(updated["blocks"]) and "actions" not in str(
        [b["type"] for b in updated["blocks"]])

    await click(world, message, Action.RESTORE_TO_CALENDAR)  # the old message, clicked again
    assert "Already restored" in await updated_text(world, 2)


async def test_a_double_click_on_cancel_cancels_once(world: SlackWorld) -> None:
    hook = await post(world, "/api/v1/automations", {"trigger": "appointment.cancelled", "action": "webhook",
                                                     "url": "https://hooks.example.com/croco"})
    _, appointment_id, message = await deleted_copy(world)
    await click(world, message, Action.CANCEL_APPOINTMENT)
    assert "Appointment cancelled" in await updated_text(world)
    await click(world, message, Action.CANCEL_APPOINTMENT)
    assert "Already cancelled" in await updated_text(world, 2)

    appointment = await (await world.api.get(f"/api/v1/appointments/{appointment_id}")).json()
    assert appointment["status"] == "cancelled"
    runs = (await (await world.api.get(f"/api/v1/automations/{hook['id']}/runs")).json())["items"]
    assert len(runs) == 1  # one cancellation fired


async def test_someone_elses_click_is_refused_and_changes_nothing(world: SlackWorld) -> None:
    world.slack.add_member(BEN)
    await post(world, "/api/v1/users", {"name": "Ben", "email": "ben@example.com", "timezone": "UTC",
                                        "slack_user_id": BEN.id})
    _, appointment_id, message = await deleted_copy(world)
    for action in (Action.CANCEL_APPOINTMENT, Action.RESTORE_TO_CALENDAR):
        await click(world, message, action, user_id=BEN.id)
    await click(world, message, Action.CANCEL_APPOINTMENT, user_id="U0STRANGER")  # not a Croco user at all
    responses = await world.slack.wait_for_responses(3)
    assert [(r["text"], r["response_type"], r["replace_original"]) for r in responses] == \
        [(NOT_YOURS, "ephemeral", False)] * 3
    assert world.slack.calls_to("chat.update") == []
    appointment = await (await world.api.get(f"/api/v1/appointments/{appointment_id}")).json()
    assert appointment["status"] == "booked"
    assert f"{appointment_id}.ics" not in world.web.providers.provider.calendars["/john/work/"].items  # type: ignore


async def test_confirm_removals_applies_the_held_deletions_and_shows_how_many(world: SlackWorld) -> None:
    user = await linked(world)
    accounts = world.web.providers.provider  # type: ignore[attr-defined]
    day = (NOW + timedelta(days=1)).strftime("%Y%m%d")
    for i in range(20):
        accounts.put("/john/work/", f"e{i}.ics", vevent(f"e{i}", f"DTSTART:{day}T{i % 10:02d}0000Z",
                                                       f"DTEND:{day}T{i % 10:02d}3000Z"))
    await post(world, f"/api/v1/users/{user['id']}/sync", None, 200)
    for i in range(11):
        accounts.remove("/john/work/", f"e{i}.ics")
    await post(world, f"/api/v1/users/{user['id']}/sync", None, 200)
    await deliver(world)
    message = await dm_of(world, "mass_deletion_held")
    async with world.web.db.session() as session:
        work = await session.scalar(select(RemoteCalendar).where(col(RemoteCalendar.name) == "Work"))
    assert work is not None and work.removals_held_of == 20
    assert button_of(message, Action.CONFIRM_REMOVALS)["value"] == work.id

    await click(world, message, Action.CONFIRM_REMOVALS)
    assert "Confirmed: 11 events removed" in await updated_text(world)
    await click(world, message, Action.CONFIRM_REMOVALS)
    assert "Nothing left to remove" in await updated_text(world, 2)


async def test_reconnect_answers_with_a_fresh_link_only_the_user_sees(world: SlackWorld) -> None:
    user = await linked(world)
    accounts = world.web.providers.provider  # type: ignore[attr-defined]
    accounts.fail_next(InvalidCredentials("the server refused the credentials"), on="changes")
    await post(world, f"/api/v1/users/{user['id']}/sync", None, 200)
    await deliver(world)
    message = await dm_of(world, "connection_broken")
    connection_id = button_of(message, Action.RECONNECT)["value"]

    await click(world, message, Action.RECONNECT)
    (response,) = await world.slack.wait_for_responses(1)
    assert response["response_type"] == "ephemeral" and response["replace_original"] is False
    (link,) = [e for b in response["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert link["action_id"] == Action.OPEN_LINK and "/connect/" in link["url"]
    form = await world.api.get(urlsplit(link["url"]).path)
    assert form.status == 200 and "Reconnect" in await form.text()
    async with world.web.db.session() as session:
        (issued,) = list(await session.scalars(select(ConnectLink)))
    assert issued.connection_id == connection_id
    assert world.slack.calls_to("chat.update") == []  # the button stays: a link expires, a new click makes another


async def test_reconnect_on_the_home_tab_shows_its_link_in_a_modal(world: SlackWorld) -> None:
    """A Home tab click has no response_url: the link comes in a small modal instead."""
    user = await linked(world)
    accounts = world.web.providers.provider  # type: ignore[attr-defined]
    accounts.fail_next(InvalidCredentials("the server refused the credentials"), on="changes")
    await post(world, f"/api/v1/users/{user['id']}/sync", None, 200)
    connection_id = (await (await world.api.get(f"/api/v1/users/{user['id']}/connections")).json())["items"][0]["id"]

    status, _ = await world.sender.action(Action.RECONNECT, connection_id, user_id=ANN.id)
    assert status == 200
    (opened,) = await world.slack.wait_for("views.open")
    (link,) = [e for b in opened.args["view"]["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "/connect/" in link["url"] and world.slack.responses == []


async def test_a_click_acks_at_once_even_when_slack_answers_slowly(world: SlackWorld) -> None:
    _, _, message = await deleted_copy(world)
    status, _ = await world.sender.action(Action.OPEN_LINK, "", user_id=ANN.id)  # Bolt's auth.test, cached from now
    assert status == 200
    world.slack.delay_seconds = 2.0
    started = asyncio.get_running_loop().time()
    await click(world, message, Action.RESTORE_TO_CALENDAR)
    assert asyncio.get_running_loop().time() - started < 1.5  # acked before the chat.update went out
    assert "Restored" in await updated_text(world)
