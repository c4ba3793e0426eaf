"""Connecting a Google account in a browser: what only Google's consent does (offline access, the scopes a
person may untick or have granted before, google-auth-oauthlib's transport switch). The flow every provider
shares is tested in test_oauth.py.
"""

from __future__ import annotations

import os

import pytest

from storage.models import Connection
from sync import credentials
from sync.providers.base import OAuthTokens
from sync.providers.google.oauth import INSECURE_TRANSPORT, SCOPES
from tests.emulators.google import GoogleEmulator
from tests.web.oauth_sites import ProviderWorld, Site, google_world, query_of, site_fixture, with_query

site = site_fixture()
SETTINGS_SCOPE = "https://www.googleapis.com/auth/calendar.settings.readonly"


@pytest.fixture
def world(google: GoogleEmulator) -> ProviderWorld:
    return google_world(google)


async def test_a_google_link_asks_for_offline_access_to_our_scopes_with_consent_every_time(site: Site) -> None:
    query = query_of(await site.consent_link(await site.user()))
    assert query["scope"].split() == list(SCOPES)
    assert (query["access_type"], query["prompt"], query["include_granted_scopes"]) == ("offline", "consent", "true")


async def test_consenting_keeps_a_refresh_token_for_every_scope_and_leaves_the_transport_switch_alone(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(INSECURE_TRANSPORT, raising=False)
    await site.connect(await site.user())
    (row,) = await site.rows(Connection)
    granted = credentials.unseal(site.context.secrets, row.credentials)
    assert isinstance(granted, OAuthTokens) and granted.refresh_token.startswith("1//emu-")
    assert granted.expires_at.tzinfo is not None and set(granted.scope) == set(SCOPES)
    assert INSECURE_TRANSPORT not in os.environ  # set only around the loopback exchange, never left behind


async def test_a_grant_without_every_scope_we_need_is_named_and_creates_nothing(
    site: Site, google: GoogleEmulator
) -> None:
    url = await site.consent_link(await site.user())
    fewer = " ".join(s for s in SCOPES if not s.endswith("freebusy"))  # the person unticked one box
    page = await site.callback(await site.consent(with_query(url, scope=fewer)), 400)
    assert "Google granted less than Croco needs (no calendar.events.freebusy)" in page
    assert await site.rows(Connection) == [] and google.count("calendarList.list") == 0
    assert "<h1>Google Calendar connected</h1>" in await site.callback(await site.consent(url), 200)


async def test_earlier_grants_added_to_ours_are_kept_and_connect(site: Site) -> None:
    url = await site.consent_link(await site.user())
    wider = " ".join((*SCOPES, SETTINGS_SCOPE))  # include_granted_scopes
    await site.callback(await site.consent(with_query(url, scope=wider)), 200)
    (row,) = await site.rows(Connection)
    granted = credentials.unseal(site.context.secrets, row.credentials)
    assert isinstance(granted, OAuthTokens) and SETTINGS_SCOPE in granted.scope
