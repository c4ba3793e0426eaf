"""Connecting a Google account (API.md "Connecting in a browser"): the consent link, the emulator's consent page
(tests/emulators/google.py, reached by google-auth-oauthlib and the Google provider unmodified through the
base-URL settings) and our callback page, on the app served on a loopback port. A person's browser is an aiohttp client without the API
token that follows the consent page's redirect to the callback, as a browser does.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event, select
from sqlmodel import SQLModel

from storage.db import Database
from storage.models import Connection, ConnectLink, Notice
from storage.secrets import SecretBox
from sync import credentials
from sync.providers.base import GoogleConfig, OAuthTokens, ProviderConfig, ProviderFactory
from sync.providers.google.oauth import INSECURE_TRANSPORT, SCOPES
from sync.providers.registry import open_provider
from tests.clocks import ManualClock
from tests.emulators.google import CLIENT_ID, CLIENT_SECRET, GoogleEmulator
from tests.factories import tables_holding
from tests.web.conftest import TOKEN, Client
from tests.web.test_api import JOHN, created, error_of
from web.app import create_app
from web.context import WebContext

NOW = datetime(2031, 3, 3, 8, tzinfo=UTC)
JOHN_GOOGLE, ANNA_GOOGLE = "john@example.com", "anna@example.com"
TEAM = "team@group.calendar.google.com"


def google_providers(config: ProviderConfig) -> ProviderFactory:
    """The real registry, as `croco serve` builds it: the Google provider lists the consenting account's
    calendars from the emulator with the tokens the exchange gave."""
    return functools.partial(open_provider, config=config)


def google_config(google: GoogleEmulator, **changes: str) -> ProviderConfig:
    return ProviderConfig(google=GoogleConfig(**{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                                 "api_url": google.root_url, "auth_url": google.auth_url,
                                                 "token_url": google.token_url} | changes))


@dataclass
class Site:
    """The app on a real loopback port with Google configured to the emulator; `api` carries the bearer
    token, `browser` (a person's) never does."""

    api: Client
    browser: aiohttp.ClientSession
    context: WebContext
    clock: ManualClock
    public_url: str
    provider: str = "google"
    pages: list[str] = field(default_factory=list)  # every page served, to look for secrets in

    async def user(self, person: dict[str, str] = JOHN) -> str:
        return str((await created(await self.api.post("/api/v1/users", json=person)))["id"])

    async def consent_link(self, user_id: str, **fields: str) -> str:
        body = await created(await self.api.post(f"/api/v1/users/{user_id}/connect-links",
                                                 json={"provider": self.provider} | fields))
        assert set(body) == {"url", "expires_at"}
        assert datetime.fromisoformat(body["expires_at"]) == self.clock.now + timedelta(minutes=10)
        return str(body["url"])

    async def consent(self, url: str) -> str:
        """The consent page, approved: the callback address it sends the browser back to."""
        async with self.browser.get(url, allow_redirects=False) as answer:
            assert answer.status == 302, await answer.text()
            location = answer.headers["Location"]
        assert location.startswith(f"{self.public_url}/oauth/{self.provider}/callback?")
        return location

    async def callback(self, url: str, status: int) -> str:
        async with self.browser.get(url) as answer:
            text = await answer.text()
            assert answer.status == status, text
            assert answer.content_type == "text/html" and answer.headers["Cache-Control"] == "no-store"
            assert answer.headers["Referrer-Policy"] == "no-referrer" and "Set-Cookie" not in answer.headers
        self.pages.append(text)
        return text

    async def connect(self, user_id: str, status: int = 200, **fields: str) -> str:
        """A consent link followed through the consent page to our callback page, as a browser does."""
        async with self.browser.get(await self.consent_link(user_id, **fields)) as answer:
            text = await answer.text()
            assert answer.status == status, text
            assert str(answer.url).startswith(f"{self.public_url}/oauth/{self.provider}/callback?")
        self.pages.append(text)
        return text

    async def connections(self, user_id: str) -> list[dict[str, Any]]:
        return list((await (await self.api.get(f"/api/v1/users/{user_id}/connections")).json())["items"])

    async def rows(self, model: type[SQLModel]) -> list[Any]:
        async with self.context.db.session() as session:
            return list(await session.scalars(select(model)))


@asynccontextmanager
async def served(db: Database, secret_box: SecretBox, google: GoogleEmulator | None,
                 config: ProviderConfig | None = None, *, provider: str = "google",
                 providers: ProviderFactory | None = None, trust: ssl.SSLContext | None = None) -> AsyncIterator[Site]:
    """The app serving `provider`'s flow: Google's with the real registry by default; `trust` is what the
    browser trusts besides the usual (an https emulator's certificate)."""
    if config is None:
        assert google is not None
        config = google_config(google)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))  # bound first, so the redirect URI can name the port
    public_url = f"http://127.0.0.1:{listening.getsockname()[1]}"
    clock = ManualClock(NOW)
    context = WebContext(db=db, secrets=secret_box, api_token=TOKEN, webhook_secret="whsec",
                         providers=providers or google_providers(config), public_url=public_url, clock=clock,
                         oauth_clients=frozenset({provider}), provider_config=config)
    server = TestServer(create_app(context), socket_factory=lambda *_: listening)
    connector = aiohttp.TCPConnector(ssl=trust) if trust is not None else None
    async with TestClient(server) as client, aiohttp.ClientSession(connector=connector) as browser:
        client.session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield Site(client, browser, context, clock, public_url, provider)


@pytest.fixture
async def site(db: Database, secret_box: SecretBox, google: GoogleEmulator) -> AsyncIterator[Site]:
    google.add_account(JOHN_GOOGLE).add_calendar(TEAM, "Team")
    google.add_account(ANNA_GOOGLE)
    google.consent_as = JOHN_GOOGLE
    async with served(db, secret_box, google) as found:
        yield found


def _query(url: str) -> dict[str, str]:
    return {name: value for name, (value,) in parse_qs(urlsplit(url).query).items()}


def _with(url: str, **changes: str | None) -> str:
    query = {k: v for k, v in (_query(url) | changes).items() if v is not None}
    return url.partition("?")[0] + "?" + urlencode(query)


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements sent while the block runs."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


# The consent link ----------------------------------------------------------------------------------------


async def test_a_google_link_is_the_consent_page_with_pkce_offline_access_and_a_signed_state(
    site: Site, google: GoogleEmulator
) -> None:
    url = await site.consent_link(await site.user())
    assert url.startswith(google.auth_url + "?")
    query = _query(url)
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
    assert query["redirect_uri"] == f"{site.public_url}/oauth/google/callback"
    assert query["scope"].split() == list(SCOPES)
    assert (query["access_type"], query["prompt"], query["include_granted_scopes"]) == ("offline", "consent", "true")
    assert query["code_challenge_method"] == "S256"
    token, _, signature = query["state"].partition(".")
    assert site.context.secrets.verify_mac("oauth-state", token, signature)

    (link,) = await site.rows(ConnectLink)  # the token hashed, the verifier sealed; the challenge is its S256
    assert link.provider == "google" and link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    verifier = site.context.secrets.open(link.code_verifier)["code_verifier"]
    assert 43 <= len(verifier) <= 128
    assert query["code_challenge"] == base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .decode().rstrip("=")
    assert await tables_holding(site.context.db, token, verifier) == []


async def test_a_plain_http_token_url_off_this_machine_is_refused_before_any_request(
    db: Database, secret_box: SecretBox, google: GoogleEmulator
) -> None:
    config = google_config(google, token_url="http://oauth.example.com/token")
    async with served(db, secret_box, google, config) as site:
        response = await site.api.post(f"/api/v1/users/{await site.user()}/connect-links", json={"provider": "google"})
        assert await error_of(response, 422) == "provider_not_configured"
        assert "CROCO_GOOGLE_TOKEN_URL must be an https URL" in (await response.json())["error"]["message"]
        assert await site.rows(ConnectLink) == [] and google.requests == []


# The whole flow ------------------------------------------------------------------------------------------


async def test_consenting_connects_the_primary_account_with_its_calendars_and_keeps_the_tokens_sealed(
    site: Site, google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(INSECURE_TRANSPORT, raising=False)
    caplog.set_level(logging.DEBUG)
    user_id = await site.user()
    page = await site.connect(user_id)
    assert "<h1>Google Calendar connected</h1>" in page
    assert f"Connected {JOHN_GOOGLE}: 2 calendars found." in page
    assert f"<li>{JOHN_GOOGLE}</li><li>Team</li>" in page

    (connection,) = await site.connections(user_id)
    assert (connection["provider"], connection["account"], connection["status"]) == ("google", JOHN_GOOGLE, "ok")
    calendars = (await (await site.api.get(f"/api/v1/users/{user_id}/calendars")).json())["items"]
    assert sorted(c["name"] for c in calendars) == ["Team", JOHN_GOOGLE]
    (notice,) = await site.rows(Notice)
    assert notice.kind == "connected" and notice.payload["account"] == JOHN_GOOGLE
    assert notice.payload["calendars"] == [JOHN_GOOGLE, "Team"] and notice.payload["renewed"] is False

    (row,) = await site.rows(Connection)
    granted = credentials.unseal(site.context.secrets, row.credentials)  # kept, encrypted
    assert isinstance(granted, OAuthTokens) and granted.refresh_token.startswith("1//emu-")
    assert granted.expires_at.tzinfo is not None and set(granted.scope) == set(SCOPES)
    assert await tables_holding(site.context.db, granted.refresh_token, granted.access_token) == []
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (granted.refresh_token, granted.access_token, CLIENT_SECRET):
        assert secret not in logged and not [p for p in site.pages if secret in p]
    assert INSECURE_TRANSPORT not in os.environ
    assert google.count("token") == 1


async def test_a_second_consent_for_the_same_account_renews_its_connection(site: Site) -> None:
    user_id = await site.user()
    await site.connect(user_id)
    (first,) = await site.connections(user_id)
    (row,) = await site.rows(Connection)
    first_tokens = credentials.unseal(site.context.secrets, row.credentials)
    page = await site.connect(user_id)
    assert "<h1>Google Calendar reconnected</h1>" in page
    assert [c["id"] for c in await site.connections(user_id)] == [first["id"]]
    (row,) = await site.rows(Connection)
    assert credentials.unseal(site.context.secrets, row.credentials) != first_tokens  # the new grant's
    assert [n.payload["renewed"] for n in sorted(await site.rows(Notice), key=lambda n: n.created_at)] == [False,
                                                                                                              True]


async def test_another_google_account_is_a_second_connection(site: Site, google: GoogleEmulator) -> None:
    user_id = await site.user()
    await site.connect(user_id)
    google.consent_as = ANNA_GOOGLE
    await site.connect(user_id)
    assert sorted(c["account"] for c in await site.connections(user_id)) == [ANNA_GOOGLE, JOHN_GOOGLE]


async def test_a_reconnect_link_renews_the_connection_it_names(site: Site) -> None:
    user_id = await site.user()
    await site.connect(user_id)
    (connection,) = await site.connections(user_id)
    page = await site.connect(user_id, connection_id=connection["id"])
    assert "<h1>Google Calendar reconnected</h1>" in page
    assert [c["id"] for c in await site.connections(user_id)] == [connection["id"]]


# What the callback refuses -------------------------------------------------------------------------------


async def test_a_missing_state_or_code_is_refused_and_creates_nothing(site: Site) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    assert "carries no sign-in state" in await site.callback(_with(callback, state=None), 400)
    assert "carries no sign-in code" in await site.callback(_with(callback, code=None), 400)
    assert await site.rows(Connection) == []
    assert "<h1>Google Calendar connected</h1>" in await site.callback(callback, 200)  # the link still works


@pytest.mark.parametrize("forge", ["signature", "token", "unsigned", "other-purpose"])
async def test_a_forged_state_is_refused_without_reading_the_database(site: Site, forge: str) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    token, _, signature = _query(callback)["state"].partition(".")
    secrets = site.context.secrets
    forged = {"signature": f"{token}.{'0' * len(signature)}", "token": f"{token[:-1]}{'B' if token.endswith('A') else 'A'}.{signature}",
              "unsigned": token, "other-purpose": f"{token}.{secrets.mac('push-channel', token)}"}[forge]
    with statements(site.context.db) as sent:
        page = await site.callback(_with(callback, state=forged), 400)
    assert sent == []
    assert "Google Calendar was not connected" in page and "unknown, expired or already used" in page
    assert await site.rows(Connection) == []


async def test_an_expired_state_is_refused_and_creates_nothing(site: Site) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    site.clock.later(timedelta(minutes=10))
    assert "unknown, expired or already used" in await site.callback(callback, 400)
    assert await site.rows(Connection) == []


async def test_a_spent_state_is_refused_and_creates_nothing_more(site: Site) -> None:
    user_id = await site.user()
    callback = await site.consent(await site.consent_link(user_id))
    await site.callback(callback, 200)
    assert "unknown, expired or already used" in await site.callback(callback, 400)  # the browser's back button
    fresh_code = _query(await site.consent(await site.consent_link(user_id)))["code"]
    assert "unknown, expired or already used" in await site.callback(_with(callback, code=fresh_code), 400)
    assert len(await site.connections(user_id)) == 1 and len(await site.rows(Notice)) == 1


async def test_a_google_state_at_another_providers_callback_is_refused(site: Site) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    page = await site.callback(callback.replace("/oauth/google/", "/oauth/microsoft/"), 400)
    assert "Outlook / Microsoft 365 was not connected" in page and "Microsoft is not configured: set CROCO_MICROSOFT_CLIENT_ID" in page
    assert await site.rows(Connection) == []


async def test_declining_the_consent_is_named_and_the_link_stays_usable(site: Site, google: GoogleEmulator) -> None:
    url = await site.consent_link(await site.user())
    google.deny_next_consent = "access_denied"
    declined = await site.consent(url)
    page = await site.callback(declined, 400)
    assert "<title>Error: Google Calendar was not connected</title>" in page
    assert "You did not allow Croco to use your calendars (access_denied)" in page and "Nothing was connected" in page
    assert await site.rows(Connection) == [] and google.count("token") == 0
    assert "<h1>Google Calendar connected</h1>" in await site.callback(await site.consent(url), 200)


async def test_any_other_provider_error_is_named_without_echoing_what_the_address_carries(site: Site) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    assert "(server_error)" in await site.callback(_with(callback, error="server_error", code=None), 400)
    page = await site.callback(_with(callback, error="<script>alert(1)</script>", code=None), 400)
    assert "The sign-in page answered with an error (error)." in page and "<script>" not in page


async def test_a_refused_code_is_named_invalid_grant_without_the_servers_words(
    site: Site, google: GoogleEmulator
) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    page = await site.callback(_with(callback, code="4/emu-not-a-code"), 400)
    assert "(invalid_grant)" in page and "Malformed auth code" not in page
    assert await site.rows(Connection) == [] and google.count("token") == 1
    assert "<h1>Google Calendar connected</h1>" in await site.callback(callback, 200)  # the state was not spent


async def test_a_grant_without_every_scope_we_need_is_named_and_creates_nothing(
    site: Site, google: GoogleEmulator
) -> None:
    url = await site.consent_link(await site.user())
    fewer = " ".join(s for s in SCOPES if not s.endswith("freebusy"))  # the person unticked one box
    page = await site.callback(await site.consent(_with(url, scope=fewer)), 400)
    assert "Google granted less than Croco needs (no calendar.events.freebusy)" in page
    assert await site.rows(Connection) == [] and google.count("calendarList.list") == 0
    assert "<h1>Google Calendar connected</h1>" in await site.callback(await site.consent(url), 200)


async def test_earlier_grants_added_to_ours_are_kept_and_connect(site: Site) -> None:
    url = await site.consent_link(await site.user())
    wider = " ".join((*SCOPES, "https://www.googleapis.com/auth/calendar.settings.readonly"))  # include_granted
    await site.callback(await site.consent(_with(url, scope=wider)), 200)
    (row,) = await site.rows(Connection)
    granted = credentials.unseal(site.context.secrets, row.credentials)
    assert isinstance(granted, OAuthTokens) and "https://www.googleapis.com/auth/calendar.settings.readonly" in granted.scope


async def test_a_callback_for_a_provider_without_consent_pages_is_not_found(site: Site) -> None:
    for provider in ("icloud", "caldav", "yahoo"):
        async with site.browser.get(f"{site.public_url}/oauth/{provider}/callback?code=c&state=s") as answer:
            assert answer.status == 404
