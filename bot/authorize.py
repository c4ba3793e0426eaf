"""Which token answers a Slack request, decided without calling Slack.

Bolt's stock authorizations call `auth.test` on a team's first request (single team) or on every request
(installation store): a slow Slack then delays the ack past its 3 s. Here the bot token's own identity is read once
at start-up, and an installed team's comes from its stored installation, so authorizing is a dictionary or
database read."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore

from bot.config import SlackConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BotIdentity:
    """The bot token's team and bot user (auth.test), read when the app starts."""

    team_id: str
    bot_user_id: str | None
    bot_id: str | None


async def identify(config: SlackConfig) -> BotIdentity | None:
    """None without a bot token; raises when Slack cannot be asked (the caller decides what that means)."""
    if not config.bot_token:
        return None
    answer = await config.client(config.bot_token).auth_test()
    return BotIdentity(str(answer["team_id"]), answer.get("user_id"), answer.get("bot_id"))


class StoredAuthorize(AsyncAuthorize):
    """Bolt's `authorize=`: an `AsyncAuthorize` (Bolt takes a plain function only without an OAuth flow)."""

    def __init__(self, config: SlackConfig, home: BotIdentity | None,
                 installations: AsyncInstallationStore | None = None) -> None:
        self.config, self.home, self.installations = config, home, installations

    async def __call__(self, *, context: AsyncBoltContext, enterprise_id: str | None, team_id: str | None,
                       user_id: str | None, **_: Any) -> AuthorizeResult | None:
        home = self.home
        if self.installations is not None and (home is None or team_id != home.team_id):
            bot = await self.installations.async_find_bot(enterprise_id=enterprise_id, team_id=team_id)
            if bot is not None:
                return AuthorizeResult(enterprise_id=bot.enterprise_id, team_id=bot.team_id, bot_token=bot.bot_token,
                                       bot_id=bot.bot_id, bot_user_id=bot.bot_user_id, bot_scopes=bot.bot_scopes)
        if self.config.bot_token and (home is None or team_id == home.team_id):
            # home is None: Slack was down at start-up; a bot token alone serves the one team it belongs to
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=self.config.bot_token,
                                   bot_user_id=home.bot_user_id if home else None,
                                   bot_id=home.bot_id if home else None)
        log.info("slack request from a team without a token", extra={"team_id": team_id})
        return None
