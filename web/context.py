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
    engine: SyncEngine
    public_url: str = "http://127.0.0.1:8080"
    workspace_id: str = ""  # the default workspace, resolved at startup
