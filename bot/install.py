"""Multi-workspace install: `/slack/install` and `/slack/oauth_redirect` (Bolt's OAuth flow), slack_sdk's
SQLAlchemy installation and state stores on our database, and which bot token answers which team.

A client id and secret enable installs; the bot token, if also set, keeps serving its own team (API.md). The
stores' tables come from migration 0010 (storage/slack_tables.py), never from their `create_tables()`. Tokens
are sealed with our SecretBox before they reach those tables (credentials are encrypted at rest)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import SlackConfig
from bot.tokens import BotTokens, InstalledWorkspaces, SingleWorkspace
from storage.secrets import SecretBox, UndecryptableSecret

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_SECONDS = 600
"""How long an install link stays valid (Bolt's default)."""
MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "slack-prod.yaml"
SEALED_FIELDS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")


def bot_scopes(manifest: Path = MANIFEST) -> list[str]:
    """The bot scopes an install asks for: the production manifest's `oauth_config.scopes.bot`, the one place
    they are listed."""
    document = yaml.safe_load(manifest.read_text())
    return [str(scope) for scope in document["oauth_config"]["scopes"]["bot"]]


class SealedInstallationStore(AsyncInstallationStore):
    """slack_sdk's SQLAlchemy store with every token sealed by our SecretBox on the way in and opened on the way
    out: its tables hold no token in clear. Wraps rather than subclasses, so the inner store's own calls
    (save -> save_bot, find_installation -> find_bot) see sealed values only."""

    def __init__(self, inner: AsyncSQLAlchemyInstallationStore, box: SecretBox) -> None:
        self.inner = inner
        self.box = box
        self.client_id = inner.client_id

    @property
    def logger(self) -> logging.Logger:
        return self.inner.logger

    def _seal(self, value: str | None) -> str | None:
        return None if value is None else self.box.seal({"t": value}).decode("ascii")

    def _open(self, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(self.box.open(value.encode("ascii"))["t"])
        except (UndecryptableSecret, KeyError):
            log.warning("a stored Slack token cannot be opened with the configured keys")
            return None

    def _sealed(self, entity: Any) -> Any:
        sealed = copy.copy(entity)
        for name in SEALED_FIELDS:
            if hasattr(sealed, name):
                setattr(sealed, name, self._seal(getattr(sealed, name)))
        return sealed

    def _opened(self, entity: Any) -> Any:
        if entity is not None:
            for name in SEALED_FIELDS:
                if hasattr(entity, name):
                    setattr(entity, name, self._open(getattr(entity, name)))
        return entity

    async def async_save(self, installation: Installation) -> None:
        await self.inner.async_save(self._sealed(installation))

    async def async_save_bot(self, bot: Bot) -> None:
        await self.inner.async_save_bot(self._sealed(bot))

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        found = await self.inner.async_find_bot(enterprise_id=enterprise_id, team_id=team_id,
                                                is_enterprise_install=is_enterprise_install)
        opened: Bot | None = self._opened(found)
        return opened

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None,
                                      is_enterprise_install: bool | None = False) -> Installation | None:
        found = await self.inner.async_find_installation(enterprise_id=enterprise_id, team_id=team_id,
                                                         user_id=user_id, is_enterprise_install=is_enterprise_install)
        opened: Installation | None = self._opened(found)
        return opened

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.inner.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        await self.inner.async_delete_installation(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id)


@dataclass(frozen=True)
class Installs:
    """The two stores of the install flow, on our database."""

    installations: SealedInstallationStore
    states: AsyncSQLAlchemyOAuthStateStore


def installs(config: SlackConfig, engine: AsyncEngine, box: SecretBox) -> Installs | None:
    """The stores when installs are configured (a client id and secret); None otherwise."""
    if not config.installs:
        return None
    inner = AsyncSQLAlchemyInstallationStore(client_id=config.client_id, engine=engine,
                                             logger=logging.getLogger("bot.install.store"))
    states = AsyncSQLAlchemyOAuthStateStore(expiration_seconds=STATE_SECONDS, engine=engine,
                                            logger=logging.getLogger("bot.install.states"))
    return Installs(SealedInstallationStore(inner, box), states)


def oauth_settings(config: SlackConfig, stores: Installs, client: AsyncWebClient) -> AsyncOAuthSettings:
    """Bolt's OAuth flow on our paths and stores. `oauth.v2.access` goes through the app's client (the flow
    uses it), and so does the token rotator, which would otherwise build its own client on slack.com."""
    settings = AsyncOAuthSettings(
        client_id=config.client_id,
        client_secret=config.client_secret,
        scopes=bot_scopes(),
        user_scopes=[],
        installation_store=stores.installations,
        state_store=stores.states,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        redirect_uri=f"{config.public_url.rstrip('/')}{REDIRECT_PATH}" if config.public_url else None,
        state_expiration_seconds=STATE_SECONDS,
        logger=logging.getLogger("bot.install.oauth"),
    )
    rotator = settings.authorize.token_rotator  # type: ignore[attr-defined]
    if rotator is not None:
        rotator.client = client
    return settings


def single_workspace(config: SlackConfig, home_team: str | None) -> SingleWorkspace | None:
    return SingleWorkspace(config.bot_token, home_team) if config.bot_token else None


def bot_tokens(config: SlackConfig, home_team: str | None, stores: Installs | None = None) -> BotTokens:
    """The token source for work outside a request (notice DMs, the agenda), in either mode."""
    single = single_workspace(config, home_team)
    if stores is not None:
        return InstalledWorkspaces(stores.installations, single)
    if single is None:
        raise ValueError("no CROCO_SLACK_BOT_TOKEN and no installs: no bot token for anyone")
    return single


def register(app: AsyncApp, stores: Installs | None) -> None:
    """An uninstall or a revoked bot token removes that team's tokens, so its next request is not authorized.
    Without installs (a bot token alone) there is nothing stored to remove: the event is logged, since that
    token no longer works and CROCO_SLACK_BOT_TOKEN needs a new one.

    Not `app.enable_token_revocation_listeners()`: its `tokens_revoked` deletes the bot row only, and the
    installation row (which authorization reads first) would go on serving the revoked token."""

    @app.event("app_uninstalled")
    async def uninstalled(ack: AsyncAck, context: AsyncBoltContext) -> None:
        await ack()
        if stores is None:
            log.warning("Slack app uninstalled: CROCO_SLACK_BOT_TOKEN no longer works",
                        extra={"team_id": context.team_id})
            return
        await stores.installations.async_delete_all(enterprise_id=context.enterprise_id, team_id=context.team_id)
        log.info("Slack app uninstalled: tokens removed", extra={"team_id": context.team_id})

    @app.event("tokens_revoked")
    async def revoked(ack: AsyncAck, event: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        if stores is None:
            log.warning("Slack tokens revoked: CROCO_SLACK_BOT_TOKEN may no longer work",
                        extra={"team_id": context.team_id})
            return
        store = stores.installations
        tokens = event.get("tokens", {})
        for user_id in tokens.get("oauth", []):
            await store.async_delete_installation(enterprise_id=context.enterprise_id, team_id=context.team_id,
                                                  user_id=user_id)
        if tokens.get("bot"):
            await store.async_delete_all(enterprise_id=context.enterprise_id, team_id=context.team_id)
        log.info("Slack tokens revoked: removed", extra={"team_id": context.team_id})
