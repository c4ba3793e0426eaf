"""Who a Slack user is in Croco: workspaces for Slack teams, and users met on their first `/croco`.

Nothing here talks to Slack: the bot reads the profile (`users.info`) and hands it over as a `Profile`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlmodel import col

from storage import repositories
from storage.db import Database
from storage.models import User, Workspace
from sync.accounts import DEFAULT_WORKSPACE

UNKNOWN_EMAIL_DOMAIN = "slack.invalid"
"""Slack hides the email of some members (guests, `users:read.email` not granted); users need one, unique."""


@dataclass(frozen=True)
class Profile:
    """What Slack's `users.info` says about a member."""

    slack_user_id: str
    name: str
    email: str | None
    timezone: str


async def workspace_for_team(db: Database, slack_team_id: str, team_name: str, *, home: bool) -> str:
    """The workspace of a Slack team, made on the team's first request.

    The bot token's own team (`home`) takes the default workspace, so the users the REST API made there are
    found by their Slack id (API.md: in single-workspace mode the default workspace is the bot token's team).
    Every Slack request asks: a known team is a read, only a team's first request writes.
    """
    known = await team_workspace_id(db, slack_team_id)
    if known is not None:
        return known
    async with db.write() as session:
        await repositories.serialize(session, "default-workspace")
        found = await repositories.team_workspace(session, slack_team_id)
        if found is not None:
            return found.id
        default = await repositories.default_workspace(session) if home else None
        if default is not None and default.slack_team_id is None:
            default.slack_team_id = slack_team_id
            return default.id
        workspace = Workspace(name=team_name or DEFAULT_WORKSPACE, slack_team_id=slack_team_id,
                              is_default=home and default is None)
        session.add(workspace)
        return workspace.id


async def team_workspace_id(db: Database, slack_team_id: str) -> str | None:
    async with db.session() as session:
        found = await repositories.team_workspace(session, slack_team_id)
        return None if found is None else found.id


async def find_by_slack_id(db: Database, workspace_id: str, slack_user_id: str) -> User | None:
    async with db.session() as session:
        found: User | None = await session.scalar(_by_slack_id(workspace_id, slack_user_id))
        return found


async def meet(db: Database, workspace_id: str, profile: Profile) -> User:
    """The Croco user of a Slack member: found by Slack id, else the API-made user with their email (now
    bound to the Slack id), else a new user with the profile's name, email and time zone."""
    email = (profile.email or f"{profile.slack_user_id.lower()}@{UNKNOWN_EMAIL_DOMAIN}").lower()
    async with db.write() as session:
        await repositories.serialize(session, f"slack-user:{workspace_id}:{profile.slack_user_id}")
        user: User | None = await session.scalar(_by_slack_id(workspace_id, profile.slack_user_id))
        if user is not None:
            return user
        user = await session.scalar(select(User).where(
            col(User.workspace_id) == workspace_id, col(User.email) == email, col(User.slack_user_id).is_(None)))
        if user is not None:
            user.slack_user_id = profile.slack_user_id
            return user
        user = User(workspace_id=workspace_id, slack_user_id=profile.slack_user_id, name=profile.name[:200],
                    email=email, timezone=profile.timezone)
        session.add(user)
        return user


def _by_slack_id(workspace_id: str, slack_user_id: str) -> Select[tuple[User]]:
    return select(User).where(col(User.workspace_id) == workspace_id, col(User.slack_user_id) == slack_user_id)
