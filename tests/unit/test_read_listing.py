"""Large listings are read on worker processes with the same result as reading them inline."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sync.engine import PARALLEL_READ_MINIMUM, read_listing
from sync.providers.base import ChangeSet, ReadContext, RemoteItem
from sync.providers.memory import MemoryProvider
from tests.ics import vevent

CONTEXT = ReadContext(ZoneInfo("Europe/Paris"), "john@example.com", datetime(2026, 3, 1, tzinfo=UTC),
                      datetime(2026, 9, 1, tzinfo=UTC))


def _items(count: int) -> tuple[RemoteItem, ...]:
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    good = tuple(
        RemoteItem(f"/cal/e{n}.ics", f'"{n}"', vevent(
            f"e{n}", f"DTSTART:{start + timedelta(hours=n):%Y%m%dT%H%M%SZ}",
            f"DTEND:{start + timedelta(hours=n, minutes=30):%Y%m%dT%H%M%SZ}", f"SUMMARY:Event {n}"))
        for n in range(count)
    )
    return (*good, RemoteItem("/cal/bad.ics", '"x"', "BEGIN:VCALENDAR\r\nnot really\r\n"))


async def test_parallel_and_inline_reading_agree_and_skip_the_same_bad_item() -> None:
    changes = ChangeSet(_items(PARALLEL_READ_MINIMUM + 50), ("/cal/gone.ics",), "cursor", False)
    reader = MemoryProvider().reader()
    inline = await read_listing(reader, changes, CONTEXT)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        parallel = await read_listing(reader, changes, CONTEXT, pool)
    assert parallel == inline
    assert len(parallel.changed) == PARALLEL_READ_MINIMUM + 50 and parallel.removed == ("/cal/gone.ics",)
    assert [item_id for item_id, _ in parallel.skipped] == ["/cal/bad.ics"]
