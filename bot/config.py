"""What the Slack app is configured with (API.md "Slack and provider endpoints"), given by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

DEFAULT_API_URL = "https://slack.com/api/"


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str = ""
    signing_secret: str = ""
    app_token: str = ""
    client_id: str = ""
    client_secret: str = ""
    api_url: str = DEFAULT_API_URL
    timeout_seconds: float = 20.0
    public_url: str = ""
    """CROCO_PUBLIC_URL: the install flow's redirect URI is `{public_url}/slack/oauth_redirect`."""

    @property
    def single_workspace(self) -> bool:
        """A bot token: its own team is served without an install."""
        return bool(self.bot_token)

    @property
    def installs(self) -> bool:
        """A client id and secret: more workspaces install the app through /slack/install."""
        return bool(self.client_id and self.client_secret)

    @property
    def missing(self) -> str | None:
        """Why the app cannot run, in one line; None when it can."""
        if not (self.single_workspace or self.installs):
            return "no CROCO_SLACK_BOT_TOKEN, and no CROCO_SLACK_CLIENT_ID with CROCO_SLACK_CLIENT_SECRET"
        if not self.signing_secret:
            return "no CROCO_SLACK_SIGNING_SECRET, so Slack's requests cannot be verified"
        return None

    def client(self, token: str | None = None) -> AsyncWebClient:
        """A Web API client on `api_url` (the only way to Slack), retrying dropped connections and 429s
        after their Retry-After."""
        return AsyncWebClient(token=token or None, base_url=self.api_url, timeout=int(self.timeout_seconds),
                              retry_handlers=retry_handlers())


def retry_handlers() -> list[AsyncRetryHandler]:
    return [AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=2)]
