"""An in-memory provider for tests: the same protocol, etags, cursors, conditional writes, and failures
on demand. Items are kept as iCalendar text and read with the real `sync.ical` reader."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from storage.models import Access
from sync.ical import read_item, write_event
from sync.plan import RemoteObject
from sync.providers.base import (
    CalendarGone,
    ChangeSet,
    EventDraft,
    PreconditionFailed,
    ProviderError,
    ReadContext,
    RemoteCalendarInfo,
    RemoteItem,
    WriteResult,
)


@dataclass
class MemoryCalendar:
    name: str
    access: Access = Access.FULL
    items: dict[str, tuple[str, str]] = field(default_factory=dict)  # remote id -> (etag, data)
    log: list[tuple[int, str]] = field(default_factory=list)  # (version, remote id) of every change


class MemoryProvider:
    def __init__(self) -> None:
        self.calendars: dict[str, MemoryCalendar] = {}
        self.fail_next: ProviderError | None = None
        self.calls: list[str] = []
        self._versions = itertools.count(1)

    def add_calendar(self, calendar_id: str, name: str = "Calendar", access: Access = Access.FULL) -> None:
        self.calendars[calendar_id] = MemoryCalendar(name, access)

    def put(self, calendar_id: str, remote_id: str, data: str) -> str:
        """A change made by someone else, e.g. the user in their calendar app."""
        version = next(self._versions)
        etag = f'"{version}"'
        calendar = self._calendar(calendar_id)
        calendar.items[remote_id] = (etag, data)
        calendar.log.append((version, remote_id))
        return etag

    def remove(self, calendar_id: str, remote_id: str) -> None:
        calendar = self._calendar(calendar_id)
        calendar.items.pop(remote_id, None)
        calendar.log.append((next(self._versions), remote_id))

    def _calendar(self, calendar_id: str) -> MemoryCalendar:
        if calendar_id not in self.calendars:
            raise CalendarGone("the calendar no longer exists")
        return self.calendars[calendar_id]

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure

    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        self._call("list_calendars")
        return [RemoteCalendarInfo(i, c.name, c.access) for i, c in self.calendars.items()]

    async def changes(self, calendar_id: str, cursor: str | None) -> ChangeSet:
        self._call("changes")
        calendar = self._calendar(calendar_id)
        latest = str(calendar.log[-1][0] if calendar.log else 0)
        valid = cursor is not None and cursor.isdigit() and int(cursor) <= int(latest)
        if not valid:
            items = tuple(RemoteItem(i, etag, data) for i, (etag, data) in calendar.items.items())
            return ChangeSet(items, (), latest, True)
        touched = dict.fromkeys(r for v, r in calendar.log if v > int(cursor or 0))
        changed = tuple(RemoteItem(r, *calendar.items[r]) for r in touched if r in calendar.items)
        removed = tuple(r for r in touched if r not in calendar.items)
        return ChangeSet(changed, removed, latest, False)

    async def create(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        self._call("create")
        remote_id = f"{draft.appointment_id}.ics"
        existing = self._calendar(calendar_id).items.get(remote_id)
        if existing is not None:
            return WriteResult(remote_id, existing[0])
        return WriteResult(remote_id, self.put(calendar_id, remote_id, write_event(draft)))

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        self._call("update")
        current = self._calendar(calendar_id).items.get(remote_id)
        if etag is not None and (current is None or current[0] != etag):
            raise PreconditionFailed("the event changed since it was read")
        return WriteResult(remote_id, self.put(calendar_id, remote_id, write_event(draft)))

    async def delete(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        self._call("delete")
        current = self._calendar(calendar_id).items.get(remote_id)
        if current is None:
            return
        if etag is not None and current[0] != etag:
            raise PreconditionFailed("the event changed since it was read")
        self.remove(calendar_id, remote_id)

    def read(self, item: RemoteItem, context: ReadContext) -> RemoteObject:
        return read_item(item.remote_id, item.data, item.etag, context)
