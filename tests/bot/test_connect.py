"""`/croco connect`: a button per provider, each configured one opening a working connect link."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from sqlalchemy import func, select

from bot.ids import Action
from storage.models import Connection, ConnectLink
from sync.providers.base import GoogleConfig, ProviderConfig
from sync.providers.microsoft.provider import MicrosoftShared
from tests.bot.conftest import ANN, SlackWorld
from tests.emulators.google import CLIENT_ID, CLIENT_SECRET, GoogleEmulator
from tests.emulators.graph import GraphEmulator
from tests.web.conftest import GOOD_PASSWORD, NOW
from tests.web.oauth_sites import microsoft_config, registry


async def connect_modal(world: SlackWorld, count: int = 1) -> dict[str, Any]:
    await world.sender.command("connect", user_id=ANN.id)
    updated = await world.slack.wait_for("views.update", count)
    return dict(updated[-1].args["view"])


def provider_lines(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """block_id `connect-<provider>` -> its section."""
    return {b["block_id"].removeprefix("connect-"): b for b in view["blocks"]
            if b.get("block_id", "").startswith("connect-")}


async def count(world: SlackWorld, model: Any) -> int:
    async with world.web.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_icloud_and_caldav_buttons_open_a_working_connect_form(world: SlackWorld) -> None:
    view = await connect_modal(world)
    assert view["title"]["text"] == "Connect a calendar"
    lines = provider_lines(view)
    assert list(lines) == ["google", "microsoft", "icloud", "caldav"]
    for provider in ("icloud", "caldav"):
        button = lines[provider]["accessory"]
        assert button["action_id"] == Action.CONNECT_PROVIDER
        path = urlsplit(button["url"]).path
        assert path.startswith("/connect/")
        page = await world.api.get(path, headers={"Authorization": ""})  # a browser: no API token
        assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
        html = await page.text()
        assert "<form" in html and 'type="password"' in html
        if provider == "caldav":
            assert 'name="url"' in html


async def test_the_icloud_link_connects_the_slack_user_who_asked(world: SlackWorld) -> None:
    view = await connect_modal(world)
    path = urlsplit(provider_lines(view)["icloud"]["accessory"]["url"]).path
    done = await world.api.post(path, data={"username": "ann@icloud.com", "password": GOOD_PASSWORD},
                                headers={"Authorization": ""})
    assert done.status == 200, await done.text()
    users = (await (await world.api.get("/api/v1/users", params={"slack_user_id": ANN.id})).json())["items"]
    connections = (await (await world.api.get(f"/api/v1/users/{users[0]['id']}/connections")).json())["items"]
    assert [(c["provider"], c["account"], c["status"]) for c in connections] == [("icloud", "ann@icloud.com", "ok")]


async def test_unconfigured_google_and_microsoft_say_so_and_their_click_is_harmless(world: SlackWorld) -> None:
    lines = provider_lines(await connect_modal(world))
    for provider, name in (("google", "Google Calendar"), ("microsoft", "Outlook / Microsoft 365")):
        line = lines[provider]
        assert f"{name}* — not configured on this Croco" in line["text"]["text"]
        assert "url" not in line["accessory"]
        assert line["accessory"]["text"]["text"] == f"{name} — not configured on this Croco"
    links_before, calls_before = await count(world, ConnectLink), len(world.slack.attempts)
    status, _ = await world.sender.action(Action.CONNECT_PROVIDER, "google", user_id=ANN.id,
                                          block_id="connect-google")
    assert status == 200  # acked (Bolt answers 404 to an action nobody listens to)
    assert await count(world, ConnectLink) == links_before and await count(world, Connection) == 0
    assert len(world.slack.attempts) == calls_before  # no modal, no message


async def test_a_configured_google_button_opens_its_consent_page_and_connects_who_asked(
    world: SlackWorld, google: GoogleEmulator
) -> None:
    google.add_account("ann@example.com")
    links = world.web.connect_links
    world.bot.oauth_clients = links.oauth_clients = frozenset({"google"})
    links.provider_config = ProviderConfig(google=GoogleConfig(CLIENT_ID, CLIENT_SECRET, google.root_url,
                                                               google.auth_url, google.token_url))
    links.providers = registry(links.provider_config)
    view = await connect_modal(world)
    lines = provider_lines(view)
    button = lines["google"]["accessory"]
    assert button["text"]["text"] == "Connect" and button["url"].startswith(google.auth_url + "?")
    query = parse_qs(urlsplit(button["url"]).query)
    assert query["redirect_uri"] == [f"{world.web.public_url}/oauth/google/callback"]
    assert query["code_challenge_method"] == ["S256"] and query["access_type"] == ["offline"]
    assert "not configured on this Croco" in lines["microsoft"]["text"]["text"]
    said = " ".join(e["text"] for b in view["blocks"] if b["type"] == "context" for e in b["elements"])
    assert "expires in 10 minutes" in said  # the soonest: consent links last 10 minutes, forms 15

    async with aiohttp.ClientSession() as browser, browser.get(button["url"], allow_redirects=False) as consented:
        callback = urlsplit(consented.headers["Location"])
    page = await world.api.get(f"{callback.path}?{callback.query}", headers={"Authorization": ""})
    assert page.status == 200 and "Google Calendar connected" in await page.text()
    users = (await (await world.api.get("/api/v1/users", params={"slack_user_id": ANN.id})).json())["items"]
    connections = (await (await world.api.get(f"/api/v1/users/{users[0]['id']}/connections")).json())["items"]
    assert [(c["provider"], c["account"]) for c in connections] == [("google", "ann@example.com")]


async def test_a_configured_microsoft_button_opens_its_consent_page_and_connects_who_asked(
    world: SlackWorld, graph: GraphEmulator, graph_shared: MicrosoftShared
) -> None:
    graph.add_account("ann@contoso.com")
    links = world.web.connect_links
    world.bot.oauth_clients = links.oauth_clients = frozenset({"microsoft"})
    links.provider_config = microsoft_config(graph)
    links.providers = registry(links.provider_config, graph_shared)
    lines = provider_lines(await connect_modal(world))
    button = lines["microsoft"]["accessory"]
    assert button["text"]["text"] == "Connect" and button["url"].startswith(graph.authority + "/oauth2/v2.0/authorize?")
    query = parse_qs(urlsplit(button["url"]).query)
    assert query["redirect_uri"] == [f"{world.web.public_url}/oauth/microsoft/callback"]
    assert query["code_challenge_method"] == ["S256"] and "offline_access" in query["scope"][0].split()
    assert "not configured on this Croco" in lines["google"]["text"]["text"]

    async with aiohttp.ClientSession() as browser, \
            browser.get(button["url"], allow_redirects=False, ssl=graph.client_ssl_context()) as consented:
        callback = urlsplit(consented.headers["Location"])
    page = await world.api.get(f"{callback.path}?{callback.query}", headers={"Authorization": ""})
    assert page.status == 200 and "Outlook / Microsoft 365 connected" in await page.text()
    users = (await (await world.api.get("/api/v1/users", params={"slack_user_id": ANN.id})).json())["items"]
    connections = (await (await world.api.get(f"/api/v1/users/{users[0]['id']}/connections")).json())["items"]
    assert [(c["provider"], c["account"]) for c in connections] == [("microsoft", "ann@contoso.com")]


async def test_a_configured_but_unusable_microsoft_client_is_told_apart_from_a_missing_one(
    world: SlackWorld, graph: GraphEmulator
) -> None:
    links = world.web.connect_links
    world.bot.oauth_clients = links.oauth_clients = frozenset({"microsoft"})
    links.provider_config = microsoft_config(graph, authority=graph.authority.replace("https:", "http:"))
    lines = provider_lines(await connect_modal(world))
    assert "not available on this Croco right now" in lines["microsoft"]["text"]["text"]
    assert "not configured on this Croco" in lines["google"]["text"]["text"]
    assert graph.requests == []


async def test_the_modal_says_when_the_links_expire_and_they_do(world: SlackWorld) -> None:
    view = await connect_modal(world)
    said = " ".join(e["text"] for b in view["blocks"] if b["type"] == "context" for e in b["elements"])
    expires = NOW + timedelta(minutes=15)
    assert "expires in 15 minutes" in said and f"<!date^{int(expires.timestamp())}^" in said and "08:15 UTC" in said
    path = urlsplit(provider_lines(view)["caldav"]["accessory"]["url"]).path
    world.web.connect_links.clock = lambda: expires
    assert (await world.api.get(path, headers={"Authorization": ""})).status == 410


async def test_each_connect_gives_new_links(world: SlackWorld) -> None:
    first = provider_lines(await connect_modal(world))["icloud"]["accessory"]["url"]
    second = provider_lines(await connect_modal(world, 2))["icloud"]["accessory"]["url"]
    assert first != second
