"""Opening a modal from a click or a command: a loading view within the trigger's 3 s, then the real one."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import people
from bot.blocks.common import View, failure, loading
from bot.context import BotContext

log = logging.getLogger(__name__)


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
