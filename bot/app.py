"""The Slack app: a Bolt `AsyncApp`, its listeners, and the aiohttp routes that serve it on the API's port.

One request URL, `/slack/events`, takes slash commands, interactivity, options and events (API.md); Bolt checks
each request's signature (401 otherwise) and answers `url_verification` and `ssl_check` itself."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot import buttons, commands, home, install
from bot.authorize import BotIdentity, StoredAuthorize
from bot.config import SlackConfig
from bot.context import BotContext
from bot.screens import connect, settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
Registrar = Callable[[AsyncApp, BotContext], None]
REGISTRARS: list[Registrar] = [commands.register, settings.register, connect.register, home.register, buttons.register]


def build_app(ctx: BotContext, config: SlackConfig, identity: BotIdentity | None,
              installs: install.Installs | None = None) -> AsyncApp:
    """Single-workspace (the bot token) without `installs`; with them also Bolt's OAuth flow, installed teams
    answered with their own token (bot/install.py). Authorizing never calls Slack (bot/authorize.py)."""
    client = config.client()
    app = AsyncApp(
        client=client,
        # an AsyncAuthorize, which Bolt takes as is (its hint names plain functions only)
        authorize=StoredAuthorize(config, identity, installs.installations if installs else None),  # type: ignore[arg-type]
        signing_secret=config.signing_secret,
        process_before_response=False,  # ack first: the response goes out, the listener goes on
        logger=logging.getLogger("bot.bolt"),
        oauth_settings=install.oauth_settings(config, installs, client) if installs is not None else None,
    )
    install.register(app, installs)
    for register in REGISTRARS:
        register(app, ctx)
    return app


def routes(app: AsyncApp) -> web.RouteTableDef:
    """`/slack/events` for Slack's requests (and the install paths with installs), on the API's aiohttp app."""
    table = web.RouteTableDef()

    @table.post(EVENTS_PATH)
    async def events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    flow = app.oauth_flow
    if flow is not None:  # installs configured: the install link and Slack's redirect back (bot/install.py)
        @table.get(flow.install_path)
        async def install_page(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await flow.handle_installation(await to_bolt_request(request)))

        @table.get(flow.redirect_uri_path)
        async def oauth_redirect(request: web.Request) -> web.Response:
            return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    return table
