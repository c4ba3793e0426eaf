"""Issue 16 end to end: a Google account connected and kept in sync by `croco serve` as deployed.

A real `croco serve` process (SQLite, and PostgreSQL when configured) reaches the Google emulator only through
the CROCO_GOOGLE_* base URLs. The person's browser (headless Chromium) opens the connect link, consents on the
emulator's page and lands on serve's callback page; then a sync, a booking pushed once, and a change made in
Google that arrives by push: the emulator calls serve's /webhooks/google and serve syncs the calendar at once.
Serve's own poll is an hour apart here, so only the notification can have brought the change in.

The emulator answers in this test's event loop, so whatever blocks (the browser) runs in a thread.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from selenium.webdriver.remote.webdriver import WebDriver

from tests.emulators.google import CLIENT_ID, CLIENT_SECRET, GoogleEmulator
from tests.integration.serving import WAIT, Serve, connect_through_the_browser, croco_serve, serve_env
from tests.integration.test_serve import free_port
from tests.web.test_connect_browser import chrome as chrome  # noqa: F401  (the session fixture, re-exported)

JOHN = "john@example.com"
TEAM = "team@group.calendar.google.com"
PARIS = ZoneInfo("Europe/Paris")


async def book_and_push_once(serve: Serve, google: GoogleEmulator, user_id: str, day: datetime) -> str:
    desk = await serve.api("POST", "/calendars", {
        "name": "Consultations", "kind": "round_robin", "member_ids": [user_id], "duration_minutes": 30,
        "timezone": "Europe/Paris"})
    start = datetime(day.year, day.month, day.day, 10, tzinfo=PARIS)
    appointment = await serve.api("POST", f"/calendars/{desk['id']}/appointments", {
        "start": start.isoformat(), "contact": {"name": "Ada Lovelace", "email": "ada@example.com"}})
    await serve.sync(user_id)
    await serve.sync(user_id)  # again: still one copy
    ours = [e for e in google.events(JOHN) if e.get("extendedProperties", {}).get("private", {})
            .get("croco_appointment") == appointment["id"]]
    assert len(ours) == 1 and ours[0]["id"] == appointment["id"]
    assert "Consultations" in ours[0]["summary"] and "Ada Lovelace" in ours[0]["summary"]
    assert google.count("events.insert") == 1
    return str(appointment["id"])


async def a_change_in_google_arrives_by_push(serve: Serve, google: GoogleEmulator, user_id: str,
                                             day: datetime) -> None:
    channels = await wait_for_channel(google)
    assert channels[0].address == f"{serve.base}/webhooks/google"
    listings = google.count("events.list")
    start = datetime(day.year, day.month, day.day, 15, tzinfo=PARIS)
    google.put_event(JOHN, {"id": "dentist01", "summary": "Dentist", "start": {"dateTime": start.isoformat()},
                            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()}})
    (notified,) = [n for n in await google.wait_for_notifications(2, timeout=WAIT) if n.state == "exists"]
    assert notified.status_code == 200
    span = f"start={(start - timedelta(hours=1)).isoformat()}&end={(start + timedelta(hours=2)).isoformat()}"
    slots = await serve.eventually(f"/users/{user_id}/blocked-slots?{span.replace('+', '%2B')}",
                                   lambda body: any(s["title"] == "Dentist" for s in body["items"]))
    assert [s["title"] for s in slots["items"]] == ["Dentist"], slots
    assert google.count("events.list") == listings + 1  # one listing, brought by the notification


async def wait_for_channel(google: GoogleEmulator) -> list[Any]:
    """Serve watches the linked calendar once its settings are saved (a channel job run)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not [c for c in google.channels.values() if c.calendar_id == JOHN] and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return [c for c in google.channels.values() if c.calendar_id == JOHN]


async def test_a_google_account_connects_syncs_pushes_once_and_hears_of_changes_by_push(
    tmp_path: Path, database_url: str, chrome: WebDriver, google: GoogleEmulator,  # noqa: F811
) -> None:
    john = google.add_account(JOHN, time_zone="Europe/Paris")
    john.add_calendar(TEAM, "Team", "reader")
    day = datetime.now(PARIS) + timedelta(days=3)
    port = free_port()  # picked first: CROCO_PUBLIC_URL (the callback and the webhook) names it
    base = f"http://127.0.0.1:{port}"
    env = serve_env(database_url, base, CROCO_GOOGLE_CLIENT_ID=CLIENT_ID, CROCO_GOOGLE_CLIENT_SECRET=CLIENT_SECRET,
                    CROCO_GOOGLE_API_URL=google.root_url, CROCO_GOOGLE_AUTH_URL=google.auth_url,
                    CROCO_GOOGLE_TOKEN_URL=google.token_url)
    async with croco_serve(tmp_path, port, env) as http:
        serve = Serve(http, base)
        user_id = await connect_through_the_browser(serve, chrome, "google", consent_at=google.auth_url, account=JOHN,
                                                    calendars={JOHN: "full", "Team": "read"}, linked=JOHN)
        await book_and_push_once(serve, google, user_id, day)
        await a_change_in_google_arrives_by_push(serve, google, user_id, day)
    log = (tmp_path / "serve.log").read_text()
    for secret in (CLIENT_SECRET, *google.issued_secrets()):
        assert secret not in log  # no token or client secret in serve's log
