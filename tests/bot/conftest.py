"""The Slack app served as `croco serve` serves it (the API's aiohttp app plus `/slack/events`), talking to the
Slack emulator, on the `db` fixture (SQLite and PostgreSQL) and a fixed clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import app as slack
from bot import install
from bot.authorize import BotIdentity
from bot.config import SlackConfig
from bot.context import BotContext
from storage.db import Database
from storage.secrets import SecretBox
from tests.emulators.slack import (
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    CLIENT_ID,
    CLIENT_SECRET,
    SIGNING_SECRET,
    TEAM_ID,
    Member,
    SlackEmulator,
    SlackSender,
)
from tests.web.conftest import TOKEN, Accounts, context
from tests.web.conftest import accounts as accounts  # noqa: F401  (the fixture, re-exported)
from web.app import create_app
from web.context import WebContext

ANN = Member("U0ANN", "Ann Lee", "ann@example.com", "America/New_York")


@dataclass
class SlackWorld:
    slack: SlackEmulator
    sender: SlackSender
    api: TestClient[Any, Any]
    web: WebContext
    bot: BotContext
    config: SlackConfig


@pytest.fixture
async def slack_emulator() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    emulator.add_member(ANN)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.close()


def bot_context(web: WebContext, *, home_team_id: str | None = TEAM_ID) -> BotContext:
    assert web.engine is not None
    return BotContext(db=web.db, engine=web.engine, booking=web.booking, connect_links=web.connect_links,
                      actions=web.actions, clock=web.clock, oauth_clients=web.oauth_clients, home_team_id=home_team_id)


@pytest.fixture
async def world(db: Database, secret_box: SecretBox, accounts: Accounts,
                slack_emulator: SlackEmulator) -> AsyncIterator[SlackWorld]:
    config = SlackConfig(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=slack_emulator.api_url)
    web = context(db, secret_box, accounts)
    bot = bot_context(web)
    application = create_app(web)
    home = BotIdentity(TEAM_ID, BOT_USER_ID, BOT_ID)
    application.add_routes(slack.routes(slack.build_app(bot, config, home)))
    async with TestClient(TestServer(application)) as client:
        client.session.headers["Authorization"] = f"Bearer {TOKEN}"
        sender = SlackSender(str(client.make_url(slack.EVENTS_PATH)), response_base=slack_emulator.base_url)
        yield SlackWorld(slack_emulator, sender, client, web, bot, config)


PUBLIC_URL = "https://croco.example"


@dataclass
class InstallWorld(SlackWorld):
    """`world` with installs configured too (a client id and secret, the stores on the `db` fixture)."""

    db: Database
    installs: install.Installs


@pytest.fixture
async def install_world(db: Database, secret_box: SecretBox, accounts: Accounts,
                        slack_emulator: SlackEmulator) -> AsyncIterator[InstallWorld]:
    config = SlackConfig(bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=slack_emulator.api_url,
                         client_id=CLIENT_ID, client_secret=CLIENT_SECRET, public_url=PUBLIC_URL)
    web = context(db, secret_box, accounts)
    bot = bot_context(web)
    installs = install.installs(config, db.engine, secret_box)
    assert installs is not None
    application = create_app(web)
    identity = BotIdentity(TEAM_ID, BOT_USER_ID, BOT_ID)
    application.add_routes(slack.routes(slack.build_app(bot, config, identity, installs)))
    async with TestClient(TestServer(application)) as client:
        client.session.headers["Authorization"] = f"Bearer {TOKEN}"
        sender = SlackSender(str(client.make_url(slack.EVENTS_PATH)), response_base=slack_emulator.base_url)
        yield InstallWorld(slack_emulator, sender, client, web, bot, config, db, installs)
