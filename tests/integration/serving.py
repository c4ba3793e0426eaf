"""`croco serve` as deployed, for the end-to-end tests: its own process, its log kept and checked."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import update

from storage.db import Database
from storage.models import RemoteCalendar
from storage.types import utcnow
from tests.bot.test_serve_notices import ready
from tests.integration.test_serve import _clean_env
from tests.web.conftest import Client
from web.context import WebContext

FAR = datetime(2200, 1, 1, tzinfo=UTC)
TOKEN = "e2e-api-token"
WAIT = 20.0
"""Seconds a pushed change may take to show (API.md: synced within 5 s of the notification)."""


@dataclass
class WatchedCalendar:
    """One linked calendar behind our API served on a loopback port (the public URL a provider notifies), for
    the push tests: its row, the channel job, and the syncs a notification asked for."""

    db: Database
    context: WebContext
    api: Client
    calendar_id: str
    connection_id: str
    syncs_asked: list[None]

    async def calendar(self) -> RemoteCalendar:
        async with self.db.session() as session:
            found = await session.get(RemoteCalendar, self.calendar_id)
        assert found is not None
        return found

    async def renew(self, *, days: float = 0) -> None:
        """The channel job, run as if `days` had passed."""
        await self.context.channels.renew(utcnow() + timedelta(days=days))

    async def not_due(self) -> None:
        async with self.db.write() as session:
            await session.execute(update(RemoteCalendar).values(due_at=FAR))

    async def due_now(self) -> bool:
        due_at = (await self.calendar()).due_at
        return due_at is not None and due_at <= utcnow()


@asynccontextmanager
async def croco_serve(tmp_path: Path, port: int, env: dict[str, str]) -> AsyncIterator[aiohttp.ClientSession]:
    """Serve on 127.0.0.1:`port` with `env`, answering /healthz; yields a client session. A failure inside prints
    serve's own account of it (the end of its log); at the end the log must hold no error line, its shutdown
    included: nothing for an operator to chase."""
    log_path = tmp_path / "serve.log"
    log = log_path.open("w+")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "croco.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        cwd=tmp_path, env=env, stderr=log)
    try:
        async with aiohttp.ClientSession() as http:
            await ready(http, f"http://127.0.0.1:{port}", proc)
            yield http
    except BaseException:
        log.seek(0)
        print(log.read()[-20000:])
        raise
    finally:
        proc.terminate()
        await proc.wait()
        log.close()
    errors = [line for line in log_path.read_text().splitlines() if '"level": "error"' in line]
    assert errors == []


class Serve:
    """`croco serve` seen from outside, with the integrator's token."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.request(method, f"{self.base}/api/v1{path}", json=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status in (200, 201), await response.text()
            return await response.json()

    async def sync(self, user_id: str) -> None:
        synced = (await self.api("POST", f"/users/{user_id}/sync"))["calendars"]
        assert synced and [c["error"] for c in synced] == [None] * len(synced), synced

    async def eventually(self, path: str, condition: Any) -> Any:
        """GET `path` until `condition(body)` holds (serve works on its own clock), at most WAIT seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            body = await self.api("GET", path)
            if condition(body) or loop.time() > deadline:
                return body
            await asyncio.sleep(0.1)


def consent(driver: WebDriver, url: str) -> str:
    """The person opens the connect link, Google's consent page sends them back: serve's callback page text."""
    driver.get(url)
    WebDriverWait(driver, WAIT).until(EC.presence_of_element_located((By.TAG_NAME, "h1")))
    return str(driver.find_element(By.TAG_NAME, "main").text)


async def connect_through_the_browser(serve: Serve, driver: WebDriver, provider: str, *, consent_at: str,
                                      account: str, calendars: dict[str, str], linked: str) -> str:
    """A new user's connect link, the consent on the provider's page (at `consent_at`), serve's callback page:
    the connection is `account`'s, its `calendars` (name: access) listed, and the one named `linked` linked.
    Returns the user's id."""
    user = await serve.api("POST", "/users", {"name": "John", "email": account, "timezone": "Europe/Paris"})
    link = await serve.api("POST", f"/users/{user['id']}/connect-links", {"provider": provider})
    assert link["url"].startswith(consent_at)
    page = await asyncio.to_thread(consent, driver, link["url"])
    assert "connected" in page and all(name in page for name in calendars), page
    (connection,) = (await serve.api("GET", f"/users/{user['id']}/connections"))["items"]
    assert (connection["provider"], connection["account"], connection["status"]) == (provider, account, "ok")
    listed = {c["name"]: c for c in (await serve.api("GET", f"/users/{user['id']}/calendars"))["items"]}
    assert {name: c["access"] for name, c in listed.items()} == calendars
    await serve.api("PUT", f"/users/{user['id']}/sync-settings", {"linked_calendar_id": listed[linked]["id"]})
    return str(user["id"])


def serve_env(database_url: str, public_url: str, **provider: str) -> dict[str, str]:
    """Serve's environment for an end-to-end test: our token and database, `public_url` for the callbacks and the
    webhooks, an hour between polls (only a notification brings a change in sooner), and `provider`'s settings."""
    return _clean_env(CROCO_API_TOKEN=TOKEN, CROCO_DATABASE_URL=database_url, CROCO_PUBLIC_URL=public_url,
                      CROCO_SYNC_INTERVAL_SECONDS="3600", CROCO_PUSH_SAFETY_POLL_SECONDS="3600", **provider)
