"""The App Home tab: on `app_home_opened` it shows the user's status, with Connect and Settings buttons and a
fix button beside each problem; the Connect button opens the connect modal.

Slack retries an event it got no 2xx for in 3 s, so the same event may come twice: each delivery publishes the
status as it is now (views.publish replaces the tab), and first contact makes one user however often it runs."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import people
from bot.blocks import status as blocks
from bot.blocks.common import View
from bot.context import BotContext
from bot.ids import Action
from bot.modals import open_screen
from bot.screens import connect
from sync.status import read_status

log = logging.getLogger(__name__)
HOME_TAB = "home"


def register(app: AsyncApp, ctx: BotContext) -> None:
    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        # events are acked by Bolt before this runs
        if event.get("tab") != HOME_TAB:
            return  # the Messages tab: nothing to publish
        await publish(ctx, client, _team_of(body, event), str(event["user"]))

    @app.action(Action.OPEN_CONNECT)
    async def open_connect(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await open_screen(ctx, client, body, connect.TITLE, lambda person: connect.screen(ctx, person, ""))


async def publish(ctx: BotContext, client: AsyncWebClient, team_id: str, slack_user_id: str) -> None:
    """Publish the member's Home tab as things are now; a failure shows on the tab, never as silence."""
    extra: dict[str, Any] = {"team_id": team_id, "slack_user_id": slack_user_id}
    view: View
    try:
        person = await people.resolve(ctx, client, team_id, slack_user_id)
        extra["user_id"] = person.user_id
        view = blocks.home_view(await read_status(ctx.db, person.user_id, now=ctx.clock()))
    except Exception as exc:  # the person sees that it failed; the log has the rest
        log.exception("home tab failed", extra=extra)
        view = blocks.home_failure(f"Your status could not be read ({type(exc).__name__}). "
                                   "Open this tab again in a moment.")
    try:
        await client.views_publish(user_id=slack_user_id, view=view)
    except SlackApiError as exc:
        log.warning("home tab not published", extra=extra | {"error": exc.response.get("error")})


def _team_of(body: dict[str, Any], event: dict[str, Any]) -> str:
    team = body.get("team_id") or event.get("view", {}).get("team_id")
    if not team:
        team = next((a.get("team_id") for a in body.get("authorizations") or [] if a.get("team_id")), "")
    return str(team)
