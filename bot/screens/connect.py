"""`/croco connect` (and Home's Connect button): a link for each provider, made by the same service as
`POST /users/{id}/connect-links`, never an HTTP call to ourselves."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.blocks import connect as blocks
from bot.blocks.common import View
from bot.context import BotContext
from bot.ids import Action
from bot.people import Person
from storage.enums import Provider
from sync.errors import Invalid

log = logging.getLogger(__name__)
TITLE = "Connect a calendar"
PROVIDERS = (Provider.GOOGLE, Provider.MICROSOFT, Provider.ICLOUD, Provider.CALDAV)
UNAVAILABLE = frozenset({"provider_not_configured", "unreachable"})  # its OAuth authority cannot be asked


async def screen(ctx: BotContext, person: Person, args: str) -> View:
    choices = [await _choice(ctx, person.user_id, provider) for provider in PROVIDERS]
    return blocks.connect_view(choices, now=ctx.clock())


async def _choice(ctx: BotContext, user_id: str, provider: Provider) -> blocks.ProviderChoice:
    try:
        link = await ctx.connect_links.issue(user_id, provider)
    except Invalid as exc:
        if exc.code not in UNAVAILABLE:
            raise
        return blocks.ProviderChoice(provider, configured=provider in ctx.oauth_clients)
    return blocks.ProviderChoice(provider, link.url, link.expires_at)


def register(app: AsyncApp, ctx: BotContext) -> None:
    @app.action(Action.CONNECT_PROVIDER)
    async def provider_clicked(ack: AsyncAck, body: dict[str, Any]) -> None:
        """A link button opens the browser by itself, and Slack still tells us of the click: ack it. An
        unavailable provider's button does nothing more; its line already says why."""
        await ack()
        clicked = (body.get("actions") or [{}])[0].get("value", "")
        log.info("connect button clicked", extra={"slack_user_id": body.get("user", {}).get("id"),
                                                  "provider": clicked})
