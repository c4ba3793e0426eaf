"""Connect links and the one-time connect form (API.md "Connecting in a browser"), reconnect included."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlmodel import SQLModel

from storage.db import Database
from storage.models import Connection, Notice, RemoteCalendar
from storage.secrets import SecretBox
from sync import credentials
from sync.providers.base import AppPassword, InvalidCredentials, RemoteCalendarInfo
from tests.clocks import ManualClock
from tests.factories import tables_holding
from tests.web.conftest import GOOD_PASSWORD, TOKEN, Accounts, Client
from tests.web.test_api import JOHN, created, error_of
from web.app import create_app
from web.context import WebContext

NOW = datetime(2031, 3, 3, 8, tzinfo=UTC)
WRONG_PASSWORD = "wrong-password-shh-7"
PUBLIC_URL = "https://croco.example.com"
DAV = "https://dav.example.com/"




class Browser:
    """The API (with the bearer token) and a person's browser (without it) on one served app."""

    def __init__(self, api: Client, context: WebContext, clock: ManualClock) -> None:
        self.api, self.context, self.clock = api, context, clock
        self.pages: list[str] = []  # every page served, to look for secrets in

    async def user(self) -> str:
        return str((await created(await self.api.post("/api/v1/users", json=JOHN)))["id"])

    async def link(self, user_id: str, provider: str, **fields: str) -> str:
        """The path of a new connect link's form."""
        body = await created(await self.api.post(f"/api/v1/users/{user_id}/connect-links",
                                                 json={"provider": provider} | fields))
        assert set(body) == {"url", "expires_at"}
        assert body["url"].startswith(f"{PUBLIC_URL}/connect/")
        assert datetime.fromisoformat(body["expires_at"]) == self.clock.now + timedelta(minutes=15)
        return urlsplit(body["url"]).path

    async def open(self, path: str, status: int) -> str:
        return await self.read(await self.api.get(path, headers={"Authorization": ""}), status)

    async def submit(self, path: str, status: int, **form: str) -> str:
        return await self.read(await self.api.post(path, data=form, headers={"Authorization": ""}), status)

    async def read(self, response: Any, status: int) -> str:
        text = str(await response.text())
        assert response.status == status, text
        assert response.content_type == "text/html" and response.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in response.headers  # the link is the only key
        self.pages.append(f"{dict(response.headers)} {text}")
        return text

    async def connections(self, user_id: str) -> list[dict[str, Any]]:
        response = await self.api.get(f"/api/v1/users/{user_id}/connections")
        return list((await response.json())["items"])

    async def rows(self, model: type[SQLModel]) -> list[Any]:
        async with self.context.db.session() as session:
            return list(await session.scalars(select(model)))


@pytest.fixture
async def browser(db: Database, secret_box: SecretBox, accounts: Accounts) -> AsyncIterator[Browser]:
    clock = ManualClock(NOW)
    context = WebContext(db=db, secrets=secret_box, api_token=TOKEN, webhook_secret="whsec", providers=accounts,
                         public_url=PUBLIC_URL + "/", clock=clock)
    async with TestClient(TestServer(create_app(context))) as client:
        client.session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield Browser(client, context, clock)


ICLOUD_LOGIN = {"provider": "icloud", "username": "john@icloud.example", "password": GOOD_PASSWORD}
CALDAV_LOGIN = {"provider": "caldav", "username": "john", "password": GOOD_PASSWORD, "url": DAV}


# Issuing links --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_google_and_microsoft_links_need_their_client_configured(browser: Browser, provider: str) -> None:
    user_id = await browser.user()
    response = await browser.api.post(f"/api/v1/users/{user_id}/connect-links", json={"provider": provider})
    assert await error_of(response, 422) == "provider_not_configured"
    assert f"CROCO_{provider.upper()}_CLIENT_ID" in (await response.json())["error"]["message"]


@pytest.mark.parametrize(("provider", "labels"), [
    ("icloud", ['for="username">Apple Account', 'for="password">App-specific password']),
    ("caldav", ['for="username">Username', 'for="password">Password', 'for="url">Server URL']),
])
async def test_icloud_and_caldav_links_open_a_form_without_a_bearer_token(
    browser: Browser, provider: str, labels: list[str]
) -> None:
    page = await browser.open(await browser.link(await browser.user(), provider), 200)
    assert all(label in page for label in labels)
    assert ('name="url"' in page) == (provider == "caldav")
    assert f'<input type="hidden" name="provider" value="{provider}">' in page


# The form ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("login", [ICLOUD_LOGIN, CALDAV_LOGIN], ids=["icloud", "caldav"])
async def test_the_form_connects_the_account_once_and_spends_the_link(
    browser: Browser, accounts: Accounts, login: dict[str, str]
) -> None:
    user_id = await browser.user()
    path = await browser.link(user_id, login["provider"])
    page = await browser.submit(path, 200, **login, hidden_field_of_the_form="kept by the browser")
    assert "2 calendars found" in page
    (connection,) = await browser.connections(user_id)
    assert connection["provider"] == login["provider"] and connection["account"] == login["username"]
    assert connection["status"] == "ok"
    assert accounts.calls == [(login["provider"], login["username"], login.get("url"))]
    calendars = await browser.rows(RemoteCalendar)
    assert len(calendars) == 2 and all(c.due_at == NOW for c in calendars)

    await browser.open(path, 410)
    await browser.submit(path, 410, **login)
    assert len(await browser.connections(user_id)) == 1 and len(accounts.calls) == 1


async def test_wrong_password_or_unreachable_server_shows_the_form_again_and_the_link_still_works(
    browser: Browser, accounts: Accounts
) -> None:
    user_id = await browser.user()
    path = await browser.link(user_id, "caldav")
    refused = await browser.submit(path, 422, **CALDAV_LOGIN | {"password": WRONG_PASSWORD})
    assert "The server refused this username and password" in refused and 'role="alert"' in refused
    assert 'id="password-error" role="alert"' in refused  # beside the field at fault (the browser test reads it)
    assert 'value="john"' in refused and f'value="{DAV}"' in refused  # typed again: everything but the password
    accounts.unreachable_urls.add("https://down.example.com/")
    down = await browser.submit(path, 422, **CALDAV_LOGIN | {"url": "https://down.example.com/"})
    assert "cannot be reached" in down and 'id="url-error"' in down
    missing = await browser.submit(path, 422, **CALDAV_LOGIN | {"url": ""})
    assert "Server URL: required" in missing and 'id="url-error"' in missing
    assert await browser.connections(user_id) == []

    await browser.submit(path, 200, **CALDAV_LOGIN)
    assert len(await browser.connections(user_id)) == 1


async def test_unknown_and_expired_links_are_410_and_create_nothing(browser: Browser) -> None:
    user_id = await browser.user()
    path = await browser.link(user_id, "icloud")
    for unknown in ("/connect/not-a-token", path + "x"):
        await browser.open(unknown, 410)
        await browser.submit(unknown, 410, **ICLOUD_LOGIN)

    browser.clock.now += timedelta(minutes=14, seconds=59)
    await browser.open(path, 200)
    browser.clock.now += timedelta(seconds=1)
    await browser.open(path, 410)
    await browser.submit(path, 410, **ICLOUD_LOGIN)
    assert await browser.connections(user_id) == []


async def test_two_submissions_of_one_link_at_once_connect_once(browser: Browser, accounts: Accounts) -> None:
    user_id = await browser.user()
    path = await browser.link(user_id, "icloud")
    both_checking = asyncio.Barrier(2)
    listing = accounts.provider.list_calendars

    async def list_after_the_other_arrived() -> list[RemoteCalendarInfo]:
        await asyncio.wait_for(both_checking.wait(), timeout=10)  # both are past the link check
        return await listing()

    accounts.provider.list_calendars = list_after_the_other_arrived  # type: ignore[method-assign]
    responses = await asyncio.gather(*(browser.api.post(path, data=ICLOUD_LOGIN, headers={"Authorization": ""})
                                       for _ in range(2)))
    assert sorted(r.status for r in responses) == [200, 410]
    assert len(await browser.connections(user_id)) == 1 and len(await browser.rows(RemoteCalendar)) == 2


@pytest.mark.parametrize(("body", "content_type"), [
    (b"username=\xff\xfe&password=\xff", "application/x-www-form-urlencoded"),
    (b"a=b", "application/x-www-form-urlencoded; charset=no-such-charset"),
    (b"\xff\xfe", "multipart/form-data; boundary=x"),
], ids=["not-utf8", "unknown-charset", "broken-multipart"])
async def test_a_body_that_is_no_form_is_400_and_the_link_still_works(
    browser: Browser, body: bytes, content_type: str
) -> None:
    user_id = await browser.user()
    path = await browser.link(user_id, "icloud")
    response = await browser.api.post(path, data=body, headers={"Authorization": "", "Content-Type": content_type})
    await browser.read(response, 400)
    await browser.submit(path, 200, **ICLOUD_LOGIN)


# Reconnect -----------------------------------------------------------------------------------------------


async def test_reconnect_renews_the_broken_connection_and_a_later_break_tells_again(
    browser: Browser, accounts: Accounts, secret_box: SecretBox
) -> None:
    user_id = await browser.user()
    await browser.submit(await browser.link(user_id, "caldav"), 200, **CALDAV_LOGIN)
    (connection,) = await browser.connections(user_id)
    work = next(c for c in await browser.rows(RemoteCalendar) if c.name == "Work")
    settings = {"linked_calendar_id": work.id}
    assert (await browser.api.put(f"/api/v1/users/{user_id}/sync-settings", json=settings)).status == 200

    async def broken() -> dict[str, Any]:
        accounts.provider.fail_next(InvalidCredentials("the server refused the credentials"), on="changes")
        assert (await browser.api.post(f"/api/v1/users/{user_id}/sync")).status == 200
        (found,) = await browser.connections(user_id)
        return found

    assert (await broken())["status"] == "broken"
    path = await browser.link(user_id, "caldav", connection_id=connection["id"])
    form = await browser.open(path, 200)
    assert "Reconnect" in form and 'value="john"' in form and f'value="{DAV}"' in form
    page = await browser.submit(path, 200, **CALDAV_LOGIN | {"username": "john.doe"})
    assert "Reconnected john.doe" in page

    (renewed,) = await browser.connections(user_id)
    assert renewed == connection | {"account": "john.doe", "last_error": None}
    (row,) = await browser.rows(Connection)
    assert credentials.unseal(secret_box, row.credentials) == AppPassword("john.doe", GOOD_PASSWORD)
    assert all(c.due_at == NOW for c in await browser.rows(RemoteCalendar))
    settings_now = await (await browser.api.get(f"/api/v1/users/{user_id}/sync-settings")).json()
    assert settings_now["linked_calendar_id"] == work.id  # its calendars and settings stay

    assert (await broken())["status"] == "broken"
    assert sorted(n.kind for n in await browser.rows(Notice)) == [  # each connect and each break tells
        "connected", "connected", "connection_broken", "connection_broken"]

    slack_button = await browser.context.connect_links.reconnect(connection["id"])  # the Slack app, no HTTP
    await browser.submit(urlsplit(slack_button.url).path, 200, **CALDAV_LOGIN)
    assert len(await browser.connections(user_id)) == 1


async def test_a_reconnect_link_names_a_connection_of_that_user_and_provider(browser: Browser) -> None:
    john, ada = await browser.user(), str((await created(await browser.api.post(
        "/api/v1/users", json=JOHN | {"email": "ada@example.com"})))["id"])
    await browser.submit(await browser.link(john, "caldav"), 200, **CALDAV_LOGIN)
    (connection,) = await browser.connections(john)
    path = f"/api/v1/users/{ada}/connect-links"
    response = await browser.api.post(path, json={"provider": "caldav", "connection_id": connection["id"]})
    assert await error_of(response, 404) == "not_found"
    path = f"/api/v1/users/{john}/connect-links"
    response = await browser.api.post(path, json={"provider": "icloud", "connection_id": connection["id"]})
    assert await error_of(response, 422) == "validation_error"


# Secrets -------------------------------------------------------------------------------------------------


async def test_no_password_or_link_token_in_a_page_a_row_or_a_log_line(
    browser: Browser, accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user_id = await browser.user()
    path = await browser.link(user_id, "icloud")
    token = path.rsplit("/", 1)[-1]
    await browser.submit(path, 422, **ICLOUD_LOGIN | {"password": WRONG_PASSWORD})
    await browser.submit(path, 200, **ICLOUD_LOGIN)
    assert not [p for p in browser.pages if GOOD_PASSWORD in p or WRONG_PASSWORD in p]

    assert await tables_holding(browser.context.db, GOOD_PASSWORD, WRONG_PASSWORD, token) == []

    ours = [r for r in caplog.records if not r.name.startswith("aiohttp.access")]  # `croco serve` logs no access
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    assert "connected through a link" in logged
    assert not any(s in logged for s in (GOOD_PASSWORD, WRONG_PASSWORD, token))
