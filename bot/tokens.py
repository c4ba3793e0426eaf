"""Which bot token speaks to a Slack team, outside a request (notice DMs, the agenda): Bolt's `context.client`
has it inside one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore


class BotTokens(Protocol):
    async def for_team(self, team_id: str | None) -> str | None:
        """The bot token installed in `team_id` (None: the default workspace); None when there is none."""


@dataclass(frozen=True)
class SingleWorkspace:
    """`CROCO_SLACK_BOT_TOKEN` alone: it serves its own team, which the default workspace belongs to."""

    token: str
    team_id: str | None

    async def for_team(self, team_id: str | None) -> str | None:
        return self.token if team_id is None or self.team_id is None or team_id == self.team_id else None


@dataclass(frozen=True)
class InstalledWorkspaces:
    """Installs through /slack/install (the installation store), plus `CROCO_SLACK_BOT_TOKEN` for its own team
    (and for the default workspace, which that team takes) when it is set too."""

    store: AsyncInstallationStore
    single: SingleWorkspace | None = None

    async def for_team(self, team_id: str | None) -> str | None:
        single = self.single
        if single is not None and (team_id is None or team_id == single.team_id):
            return single.token
        if team_id is None:
            return None
        bot = await self.store.async_find_bot(enterprise_id=None, team_id=team_id)
        if bot is not None and bot.bot_token:
            return bot.bot_token
        if single is not None and single.team_id is None:  # its team not known yet (auth.test failed at start)
            return single.token
        return None
