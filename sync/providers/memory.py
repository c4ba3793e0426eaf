"""An in-memory provider for the engine's, the API's and hypothesis tests (vdirsyncer's MemoryStorage).

The same protocol as CalDAV with the same semantics: etags change on every write, cursors are incremental,
a stale etag gives PreconditionFailed, create is idempotent, delete of a missing item is done. Items are
iCalendar text read with the real CalDAV reader (`sync.providers.caldav.ical`). Hooks make the awkward
cases one line each:
`fail_next(error)`, `invalidate_cursors()`, `remove_calendar()`; `calls` records what was asked. Changed
items are handed to `changes(on_items=...)` in batches of `batch_size`, like a server's multiget chunks.

Opened with OAuth tokens (`opened_with`), it refreshes them like Graph: `rotate_tokens(new)` makes the next
call refresh and receive `new`, `revoke_grant()` makes every refresh fail with `invalid_grant`.

It implements push like Google's `events.watch` (no notifications are sent): `watches` holds the live
channels, each granted at most `channel_lifetime` from the injected `clock`.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storage.enums import Access
from sync.events import RemoteObject
from sync.providers.base import (
    CalendarGone,
    ChangeSet,
    Credentials,
    EventDraft,
    GrantRevoked,
    ItemSink,
    OAuthTokens,
    PreconditionFailed,
    ProviderError,
    PushChannel,
    ReadContext,
    Reader,
    RemoteCalendarInfo,
    RemoteItem,
    TimeWindow,
    WriteResult,
)
from sync.providers.caldav.ical import read_object, write_event


@dataclass
class MemoryCalendar:
    name: str
    access: Access = Access.FULL
    items: dict[str, tuple[str, str]] = field(default_factory=dict)  # remote id -> (etag, data)
    log: list[tuple[int, str]] = field(default_factory=list)  # (version, remote id) of every change


@dataclass(frozen=True)
class Watch:
    """A live push channel: on which calendar, where it would post, with which token."""

    calendar_id: str
    channel: PushChannel
    address: str
    token: str


class MemoryProvider:
    def __init__(self, *, account_email: str | None = None, batch_size: int = 100,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.calendars: dict[str, MemoryCalendar] = {}
        self.watches: dict[str, Watch] = {}  # live channels by id
        self.channel_lifetime, self.clock = timedelta(days=7), clock
        self.calls: list[str] = []
        self.account_email, self.batch_size = account_email, batch_size
        self._failures: deque[tuple[ProviderError, str | None]] = deque()
        self._versions = itertools.count(1)
        self._epoch = 0  # part of every cursor: bumping it invalidates all cursors handed out
        self.credentials: Credentials | None = None
        self._rotated: OAuthTokens | None = None  # what a refresh of this opening gave
        self._next_tokens: OAuthTokens | None = None
        self._revoked = False

    # Test hooks ------------------------------------------------------------------------------------

    def add_calendar(self, calendar_id: str, name: str = "Calendar", access: Access = Access.FULL) -> None:
        self.calendars[calendar_id] = MemoryCalendar(name, access)

    def remove_calendar(self, calendar_id: str) -> None:
        """The collection is deleted: every later call on it raises CalendarGone."""
        del self.calendars[calendar_id]

    def put(self, calendar_id: str, remote_id: str, data: str) -> str:
        """A change made by someone else, e.g. the user in their calendar app; returns the new etag."""
        version = next(self._versions)
        calendar = self._calendar(calendar_id)
        calendar.items[remote_id] = (f'"{version}"', data)
        calendar.log.append((version, remote_id))
        return f'"{version}"'

    def remove(self, calendar_id: str, remote_id: str) -> None:
        calendar = self._calendar(calendar_id)
        calendar.items.pop(remote_id, None)
        calendar.log.append((next(self._versions), remote_id))

    def fail_next(self, error: ProviderError, *, on: str | None = None) -> None:
        """The next call (or the next call of method `on`) raises `error`; queued in order."""
        self._failures.append((error, on))

    def opened_with(self, credentials: Credentials) -> MemoryProvider:
        """The account as a provider opened with `credentials` (a test's `ProviderFactory` calls this)."""
        self.credentials, self._rotated = credentials, None
        return self

    def rotate_tokens(self, tokens: OAuthTokens) -> None:
        """The access token has expired: the next call refreshes it and the server answers `tokens`."""
        self._next_tokens = tokens

    def revoke_grant(self) -> None:
        """The user withdrew our access: every refresh of OAuth tokens is refused with `invalid_grant`."""
        self._revoked = True

    def invalidate_cursors(self) -> None:
        """Like an expired sync token: the next `changes()` with an old cursor answers a full listing."""
        self._epoch += 1

    # The protocol ----------------------------------------------------------------------------------

    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        self._call("list_calendars")
        return [RemoteCalendarInfo(i, c.name, c.access) for i, c in self.calendars.items()]

    async def changes(
        self, calendar_id: str, cursor: str | None, window: TimeWindow, *, on_items: ItemSink | None = None
    ) -> ChangeSet:
        self._call("changes")
        calendar = self._calendar(calendar_id)
        latest = calendar.log[-1][0] if calendar.log else 0
        epoch, _, version = (cursor or "").partition(":")
        since = int(version) if epoch == str(self._epoch) and version.isdigit() else None
        new_cursor = f"{self._epoch}:{latest}"
        if since is None or since > latest:
            items = tuple(RemoteItem(i, etag, data) for i, (etag, data) in calendar.items.items())
            self._hand_over(items, on_items)
            return ChangeSet(items, (), new_cursor, full=True)
        touched = dict.fromkeys(remote_id for v, remote_id in calendar.log if v > since)
        changed = tuple(RemoteItem(r, *calendar.items[r]) for r in touched if r in calendar.items)
        self._hand_over(changed, on_items)
        return ChangeSet(changed, tuple(r for r in touched if r not in calendar.items), new_cursor, full=False)

    async def create(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        self._call("create")
        remote_id = f"{draft.appointment_id}.ics"
        existing = self._calendar(calendar_id).items.get(remote_id)
        if existing is not None:  # a retry after a crash: the first copy, never a second
            return WriteResult(remote_id, existing[0], existed=True)
        return WriteResult(remote_id, self.put(calendar_id, remote_id, write_event(draft)))

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        self._call("update")
        self._check_etag(calendar_id, remote_id, etag)
        return WriteResult(remote_id, self.put(calendar_id, remote_id, write_event(draft)))

    async def delete(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        self._call("delete")
        if remote_id in self._calendar(calendar_id).items:
            self._check_etag(calendar_id, remote_id, etag)
            self.remove(calendar_id, remote_id)

    def read(self, item: RemoteItem, context: ReadContext) -> RemoteObject:
        return self.reader()(item, context)

    def reader(self) -> Reader:
        return functools.partial(read_object, account_email=self.account_email)

    def rotated_credentials(self) -> OAuthTokens | None:
        return self._rotated

    async def watch(self, calendar_id: str, channel_id: str, address: str, token: str,
                    lifetime: timedelta) -> PushChannel:
        self._call("watch")
        self._calendar(calendar_id)
        channel = PushChannel(channel_id, f"resource-{calendar_id}",
                              self.clock() + min(lifetime, self.channel_lifetime))
        self.watches[channel_id] = Watch(calendar_id, channel, address, token)
        return channel

    async def stop_watching(self, channel: PushChannel) -> None:
        self._call("stop_watching")
        self.watches.pop(channel.channel_id, None)

    # Internals -------------------------------------------------------------------------------------

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if isinstance(self.credentials, OAuthTokens):
            self._refresh()
        for index, (error, on) in enumerate(self._failures):
            if on is None or on == name:
                del self._failures[index]
                raise error

    def _refresh(self) -> None:
        if self._revoked:
            raise GrantRevoked()
        if self._next_tokens is not None:
            self.credentials = self._rotated = self._next_tokens
            self._next_tokens = None

    def _hand_over(self, items: tuple[RemoteItem, ...], on_items: ItemSink | None) -> None:
        if on_items is not None:
            for start in range(0, len(items), self.batch_size):
                on_items(items[start:start + self.batch_size])

    def _calendar(self, calendar_id: str) -> MemoryCalendar:
        if calendar_id not in self.calendars:
            raise CalendarGone("the calendar no longer exists")
        return self.calendars[calendar_id]

    def _check_etag(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        current = self._calendar(calendar_id).items.get(remote_id)
        if etag is not None and (current is None or current[0] != etag):
            raise PreconditionFailed("the event changed since it was read")
