"""What every provider promises (sync/providers/base.py), on Radicale, Xandikos and the in-memory fake alike.

The checks speak no provider's format: they seed events as neutral `SeedEvent`s (tests/providers/fixtures.py)
and assert on what the provider lists and what its reader gives (RemoteObject and Occurrence: times, busy,
title, guests, cancelled). A new backend, e.g. a Google or Graph emulator, joins by adding one parameter to the
`remote` fixture in tests/providers/conftest.py: a `Remote` holding its provider, an empty calendar, a `seed`
that writes a SeedEvent as another client of that backend would (its API's JSON for an emulator) and returns
the remote id `changes()` will list it under, and hands to drop the calendar and to spoil a cursor.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sync.events import Guest, RemoteObject, Response
from sync.providers.base import (
    BadRemoteData,
    CalendarGone,
    ChangeSet,
    EventDraft,
    PreconditionFailed,
    ReadContext,
    RemoteItem,
    TimeWindow,
)
from sync.providers.memory import MemoryProvider
from tests.providers.fixtures import SeedAttendee, SeedEvent, Weekly
from tests.providers.support import CONTEXT, DRAFT, START, Remote

PARIS = ZoneInfo("Europe/Paris")
WINDOW = CONTEXT.window  # March and April 2026: every listing below gets it


def paris(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=PARIS)


def utc(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


MICHEL = SeedEvent(
    "michel", paris(3, 2, 13), paris(3, 2, 14), "Appointment with Dr. Michel", organizer="john@example.com",
    attendees=(SeedAttendee("michel@example.com", "Dr. Michel", Response.ACCEPTED),
               SeedAttendee("john@example.com", "John", Response.ACCEPTED),
               SeedAttendee("room1@example.com", "Room 1", resource=True)),
)
FREE = SeedEvent("free", paris(3, 3, 10), paris(3, 3, 11), "Focus time", busy=False)
DECLINED = SeedEvent("declined", paris(3, 4, 10), paris(3, 4, 11), "Board meeting", organizer="boss@example.com",
                     attendees=(SeedAttendee("john@example.com", "John", Response.DECLINED),))
CANCELLED = SeedEvent("cancelled", paris(3, 5, 10), paris(3, 5, 11), "Called off", cancelled=True)
HOLIDAY = SeedEvent("holiday", date(2026, 3, 6), date(2026, 3, 7), "Holiday")
STANDUP = SeedEvent("standup", paris(3, 2, 9), paris(3, 2, 9, 30), "Stand-up", weekly=Weekly(
    5, skipped=frozenset({1}), moved={2: timedelta(hours=6)}, cancelled=frozenset({3})))
BACKWARDS = SeedEvent("backwards", paris(3, 2, 14), paris(3, 2, 13), "Ends before it starts")


def ids(changes: ChangeSet) -> list[str]:
    return sorted(item.remote_id for item in changes.changed)


def read_all(remote: Remote, changes: ChangeSet, context: ReadContext = CONTEXT) -> dict[str, RemoteObject]:
    return {item.remote_id: remote.provider.read(item, context) for item in changes.changed}


async def test_first_sync_lists_everything_then_idle_then_only_what_changed(remote: Remote) -> None:
    michel, free = remote.seed(MICHEL), remote.seed(FREE)
    provider, calendar = remote.provider, remote.calendar_id

    first = await provider.changes(calendar, None, WINDOW)
    assert first.full and first.removed == () and first.cursor
    assert ids(first) == sorted([michel, free])  # listed under the ids seeding gave
    assert all(item.etag for item in first.changed)
    assert [len(o.occurrences) for o in read_all(remote, first).values()] == [1, 1]

    idle = await provider.changes(calendar, first.cursor, WINDOW)
    assert (idle.changed, idle.removed, idle.full) == ((), (), False)

    remote.seed(MICHEL.moved_by(timedelta(hours=3)))
    await provider.delete(calendar, free, None)
    later = await provider.changes(calendar, idle.cursor, WINDOW)
    assert not later.full and ids(later) == [michel] and later.removed == (free,)
    (moved,) = later.changed
    assert [o.start for o in provider.read(moved, CONTEXT).occurrences] == [utc(3, 2, 15)]
    assert moved.etag != next(i.etag for i in first.changed if i.remote_id == michel)
    assert (await provider.changes(calendar, later.cursor, WINDOW)).changed == ()


async def test_reading_gives_times_busy_title_guests_and_cancelled(remote: Remote) -> None:
    seeded = {event.name: remote.seed(event) for event in (MICHEL, FREE, DECLINED, CANCELLED, HOLIDAY)}
    read = read_all(remote, await remote.provider.changes(remote.calendar_id, None, WINDOW))
    michel = read[seeded["michel"]]
    (meeting,) = michel.occurrences
    assert (meeting.start, meeting.end, meeting.busy, meeting.title, meeting.all_day) == (
        utc(3, 2, 12), utc(3, 2, 13), True, "Appointment with Dr. Michel", False)
    assert meeting.guests == (Guest("michel@example.com", "Dr. Michel"), Guest("john@example.com", "John"))
    assert not michel.cancelled and michel.appointment_id is None  # not ours: no marker
    assert [o.busy for o in read[seeded["free"]].occurrences] == [False]  # shown as free
    assert [o.busy for o in read[seeded["declined"]].occurrences] == [False]  # the user declined it
    assert read[seeded["cancelled"]].cancelled and read[seeded["cancelled"]].occurrences == ()
    (day,) = read[seeded["holiday"]].occurrences
    assert (day.start, day.end, day.all_day, day.busy) == (utc(3, 5, 23), utc(3, 6, 23), True, True)


async def test_changes_lists_what_overlaps_the_window_it_is_given(remote: Remote) -> None:
    """Graph and Google list by window; CalDAV may list more, and then the reader drops what lies outside.
    Whatever the backend, an event overlapping the window is listed, one moved out of it is listed again
    (changed or removed) and one moved into it is listed with its occurrence."""
    window = TimeWindow(utc(3, 10), utc(3, 20))
    context = ReadContext(PARIS, CONTEXT.user_email, window.start, window.end)
    inside = SeedEvent("inside", paris(3, 12, 10), paris(3, 12, 11))
    overlapping = [  # each with the starts of its occurrences inside the window
        (inside, [utc(3, 12, 9)]),
        (SeedEvent("across_start", paris(3, 9, 22), paris(3, 10, 2)), [utc(3, 9, 21)]),
        (SeedEvent("across_end", paris(3, 19, 23, 30), paris(3, 20, 3)), [utc(3, 19, 22, 30)]),
        (SeedEvent("around", date(2026, 3, 1), date(2026, 4, 1)), [utc(2, 28, 23)]),
        (SeedEvent("series", paris(2, 2, 9), paris(2, 2, 10), weekly=Weekly(10)), [utc(3, 16, 8)]),  # from February
    ]
    after = SeedEvent("after", paris(4, 1, 10), paris(4, 1, 11))
    outside = [SeedEvent("before", paris(3, 1, 10), paris(3, 1, 11)), after]
    seeded = {event.name: remote.seed(event) for event in [*(e for e, _ in overlapping), *outside]}

    first = await remote.provider.changes(remote.calendar_id, None, window)
    read = read_all(remote, first, context)
    assert {seeded[event.name] for event, _ in overlapping} <= read.keys()
    for event, starts in overlapping:
        assert [o.start for o in read[seeded[event.name]].occurrences] == starts, event.name
    assert all(not read[seeded[event.name]].occurrences for event in outside if seeded[event.name] in read)

    remote.seed(inside.moved_by(timedelta(days=30)))
    remote.seed(after.moved_by(timedelta(days=-15)))  # 17 March
    later = await remote.provider.changes(remote.calendar_id, first.cursor, window)
    read = read_all(remote, later, context)
    assert seeded["inside"] in later.removed or read[seeded["inside"]].occurrences == ()
    assert [o.start for o in read[seeded["after"]].occurrences] == [utc(3, 17, 9)]


async def test_an_invalid_cursor_gives_a_full_listing_without_error(remote: Remote) -> None:
    michel = remote.seed(MICHEL)
    first = await remote.provider.changes(remote.calendar_id, None, WINDOW)
    assert first.cursor is not None
    again = await remote.provider.changes(remote.calendar_id, remote.stale_cursor(first.cursor), WINDOW)
    assert again.full and ids(again) == [michel] and again.cursor
    garbage = await remote.provider.changes(remote.calendar_id, "not a cursor at all", WINDOW)
    assert garbage.full and ids(garbage) == [michel]
    assert (await remote.provider.changes(remote.calendar_id, again.cursor, WINDOW)).changed == ()


async def test_a_deleted_calendar_is_calendar_gone(remote: Remote) -> None:
    first = await remote.provider.changes(remote.calendar_id, None, WINDOW)
    remote.drop_calendar()
    for cursor in (first.cursor, None):
        with pytest.raises(CalendarGone):
            await remote.provider.changes(remote.calendar_id, cursor, WINDOW)


async def test_create_is_idempotent(remote: Remote) -> None:
    provider, calendar = remote.provider, remote.calendar_id
    first = await provider.create(calendar, DRAFT)
    again = await provider.create(calendar, DRAFT)  # a retry after a crash or a lost reply
    assert (again.remote_id, again.etag) == (first.remote_id, first.etag) and first.etag
    assert again.existed and not first.existed  # the engine then rewrites it to show the appointment as it is
    listing = await provider.changes(calendar, None, WINDOW)
    assert ids(listing) == [first.remote_id]
    ours = provider.read(listing.changed[0], CONTEXT)
    assert ours.appointment_id == "a1b2c3d4" and not ours.cancelled  # marked as ours, so never imported back
    assert [(o.start, o.end, o.title, o.busy, o.guests) for o in ours.occurrences] == [
        (DRAFT.start, DRAFT.end, "Consultation", True, ())]  # no guests: nobody gets invited on our behalf


async def test_update_is_conditional_and_delete_is_done_twice(remote: Remote) -> None:
    provider, calendar = remote.provider, remote.calendar_id
    created = await provider.create(calendar, DRAFT)
    moved = EventDraft(DRAFT.appointment_id, START + timedelta(hours=2), START + timedelta(hours=3), "Moved", 1)
    updated = await provider.update(calendar, created.remote_id, moved, created.etag)
    assert updated.remote_id == created.remote_id and updated.etag not in (None, created.etag)
    with pytest.raises(PreconditionFailed):
        await provider.update(calendar, created.remote_id, DRAFT, created.etag)  # stale: someone edited it
    with pytest.raises(PreconditionFailed):
        await provider.delete(calendar, created.remote_id, created.etag)
    (item,) = (await provider.changes(calendar, None, WINDOW)).changed
    assert [(o.start, o.title) for o in provider.read(item, CONTEXT).occurrences] == [(moved.start, "Moved")]
    await provider.delete(calendar, created.remote_id, updated.etag)
    await provider.delete(calendar, created.remote_id, updated.etag)  # already gone counts as done
    await provider.delete(calendar, created.remote_id, None)
    listing = await provider.changes(calendar, None, WINDOW)  # Google lists a deleted event, as cancelled
    assert all(provider.read(item, CONTEXT).cancelled for item in listing.changed)


async def test_a_malformed_item_fails_alone(remote: Remote) -> None:
    michel, standup = remote.seed(MICHEL), remote.seed(STANDUP)
    backwards = remote.seed(BACKWARDS) if remote.stores_malformed else None  # Google refuses it on write
    listing = await remote.provider.changes(remote.calendar_id, None, WINDOW)
    read, failed = {}, {}
    for item in listing.changed:
        try:
            read[item.remote_id] = remote.provider.read(item, CONTEXT)
        except BadRemoteData as exc:
            failed[exc.remote_id] = exc.reason
    assert list(failed) == ([backwards] if backwards else [])
    assert all(failed.values())
    assert len(read[michel].occurrences) == 1
    series = read[standup].occurrences  # 9 March skipped, 16 March moved, 23 March cancelled
    assert [(o.start, o.title) for o in series] == [
        (utc(3, 2, 8), "Stand-up"), (utc(3, 16, 14), "Stand-up (moved)"), (utc(3, 30, 7), "Stand-up")]
    assert len({o.key for o in series}) == 3


async def test_writing_into_a_deleted_calendar_is_calendar_gone(remote: Remote) -> None:
    remote.drop_calendar()
    with pytest.raises(CalendarGone):
        await remote.provider.create(remote.calendar_id, DRAFT)


async def test_changed_items_are_handed_over_in_batches_as_they_arrive(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`on_items` gets non-empty batches that add up to exactly `changed`, whatever path the listing took."""
    monkeypatch.setattr("sync.providers.caldav.provider.MULTIGET_CHUNK", 2)
    monkeypatch.setattr("sync.providers.google.provider.HAND_OVER_BATCH", 2)
    if isinstance(remote.provider, MemoryProvider):
        remote.provider.batch_size = 2
    copies = [replace(MICHEL, name=f"e{n}") for n in range(5)]
    seeded = [remote.seed(copy) for copy in copies]
    provider, calendar = remote.provider, remote.calendar_id

    batches: list[tuple[RemoteItem, ...]] = []
    first = await provider.changes(calendar, None, WINDOW, on_items=batches.append)
    assert len(first.changed) == 5 and all(batches) and sum(batches, ()) == first.changed

    batches.clear()
    idle = await provider.changes(calendar, first.cursor, WINDOW, on_items=batches.append)
    assert idle.changed == () and batches == []

    remote.seed(copies[1].moved_by(timedelta(hours=3)))
    later = await provider.changes(calendar, idle.cursor, WINDOW, on_items=batches.append)
    assert ids(later) == [seeded[1]] and batches == [later.changed]

    batches.clear()
    again = await provider.changes(calendar, remote.stale_cursor(later.cursor or ""), WINDOW, on_items=batches.append)
    assert again.full and len(again.changed) == 5 and sum(batches, ()) == again.changed
