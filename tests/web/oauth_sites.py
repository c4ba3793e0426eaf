"""The browser OAuth flow under test (API.md "Connecting in a browser"): the app served on a loopback port, a
person's browser (an aiohttp client without the API token that follows the consent page's redirect to our
callback, as a browser does), and a `ProviderWorld` per provider: its emulator (tests/emulators/google.py over
http, tests/emulators/graph.py over https), reached by google-auth-oauthlib, msal and the real providers of the
registry unmodified through the base-URL settings, and what the shared tests need to know about it.
"""

from __future__ import annotations

import functools
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event, select
from sqlmodel import SQLModel

from storage.db import Database
from storage.secrets import SecretBox
from sync.providers.base import (
    Credentials,
    GoogleConfig,
    MicrosoftConfig,
    OAuthTokens,
    ProviderConfig,
    ProviderFactory,
    TokenCache,
)
from sync.providers.microsoft.provider import MicrosoftShared
from sync.providers.registry import open_provider
from tests.clocks import ManualClock
from tests.emulators import google as google_emulator
from tests.emulators import graph as graph_emulator
from tests.emulators.google import GoogleEmulator
from tests.emulators.graph import GraphEmulator
from tests.web.conftest import TOKEN, Client
from tests.web.test_api import JOHN, created
from web.app import create_app
from web.context import WebContext

NOW = datetime(2031, 3, 3, 8, tzinfo=UTC)
JOHN_GOOGLE, ANNA_GOOGLE = "john@example.com", "anna@example.com"
TEAM = "team@group.calendar.google.com"
ANN_WORK, BEA_PERSONAL = "ann@contoso.com", "bea@outlook.com"
SERVICES = {"google": "Google Calendar", "microsoft": "Outlook / Microsoft 365"}
"""How our pages name each provider."""
SETTINGS = {"google": "CROCO_GOOGLE", "microsoft": "CROCO_MICROSOFT"}


class Emulator(Protocol):
    """What both OAuth emulators offer the shared tests."""

    consent_as: str | None
    deny_next_consent: str | None

    @property
    def requests(self) -> Sequence[Any]: ...

    def count(self, method: str | None = None) -> int: ...


@dataclass(frozen=True)
class ProviderWorld:
    """One OAuth provider on its emulator: `account` consents unless told otherwise and has `calendars`
    (as listed, primary first); `other_account` is a second one; `refused_code` is a code the token endpoint
    refuses, with an error description holding `server_words` that no page may repeat; `insecure` is a config
    with a plain http endpoint the provider's library must not be given, named by the setting `insecure_setting`."""

    name: str
    company: str
    emulator: Emulator
    authorize_url: str
    client_id: str
    client_secret: str
    config: ProviderConfig
    providers: ProviderFactory
    trust: ssl.SSLContext | None
    account: str
    other_account: str
    calendars: list[str]
    refused_code: str
    server_words: str
    insecure: ProviderConfig
    insecure_setting: str
    secrets: Callable[[Credentials], list[str]]
    """The tokens sealed credentials hold."""

    @property
    def service(self) -> str:
        return SERVICES[self.name]

    @property
    def other(self) -> str:
        return "microsoft" if self.name == "google" else "google"

    def consent_as(self, account: str) -> None:
        self.emulator.consent_as = account


def google_config(google: GoogleEmulator, **changes: str) -> ProviderConfig:
    return ProviderConfig(google=GoogleConfig(**{"client_id": google_emulator.CLIENT_ID,
                                                 "client_secret": google_emulator.CLIENT_SECRET,
                                                 "api_url": google.root_url, "auth_url": google.auth_url,
                                                 "token_url": google.token_url} | changes))


def microsoft_config(graph: GraphEmulator, **changes: str) -> ProviderConfig:
    return ProviderConfig(microsoft=MicrosoftConfig(**{"client_id": graph_emulator.CLIENT_ID,
                                                       "client_secret": graph_emulator.CLIENT_SECRET,
                                                       "authority": graph.authority,
                                                       "graph_url": graph.graph_url} | changes))


def registry(config: ProviderConfig, microsoft: MicrosoftShared | None = None) -> ProviderFactory:
    """The real registry, as `croco serve` builds it: the provider lists the consenting account's calendars
    from the emulator with the credentials the exchange gave (Graph's over `microsoft`'s session)."""
    return functools.partial(open_provider, config=config, microsoft=microsoft)


def _google_tokens(granted: Credentials) -> list[str]:
    assert isinstance(granted, OAuthTokens)
    return [granted.refresh_token, granted.access_token]


def cached_secrets(cache: Credentials) -> list[str]:
    """The access and refresh tokens in msal's serialized cache."""
    assert isinstance(cache, TokenCache)
    document = json.loads(cache.serialized)
    return [entry["secret"] for kind in ("AccessToken", "RefreshToken") for entry in document[kind].values()]


def google_world(google: GoogleEmulator) -> ProviderWorld:
    """John (with a shared Team calendar) consents; Anna is his second account."""
    google.add_account(JOHN_GOOGLE).add_calendar(TEAM, "Team")
    google.add_account(ANNA_GOOGLE)
    google.consent_as = JOHN_GOOGLE
    config = google_config(google)
    return ProviderWorld("google", "Google", google, google.auth_url, google_emulator.CLIENT_ID,
                         google_emulator.CLIENT_SECRET, config, registry(config), None, JOHN_GOOGLE, ANNA_GOOGLE,
                         [JOHN_GOOGLE, "Team"], "4/emu-not-a-code", "Malformed auth code",
                         google_config(google, token_url="http://oauth.example.com/token"), "CROCO_GOOGLE_TOKEN_URL",
                         _google_tokens)


def microsoft_world(graph: GraphEmulator, shared: MicrosoftShared) -> ProviderWorld:
    """Ann's work mailbox (with a Team calendar) consents; Bea's personal account is the second one. msal
    must trust the emulator through REQUESTS_CA_BUNDLE, which the caller sets; `shared` trusts it for Graph."""
    graph.add_account(ANN_WORK).add_calendar("Team")
    graph.add_account(BEA_PERSONAL, personal=True)
    graph.consent_as = ANN_WORK
    config = microsoft_config(graph)
    return ProviderWorld("microsoft", "Microsoft", graph, f"{graph.authority}/oauth2/v2.0/authorize",
                         graph_emulator.CLIENT_ID, graph_emulator.CLIENT_SECRET, config, registry(config, shared),
                         graph.client_ssl_context(), ANN_WORK, BEA_PERSONAL, ["Calendar", "Team"],
                         "M.C5_emu.not-a-code", "AADSTS",
                         microsoft_config(graph, authority=graph.authority.replace("https:", "http:")),
                         "CROCO_MICROSOFT_AUTHORITY", cached_secrets)


@dataclass
class Site:
    """The app on a real loopback port with `provider`'s consent configured to its emulator; `api` carries
    the bearer token, `browser` (a person's) never does."""

    api: Client
    browser: aiohttp.ClientSession
    context: WebContext
    clock: ManualClock
    public_url: str
    provider: str
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
async def served(db: Database, secret_box: SecretBox, world: ProviderWorld, *, config: ProviderConfig | None = None,
                 oauth_clients: frozenset[str] | None = None) -> AsyncIterator[Site]:
    """The app serving `world`'s flow (with `config` instead of the world's, and only `oauth_clients`, when
    given); the browser trusts the world's emulator besides the usual."""
    config = config or world.config
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))  # bound first, so the redirect URI can name the port
    public_url = f"http://127.0.0.1:{listening.getsockname()[1]}"
    clock = ManualClock(NOW)
    context = WebContext(db=db, secrets=secret_box, api_token=TOKEN, webhook_secret="whsec",
                         providers=world.providers, public_url=public_url, clock=clock,
                         oauth_clients=frozenset({world.name}) if oauth_clients is None else oauth_clients,
                         provider_config=config)
    server = TestServer(create_app(context), socket_factory=lambda *_: listening)
    connector = aiohttp.TCPConnector(ssl=world.trust) if world.trust is not None else None
    async with TestClient(server) as client, aiohttp.ClientSession(connector=connector) as browser:
        client.session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield Site(client, browser, context, clock, public_url, world.name)


def site_fixture() -> Any:
    """The `site` fixture, for a test module to bind: the app serving the module's `world` fixture."""

    @pytest.fixture
    async def site(db: Database, secret_box: SecretBox, world: ProviderWorld) -> AsyncIterator[Site]:
        async with served(db, secret_box, world) as found:
            yield found

    return site


def query_of(url: str) -> dict[str, str]:
    return {name: value for name, (value,) in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, **changes: str | None) -> str:
    """`url` with these query parameters changed (None: removed)."""
    query = {k: v for k, v in (query_of(url) | changes).items() if v is not None}
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
