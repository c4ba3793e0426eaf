"""Connecting a Microsoft 365 / Outlook account (API.md "Connecting in a browser"): the consent link, the Graph
emulator's identity platform (tests/emulators/graph.py, https, reached by msal unmodified) and our callback
page, through the same shared code as Google (tests/web/test_oauth_google.py's `Site`). The calendars come
from a stand-in provider factory (the Graph provider is its own work); the account from Graph's `/me`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from storage.db import Database
from storage.enums import Access
from storage.models import Connection, Notice
from storage.secrets import SecretBox
from sync import credentials
from sync.providers.base import (
    CalendarProvider,
    Credentials,
    MicrosoftConfig,
    ProviderConfig,
    RemoteCalendarInfo,
    TokenCache,
)
from tests.emulators.graph import CLIENT_ID, CLIENT_SECRET, GraphEmulator
from tests.factories import tables_holding
from tests.web.test_api import error_of
from tests.web.test_oauth_google import Site, _query, _with, served

ANN_WORK, BEA_PERSONAL = "ann@contoso.com", "bea@outlook.com"


@dataclass
class StandInCalendars:
    """A ProviderFactory for Microsoft: lists one calendar and records the credentials it was opened with."""

    opened: list[Credentials] = field(default_factory=list)

    def __call__(self, provider: str, login: Credentials, server_url: str | None) -> CalendarProvider:
        assert provider == "microsoft" and server_url is None
        self.opened.append(login)
        return self  # type: ignore[return-value]  # only list_calendars is called while connecting

    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        return [RemoteCalendarInfo("AAMkAG-default", "Calendar", Access.FULL, primary=True)]


def microsoft_config(graph: GraphEmulator, **changes: str) -> ProviderConfig:
    return ProviderConfig(microsoft=MicrosoftConfig(**{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                                       "authority": graph.authority,
                                                       "graph_url": graph.graph_url} | changes))


@pytest.fixture
def calendars() -> StandInCalendars:
    return StandInCalendars()


@pytest.fixture
async def site(db: Database, secret_box: SecretBox, graph: GraphEmulator, calendars: StandInCalendars,
               monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Site]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_bundle_path))
    graph.add_account(ANN_WORK)
    graph.add_account(BEA_PERSONAL, personal=True)
    graph.consent_as = ANN_WORK
    async with served(db, secret_box, None, microsoft_config(graph), provider="microsoft", providers=calendars,
                      trust=graph.client_ssl_context()) as found:
        yield found


async def sealed_cache(site: Site) -> TokenCache:
    (row,) = await site.rows(Connection)
    cache = credentials.unseal(site.context.secrets, row.credentials)
    assert isinstance(cache, TokenCache)
    return cache


def cached_secrets(cache: TokenCache) -> list[str]:
    document = json.loads(cache.serialized)
    return [entry["secret"] for kind in ("AccessToken", "RefreshToken") for entry in document[kind].values()]


async def test_consenting_connects_the_me_address_with_its_token_cache_sealed(
    site: Site, graph: GraphEmulator, calendars: StandInCalendars, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user_id = await site.user()
    page = await site.connect(user_id)
    assert "<h1>Outlook / Microsoft 365 connected</h1>" in page and f"Connected {ANN_WORK}" in page

    (connection,) = await site.connections(user_id)
    assert (connection["provider"], connection["account"], connection["status"]) == ("microsoft", ANN_WORK, "ok")
    (notice,) = await site.rows(Notice)
    assert notice.kind == "connected" and notice.payload["account"] == ANN_WORK
    assert notice.payload["renewed"] is False

    cache = await sealed_cache(site)
    account = graph.accounts[ANN_WORK]
    assert cache.home_account_id == f"{account.object_id}.{account.tenant_id}"
    assert calendars.opened == [cache]  # the calendars were listed with the same cache
    issued = cached_secrets(cache)
    assert len(issued) == 2 and set(issued) <= set(graph.issued_secrets())
    assert await tables_holding(site.context.db, *issued) == []
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (*issued, CLIENT_SECRET):
        assert secret not in logged and not [p for p in site.pages if secret in p]
    assert graph.count("token") == 1 and graph.count("me.get") == 1


async def test_a_personal_account_connects_too(site: Site, graph: GraphEmulator) -> None:
    graph.consent_as = BEA_PERSONAL
    user_id = await site.user()
    await site.connect(user_id)
    assert [c["account"] for c in await site.connections(user_id)] == [BEA_PERSONAL]
    assert (await sealed_cache(site)).home_account_id.endswith(".9188040d-6c67-4c5b-b112-36a304b66dad")


async def test_a_second_consent_for_the_same_account_renews_its_connection(site: Site) -> None:
    user_id = await site.user()
    await site.connect(user_id)
    (first,) = await site.connections(user_id)
    first_cache = await sealed_cache(site)
    assert "<h1>Outlook / Microsoft 365 reconnected</h1>" in await site.connect(user_id)
    assert [c["id"] for c in await site.connections(user_id)] == [first["id"]]
    assert await sealed_cache(site) != first_cache


async def test_an_http_authority_is_not_configured_and_named(
    db: Database, secret_box: SecretBox, graph: GraphEmulator, calendars: StandInCalendars
) -> None:
    config = microsoft_config(graph, authority=graph.authority.replace("https:", "http:"))
    async with served(db, secret_box, None, config, provider="microsoft", providers=calendars) as site:
        response = await site.api.post(f"/api/v1/users/{await site.user()}/connect-links",
                                       json={"provider": "microsoft"})
        assert await error_of(response, 422) == "provider_not_configured"
        assert "CROCO_MICROSOFT_AUTHORITY must be an https URL" in (await response.json())["error"]["message"]
    assert graph.requests == []


async def test_an_unconfigured_microsoft_is_422(db: Database, secret_box: SecretBox, graph: GraphEmulator) -> None:
    async with served(db, secret_box, None, microsoft_config(graph), provider="google") as site:
        response = await site.api.post(f"/api/v1/users/{await site.user()}/connect-links",
                                       json={"provider": "microsoft"})
        assert await error_of(response, 422) == "provider_not_configured"
        assert "set CROCO_MICROSOFT_CLIENT_ID and CROCO_MICROSOFT_CLIENT_SECRET" in (await response.json())[
            "error"]["message"]


async def test_a_missing_state_is_refused_and_the_link_stays_usable(site: Site) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    assert "carries no sign-in state" in await site.callback(_with(callback, state=None), 400)
    assert await site.rows(Connection) == []
    assert "<h1>Outlook / Microsoft 365 connected</h1>" in await site.callback(callback, 200)


async def test_a_forged_state_is_refused(site: Site) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    token, _, signature = _query(callback)["state"].partition(".")
    page = await site.callback(_with(callback, state=f"{token}.{'0' * len(signature)}"), 400)
    assert "Outlook / Microsoft 365 was not connected" in page and "unknown, expired or already used" in page
    assert await site.rows(Connection) == []


async def test_an_expired_state_is_refused(site: Site) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    site.clock.later(timedelta(minutes=10))
    assert "unknown, expired or already used" in await site.callback(callback, 400)
    assert await site.rows(Connection) == []


async def test_a_reused_state_is_refused_and_connects_nothing_more(site: Site, graph: GraphEmulator) -> None:
    user_id = await site.user()
    callback = await site.consent(await site.consent_link(user_id))
    await site.callback(callback, 200)
    assert "unknown, expired or already used" in await site.callback(callback, 400)
    assert len(await site.connections(user_id)) == 1 and len(await site.rows(Notice)) == 1
    assert graph.count("token") == 1


async def test_declining_is_named_access_denied(site: Site, graph: GraphEmulator) -> None:
    url = await site.consent_link(await site.user())
    graph.deny_next_consent = "access_denied"
    page = await site.callback(await site.consent(url), 400)
    assert "You did not allow Croco to use your calendars (access_denied)" in page
    assert "AADSTS" not in page and await site.rows(Connection) == [] and graph.count("token") == 0


async def test_a_refused_code_is_invalid_grant_without_the_servers_words(site: Site, graph: GraphEmulator) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    page = await site.callback(_with(callback, code="M.C5_emu.not-a-code"), 400)
    assert "Microsoft refused the sign-in code (invalid_grant)" in page and "AADSTS" not in page
    assert await site.rows(Connection) == []
    assert "<h1>Outlook / Microsoft 365 connected</h1>" in await site.callback(callback, 200)  # not spent
