"""The small protocol every calendar provider implements, and the errors it may raise.

Like vdirsyncer's storage interface: list, incremental changes, conditional create/update/delete. A
provider also reads its own items into the domain's `RemoteObject` (occurrences with busy/free already
decided), because each provider's free/busy, cancellation and id rules live in that provider alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from storage.models import Access
from sync.plan import RemoteObject


class ProviderError(Exception):
    """Base of every provider failure. Messages are for people and never contain credentials."""


class InvalidCredentials(ProviderError):
    """The server refused the credentials (wrong password, revoked token or app password)."""


class Unreachable(ProviderError):
    """The server could not be reached or did not answer like a calendar server."""


class CalendarGone(ProviderError):
    """The calendar collection no longer exists."""


class PreconditionFailed(ProviderError):
    """A conditional write lost a race: the remote item changed (or exists) since we read it."""


class RateLimited(ProviderError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadRemoteData(ProviderError):
    """One item cannot be read (malformed iCalendar, no start, end before start); the rest can."""

    def __init__(self, remote_id: str, reason: str) -> None:
        super().__init__(f"{remote_id}: {reason}")
        self.remote_id, self.reason = remote_id, reason


@dataclass(frozen=True)
class RemoteCalendarInfo:
    remote_id: str
    name: str
    access: Access


@dataclass(frozen=True)
class RemoteItem:
    """One remote object as transferred: its id, version tag and raw content."""

    remote_id: str
    etag: str | None
    data: str


@dataclass(frozen=True)
class ChangeSet:
    """Changes since a cursor. With `full`, this is a complete listing: anything not in it is gone."""

    changed: tuple[RemoteItem, ...]
    removed: tuple[str, ...]
    cursor: str | None
    full: bool


@dataclass(frozen=True)
class EventDraft:
    """An appointment as we write it into a linked calendar."""

    appointment_id: str
    start: datetime
    end: datetime
    title: str
    sequence: int = 0


@dataclass(frozen=True)
class WriteResult:
    remote_id: str
    etag: str | None


@dataclass(frozen=True)
class ReadContext:
    """What reading an item needs to know about its owner and the sync window."""

    timezone: ZoneInfo
    user_email: str
    window_start: datetime
    window_end: datetime


class CalendarProvider(Protocol):
    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        """Every calendar of the account with our access level."""
        ...

    async def changes(self, calendar_id: str, cursor: str | None) -> ChangeSet:
        """What changed since `cursor` (None: everything). An invalid cursor gives a full listing."""
        ...

    async def create(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        """Create our event; idempotent: a retry after a crash finds the first copy, never makes a second."""
        ...

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        """Overwrite our event if it still has `etag` (None: unconditionally); else PreconditionFailed."""
        ...

    async def delete(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        """Delete; an item already gone counts as deleted."""
        ...

    def read(self, item: RemoteItem, context: ReadContext) -> RemoteObject:
        """The item's occurrences inside the window; raises BadRemoteData for an unreadable item."""
        ...


@dataclass(frozen=True)
class ProviderConfig:
    """Process-wide provider settings (base URLs and timeouts), injectable for tests and the demo."""

    icloud_url: str = "https://caldav.icloud.com/"
    timeout_seconds: float = 20.0


class ProviderFactory(Protocol):
    def __call__(self, provider: str, credentials: dict[str, Any], server_url: str | None) -> CalendarProvider:
        ...
