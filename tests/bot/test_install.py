"""Multi-workspace install: the install link, Slack's redirect back, each team answered with its own bot token,
the bot token's team still served, uninstalls and revocations, tokens sealed at rest (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import MetaData, Table, select, update

from bot import install
from bot.config import SlackConfig
from bot.tokens import InstalledWorkspaces, SingleWorkspace
from croco import serve
from croco.check import Level, check_settings
from croco.runtime import build_runtime
from croco.settings import Settings
from storage import migrate, slack_tables
from storage.db import Database
from tests.bot.conftest import ANN, PUBLIC_URL, InstallWorld
from tests.emulators.slack import (
    BOT_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    SIGNING_SECRET,
    TEAM_ID,
    Member,
    SlackEmulator,
    SlackSender,
    Team,
)
from tests.factories import tables_holding
from web.app import create_app

OTHER = Team("T0OTHER", "Other Co", "xoxb-2468013579246-1357924680135-q8Zr3Lw5Nx1Vb7Tk2Hs9Jd4F")  # as long as real ones
BOB = Member("U0BOB", "Bob Ray", "bob@other.example", "Europe/Berlin", team_id=OTHER.id)
COOKIE = "slack-app-oauth-state"


async def _rows(db: Database, table: Table, team_id: str | None = None) -> list[dict[str, Any]]:
    query = select(table) if team_id is None else select(table).where(table.c.team_id == team_id)
    async with db.engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings()]


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait for a condition the test can only read from the database (an event listener's work after its ack)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


async def _install_link(w: InstallWorld) -> tuple[str, dict[str, list[str]], str]:
    """GET /slack/install as a browser: the Add-to-Slack link, its query, and the state cookie."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser, \
            browser.get(w.api.make_url(install.INSTALL_PATH)) as page:
        assert page.status == 200
        (href,) = re.findall(r'href="(https://slack\.com/[^"]+)"', await page.text())
        link = html.unescape(href)
        return link, parse_qs(urlsplit(link).query, keep_blank_values=True), page.cookies[COOKIE].value


async def _redirect(w: InstallWorld, *, code: str, state: str, cookie: str | None) -> tuple[int, str]:
    """Slack sending the installer's browser back to /slack/oauth_redirect."""
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser, browser.get(
            w.api.make_url(install.REDIRECT_PATH), params={"code": code, "state": state}, headers=headers) as page:
        return page.status, await page.text()


async def _install(w: InstallWorld, team: Team, installer: str = BOB.id) -> None:
    _, query, cookie = await _install_link(w)
    status, _ = await _redirect(w, code=w.slack.grant(team, installer=installer), state=query["state"][0],
                                cookie=cookie)
    assert status == 200


def _sender(w: InstallWorld, team: Team) -> SlackSender:
    return SlackSender(w.sender.url, response_base=w.slack.base_url, team_id=team.id)


# The tables ------------------------------------------------------------------------------------------------


def _shape(table: Table) -> tuple[object, ...]:
    return (table.name, [(c.name, repr(c.type), c.nullable, c.primary_key) for c in table.columns],
            sorted((i.name, [c.name for c in i.columns]) for i in table.indexes))


def test_our_tables_are_exactly_slack_sdks() -> None:
    """The stores write with their own Table objects: ours (migration 0010) must be the same tables."""
    theirs = MetaData()
    assert [_shape(t) for t in (slack_tables.slack_installations, slack_tables.slack_bots,
                                slack_tables.slack_oauth_states)] == [
        _shape(SQLAlchemyInstallationStore.build_installations_table(theirs, "slack_installations")),
        _shape(SQLAlchemyInstallationStore.build_bots_table(theirs, "slack_bots")),
        _shape(SQLAlchemyOAuthStateStore.build_oauth_states_table(theirs, "slack_oauth_states"))]


# The install link ------------------------------------------------------------------------------------------


async def test_the_install_link_asks_for_the_manifests_scopes_with_a_state_kept_in_our_database(
        install_world: InstallWorld) -> None:
    link, query, cookie = await _install_link(install_world)
    assert link.startswith("https://slack.com/oauth/v2/authorize?")
    manifest = yaml.safe_load(install.MANIFEST.read_text())
    assert query["scope"] == [",".join(manifest["oauth_config"]["scopes"]["bot"])]
    assert "users:read.email" in query["scope"][0]
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/slack/oauth_redirect"]
    (state,) = query["state"]
    assert cookie == state  # the browser that started the install is the one that may finish it
    assert [row["state"] for row in await _rows(install_world.db, slack_tables.slack_oauth_states)] == [state]


# The redirect back -----------------------------------------------------------------------------------------


async def test_an_install_stores_the_team_and_its_commands_are_answered_with_its_own_token(
        install_world: InstallWorld) -> None:
    w = install_world
    w.slack.add_member(BOB)
    _, query, cookie = await _install_link(w)
    code = w.slack.grant(OTHER, installer=BOB.id)

    status, page = await _redirect(w, code=code, state=query["state"][0], cookie=cookie)

    assert status == 200 and "Thank you" in page
    (exchange,) = w.slack.calls_to("oauth.v2.access")  # through CROCO_SLACK_API_URL, with our client id
    assert (exchange.args["code"], exchange.args["client_id"]) == (code, CLIENT_ID)
    (installed,) = await _rows(w.db, slack_tables.slack_installations, OTHER.id)
    assert (installed["team_name"], installed["bot_user_id"], installed["user_id"]) == \
        (OTHER.name, OTHER.bot_user_id, BOB.id)
    (bot,) = await _rows(w.db, slack_tables.slack_bots, OTHER.id)
    assert bot["bot_id"] == OTHER.bot_id  # from auth.test of the new token
    assert await _rows(w.db, slack_tables.slack_oauth_states) == []  # the state is used up

    status, _ = await _sender(w, OTHER).command("help", user_id=BOB.id)

    assert status == 200
    (opened,) = await w.slack.wait_for("views.open")
    (updated,) = await w.slack.wait_for("views.update")
    (met,) = w.slack.calls_to("users.info")
    assert {opened.token, updated.token, met.token} == {OTHER.token}
    assert "/croco connect" in str(updated.args["view"]["blocks"])


async def test_the_bot_tokens_own_team_is_served_with_it_alongside_installs(install_world: InstallWorld) -> None:
    w = install_world
    await _install(w, OTHER)
    await w.sender.command("help", user_id=ANN.id)
    (opened,) = await w.slack.wait_for("views.open")
    (updated,) = await w.slack.wait_for("views.update")
    assert (opened.token, updated.token) == (BOT_TOKEN, BOT_TOKEN)
    assert await _rows(w.db, slack_tables.slack_installations, TEAM_ID) == []


@pytest.mark.parametrize("forgery", ["forged", "expired", "replayed", "other_browser"])
async def test_a_forged_expired_replayed_or_foreign_state_gets_an_error_page_and_stores_nothing(
        install_world: InstallWorld, forgery: str) -> None:
    w = install_world
    _, query, cookie = await _install_link(w)
    state = query["state"][0]
    if forgery == "forged":
        state = cookie = "f" * 36
    if forgery == "expired":
        async with w.db.engine.begin() as conn:
            await conn.execute(update(slack_tables.slack_oauth_states).values(
                expire_at=datetime(2000, 1, 1) + timedelta(seconds=1)))
    if forgery == "replayed":
        await _redirect(w, code=w.slack.grant(Team("T0FIRST", "First", "xoxb-first"), installer="U1"),
                        state=state, cookie=cookie)
        async with w.db.engine.begin() as conn:
            await conn.execute(slack_tables.slack_installations.delete())
            await conn.execute(slack_tables.slack_bots.delete())
    exchanges = len(w.slack.calls_to("oauth.v2.access"))

    status, page = await _redirect(w, code=w.slack.grant(OTHER, installer=BOB.id), state=state,
                                   cookie=None if forgery == "other_browser" else cookie)

    assert status in (400, 401) and "Thank you" not in page and "/slack/install" in page  # try again from there
    assert len(w.slack.calls_to("oauth.v2.access")) == exchanges  # the code was never exchanged
    assert await _rows(w.db, slack_tables.slack_installations) == []
    assert await _rows(w.db, slack_tables.slack_bots) == []


async def test_a_refused_code_gets_an_error_page_and_stores_nothing(install_world: InstallWorld) -> None:
    w = install_world
    _, query, cookie = await _install_link(w)
    status, page = await _redirect(w, code="not-a-code", state=query["state"][0], cookie=cookie)
    assert status == 401 and "Thank you" not in page
    assert await _rows(w.db, slack_tables.slack_installations) == []


# Uninstalls and revocations --------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [{"type": "app_uninstalled"},
                                   {"type": "tokens_revoked", "tokens": {"bot": [OTHER.bot_user_id]}}])
async def test_an_uninstall_or_revoked_bot_token_removes_that_teams_tokens_and_no_one_else_s(
        install_world: InstallWorld, event: dict[str, Any]) -> None:
    w = install_world
    w.slack.add_member(BOB)
    await _install(w, OTHER)
    await _install(w, Team("T0THIRD", "Third", "xoxb-third-team-token"), installer="U0CAT")
    other = _sender(w, OTHER)

    w.slack.revoke(OTHER)
    status, _ = await other.event(event | {"event_ts": "1.0"})

    assert status == 200

    async def removed() -> bool:
        return not (await _rows(w.db, slack_tables.slack_bots, OTHER.id)
                    or await _rows(w.db, slack_tables.slack_installations, OTHER.id))
    await _until(removed)
    assert [row["team_id"] for row in await _rows(w.db, slack_tables.slack_bots)] == ["T0THIRD"]

    await other.command("help", user_id=BOB.id)
    (answer,) = await w.slack.wait_for_responses()
    assert "no longer available" in answer["text"]  # Bolt's own words to someone whose team is gone
    assert w.slack.calls_to("views.open") == []

    await w.sender.command("help", user_id=ANN.id)  # the bot token's team still works
    (opened,) = await w.slack.wait_for("views.open")
    assert opened.token == BOT_TOKEN


# Tokens at rest and outside requests -----------------------------------------------------------------------


async def test_installed_tokens_are_sealed_in_every_table(install_world: InstallWorld) -> None:
    await _install(install_world, OTHER)
    assert await _rows(install_world.db, slack_tables.slack_bots, OTHER.id)
    assert await tables_holding(install_world.db, OTHER.token) == []
    assert await tables_holding(install_world.db, OTHER.bot_user_id) == ["slack_bots", "slack_installations"]


async def test_bot_tokens_outside_requests_follow_installs_and_the_bot_tokens_team(
        install_world: InstallWorld) -> None:
    w = install_world
    tokens = install.bot_tokens(w.config, TEAM_ID, w.installs)
    assert isinstance(tokens, InstalledWorkspaces)
    assert await tokens.for_team(OTHER.id) is None
    await _install(w, OTHER)
    assert [await tokens.for_team(team) for team in (OTHER.id, TEAM_ID, None, "T0NOBODY")] == \
        [OTHER.token, BOT_TOKEN, BOT_TOKEN, None]
    await w.installs.installations.async_delete_all(enterprise_id=None, team_id=OTHER.id)
    assert await tokens.for_team(OTHER.id) is None


async def test_installs_alone_have_no_token_for_teams_that_did_not_install(install_world: InstallWorld) -> None:
    w = install_world
    tokens = install.bot_tokens(SlackConfig(client_id=CLIENT_ID, client_secret="s"), None, w.installs)
    await _install(w, OTHER)
    assert [await tokens.for_team(team) for team in (OTHER.id, TEAM_ID, None)] == [OTHER.token, None, None]


def test_a_bot_token_alone_stays_single_workspace() -> None:
    config = SlackConfig(bot_token=BOT_TOKEN, signing_secret="s")
    assert install.installs(config, engine=None, box=None) is None  # type: ignore[arg-type]
    assert install.bot_tokens(config, TEAM_ID) == SingleWorkspace(BOT_TOKEN, TEAM_ID)


async def test_the_token_rotator_talks_to_the_configured_api_url(install_world: InstallWorld) -> None:
    client = install_world.config.client()
    settings = install.oauth_settings(install_world.config, install_world.installs, client)
    assert settings.authorize.token_rotator.client is client  # type: ignore[attr-defined]
    assert client.base_url == install_world.slack.api_url


async def test_a_sealed_token_of_70_characters_fits_slack_sdks_columns(install_world: InstallWorld) -> None:
    """slack_sdk's token columns are String(200), which PostgreSQL enforces; sealing makes tokens longer."""
    token = "xoxb-" + "7" * 65
    store = install_world.installs.installations
    await store.async_save(Installation(app_id="A0CROCO", team_id="T0LONG", user_id="U1", bot_token=token,
                                        bot_id="B1", bot_user_id="U0LONGBOT", bot_scopes="commands"))
    installed = await store.async_find_installation(enterprise_id=None, team_id="T0LONG")
    bot = await store.async_find_bot(enterprise_id=None, team_id="T0LONG")
    assert (installed and installed.bot_token, bot and bot.bot_token) == (token, token)
    assert await tables_holding(install_world.db, token) == []


# croco serve and croco check -------------------------------------------------------------------------------


def _install_settings(tmp_path: Path, api_url: str) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, slack_client_id=CLIENT_ID,  # type: ignore[call-arg]
                    slack_client_secret=SecretStr(CLIENT_SECRET), slack_signing_secret=SecretStr(SIGNING_SECRET),
                    slack_api_url=api_url)


async def test_croco_serve_offers_the_install_link_with_a_client_id_and_secret_alone(
        tmp_path: Path, slack_emulator: SlackEmulator) -> None:
    runtime = build_runtime(_install_settings(tmp_path, slack_emulator.api_url))
    try:
        await migrate.upgrade(runtime.db.engine)
        context = serve.web_context(runtime, runtime.engine())
        application = create_app(context)
        await serve.mount_slack(runtime, application, context)
        async with TestClient(TestServer(application)) as client:
            page = await client.get(install.INSTALL_PATH)
            assert page.status == 200 and "https://slack.com/oauth/v2/authorize?" in await page.text()
        async with runtime.db.engine.connect() as conn:
            assert len((await conn.execute(select(slack_tables.slack_oauth_states))).all()) == 1
    finally:
        await runtime.close()


def test_croco_check_accepts_installs_without_a_bot_token(tmp_path: Path) -> None:
    findings = {f.topic: f for f in check_settings(_install_settings(tmp_path, "https://slack.com/api/"))}
    assert findings["slack"].level is Level.OK
