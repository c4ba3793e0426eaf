"""What the web layer is given by the composition root."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from storage.db import Database
from storage.secrets import SecretBox
from sync.actions import Actions
from sync.booking import Booking
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

    booking: Booking = field(init=False)
    actions: Actions = field(init=False)
    _background: set[asyncio.Task[object]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = SyncEngine(self.db, self.secrets, self.providers)
        self.booking = Booking(self.db, refresh=self.engine.sync_user)
        self.actions = Actions(self.db, self.engine)

    def push_soon(self) -> None:
        """Run an engine cycle now, in the background, so that a booking reaches the members' linked
        calendars without waiting for the next scheduler tick (the calendars were marked due with it)."""
        assert self.engine is not None
        task: asyncio.Task[object] = asyncio.create_task(self.engine.run_due())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Let background cycles finish before the database closes."""
        await asyncio.gather(*self._background, return_exceptions=True)
