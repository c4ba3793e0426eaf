"""What every provider promises (sync/providers/base.py), on Radicale, Xandikos and the in-memory fake alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync.providers.base import BadRemoteData, CalendarGone, ChangeSet, EventDraft, PreconditionFailed, RemoteItem
from sync.providers.memory import MemoryProvider
from tests.factories import ANY_TIME
from tests.providers.support import CONTEXT, DRAFT, START, Remote, ics, michel_copy, names


def items(changes: ChangeSet) -> dict[str, RemoteItem]:
    return {i.remote_id.rsplit("/", 1)[-1]: i for i in changes.changed}


async def test_first_sync_lists_everything_then_idle_then_only_what_changed(remote: Remote) -> None:
    michel = remote.seed("michel.ics", ics("michel.ics"))
    remote.seed("free.ics", ics("free.ics"))
    provider, calendar = remote.provider, remote.calendar_id

    first = await provider.changes(calendar, None, ANY_TIME)
    assert first.full and first.removed == () and first.cursor
    assert names(i.remote_id for i in first.changed) == ["free.ics", "michel.ics"]
    assert all(i.etag and "BEGIN:VCALENDAR" in i.data for i in first.changed)
    assert michel in {i.remote_id for i in first.changed}  # ids are the hrefs the server lists

    idle = await provider.changes(calendar, first.cursor, ANY_TIME)
    assert (idle.changed, idle.removed, idle.full) == ((), (), False)

    remote.seed("michel.ics", ics("michel.ics").replace("20260302T130000", "20260302T160000"))
    await provider.delete(calendar, michel.replace("michel", "free"), None)
    later = await provider.changes(calendar, idle.cursor, ANY_TIME)
    assert not later.full and names(i.remote_id for i in later.changed) == ["michel.ics"]
    assert "20260302T160000" in later.changed[0].data and later.changed[0].etag != items(first)["michel.ics"].etag
    assert names(later.removed) == ["free.ics"]
    assert (await provider.changes(calendar, later.cursor, ANY_TIME)).changed == ()


async def test_an_invalid_cursor_gives_a_full_listing_without_error(remote: Remote) -> None:
    remote.seed("michel.ics", ics("michel.ics"))
    first = await remote.provider.changes(remote.calendar_id, None, ANY_TIME)
    assert first.cursor is not None
    again = await remote.provider.changes(remote.calendar_id, remote.stale_cursor(first.cursor), ANY_TIME)
    assert again.full and names(i.remote_id for i in again.changed) == ["michel.ics"] and again.cursor
    garbage = await remote.provider.changes(remote.calendar_id, "not a cursor at all", ANY_TIME)
    assert garbage.full and len(garbage.changed) == 1
    assert (await remote.provider.changes(remote.calendar_id, again.cursor, ANY_TIME)).changed == ()


async def test_a_deleted_calendar_is_calendar_gone(remote: Remote) -> None:
    first = await remote.provider.changes(remote.calendar_id, None, ANY_TIME)
    remote.drop_calendar()
    for cursor in (first.cursor, None):
        with pytest.raises(CalendarGone):
            await remote.provider.changes(remote.calendar_id, cursor, ANY_TIME)


async def test_create_is_idempotent(remote: Remote) -> None:
    provider, calendar = remote.provider, remote.calendar_id
    first = await provider.create(calendar, DRAFT)
    again = await provider.create(calendar, DRAFT)  # a retry after a crash or a lost reply
    assert (again.remote_id, again.etag) == (first.remote_id, first.etag) and first.etag
    assert again.existed and not first.existed  # the engine then rewrites it to show the appointment as it is
    listing = await provider.changes(calendar, None, ANY_TIME)
    assert [i.remote_id for i in listing.changed] == [first.remote_id] and first.remote_id.endswith("a1b2c3d4.ics")
    (item,) = listing.changed
    assert "X-CROCO-APPOINTMENT:a1b2c3d4" in item.data and "UID:a1b2c3d4@croco" in item.data
    assert provider.read(item, CONTEXT).appointment_id == "a1b2c3d4"


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
    (item,) = (await provider.changes(calendar, None, ANY_TIME)).changed
    assert provider.read(item, CONTEXT).occurrences[0].title == "Moved"
    await provider.delete(calendar, created.remote_id, updated.etag)
    await provider.delete(calendar, created.remote_id, updated.etag)  # already gone counts as done
    await provider.delete(calendar, created.remote_id, None)
    assert (await provider.changes(calendar, None, ANY_TIME)).changed == ()


async def test_a_malformed_item_fails_alone(remote: Remote) -> None:
    remote.seed("michel.ics", ics("michel.ics"))
    remote.seed("backwards.ics", ics("backwards.ics"))
    remote.seed("recurring.ics", ics("recurring.ics"))
    listing = await remote.provider.changes(remote.calendar_id, None, ANY_TIME)
    read, failed = {}, {}
    for item in listing.changed:
        try:
            read[item.remote_id.rsplit("/", 1)[-1]] = remote.provider.read(item, CONTEXT)
        except BadRemoteData as exc:
            failed[exc.remote_id.rsplit("/", 1)[-1]] = exc.reason
    assert failed == {"backwards.ics": "DTEND is before DTSTART"}
    assert len(read["michel.ics"].occurrences) == 1 and len(read["recurring.ics"].occurrences) == 3


async def test_writing_into_a_deleted_calendar_is_calendar_gone(remote: Remote) -> None:
    remote.drop_calendar()
    with pytest.raises(CalendarGone):
        await remote.provider.create(remote.calendar_id, DRAFT)


async def test_changed_items_are_handed_over_in_batches_as_they_arrive(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`on_items` gets non-empty batches that add up to exactly `changed`, whatever path the listing took."""
    monkeypatch.setattr("sync.providers.caldav.provider.MULTIGET_CHUNK", 2)
    if isinstance(remote.provider, MemoryProvider):
        remote.provider.batch_size = 2
    for n in range(5):
        remote.seed(f"e{n}.ics", michel_copy(n))
    provider, calendar = remote.provider, remote.calendar_id

    batches: list[tuple[RemoteItem, ...]] = []
    first = await provider.changes(calendar, None, ANY_TIME, on_items=batches.append)
    assert len(first.changed) == 5 and all(batches) and sum(batches, ()) == first.changed

    batches.clear()
    idle = await provider.changes(calendar, first.cursor, ANY_TIME, on_items=batches.append)
    assert idle.changed == () and batches == []

    remote.seed("e1.ics", michel_copy(1).replace("20260302T130000", "20260302T160000"))
    later = await provider.changes(calendar, idle.cursor, ANY_TIME, on_items=batches.append)
    assert names(i.remote_id for i in later.changed) == ["e1.ics"] and batches == [later.changed]

    batches.clear()
    again = await provider.changes(calendar, remote.stale_cursor(later.cursor or ""), ANY_TIME, on_items=batches.append)
    assert again.full and len(again.changed) == 5 and sum(batches, ()) == again.changed
