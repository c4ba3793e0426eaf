"""`/croco <subcommand>`: ack at once, open a loading modal, then replace it with the subcommand's screen.

The listener is thin: which screen, who asks, and the Slack calls around it. Screens build the view."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.context import BotContext
from bot.modals import open_screen
from bot.screens import Screen
from bot.screens import connect as connect_screen
from bot.screens import help as help_screen
from bot.screens import settings as settings_screen
from bot.screens import status as status_screen
from bot.screens import why as why_screen

log = logging.getLogger(__name__)

COMMAND = "/croco"
SCREENS: dict[str, tuple[str, Screen]] = {
    "help": ("Croco help", help_screen.screen),
    "connect": (connect_screen.TITLE, connect_screen.screen),
    "status": ("Croco status", status_screen.screen),
    "why": ("Croco why", why_screen.screen),
    "settings": (settings_screen.TITLE, settings_screen.screen),
}
"""Subcommand -> (the loading modal's title, its screen)."""


def parse(text: str) -> tuple[str, str]:
    """`"why  2026-03-02"` -> ("why", "2026-03-02"); an unknown or missing subcommand is help, with the
    unknown word as its argument so help can name it."""
    word, _, rest = text.strip().partition(" ")
    name = word.lower()
    if name in SCREENS:
        return name, rest.strip()
    return "help", word


def register(app: AsyncApp, ctx: BotContext) -> None:
    @app.command(COMMAND)
    async def croco(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        name, args = parse(body.get("text", ""))
        title, screen = SCREENS[name]
        await open_screen(ctx, client, body, title, lambda person: screen(ctx, person, args))
