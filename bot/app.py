"""The Slack app: a Bolt `AsyncApp`, its listeners, and the aiohttp routes that serve it on the API's port.

One request URL, `/slack/events`, takes slash commands, interactivity, options and events (API.md); Bolt checks
each request's signature (401 otherwise) and answers `url_verification` and `ssl_check` itself."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot import commands, home
from bot.authorize import BotIdentity, authorizer
from bot.config import SlackConfig
from bot.context import BotContext
from bot.screens import connect, settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
Registrar = Callable[[AsyncApp, BotContext], None]
REGISTRARS: list[Registrar] = [commands.register, settings.register, connect.register, home.register]


def build_app(ctx: BotContext, config: SlackConfig, identity: BotIdentity | None) -> AsyncApp:
    app = AsyncApp(
        client=config.client(),
        authorize=authorizer(config, identity),  # type: ignore[arg-type]  # Bolt takes None: no token for that team
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
