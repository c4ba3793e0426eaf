"""Configuration from `CROCO_*` environment variables and an optional `.env` (DESIGN.md section 7)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync.providers.base import GoogleConfig, MicrosoftConfig, ProviderConfig


class Settings(BaseSettings):
    """Everything has a default so `croco serve` runs with no configuration at all.

    Secrets left empty are generated for development by `croco.runtime.resolve_dev_secrets`, which warns.
    """

    model_config = SettingsConfigDict(env_prefix="CROCO_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".croco")
    database_url: str = ""
    api_token: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    webhook_secret: SecretStr = SecretStr("")
    public_url: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")

    # Scheduler
    sync_interval_seconds: int = Field(default=300, ge=5)
    scheduler_tick_seconds: float = Field(default=15, gt=0)
    scheduler_enabled: bool = True
    sync_lease_seconds: float = Field(default=30, gt=0)
    push_safety_poll_seconds: int = Field(default=3600, ge=5)
    """A calendar with a live push channel is polled this often (notifications may get lost), else every
    `sync_interval_seconds`."""

    # Providers: base URLs are settings so tests and the demo point at local servers.
    icloud_url: str = "https://caldav.icloud.com/"
    http_timeout_seconds: float = Field(default=20.0, gt=0)

    slack_bot_token: SecretStr = SecretStr("")
    slack_signing_secret: SecretStr = SecretStr("")
    slack_app_token: SecretStr = SecretStr("")
    slack_client_id: str = ""
    slack_client_secret: SecretStr = SecretStr("")
    slack_api_url: str = "https://slack.com/api/"

    google_client_id: str = ""
    google_client_secret: SecretStr = SecretStr("")
    google_api_url: str = "https://www.googleapis.com/"
    google_auth_url: str = "https://accounts.google.com/o/oauth2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"

    microsoft_client_id: str = ""
    microsoft_client_secret: SecretStr = SecretStr("")
    microsoft_authority: str = "https://login.microsoftonline.com/common"
    microsoft_graph_url: str = "https://graph.microsoft.com/v1.0/"

    @property
    def oauth_clients(self) -> frozenset[str]:
        """The OAuth providers whose client id and secret are both set: the others cannot offer a consent page."""
        pairs = {"google": (self.google_client_id, self.google_client_secret),
                 "microsoft": (self.microsoft_client_id, self.microsoft_client_secret)}
        return frozenset(name for name, (client_id, secret) in pairs.items() if client_id and secret.get_secret_value())

    @property
    def provider_config(self) -> ProviderConfig:
        """The providers' clients and base URLs, as every provider of the process is opened with them."""
        google = GoogleConfig(self.google_client_id, self.google_client_secret.get_secret_value(),
                              self.google_api_url, self.google_auth_url, self.google_token_url)
        microsoft = MicrosoftConfig(self.microsoft_client_id, self.microsoft_client_secret.get_secret_value(),
                                    self.microsoft_authority, self.microsoft_graph_url)
        return ProviderConfig(icloud_url=self.icloud_url, timeout_seconds=self.http_timeout_seconds, google=google,
                              microsoft=microsoft)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'croco.db').resolve()}"
