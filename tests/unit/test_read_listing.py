"""Large listings are read on worker processes with the same result as reading them inline, batch by batch
as the provider transfers them."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sync.engine import PARALLEL_READ_MINIMUM, READ_CHUNK, ListingReader, pull_listing, read_listing
from sync.providers.base import ChangeSet, ItemSink, ReadContext, RemoteItem, TimeWindow, Unreachable
from sync.providers.memory import MemoryProvider
from tests.factories import ANY_TIME
from tests.ics import vevent

CONTEXT = ReadContext(ZoneInfo("Europe/Paris"), "john@example.com", datetime(2026, 3, 1, tzinfo=UTC),
                      datetime(2026, 9, 1, tzinfo=UTC))
CALENDAR = "/cal/"
BAD = RemoteItem("/cal/bad.ics", '"x"', "BEGIN:VCALENDAR\r\nnot really\r\n")


def _good(count: int) -> tuple[RemoteItem, ...]:
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    return tuple(
        RemoteItem(f"/cal/e{n}.ics", f'"{n}"', vevent(
            f"e{n}", f"DTSTART:{start + timedelta(hours=n):%Y%m%dT%H%M%SZ}",
            f"DTEND:{start + timedelta(hours=n, minutes=30):%Y%m%dT%H%M%SZ}", f"SUMMARY:Event {n}"))
        for n in range(count)
    )


def _items(count: int) -> tuple[RemoteItem, ...]:
    return (*_good(count), BAD)


def _memory(items: tuple[RemoteItem, ...], batch_size: int) -> MemoryProvider:
    provider = MemoryProvider(batch_size=batch_size)
    provider.add_calendar(CALENDAR)
    for item in items:
        provider.put(CALENDAR, item.remote_id, item.data)
    return provider


class RecordingPool(Executor):
    """Reads each shipped chunk at once in this process (or never, with `run=False`) and records its ids;
    the trivial tasks that start the workers are only counted."""

    def __init__(self, *, run: bool = True) -> None:
        self.run, self.chunks, self.futures = run, list[list[str]](), list[Future[Any]]()
        self.empty = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if not args:
            self.empty += 1
            future.set_result(fn(*args, **kwargs))
            return future
        self.chunks.append([item.remote_id for item in args[1]])
        self.futures.append(future)
        if self.run:
            future.set_result(fn(*args, **kwargs))
        return future


async def test_parallel_and_inline_reading_agree_and_skip_the_same_bad_item() -> None:
    changes = ChangeSet(_items(PARALLEL_READ_MINIMUM + 50), ("/cal/gone.ics",), "cursor", False)
    reader = MemoryProvider().reader()
    inline = await read_listing(reader, changes, CONTEXT)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        parallel = await read_listing(reader, changes, CONTEXT, pool)
    assert parallel == inline
    assert len(parallel.changed) == PARALLEL_READ_MINIMUM + 50 and parallel.removed == ("/cal/gone.ics",)
    assert [item_id for item_id, _ in parallel.skipped] == ["/cal/bad.ics"]


async def test_batches_go_to_the_pool_as_they_arrive_and_a_bad_item_is_skipped_alone() -> None:
    good = _good(4 * READ_CHUNK)
    items = (*good[:450], BAD, *good[450:])  # the bad item is in the second chunk
    pool = RecordingPool()
    reading = ListingReader(MemoryProvider().reader(), CONTEXT, pool)
    shipped = []
    for start in range(0, len(items), 100):  # the provider's batches, like multiget chunks
        reading.add(items[start:start + 100])
        shipped.append(len(pool.chunks))
    # Nothing until the listing is large enough for the pool, then every full chunk as soon as it is complete.
    assert shipped == [0, 0, 0, 1, 2, 2, 2, 3, 3, 4, 4]

    listing = await reading.listing(ChangeSet(items, (), "cursor", True))
    assert [len(chunk) for chunk in pool.chunks] == [READ_CHUNK] * 4 + [1]
    assert [item_id for chunk in pool.chunks for item_id in chunk] == [i.remote_id for i in items]
    assert listing.skipped == (("/cal/bad.ics", listing.skipped[0][1]),)
    assert [o.item_id for o in listing.changed] == [i.remote_id for i in good]  # in order, none lost
    assert listing == await read_listing(MemoryProvider().reader(), ChangeSet(items, (), "cursor", True), CONTEXT)


async def test_a_small_listing_is_read_inline_even_with_a_pool() -> None:
    pool, provider = RecordingPool(), _memory(_items(20), batch_size=5)
    changes, listing = await pull_listing(provider, CALENDAR, "not a cursor", CONTEXT, pool)
    assert pool.chunks == [] and len(listing.changed) == 20 and len(listing.skipped) == 1 and listing.full
    assert len(changes.changed) == 21 and pool.empty == 0  # with a cursor, no worker is started


async def test_a_full_listing_starts_the_workers_before_the_transfer() -> None:
    """A spawned worker spends half a second importing: it does that while the server prepares the listing."""
    pool, provider = RecordingPool(), _memory(_items(20), batch_size=5)
    started = []
    provider.fail_next(Unreachable("The calendar server cannot be reached"))
    with pytest.raises(Unreachable):
        await pull_listing(provider, CALENDAR, None, CONTEXT, pool)
    started.append(pool.empty)
    await pull_listing(provider, CALENDAR, None, CONTEXT, pool)
    assert started == [os.cpu_count() or 1] and pool.empty == 2 * (os.cpu_count() or 1) and pool.chunks == []


async def test_pulling_reads_the_batches_on_worker_processes_like_inline_reading() -> None:
    provider = _memory(_items(PARALLEL_READ_MINIMUM + 50), batch_size=100)
    inline = await read_listing(provider.reader(), await provider.changes(CALENDAR, None, ANY_TIME), CONTEXT)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        changes, pulled = await pull_listing(provider, CALENDAR, None, CONTEXT, pool)
    assert pulled == inline and len(changes.changed) == PARALLEL_READ_MINIMUM + 51
    assert [item_id for item_id, _ in pulled.skipped] == ["/cal/bad.ics"]


class FailingMidway(MemoryProvider):
    """Hands over some batches, then the connection drops."""

    async def changes(
        self, calendar_id: str, cursor: str | None, window: TimeWindow, *, on_items: ItemSink | None = None
    ) -> ChangeSet:
        handed = 0

        def then_fail(items: tuple[RemoteItem, ...]) -> None:
            nonlocal handed
            assert on_items is not None
            on_items(items)
            handed += 1
            if handed == 6:
                raise Unreachable("The calendar server cannot be reached (ConnectionResetError)")

        return await super().changes(calendar_id, cursor, window, on_items=then_fail)


async def test_a_transfer_that_fails_midway_raises_and_drops_the_reads_under_way() -> None:
    provider = FailingMidway(batch_size=100)
    provider.add_calendar(CALENDAR)
    for item in _good(1000):
        provider.put(CALENDAR, item.remote_id, item.data)
    pool = RecordingPool(run=False)
    with pytest.raises(Unreachable):
        await pull_listing(provider, CALENDAR, None, CONTEXT, pool)
    assert len(pool.futures) == 2 and all(future.cancelled() for future in pool.futures)


async def test_a_provider_that_hands_over_less_than_it_lists_is_an_error() -> None:
    reading = ListingReader(MemoryProvider().reader(), CONTEXT)
    reading.add(_good(3)[:2])
    with pytest.raises(RuntimeError, match="2 of 3"):
        await reading.listing(ChangeSet(_good(3), (), None, True))
