"""Issue 15 end to end: a member's whole way through Slack, against `croco serve` as deployed.

A real `croco serve` process (on SQLite, and on PostgreSQL when configured) talks to the Slack emulator through
CROCO_SLACK_API_URL and to a real Radicale; Slack's requests come signed to its `/slack/events`, the connect form
is filled in headless Chromium, and the scheduler in serve delivers every DM by itself. Every step asserts what
the member sees: the modals, the DMs and their buttons, the events in their calendar. Dates are a few days after
the real today, since serve runs on the wall clock.

The emulator answers in this test's event loop, so whatever blocks (the browser, requests to Radicale) runs in a
thread: serve calls Slack at start-up (auth.test) and while it handles the browser's form and every click.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from bot.blocks import settings as settings_blocks
from bot.blocks.notices import ACTIONS_BLOCK
from bot.ids import Action, ViewCallback
from tests.bot.conftest import ANN
from tests.bot.conftest import slack_emulator as slack_emulator  # noqa: F401  (the fixture)
from tests.bot.test_settings import values
from tests.caldav_servers import CalDAVServer
from tests.emulators.slack import BOT_TOKEN, SIGNING_SECRET, Call, Failure, SlackEmulator, SlackSender
from tests.ics import michel, vevent
from tests.integration.serving import croco_serve
from tests.integration.test_serve import _clean_env, free_port
from tests.web.test_connect_browser import chrome as chrome  # noqa: F401  (the session fixture, re-exported)
from tests.web.test_connect_browser import submit

TOKEN = "slack-e2e-token"
PARIS = ZoneInfo("Europe/Paris")
WAIT = 30.0
"""Seconds any one DM or modal may take (a DM is due within 5 s of its change; a retried one a little more)."""


class Serve:
    """`croco serve` seen from outside: its API (with the integrator's token) and Slack's side of it."""

    def __init__(self, http: aiohttp.ClientSession, base: str, slack: SlackEmulator) -> None:
        self.http, self.base, self.slack = http, base, slack
        self.sender = SlackSender(f"{base}/slack/events", response_base=slack.base_url)

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.request(method, f"{self.base}/api/v1{path}", json=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status in (200, 201), await response.text()
            return await response.json()

    async def modal(self, count: int) -> dict[str, Any]:
        """The `count`th modal shown in place of a loading one, as Slack stores it (id, hash, metadata)."""
        updated = await self.slack.wait_for("views.update", count, timeout=WAIT)
        return self.slack.view(str(updated[-1].args["view_id"]))

    async def dm(self, words: str, count: int = 1) -> Call:
        """The `count`th DM to Ann whose text has `words`."""
        posted = await self.slack.wait_for("chat.postMessage", count, timeout=WAIT,
                                           where=lambda call: words in str(call.args.get("text")))
        assert posted[-1].args["channel"] == "D0ANN" and posted[-1].token == BOT_TOKEN
        return posted[-1]

    async def click(self, message: Call, action: Action, *, value: str = "") -> None:
        """Ann clicks a button of this DM (as posted: channel and ts from the emulator's copy)."""
        (posted,) = [m for m in self.slack.messages if m["metadata"] == message.args["metadata"]]
        status, _ = await self.sender.action(action, value, user_id=ANN.id, block_id=ACTIONS_BLOCK, container={
            "type": "message", "channel_id": posted["channel"], "message_ts": posted["ts"]})
        assert status == 200

    async def submit_settings(self, view: dict[str, Any], state: dict[str, dict[str, Any]]) -> None:
        assert view["callback_id"] == ViewCallback.SETTINGS
        status, text = await self.sender.submit(view, state, user_id=ANN.id)
        assert (status, text) == (200, "")  # saved: the modal closes

    async def sync(self, user_id: str) -> None:
        synced = (await self.api("POST", f"/users/{user_id}/sync"))["calendars"]
        assert synced and [c["error"] for c in synced] == [None] * len(synced), synced


# The member's calendar on Radicale, read as any other client would --------------------------------------


def _dav(account: CalDAVServer, method: str, url: str, body: str = "", depth: str | None = None) -> str:
    token = base64.b64encode(f"{account.username}:{account.password}".encode()).decode("ascii")
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/xml"} | (
        {"Depth": depth} if depth else {})
    request = urllib.request.Request(url, data=body.encode() or None, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


def events_in(account: CalDAVServer, calendar_url: str) -> dict[str, str]:
    """The collection's events: href -> iCalendar text (PROPFIND, then a GET of each)."""
    listing = _dav(account, "PROPFIND", calendar_url, '<?xml version="1.0"?><D:propfind xmlns:D="DAV:">'
                   "<D:prop><D:getetag/></D:prop></D:propfind>", depth="1")
    hrefs = [h for h in re.findall(r"<(?:\w+:)?href>([^<]+)</(?:\w+:)?href>", listing) if h.endswith(".ics")]
    return {href: _dav(account, "GET", urllib.parse.urljoin(calendar_url, href)) for href in hrefs}


async def calendar_of(account: CalDAVServer, calendar_url: str) -> dict[str, str]:
    return await asyncio.to_thread(events_in, account, calendar_url)


# The connect form in the browser ----------------------------------------------------------------------


def connect_in_browser(driver: WebDriver, link: str, account: CalDAVServer) -> str:
    """Blocking (Selenium), in a thread: the form filled with Radicale's details; the page shown after it."""
    driver.get(link)
    for field_id, value in (("url", account.url), ("username", account.username), ("password", account.password)):
        element = driver.find_element(By.ID, field_id)
        element.clear()
        element.send_keys(value)
    submit(driver, "Connect")
    return str(driver.find_element(By.TAG_NAME, "main").text)


def option_for(view: dict[str, Any], block_id: str, name: str) -> str | None:
    """The value of the option named `name` in a static select of the modal (None: not a static select)."""
    (block,) = [b for b in view["blocks"] if b.get("block_id") == block_id]
    options = block["element"].get("options")
    if options is None:
        return None
    (value,) = [o["value"] for o in options if o["text"]["text"] == name]
    return str(value)


async def linked_choice(serve: Serve, view: dict[str, Any], name: str) -> str:
    """The calendar `name` as Ann picks it in the linked select: from its options, or typed into it when the
    select loads its options (over 100 calendars on the shared Radicale)."""
    shown = option_for(view, settings_blocks.LINKED, name)
    if shown is not None:
        return shown
    status, text = await serve.sender.options(Action.PICK_LINKED_CALENDAR, name, user_id=ANN.id, view=view,
                                              block_id=settings_blocks.LINKED)
    assert status == 200
    (value,) = [o["value"] for o in json.loads(text)["options"] if o["text"]["text"] == name]
    return str(value)


# The walk-through ------------------------------------------------------------------------------------------


async def connect_and_choose_settings(serve: Serve, browser: WebDriver, radicale: CalDAVServer,
                                      calendar_url: str) -> tuple[str, str]:
    """Scenario 1: `/croco connect`, the browser, the `connected` DM, Choose settings, saved. (user id, the linked
    calendar's id)"""
    status, _ = await serve.sender.command("connect", user_id=ANN.id)
    assert status == 200
    connect = await serve.modal(1)
    (caldav,) = [b for b in connect["blocks"] if b.get("block_id") == "connect-caldav"]
    assert caldav["accessory"]["url"].startswith(f"{serve.base}/connect/")  # CROCO_PUBLIC_URL: this server
    page = await asyncio.to_thread(connect_in_browser, browser, caldav["accessory"]["url"], radicale)
    assert "Connected john" in page and "Go back to Slack." in page

    name = calendar_url.rstrip("/").rsplit("/", 1)[-1]
    connected = await serve.dm("is connected")
    assert name in connected.args["text"] + str(connected.args["blocks"])
    (user,) = (await serve.api("GET", f"/users?slack_user_id={ANN.id}"))["items"]
    notices = (await serve.api("GET", f"/users/{user['id']}/notices"))["items"]
    (notice,) = [n for n in notices if n["kind"] == "connected"]
    assert connected.args["metadata"]["event_payload"]["notice_id"] == notice["id"]
    (choose,) = [e for b in connected.args["blocks"] if b.get("block_id") == ACTIONS_BLOCK for e in b["elements"]]
    assert (choose["text"]["text"], choose["action_id"]) == ("Choose settings", Action.OPEN_SETTINGS)

    await serve.click(connected, Action.OPEN_SETTINGS)
    settings = await serve.modal(2)
    linked = await linked_choice(serve, settings, name)
    await serve.submit_settings(settings, values(linked=linked, conflicts=[linked]))
    saved = await serve.api("GET", f"/users/{user['id']}/sync-settings")
    assert (saved["linked_calendar_id"], saved["conflict_calendar_ids"], saved["mode"]) == \
        (linked, [linked], "one_way")
    return str(user["id"]), linked


async def book_and_hear_of_a_conflict_once(serve: Serve, radicale: CalDAVServer, calendar_url: str, user_id: str,
                                           day: datetime) -> str:
    """Scenario 2: a booking pushed to Radicale; a busy event on it there is one conflict DM, through a 429 and a
    500 from Slack, and not again on the next sync. The appointment's id."""
    desk = await serve.api("POST", "/calendars", {
        "name": "Consultations", "kind": "round_robin", "member_ids": [user_id], "duration_minutes": 30,
        "timezone": "Europe/Paris",
        "open_hours": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}})
    start = datetime(day.year, day.month, day.day, 10, tzinfo=PARIS)
    appointment = await serve.api("POST", f"/calendars/{desk['id']}/appointments", {
        "start": start.isoformat(), "contact": {"name": "Ada Lovelace", "email": "ada@example.com"}})
    await serve.sync(user_id)
    (pushed,) = (await calendar_of(radicale, calendar_url)).values()
    assert "Consultations" in pushed and "Ada Lovelace" in pushed

    assert (await serve.api("GET", f"/users/{user_id}/notices?undelivered=true"))["items"] == []
    serve.slack.fail("chat.postMessage", Failure(429, retry_after=1), Failure(500))  # the next DM meets both
    stamp = f"{day:%Y%m%d}"
    await asyncio.to_thread(radicale.put, calendar_url, "dentist.ics", vevent(
        "dentist@example", f"DTSTART;TZID=Europe/Paris:{stamp}T101500", f"DTEND;TZID=Europe/Paris:{stamp}T104500",
        "SUMMARY:Dentist"))
    await serve.sync(user_id)
    conflict = await serve.dm("overlaps your appointment")
    assert "Dentist" in conflict.args["text"] and "Consultations" in conflict.args["text"]
    shown_at = (start + timedelta(minutes=15)).astimezone(ZoneInfo(ANN.tz))  # in Ann's own time zone, named
    assert f"{shown_at:%H:%M} {ANN.tz}" in str(conflict.args["blocks"])
    tries = [c for c in serve.slack.attempts if c.method == "chat.postMessage" and "Dentist" in str(c.args)]
    assert len(tries) == 3  # the 429 (waited out), the 500 (retried later), then delivered

    await serve.sync(user_id)  # the same event, seen again
    notices = (await serve.api("GET", f"/users/{user_id}/notices"))["items"]
    (delivered,) = [n for n in notices if n["kind"] == "conflict"]
    assert delivered["delivered_at"] is not None
    assert conflict.args["metadata"]["event_payload"]["notice_id"] == delivered["id"]
    return str(appointment["id"])


async def restore_a_deleted_appointment(serve: Serve, radicale: CalDAVServer, calendar_url: str, user_id: str,
                                        appointment_id: str) -> None:
    """Scenario 3 (one-way): the pushed event deleted in Radicale; the DM's Restore puts it back."""
    (pushed,) = [href for href, ics in (await calendar_of(radicale, calendar_url)).items() if "Consultations" in ics]
    await asyncio.to_thread(radicale.delete, urllib.parse.urljoin(calendar_url, pushed))
    await serve.sync(user_id)
    deleted = await serve.dm("was deleted from your calendar")
    (buttons,) = [b["elements"] for b in deleted.args["blocks"] if b.get("block_id") == ACTIONS_BLOCK]
    by_text = {e["text"]["text"]: e for e in buttons}
    assert {"Restore to calendar", "Cancel appointment"} <= set(by_text)
    restore = by_text["Restore to calendar"]
    assert (restore["action_id"], restore["value"]) == (Action.RESTORE_TO_CALENDAR, appointment_id)

    await serve.click(deleted, Action.RESTORE_TO_CALENDAR, value=restore["value"])
    await serve.slack.wait_for("chat.update", timeout=WAIT)
    (shown,) = [m for m in serve.slack.messages if m["metadata"] == deleted.args["metadata"]]  # the DM as seen now
    assert "Restored to your calendar" in str(shown["blocks"])
    assert "Restore to calendar" not in str(shown["blocks"])  # the buttons gave way to the outcome
    back = [ics for ics in (await calendar_of(radicale, calendar_url)).values() if "Consultations" in ics]
    assert len(back) == 1 and "Ada Lovelace" in back[0]


async def go_two_way_and_meet_a_contact(serve: Serve, radicale: CalDAVServer, calendar_url: str, user_id: str,
                                        linked: str, day: datetime) -> None:
    """Scenario 4: two-way chosen in the modal; an event with a guest in the calendar is a `contact_created` DM."""
    status, _ = await serve.sender.command("settings", user_id=ANN.id)
    assert status == 200
    settings = await serve.modal(3)
    (shown,) = [b["element"] for b in settings["blocks"] if b.get("block_id") == settings_blocks.LINKED]
    assert shown["initial_option"]["value"] == linked  # what Ann saved before, preselected
    await serve.submit_settings(settings, values(linked=linked, conflicts=[linked], mode="two_way"))
    assert (await serve.api("GET", f"/users/{user_id}/sync-settings"))["mode"] == "two_way"

    await asyncio.to_thread(radicale.put, calendar_url, "michel.ics", michel(f"{day:%Y%m%d}"))
    await serve.sync(user_id)
    contact = await serve.dm("Dr. Michel")
    assert "New contact" in contact.args["text"] and "michel@example.com" in contact.args["text"]


async def test_a_member_connects_chooses_settings_and_hears_of_every_change_in_slack(
    tmp_path: Path, database_url: str, own_radicale: CalDAVServer, chrome: WebDriver,  # noqa: F811
    slack_emulator: SlackEmulator,
) -> None:
    radicale = own_radicale
    calendar_url = radicale.new_calendar()
    day = datetime.now(PARIS) + timedelta(days=3)
    port = free_port()  # picked first: CROCO_PUBLIC_URL (the connect links) names it
    base = f"http://127.0.0.1:{port}"
    env = _clean_env(CROCO_API_TOKEN=TOKEN, CROCO_DATABASE_URL=database_url, CROCO_PUBLIC_URL=base,
                     CROCO_SCHEDULER_TICK_SECONDS="0.2", CROCO_SLACK_BOT_TOKEN=BOT_TOKEN,
                     CROCO_SLACK_SIGNING_SECRET=SIGNING_SECRET, CROCO_SLACK_API_URL=slack_emulator.api_url)
    async with croco_serve(tmp_path, port, env) as http:
        serve = Serve(http, base, slack_emulator)
        user_id, linked = await connect_and_choose_settings(serve, chrome, radicale, calendar_url)
        appointment_id = await book_and_hear_of_a_conflict_once(serve, radicale, calendar_url, user_id, day)
        await restore_a_deleted_appointment(serve, radicale, calendar_url, user_id, appointment_id)
        await go_two_way_and_meet_a_contact(serve, radicale, calendar_url, user_id, linked, day)
        assert len(slack_emulator.calls_to("chat.postMessage")) == len(
            {str(c.args["metadata"]) for c in slack_emulator.calls_to("chat.postMessage")})  # no DM twice
        assert len([c for c in slack_emulator.calls_to("chat.postMessage") if "Dentist" in str(c.args)]) == 1
