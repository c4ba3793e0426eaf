"""What the web layer is given by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Database
from storage.secrets import SecretBox
from sync.engine import SyncEngine
from sync.providers.base import ProviderFactory


@dataclass
class WebContext:
    db: Database
    secrets: SecretBox
    api_token: str
    webhook_secret: str
    providers: ProviderFactory
    public_url: str = "http://127.0.0.1:8080"
    engine: SyncEngine | None = None
    """Runs `POST /users/{id}/sync`: `croco serve` passes its scheduler's engine; otherwise one is made here."""
    workspace_id: str = ""
    """The default workspace API-created objects belong to, resolved when the app starts."""

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = SyncEngine(self.db, self.secrets, self.providers)
