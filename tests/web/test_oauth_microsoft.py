"""Connecting a Microsoft 365 / Outlook account in a browser: what only Microsoft's identity platform does
(msal's token cache as the credentials, the account from Graph's `/me`, personal accounts and their fixed
tenant, choosing the account at each sign-in). The flow every provider shares is tested in test_oauth.py.
"""

from __future__ import annotations

import pytest

from storage.models import Connection
from sync import credentials
from sync.providers.base import TokenCache
from sync.providers.microsoft.oauth import SCOPES
from sync.providers.microsoft.provider import MicrosoftShared
from tests.emulators.graph import PERSONAL_TENANT, GraphEmulator
from tests.web.oauth_sites import (
    ANN_WORK,
    BEA_PERSONAL,
    ProviderWorld,
    Site,
    cached_secrets,
    microsoft_world,
    query_of,
    site_fixture,
)

site = site_fixture()


@pytest.fixture
def world(graph: GraphEmulator, graph_shared: MicrosoftShared) -> ProviderWorld:
    return microsoft_world(graph, graph_shared)


async def sealed_cache(site: Site) -> TokenCache:
    (row,) = await site.rows(Connection)
    cache = credentials.unseal(site.context.secrets, row.credentials)
    assert isinstance(cache, TokenCache)
    return cache


async def test_a_microsoft_link_asks_for_our_scopes_with_offline_access_and_an_account_choice(site: Site) -> None:
    query = query_of(await site.consent_link(await site.user()))
    assert set(SCOPES) | {"offline_access"} <= set(query["scope"].split())
    assert query["prompt"] == "select_account"


async def test_consenting_keeps_msals_cache_for_the_me_account_and_lists_its_calendars_with_it(
    site: Site, graph: GraphEmulator
) -> None:
    await site.connect(await site.user())
    cache = await sealed_cache(site)
    account = graph.accounts[ANN_WORK]
    assert cache.home_account_id == f"{account.object_id}.{account.tenant_id}"
    assert set(cached_secrets(cache)) <= set(graph.issued_secrets())
    assert [r.account for r in graph.requests if r.method == "calendars.list"] == [ANN_WORK]  # Ann's own tokens
    assert graph.count("token") == 1 and graph.count("me.get") == 1


async def test_a_personal_account_connects_too(site: Site, graph: GraphEmulator) -> None:
    graph.consent_as = BEA_PERSONAL
    user_id = await site.user()
    await site.connect(user_id)
    assert [c["account"] for c in await site.connections(user_id)] == [BEA_PERSONAL]
    assert [c["name"] for c in (await (await site.api.get(f"/api/v1/users/{user_id}/calendars")).json())[
        "items"]] == ["Calendar"]
    assert (await sealed_cache(site)).home_account_id.endswith(f".{PERSONAL_TENANT}")
