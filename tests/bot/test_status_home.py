"""`/croco status` and the App Home tab, on data made through the API and synced by the engine: roles, access,
"last synced N min ago" on the app's clock, problems in plain words, and a fix button beside each on Home."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.ids import Action
from sync.providers.base import InvalidCredentials
from tests.bot.conftest import ANN, SlackWorld
from tests.emulators.slack import Member
from tests.web.conftest import GOOD_PASSWORD, NOW, Accounts

BEN = Member("U0BEN", "Ben Ode", "ben@example.com", "Europe/Berlin")
DAV = "https://dav.example.com/"


@dataclass
class Ann:
    user_id: str
    connection_id: str
    calendars: dict[str, str]  # name -> id


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def ann_synced(world: SlackWorld, *, minutes_ago: int = 5) -> Ann:
    """Ann (known by her Slack id) connects a CalDAV account, links "Work", and syncs at the fixed clock; the
    app then looks `minutes_ago` later."""
    user = await ok(await world.api.post("/api/v1/users", json={
        "name": ANN.name, "email": ANN.email, "timezone": ANN.tz, "slack_user_id": ANN.id}), 201)
    connection = await ok(await world.api.post(f"/api/v1/users/{user['id']}/connections", json={
        "provider": "caldav", "username": "ann", "password": GOOD_PASSWORD, "url": DAV}), 201)
    calendars = {c["name"]: c["id"] for c in
                 (await ok(await world.api.get(f"/api/v1/users/{user['id']}/calendars")))["items"]}
    await ok(await world.api.put(f"/api/v1/users/{user['id']}/sync-settings", json={
        "linked_calendar_id": calendars["Work"]}))
    await ok(await world.api.post(f"/api/v1/users/{user['id']}/sync"))
    world.bot.clock = lambda: NOW + timedelta(minutes=minutes_ago)
    return Ann(user["id"], connection["id"], calendars)


async def status_modal(world: SlackWorld) -> dict[str, Any]:
    await world.sender.command("status", user_id=ANN.id)
    (updated,) = await world.slack.wait_for("views.update")
    return dict(updated.args["view"])


def home_event(user_id: str, tab: str = "home") -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user_id, "channel": "D" + user_id[1:], "tab": tab,
            "event_ts": "1614585600.000100"}


async def open_home(world: SlackWorld, user_id: str = ANN.id, count: int = 1) -> dict[str, Any]:
    status, _ = await world.sender.event(home_event(user_id))
    assert status == 200
    published = await world.slack.wait_for("views.publish", count, where=lambda c: c.args["user_id"] == user_id)
    view = dict(published[-1].args["view"])
    assert view["type"] == "home"
    return view


def text_of(view: dict[str, Any]) -> str:
    return json.dumps(view["blocks"], ensure_ascii=False)


def sections(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in view["blocks"] if b["type"] == "section"]


async def test_status_lists_each_calendar_with_its_role_access_and_last_sync(world: SlackWorld) -> None:
    await ann_synced(world, minutes_ago=5)
    view = await status_modal(world)
    assert view["title"]["text"] == "Croco status"
    shown = text_of(view)
    assert "*CalDAV* · ann · :white_check_mark: connected" in shown
    assert "*Work* · linked, conflict · full access · last synced 5 min ago" in shown
    assert "*Holidays (shared)* · not used · read only" in shown
    assert "Everything is in sync" in shown and "Needs your attention" not in shown


async def test_the_app_clock_counts_the_minutes_not_the_wall_clock(world: SlackWorld) -> None:
    await ann_synced(world, minutes_ago=125)
    assert "last synced 2 h ago" in text_of(await status_modal(world))  # the wall clock would say years


async def test_a_broken_connection_is_a_problem_in_words_and_home_offers_reconnect(world: SlackWorld,
                                                                                   accounts: Accounts) -> None:
    ann = await ann_synced(world)
    accounts.provider.fail_next(InvalidCredentials("the server refused the credentials"))
    await ok(await world.api.post(f"/api/v1/users/{ann.user_id}/sync"))

    shown = text_of(await status_modal(world))
    assert "Your CalDAV account *ann* stopped working (the server refused the credentials)" in shown
    assert ":x: not working, reconnect it" in shown and "Reconnect" in shown

    home = await open_home(world)
    problem = next(b for b in sections(home) if "stopped working" in b["text"]["text"])
    assert problem["accessory"]["action_id"] == Action.RECONNECT
    assert problem["accessory"]["value"] == ann.connection_id
    top = next(b for b in home["blocks"] if b["type"] == "actions")
    assert [e["action_id"] for e in top["elements"]] == [Action.OPEN_CONNECT, Action.OPEN_SETTINGS]


async def test_a_calendar_that_failed_to_sync_and_no_linked_calendar_are_problems(world: SlackWorld,
                                                                                  accounts: Accounts) -> None:
    ann = await ann_synced(world)
    await ok(await world.api.put(f"/api/v1/users/{ann.user_id}/sync-settings", json={
        "linked_calendar_id": None, "conflict_calendar_ids": [ann.calendars["Work"]]}))
    accounts.provider.remove_calendar("/john/work/")
    await ok(await world.api.post(f"/api/v1/users/{ann.user_id}/sync"))

    shown = text_of(await status_modal(world))
    assert "No linked calendar is chosen" in shown and "`/croco settings`" in shown
    assert "*Work* did not sync last time (" in shown

    fixes = {b["text"]["text"].split(" ")[1]: b.get("accessory", {}).get("action_id")
             for b in sections(await open_home(world)) if b["text"]["text"].startswith(":warning:")}
    assert fixes == {"No": Action.OPEN_SETTINGS, "*Work*": Action.OPEN_SETTINGS}


async def test_a_new_member_opening_home_is_met_and_offered_to_connect(world: SlackWorld) -> None:
    world.slack.add_member(BEN)
    home = await open_home(world, BEN.id)
    problem = next(b for b in sections(home) if "No calendar is connected" in b["text"]["text"])
    assert problem["accessory"]["action_id"] == Action.OPEN_CONNECT
    found = await ok(await world.api.get("/api/v1/users", params={"slack_user_id": BEN.id}))
    assert [(u["name"], u["timezone"]) for u in found["items"]] == [("Ben Ode", "Europe/Berlin")]


async def test_home_connect_opens_the_connect_modal_with_working_links(world: SlackWorld) -> None:
    await open_home(world)
    status, _ = await world.sender.action(Action.OPEN_CONNECT, "", user_id=ANN.id, block_id="home-actions")
    assert status == 200
    (opened,) = await world.slack.wait_for("views.open")
    assert opened.args["view"]["title"]["text"] == "Connect a calendar"
    (updated,) = await world.slack.wait_for("views.update")
    icloud = next(b for b in updated.args["view"]["blocks"] if b.get("block_id") == "connect-icloud")
    path = "/" + icloud["accessory"]["url"].split("/", 3)[3]
    assert (await world.api.get(path, headers={"Authorization": ""})).status == 200


async def test_a_retried_event_publishes_the_same_home_again_and_meets_the_member_once(world: SlackWorld) -> None:
    world.slack.add_member(BEN)
    body = json.dumps({"token": "deprecated", "team_id": world.sender.team_id, "api_app_id": "A0CROCO",
                       "type": "event_callback", "event": home_event(BEN.id), "event_id": "Ev0RETRY",
                       "event_time": 1614585600})
    first = await world.sender.post(body, "application/json")
    (published,) = await world.slack.wait_for("views.publish")
    retry_headers = world.sender.signed_headers(body, content_type="application/json") | {
        "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    again = await world.sender.post(body, "application/json", headers=retry_headers)
    assert first[0] == again[0] == 200
    republished = (await world.slack.wait_for("views.publish", 2))[1]
    assert republished.args["view"] == published.args["view"]
    assert "No calendar is connected" in text_of(published.args["view"])
    found = await ok(await world.api.get("/api/v1/users", params={"slack_user_id": BEN.id}))
    assert len(found["items"]) == 1 and len(world.slack.calls_to("users.info")) == 1


async def test_the_messages_tab_publishes_nothing(world: SlackWorld) -> None:
    status, _ = await world.sender.event(home_event(ANN.id, tab="messages"))
    assert status == 200
    await open_home(world)  # a later Home opening is published, and it is the only publish
    assert [c.args["view"]["type"] for c in world.slack.calls_to("views.publish")] == ["home"]
    assert len(world.slack.calls_to("views.publish")) == 1
