"""What the web layer is given by the composition root."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from storage.db import Database
from storage.secrets import SecretBox
from storage.types import Clock, utcnow
from sync.actions import Actions
from sync.booking import Booking
from sync.channels import PushChannels
from sync.connect_links import ConnectLinks
from sync.engine import SyncEngine
from sync.providers.base import ProviderConfig, ProviderFactory

log = logging.getLogger(__name__)


class Heartbeat(Protocol):
    """The scheduler as `/healthz` sees it (`croco.scheduler.Ticker`)."""

    def ticked_within(self, intervals: float) -> bool:
        """Whether a tick started within the last `intervals` tick periods."""
        ...


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
    oauth_clients: frozenset[str] = frozenset()
    """The providers whose OAuth client id and secret are configured (`Settings.oauth_clients`)."""
    provider_config: ProviderConfig = ProviderConfig()
    """The OAuth clients and their endpoints, which the consent pages and the code exchange use."""
    clock: Clock = utcnow
    """The composition root's clock; the engine given must run on it too."""
    run_sync: Callable[[], None] | None = None
    """Runs the scheduler's sync tick now (`croco serve`); without a scheduler, `push_soon` runs a cycle."""
    run_channels: Callable[[], None] | None = None
    """Runs the scheduler's push-channel job now (`croco serve`), rather than at its next run minutes later."""
    scheduler: Heartbeat | None = None
    """This process's scheduler, for `/healthz`; None where it runs none (`disabled`)."""

    booking: Booking = field(init=False)
    connect_links: ConnectLinks = field(init=False)
    actions: Actions = field(init=False)
    channels: PushChannels = field(init=False)
    _cycle: asyncio.Task[None] | None = field(init=False, default=None)
    _again: bool = field(init=False, default=False)  # a change came in while the cycle ran

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = SyncEngine(self.db, self.secrets, self.providers, clock=self.clock)
        self.booking = Booking(self.db, refresh=self.engine.sync_user, clock=self.clock)
        self.connect_links = ConnectLinks(self.db, self.secrets, self.providers, public_url=self.public_url,
                                          oauth_clients=self.oauth_clients, provider_config=self.provider_config,
                                          clock=self.clock)
        self.actions = Actions(self.db, self.engine)
        self.channels = PushChannels(self.db, self.secrets, self.providers, self.public_url,
                                     config=self.provider_config)

    def sync_soon(self) -> None:
        """A push notification made a calendar due: sync it now rather than at the next tick."""
        if self.run_sync is not None:
            self.run_sync()
        else:
            self.push_soon()

    def settings_saved(self) -> None:
        """Saved settings may select calendars to watch: their push channels are made now, so a change made in
        them right after arrives by push (the Slack app calls this too)."""
        self.channels_soon()

    def channels_soon(self) -> None:
        """Run the push-channel job now (a channel to make, renew or replace), not at its next run minutes later."""
        if self.run_channels is not None:
            self.run_channels()

    def push_soon(self) -> None:
        """Run an engine cycle now, in the background, so that a booking reaches the members' linked
        calendars without waiting for the next scheduler tick (the calendars were marked due with it).

        One cycle at a time: a change made while one runs gets one more cycle after it (the running one may
        have claimed its calendars before the change). A burst of requests never piles up cycles that queue
        for the database, and so for the requests after them."""
        if self._cycle is not None and not self._cycle.done():
            self._again = True
            return
        self._cycle = asyncio.create_task(self._cycles())

    async def _cycles(self) -> None:
        assert self.engine is not None
        self._again = True
        while self._again:
            self._again = False
            try:
                await self.engine.run_due()
            except Exception:
                log.exception("background sync cycle failed")

    async def drain(self) -> None:
        """Let the background cycle finish before the database closes."""
        if self._cycle is not None:
            await self._cycle
