"""`/croco <subcommand>`: ack at once, open a loading modal, then replace it with the subcommand's screen.

The listener is thin: which screen, who asks, and the Slack calls around it. Screens build the view."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import people
from bot.blocks.common import View, failure, loading
from bot.context import BotContext
from bot.screens import Screen
from bot.screens import connect as connect_screen
from bot.screens import help as help_screen
from bot.screens import status as status_screen
from bot.screens import why as why_screen

log = logging.getLogger(__name__)

COMMAND = "/croco"
SCREENS: dict[str, tuple[str, Screen]] = {
    "help": ("Croco help", help_screen.screen),
    "connect": ("Connect a calendar", connect_screen.screen),
    "status": ("Croco status", status_screen.screen),
    "why": ("Croco why", why_screen.screen),
}
"""Subcommand -> (the loading modal's title, its screen); settings adds its own when the app is built (its
module imports this one)."""


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


async def open_screen(ctx: BotContext, client: AsyncWebClient, body: dict[str, Any], title: str,
                      build: Callable[[people.Person], Awaitable[View]]) -> None:
    """Loading modal first (the trigger expires within 3 s of the click), then the built view in its place.
    A failure while building shows in the modal, never as silence."""
    team_id = body.get("team_id") or body.get("team", {}).get("id", "")
    slack_user_id = body.get("user_id") or body.get("user", {}).get("id", "")
    extra = {"team_id": team_id, "slack_user_id": slack_user_id, "screen": title}
    try:
        opened = await client.views_open(trigger_id=body["trigger_id"], view=loading(title))
    except SlackApiError as exc:
        log.warning("loading modal not opened", extra=extra | {"error": exc.response.get("error")})
        return
    view_id, view_hash = opened["view"]["id"], opened["view"]["hash"]
    view: View
    try:
        person = await people.resolve(ctx, client, team_id, slack_user_id)
        extra["user_id"] = person.user_id
        view = await build(person)
    except Exception as exc:  # the person sees that it failed; the log has the rest
        log.exception("screen failed", extra=extra)
        view = failure(title, f"That did not work ({type(exc).__name__}). Try again in a moment.")
    try:
        await client.views_update(view_id=view_id, hash=view_hash, view=view)
    except SlackApiError as exc:
        log.warning("modal not updated", extra=extra | {"error": exc.response.get("error")})
