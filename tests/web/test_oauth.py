"""Connecting an account in a browser (API.md "Connecting in a browser"), the same for every OAuth provider:
the consent link, the provider's consent page on its emulator and our callback page, with the real providers
of the registry listing the calendars (tests/web/oauth_sites.py). What only one provider does is in
test_oauth_google.py and test_oauth_microsoft.py.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import timedelta

import pytest

from storage.db import Database
from storage.models import Connection, ConnectLink, Notice
from storage.secrets import SecretBox
from sync import credentials
from tests.factories import tables_holding
from tests.web.oauth_sites import (
    SERVICES,
    SETTINGS,
    ProviderWorld,
    Site,
    google_world,
    microsoft_world,
    query_of,
    served,
    site_fixture,
    statements,
    with_query,
)
from tests.web.test_api import error_of

site = site_fixture()


@pytest.fixture(params=["google", "microsoft"])
def world(request: pytest.FixtureRequest) -> ProviderWorld:
    if request.param == "google":
        return google_world(request.getfixturevalue("google"))
    return microsoft_world(request.getfixturevalue("graph"), request.getfixturevalue("graph_shared"))


# The consent link ----------------------------------------------------------------------------------------


async def test_a_link_is_the_consent_page_with_a_pkce_challenge_and_a_signed_state(
    site: Site, world: ProviderWorld
) -> None:
    url = await site.consent_link(await site.user())
    assert url.startswith(world.authorize_url + "?")
    query = query_of(url)
    assert query["client_id"] == world.client_id and query["response_type"] == "code"
    assert query["redirect_uri"] == f"{site.public_url}/oauth/{world.name}/callback"
    assert query["code_challenge_method"] == "S256"
    token, _, signature = query["state"].partition(".")
    assert site.context.secrets.verify_mac("oauth-state", token, signature)

    (link,) = await site.rows(ConnectLink)  # the token hashed, the verifier sealed; the challenge is its S256
    assert link.provider == world.name and link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    verifier = site.context.secrets.open(link.code_verifier)["code_verifier"]
    assert 43 <= len(verifier) <= 128
    assert query["code_challenge"] == base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .decode().rstrip("=")
    assert await tables_holding(site.context.db, token, verifier) == []


@pytest.mark.parametrize("unusable", ["plain-http-endpoint", "no-client"])
async def test_a_provider_this_croco_cannot_use_is_named_422_before_any_request(
    db: Database, secret_box: SecretBox, world: ProviderWorld, unusable: str
) -> None:
    prefix = SETTINGS[world.name]
    config, clients, said = {
        "plain-http-endpoint": (world.insecure, None, f"{world.insecure_setting} must be an https URL"),
        "no-client": (None, frozenset({world.other}), f"set {prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET"),
    }[unusable]
    async with served(db, secret_box, world, config=config, oauth_clients=clients) as site:
        response = await site.api.post(f"/api/v1/users/{await site.user()}/connect-links", json={"provider": world.name})
        assert await error_of(response, 422) == "provider_not_configured"
        assert said in (await response.json())["error"]["message"]
        assert await site.rows(ConnectLink) == [] and world.emulator.requests == []


# The whole flow ------------------------------------------------------------------------------------------


async def test_consenting_connects_the_account_with_its_calendars_and_keeps_the_credentials_sealed(
    site: Site, world: ProviderWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user_id = await site.user()
    page = await site.connect(user_id)
    assert f"<h1>{world.service} connected</h1>" in page
    assert f"Connected {world.account}: {len(world.calendars)} calendars found." in page
    assert "<ul>" + "".join(f"<li>{name}</li>" for name in world.calendars) + "</ul>" in page

    (connection,) = await site.connections(user_id)
    assert (connection["provider"], connection["account"], connection["status"]) == (world.name, world.account, "ok")
    calendars = (await (await site.api.get(f"/api/v1/users/{user_id}/calendars")).json())["items"]
    assert sorted(c["name"] for c in calendars) == sorted(world.calendars)
    (notice,) = await site.rows(Notice)
    assert notice.kind == "connected" and notice.payload["account"] == world.account
    assert notice.payload["calendars"] == world.calendars and notice.payload["renewed"] is False

    (row,) = await site.rows(Connection)
    issued = world.secrets(credentials.unseal(site.context.secrets, row.credentials))  # kept, encrypted
    assert len(issued) == 2 and await tables_holding(site.context.db, *issued) == []
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (*issued, world.client_secret):
        assert secret not in logged and not [p for p in site.pages if secret in p]
    assert world.emulator.count("token") == 1


async def test_a_second_consent_for_the_same_account_renews_its_connection(site: Site, world: ProviderWorld) -> None:
    user_id = await site.user()
    await site.connect(user_id)
    (first,) = await site.connections(user_id)
    (row,) = await site.rows(Connection)
    first_credentials = credentials.unseal(site.context.secrets, row.credentials)
    page = await site.connect(user_id)
    assert f"<h1>{world.service} reconnected</h1>" in page
    assert [c["id"] for c in await site.connections(user_id)] == [first["id"]]
    (row,) = await site.rows(Connection)
    assert credentials.unseal(site.context.secrets, row.credentials) != first_credentials  # the new grant's
    assert [n.payload["renewed"] for n in sorted(await site.rows(Notice), key=lambda n: n.created_at)] == [False,
                                                                                                              True]


async def test_another_account_is_a_second_connection(site: Site, world: ProviderWorld) -> None:
    user_id = await site.user()
    await site.connect(user_id)
    world.consent_as(world.other_account)
    await site.connect(user_id)
    assert sorted(c["account"] for c in await site.connections(user_id)) == sorted([world.account,
                                                                                    world.other_account])


async def test_a_reconnect_link_renews_the_connection_it_names(site: Site, world: ProviderWorld) -> None:
    user_id = await site.user()
    await site.connect(user_id)
    (connection,) = await site.connections(user_id)
    page = await site.connect(user_id, connection_id=connection["id"])
    assert f"<h1>{world.service} reconnected</h1>" in page
    assert [c["id"] for c in await site.connections(user_id)] == [connection["id"]]


# What the callback refuses -------------------------------------------------------------------------------


async def test_a_missing_state_or_code_is_refused_and_creates_nothing(site: Site, world: ProviderWorld) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    assert "carries no sign-in state" in await site.callback(with_query(callback, state=None), 400)
    assert "carries no sign-in code" in await site.callback(with_query(callback, code=None), 400)
    assert await site.rows(Connection) == []
    assert f"<h1>{world.service} connected</h1>" in await site.callback(callback, 200)  # the link still works


@pytest.mark.parametrize("forge", ["signature", "token", "unsigned", "other-purpose"])
async def test_a_forged_state_is_refused_without_reading_the_database(
    site: Site, world: ProviderWorld, forge: str
) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    token, _, signature = query_of(callback)["state"].partition(".")
    secrets = site.context.secrets
    forged = {"signature": f"{token}.{'0' * len(signature)}",
              "token": f"{token[:-1]}{'B' if token.endswith('A') else 'A'}.{signature}",
              "unsigned": token, "other-purpose": f"{token}.{secrets.mac('push-channel', token)}"}[forge]
    with statements(site.context.db) as sent:
        page = await site.callback(with_query(callback, state=forged), 400)
    assert sent == []
    assert f"{world.service} was not connected" in page and "unknown, expired or already used" in page
    assert await site.rows(Connection) == []


async def test_an_expired_state_is_refused_and_creates_nothing(site: Site) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    site.clock.later(timedelta(minutes=10))
    assert "unknown, expired or already used" in await site.callback(callback, 400)
    assert await site.rows(Connection) == []


async def test_a_spent_state_is_refused_and_creates_nothing_more(site: Site, world: ProviderWorld) -> None:
    user_id = await site.user()
    callback = await site.consent(await site.consent_link(user_id))
    await site.callback(callback, 200)
    assert "unknown, expired or already used" in await site.callback(callback, 400)  # the browser's back button
    fresh_code = query_of(await site.consent(await site.consent_link(user_id)))["code"]
    assert "unknown, expired or already used" in await site.callback(with_query(callback, code=fresh_code), 400)
    assert len(await site.connections(user_id)) == 1 and len(await site.rows(Notice)) == 1
    assert world.emulator.count("token") == 1  # neither code was exchanged


async def test_a_state_at_another_providers_callback_is_refused(site: Site, world: ProviderWorld) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    page = await site.callback(callback.replace(f"/oauth/{world.name}/", f"/oauth/{world.other}/"), 400)
    other = world.other
    assert f"{SERVICES[other]} was not connected" in page
    assert f"{other.title()} is not configured: set {SETTINGS[other]}_CLIENT_ID" in page
    assert await site.rows(Connection) == []


async def test_declining_the_consent_is_named_and_the_link_stays_usable(site: Site, world: ProviderWorld) -> None:
    url = await site.consent_link(await site.user())
    world.emulator.deny_next_consent = "access_denied"
    page = await site.callback(await site.consent(url), 400)
    assert f"<title>Error: {world.service} was not connected</title>" in page
    assert "You did not allow Croco to use your calendars (access_denied)" in page and "Nothing was connected" in page
    assert world.server_words not in page
    assert await site.rows(Connection) == [] and world.emulator.count("token") == 0
    assert f"<h1>{world.service} connected</h1>" in await site.callback(await site.consent(url), 200)


async def test_any_other_provider_error_is_named_without_echoing_what_the_address_carries(site: Site) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    assert "(server_error)" in await site.callback(with_query(callback, error="server_error", code=None), 400)
    page = await site.callback(with_query(callback, error="<script>alert(1)</script>", code=None), 400)
    assert "The sign-in page answered with an error (error)." in page and "<script>" not in page


async def test_a_refused_code_is_named_invalid_grant_without_the_servers_words(
    site: Site, world: ProviderWorld
) -> None:
    callback = await site.consent(await site.consent_link(await site.user()))
    page = await site.callback(with_query(callback, code=world.refused_code), 400)
    assert f"{world.company} refused the sign-in code (invalid_grant)" in page and world.server_words not in page
    assert await site.rows(Connection) == [] and world.emulator.count("token") == 1
    assert f"<h1>{world.service} connected</h1>" in await site.callback(callback, 200)  # the state was not spent


async def test_a_callback_for_a_provider_without_consent_pages_is_not_found(site: Site) -> None:
    for provider in ("icloud", "caldav", "yahoo"):
        async with site.browser.get(f"{site.public_url}/oauth/{provider}/callback?code=c&state=s") as answer:
            assert answer.status == 404

