"""What the Slack app is given by the composition root: the services behind its commands and buttons."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from storage.db import Database
from storage.types import Clock
from sync.actions import Actions
from sync.booking import Booking
from sync.calendar_lists import CalendarLists
from sync.connect_links import ConnectLinks
from sync.engine import SyncEngine


@dataclass
class BotContext:
    db: Database
    engine: SyncEngine
    booking: Booking
    connect_links: ConnectLinks
    """The same service as `POST /users/{id}/connect-links`: a button's link is made here, not over HTTP."""
    actions: Actions
    clock: Clock
    oauth_clients: frozenset[str] = frozenset()
    """The OAuth providers configured (`Settings.oauth_clients`); the others say so on their button."""
    home_team_id: str | None = None
    """The bot token's own Slack team (single-workspace mode), read with auth.test when the app starts."""
    settings_saved: Callable[[], None] = lambda: None
    """Told after the settings modal saved (the web context's: push channels for the calendars chosen)."""

    @property
    def calendar_lists(self) -> CalendarLists:
        """Opening the settings refreshes the user's calendar lists (API.md), through the engine's providers."""
        return CalendarLists(self.engine.db, self.engine.secrets, self.engine.providers)
