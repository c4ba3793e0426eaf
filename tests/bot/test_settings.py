"""`/croco settings` end to end: the modal as Slack shows it, submissions saved (or refused inline), option loads
of the external selects over 100 calendars, and the Open settings button."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from bot.blocks import settings as blocks
from bot.ids import Action, ViewCallback
from storage.models import Connection
from tests.bot.conftest import ANN, SlackWorld
from tests.web.conftest import GOOD_PASSWORD, NOW, Accounts

CALDAV = {"provider": "caldav", "username": "john", "password": GOOD_PASSWORD, "url": "https://dav.example.com/"}


async def connected(world: SlackWorld) -> tuple[str, dict[str, str]]:
    """Ann (known by her Slack id) with the CalDAV account connected: her user id and calendar ids by name."""
    made = await world.api.post("/api/v1/users", json={"name": "Ann", "email": "ann@example.com",
                                                       "timezone": "America/New_York", "slack_user_id": ANN.id})
    assert made.status == 201, await made.text()
    user_id = (await made.json())["id"]
    connection = await world.api.post(f"/api/v1/users/{user_id}/connections", json=CALDAV)
    assert connection.status == 201, await connection.text()
    calendars = (await (await world.api.get(f"/api/v1/users/{user_id}/calendars")).json())["items"]
    return user_id, {c["name"]: c["id"] for c in calendars}


async def opened(world: SlackWorld, count: int = 1) -> dict[str, Any]:
    """The settings modal as `/croco settings` shows it (the `count`th time)."""
    status, _ = await world.sender.command("settings", user_id=ANN.id)
    assert status == 200
    updated = await world.slack.wait_for("views.update", count)
    return dict(updated[-1].args["view"])


async def settings_of(world: SlackWorld, user_id: str) -> dict[str, Any]:
    return dict(await (await world.api.get(f"/api/v1/users/{user_id}/sync-settings")).json())


def element(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    (block,) = [b for b in view["blocks"] if b.get("block_id") == block_id]
    return dict(block["element"])


def values(*, linked: str | None, conflicts: list[str], mode: str = "one_way", back: str = "1",
           ahead: str = "180", agenda: bool = False, kind: str = "static") -> dict[str, dict[str, Any]]:
    """`state.values` as Slack sends them for these choices."""
    def chosen(value: str) -> dict[str, Any]:
        return {"text": {"type": "plain_text", "text": value}, "value": value}

    agenda_options = [chosen(blocks.AGENDA_ON)] if agenda else []
    return {
        blocks.LINKED: {Action.PICK_LINKED_CALENDAR: {"type": f"{kind}_select",
                                                      "selected_option": chosen(linked) if linked else None}},
        blocks.CONFLICTS: {Action.PICK_CONFLICT_CALENDARS: {"type": f"multi_{kind}_select",
                                                            "selected_options": [chosen(c) for c in conflicts]}},
        blocks.MODE: {blocks.PICK_MODE: {"type": "radio_buttons", "selected_option": chosen(mode)}},
        blocks.DAYS_BACK: {blocks.PICK_DAYS_BACK: {"type": "number_input", "value": back}},
        blocks.DAYS_AHEAD: {blocks.PICK_DAYS_AHEAD: {"type": "number_input", "value": ahead}},
        blocks.AGENDA: {blocks.PICK_AGENDA: {"type": "checkboxes", "selected_options": agenda_options}},
    }


async def submitted(world: SlackWorld, view: dict[str, Any], state: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Slack's view_submission; what our ack answered (empty: the modal closes)."""
    status, text = await world.sender.submit(view, state, user_id=ANN.id)
    assert status == 200
    return dict(json.loads(text)) if text else {}


async def test_without_a_connection_the_modal_says_to_connect_first(world: SlackWorld) -> None:
    view = await opened(world)
    assert "/croco connect" in str(view["blocks"]) and "submit" not in view


async def test_the_modal_offers_only_full_access_calendars_as_linked_and_preselects_work(world: SlackWorld) -> None:
    _, ids = await connected(world)
    view = await opened(world)
    assert view["callback_id"] == ViewCallback.SETTINGS and view["submit"]["text"] == "Save"
    linked = element(view, blocks.LINKED)
    assert linked["type"] == "static_select"
    assert [o["value"] for o in linked["options"]] == [ids["Work"]]  # "Holidays (shared)" is read-only
    assert linked["initial_option"]["value"] == ids["Work"]
    conflicts = element(view, blocks.CONFLICTS)
    assert sorted(o["text"]["text"] for o in conflicts["options"]) == ["Holidays (shared)", "Work"]
    assert [o["value"] for o in conflicts["initial_options"]] == [ids["Work"]]  # the linked one, by default
    mode = element(view, blocks.MODE)
    assert mode["initial_option"]["value"] == "one_way"
    explained = str(mode["options"])
    assert "blocked slots" in explained and "appointments" in explained and "contacts" in explained


async def test_a_calendar_shared_since_the_last_listing_is_offered_when_the_modal_opens(
    world: SlackWorld, accounts: Accounts
) -> None:
    await connected(world)
    accounts.provider.add_calendar("/john/team/", "Team")  # shared with Ann after she connected
    async with world.web.db.write() as session:  # her calendars were listed ten minutes ago
        await session.execute(update(Connection).values(calendars_listed_at=NOW - timedelta(minutes=10)))
    view = await opened(world)
    assert sorted(o["text"]["text"] for o in element(view, blocks.LINKED)["options"]) == ["Team", "Work"]
    assert "Team" in str(element(view, blocks.CONFLICTS)["options"])


async def test_valid_choices_are_saved_close_the_modal_and_show_next_time(world: SlackWorld) -> None:
    user_id, ids = await connected(world)
    told: list[None] = []
    world.bot.settings_saved = lambda: told.append(None)  # croco serve: the push channel job runs now
    view = await opened(world)
    answer = await submitted(world, view, values(linked=ids["Work"], conflicts=[ids["Holidays (shared)"]],
                                                 mode="two_way", back="7", ahead="90"))
    assert answer == {} and told == [None]
    assert await settings_of(world, user_id) == {
        "linked_calendar_id": ids["Work"], "conflict_calendar_ids": [ids["Holidays (shared)"]],  # as given
        "mode": "two_way", "window_days_back": 7, "window_days_ahead": 90, "daily_agenda": False}
    again = await opened(world, 2)
    assert [o["value"] for o in element(again, blocks.CONFLICTS)["initial_options"]] == [ids["Holidays (shared)"]]
    assert element(again, blocks.MODE)["initial_option"]["value"] == "two_way"
    assert (element(again, blocks.DAYS_BACK)["initial_value"], element(again, blocks.DAYS_AHEAD)["initial_value"]) \
        == ("7", "90")


async def test_a_read_only_linked_calendar_comes_back_inline_and_saves_nothing(world: SlackWorld) -> None:
    user_id, ids = await connected(world)
    view = await opened(world)
    before = await settings_of(world, user_id)
    forged = values(linked=ids["Holidays (shared)"], conflicts=[ids["Work"]], mode="two_way")
    answer = await submitted(world, view, forged)
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == [blocks.LINKED] and "full access" in answer["errors"][blocks.LINKED]
    assert await settings_of(world, user_id) == before


async def test_a_window_outside_the_limits_comes_back_inline_and_saves_nothing(world: SlackWorld) -> None:
    user_id, ids = await connected(world)
    view = await opened(world)
    before = await settings_of(world, user_id)
    answer = await submitted(world, view, values(linked=ids["Work"], conflicts=[ids["Work"]], back="400", ahead="0"))
    assert answer["response_action"] == "errors" and set(answer["errors"]) == {blocks.DAYS_BACK, blocks.DAYS_AHEAD}
    assert await settings_of(world, user_id) == before


async def test_a_calendar_disconnected_while_the_modal_was_open_comes_back_inline(world: SlackWorld) -> None:
    user_id, ids = await connected(world)
    view = await opened(world)
    (connection,) = (await (await world.api.get(f"/api/v1/users/{user_id}/connections")).json())["items"]
    assert (await world.api.delete(f"/api/v1/connections/{connection['id']}")).status == 204
    answer = await submitted(world, view, values(linked=ids["Work"], conflicts=[ids["Work"]]))
    assert answer["response_action"] == "errors" and "/croco connect" in answer["errors"][blocks.LINKED]


async def test_the_daily_agenda_opt_in_is_saved_and_shown_ticked(world: SlackWorld) -> None:
    user_id, ids = await connected(world)
    view = await opened(world)
    assert "initial_options" not in element(view, blocks.AGENDA)
    assert await submitted(world, view, values(linked=ids["Work"], conflicts=[ids["Work"]], agenda=True)) == {}
    assert (await settings_of(world, user_id))["daily_agenda"] is True
    again = await opened(world, 2)
    assert [o["value"] for o in element(again, blocks.AGENDA)["initial_options"]] == [blocks.AGENDA_ON]


async def test_over_100_calendars_the_selects_load_their_options_as_the_user_types(world: SlackWorld,
                                                                                   accounts: Accounts) -> None:
    for n in range(1, 149):
        accounts.provider.add_calendar(f"/john/team-{n:03d}/", f"Team {n:03d}")
    user_id, ids = await connected(world)
    assert len(ids) == 150
    view = await opened(world)
    linked, conflicts = element(view, blocks.LINKED), element(view, blocks.CONFLICTS)
    assert (linked["type"], conflicts["type"]) == ("external_select", "multi_external_select")
    assert "options" not in linked and linked["min_query_length"] == 0
    assert linked["initial_option"]["value"] == conflicts["initial_options"][0]["value"]  # the defaults still show

    async def load(action: str, typed: str) -> list[str]:
        status, text = await world.sender.options(action, typed, user_id=ANN.id, view=view,
                                                  block_id=blocks.LINKED if action == Action.PICK_LINKED_CALENDAR
                                                  else blocks.CONFLICTS)
        assert status == 200
        return [o["text"]["text"] for o in json.loads(text)["options"]]

    assert await load(Action.PICK_LINKED_CALENDAR, "team 01") == [f"Team {n:03d}" for n in range(10, 20)]
    assert await load(Action.PICK_LINKED_CALENDAR, "HOLI") == []  # read-only: never a linked calendar
    assert await load(Action.PICK_CONFLICT_CALENDARS, "HOLI") == ["Holidays (shared)"]
    assert len(await load(Action.PICK_CONFLICT_CALENDARS, "")) == 100

    state = values(linked=ids["Team 123"], conflicts=[ids["Team 123"], ids["Holidays (shared)"]], kind="external")
    assert await submitted(world, view, state) == {}
    saved = await settings_of(world, user_id)
    assert (saved["linked_calendar_id"], sorted(saved["conflict_calendar_ids"])) == \
        (ids["Team 123"], sorted([ids["Team 123"], ids["Holidays (shared)"]]))


async def test_a_submission_is_answered_in_time_while_slack_is_slow(world: SlackWorld) -> None:
    user_id, ids = await connected(world)
    view = await opened(world)
    world.slack.delay_seconds = 5  # no Slack call stands between the submission and its answer
    started = time.monotonic()
    assert await submitted(world, view, values(linked=ids["Work"], conflicts=[ids["Work"]], mode="two_way")) == {}
    assert time.monotonic() - started < 3
    assert (await settings_of(world, user_id))["mode"] == "two_way"


async def test_the_open_settings_button_opens_the_modal(world: SlackWorld) -> None:
    _, ids = await connected(world)
    status, _ = await world.sender.action(Action.OPEN_SETTINGS, "", user_id=ANN.id,
                                          container={"type": "message", "channel_id": "D0ANN", "message_ts": "1.2"})
    assert status == 200
    (loading,) = await world.slack.wait_for("views.open")
    assert "Loading" in str(loading.args["view"])
    (updated,) = await world.slack.wait_for("views.update")
    assert updated.args["view"]["callback_id"] == ViewCallback.SETTINGS
    assert element(updated.args["view"], blocks.LINKED)["initial_option"]["value"] == ids["Work"]
