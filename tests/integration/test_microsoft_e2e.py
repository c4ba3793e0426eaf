"""Issue 17 end to end: a Microsoft 365 account connected and kept in sync by `croco serve` as deployed.

A real `croco serve` process (SQLite, and PostgreSQL when configured) reaches the identity and Graph emulator
only through CROCO_MICROSOFT_AUTHORITY and CROCO_MICROSOFT_GRAPH_URL, trusting its test certificate as a
deployment trusts a corporate CA: REQUESTS_CA_BUNDLE for msal, SSL_CERT_FILE for aiohttp. The person's browser
(headless Chromium, told to accept the emulator's certificate) opens the connect link, consents on the
emulator and lands on serve's callback page; then a sync, a booking pushed once, and a change made in Outlook
that arrives by change notification: Graph validates serve's /webhooks/microsoft, then posts the change to it,
and serve syncs the calendar at once. Serve's own poll is an hour apart, so only the notification can have
brought the change in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.emulators.graph import CLIENT_ID, CLIENT_SECRET, GraphEmulator, Subscription
from tests.integration.serving import WAIT, Serve, connect_through_the_browser, croco_serve, serve_env
from tests.integration.test_serve import free_port
from tests.web.test_connect_browser import headless_chrome

JOHN = "john@contoso.com"
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(scope="module")
def chrome() -> Iterator[WebDriver]:
    """Chromium accepting the emulator's self-signed certificate (its sign-in pages are https)."""
    yield from headless_chrome("--ignore-certificate-errors")


def utc_text(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


async def book_and_push_once(serve: Serve, graph: GraphEmulator, user_id: str, calendar: str,
                             day: datetime) -> None:
    desk = await serve.api("POST", "/calendars", {
        "name": "Consultations", "kind": "round_robin", "member_ids": [user_id], "duration_minutes": 30,
        "timezone": "Europe/Paris"})
    start = datetime(day.year, day.month, day.day, 10, tzinfo=PARIS)
    await serve.api("POST", f"/calendars/{desk['id']}/appointments", {
        "start": start.isoformat(), "contact": {"name": "Ada Lovelace", "email": "ada@example.com"}})
    await serve.sync(user_id)
    await serve.sync(user_id)  # again: still one copy
    ours = [e for e in graph.events(calendar) if "Ada Lovelace" in e["subject"]]
    assert len(ours) == 1 and "Consultations" in ours[0]["subject"], ours
    assert ours[0]["start"]["dateTime"].startswith(start.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M"))
    assert graph.count("events.create") == 1


async def a_change_in_outlook_arrives_by_notification(serve: Serve, graph: GraphEmulator, user_id: str,
                                                      calendar: str, day: datetime) -> None:
    (subscription,) = await wait_for_subscription(graph, calendar)
    assert subscription.notification_url == f"{serve.base}/webhooks/microsoft"
    listings = graph.count("delta")
    start = datetime(day.year, day.month, day.day, 15, tzinfo=PARIS)
    graph.put_event(calendar, {"subject": "Dentist", "start": utc_text(start),
                               "end": utc_text(start + timedelta(hours=1))})
    (notified,) = await graph.wait_for_notifications(1, timeout=WAIT)
    assert (notified.kind, notified.status_code) == ("created", 202)
    span = f"start={(start - timedelta(hours=1)).isoformat()}&end={(start + timedelta(hours=2)).isoformat()}"
    slots = await serve.eventually(f"/users/{user_id}/blocked-slots?{span.replace('+', '%2B')}",
                                   lambda body: any(s["title"] == "Dentist" for s in body["items"]))
    assert [s["title"] for s in slots["items"]] == ["Dentist"], slots
    assert graph.count("delta") == listings + 1  # one delta round, brought by the notification


async def wait_for_subscription(graph: GraphEmulator, calendar: str) -> list[Subscription]:
    """Serve subscribes to the linked calendar once its settings are saved (a channel job run)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT

    def found() -> list[Subscription]:
        return [s for s in graph.subscriptions.values() if s.calendar_ids == {calendar}]

    while not found() and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return found()


async def test_a_microsoft_account_connects_syncs_pushes_once_and_hears_of_changes_by_notification(
    tmp_path: Path, database_url: str, chrome: WebDriver, graph: GraphEmulator,
) -> None:
    john = graph.add_account(JOHN)
    john.add_calendar("Team", can_edit=False)
    day = datetime.now(PARIS) + timedelta(days=3)
    port = free_port()  # picked first: CROCO_PUBLIC_URL (the callback and the webhook) names it
    base = f"http://127.0.0.1:{port}"
    env = serve_env(database_url, base, CROCO_MICROSOFT_CLIENT_ID=CLIENT_ID, CROCO_MICROSOFT_CLIENT_SECRET=CLIENT_SECRET,
                    CROCO_MICROSOFT_AUTHORITY=graph.authority, CROCO_MICROSOFT_GRAPH_URL=graph.graph_url,
                    REQUESTS_CA_BUNDLE=str(graph.ca_bundle_path), SSL_CERT_FILE=str(graph.ca_bundle_path))
    async with croco_serve(tmp_path, port, env) as http:
        serve = Serve(http, base)
        user_id = await connect_through_the_browser(serve, chrome, "microsoft", consent_at=graph.authority,
                                                    account=JOHN, calendars={"Calendar": "full", "Team": "read"},
                                                    linked="Calendar")
        calendar = john.default_calendar_id
        await book_and_push_once(serve, graph, user_id, calendar, day)
        await a_change_in_outlook_arrives_by_notification(serve, graph, user_id, calendar, day)
    log = (tmp_path / "serve.log").read_text()
    for secret in (CLIENT_SECRET, *graph.issued_secrets()):
        assert secret not in log  # no token or client secret in serve's log
