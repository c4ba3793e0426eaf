"""Who is asking: the Croco user behind a Slack request, met on first contact (`users.info`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.context import BotContext
from storage.models import User
from sync import people

log = logging.getLogger(__name__)
FALLBACK_TIMEZONE = "UTC"


@dataclass(frozen=True)
class Person:
    team_id: str
    slack_user_id: str
    user: User

    @property
    def user_id(self) -> str:
        return self.user.id


async def known(ctx: BotContext, team_id: str, slack_user_id: str) -> Person | None:
    """The Croco user of a Slack member already met, without asking Slack: for listeners that must answer in
    their ack (a submission's errors, an options load), where a slow users.info would miss Slack's 3 s."""
    workspace_id = await people.workspace_for_team(ctx.db, team_id, "", home=team_id == ctx.home_team_id)
    user = await people.find_by_slack_id(ctx.db, workspace_id, slack_user_id)
    return None if user is None else Person(team_id, slack_user_id, user)


async def resolve(ctx: BotContext, client: AsyncWebClient, team_id: str, slack_user_id: str) -> Person:
    """The Croco user of a Slack member; a member unknown to Croco becomes one, with the name, email and time
    zone of their Slack profile. Only the first request of a member reads the profile."""
    found = await known(ctx, team_id, slack_user_id)
    if found is not None:
        return found
    info = (await client.users_info(user=slack_user_id))["user"]
    profile = info.get("profile", {})
    workspace_id = await people.workspace_for_team(ctx.db, team_id, "", home=team_id == ctx.home_team_id)
    user = await people.meet(ctx.db, workspace_id, people.Profile(
        slack_user_id=slack_user_id,
        name=profile.get("real_name") or info.get("real_name") or info.get("name") or slack_user_id,
        email=profile.get("email"), timezone=info.get("tz") or FALLBACK_TIMEZONE,
    ))
    log.info("slack member met", extra={"user_id": user.id, "slack_user_id": slack_user_id, "team_id": team_id})
    return Person(team_id, slack_user_id, user)
