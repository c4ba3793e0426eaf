"""The small protocol every calendar provider implements, and the errors it may raise.

Like vdirsyncer's storage interface: list, incremental changes, conditional create/update/delete, all async.
A provider also reads its own items into occurrences with busy/free already decided, because each provider's
free/busy, cancellation and id rules live in that provider alone (DESIGN.md section 2). Reading is pure:
`changes()` transfers raw items, `read()` maps one of them, so a bad item fails alone (BadRemoteData) and
the engine skips and reports it while the rest of the calendar syncs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from storage.enums import Access
from sync.events import RemoteObject

MAX_CURSOR_LENGTH = 4000
"""A cursor is stored in `RemoteCalendar.sync_cursor` (VARCHAR(4000)); providers never return a longer one."""


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
    """The server asked us to slow down; `retry_after` is in seconds (the engine postpones the calendar)."""

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
    access: Access  # full: we may write; read: events with details; freebusy: busy times only


@dataclass(frozen=True)
class RemoteItem:
    """One remote object as transferred: its id (CalDAV: href path), version tag and raw content."""

    remote_id: str
    etag: str | None
    data: str


@dataclass(frozen=True)
class ChangeSet:
    """Changes since a cursor.

    With `full`, this is a complete listing and anything not in it is gone: the first sync, or the cursor was
    no longer valid and the provider silently started over. The engine reconciles by remote id either way,
    so a restart never duplicates anything.
    """

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
    existed: bool = False  # `create` found our event already there (written before a crash, or cancelled)


@dataclass(frozen=True)
class TimeWindow:
    """The sync window [start, end): Graph's calendarView needs it on every call, Google's full listing takes
    it as timeMin/timeMax, CalDAV's free-busy-query as its time-range."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class ReadContext:
    """What reading an item needs to know about its owner and the sync window."""

    timezone: ZoneInfo
    user_email: str
    window_start: datetime
    window_end: datetime

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(self.window_start, self.window_end)


Reader = Callable[[RemoteItem, ReadContext], RemoteObject]

ItemSink = Callable[[tuple[RemoteItem, ...]], None]
"""`changes(on_items=...)`: receives the changed items batch by batch as they are transferred."""

ReadResults = list[RemoteObject | tuple[str, str]]
"""Per item: what it reads as, or (remote id, why it was skipped)."""


def read_items(reader: Reader, items: tuple[RemoteItem, ...], context: ReadContext) -> ReadResults:
    """Runs in a worker process: results and skip reasons come back as plain, picklable values. It lives
    here, away from the engine, so that a worker imports the readers and not the database layer."""
    results: ReadResults = []
    for item in items:
        try:
            results.append(reader(item, context))
        except BadRemoteData as exc:
            results.append((exc.remote_id, exc.reason))
    return results


class CalendarProvider(Protocol):
    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        """Every calendar of the account with our access level."""
        ...

    async def changes(
        self, calendar_id: str, cursor: str | None, window: TimeWindow, *, on_items: ItemSink | None = None
    ) -> ChangeSet:
        """What changed since `cursor` (None: everything) among events overlapping `window`. An invalid cursor
        gives a full listing. A provider may return events outside the window (CalDAV lists everything); the
        reader drops their occurrences.

        `on_items`, if given, is called with each batch of changed items as soon as it is transferred, so the
        caller can read one batch while the next downloads. Batches arrive in order, never empty, and together
        they are exactly the result's `changed`; if `changes()` raises, the caller drops what it was given.
        """
        ...

    async def create(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        """Create our event; idempotent: a retry after a crash finds the first copy, never makes a second."""
        ...

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        """Overwrite our event if it still has `etag` (None: unconditionally); else PreconditionFailed."""
        ...

    async def delete(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        """Delete if it still has `etag` (None: unconditionally); an item already gone counts as deleted."""
        ...

    def reader(self) -> Reader:
        """`read` as a plain picklable function without credentials: the engine may run it in worker
        processes to read a large listing on every core."""
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
