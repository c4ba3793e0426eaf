"""The small protocol every calendar provider implements, and the errors it may raise.

Each provider's free/busy, cancellation and id rules live in that provider's module alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from storage.models import Access


class ProviderError(Exception):
    """Base of every provider failure. Messages are for people and never contain credentials."""


class InvalidCredentials(ProviderError):
    """The server refused the credentials (wrong password, revoked token or app password)."""


class Unreachable(ProviderError):
    """The server could not be reached or did not answer like a calendar server."""


@dataclass(frozen=True)
class RemoteCalendarInfo:
    remote_id: str
    name: str
    access: Access


class CalendarProvider(Protocol):
    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        """Every calendar of the account with our access level; raises InvalidCredentials / Unreachable."""
        ...


@dataclass(frozen=True)
class ProviderConfig:
    """Process-wide provider settings (base URLs and timeouts), injectable for tests and the demo."""

    icloud_url: str = "https://caldav.icloud.com/"
    timeout_seconds: float = 20.0


class ProviderFactory(Protocol):
    def __call__(self, provider: str, credentials: dict[str, Any], server_url: str | None) -> CalendarProvider:
        ...
