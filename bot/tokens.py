"""Which bot token speaks to a Slack team, outside a request (notice DMs, the agenda): Bolt's `context.client`
has it inside one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
