"""The Slack app: a Bolt `AsyncApp`, its listeners, and the aiohttp routes that serve it on the API's port.

One request URL, `/slack/events`, takes slash commands, interactivity, options and events (API.md); Bolt checks
each request's signature (401 otherwise) and answers `url_verification` and `ssl_check` itself."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot import buttons, commands
from bot.config import SlackConfig
from bot.context import BotContext

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
Registrar = Callable[[AsyncApp, BotContext], None]
REGISTRARS: list[Registrar] = [commands.register, buttons.register]


def build_app(ctx: BotContext, config: SlackConfig) -> AsyncApp:
    app = AsyncApp(
        client=config.client(config.bot_token),
        token=config.bot_token or None,
        signing_secret=config.signing_secret,
        process_before_response=False,  # ack first: the response goes out, the listener goes on
        logger=logging.getLogger("bot.bolt"),
    )
    for register in REGISTRARS:
        register(app, ctx)
    return app


def routes(app: AsyncApp) -> web.RouteTableDef:
    """`/slack/events` for Slack's requests, on the API's aiohttp application."""
    table = web.RouteTableDef()

    @table.post(EVENTS_PATH)
    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    return table


async def home_team(config: SlackConfig) -> str | None:
    """The bot token's team (auth.test): it takes the default workspace. None without a token."""
    if not config.bot_token:
        return None
    answer = await config.client(config.bot_token).auth_test()
    return str(answer["team_id"])
