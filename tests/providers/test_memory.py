"""The in-memory fake: its test hooks, and that its cursors tell a client everything (a hypothesis property)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.providers.base import InvalidCredentials, RateLimited, RemoteItem
from sync.providers.memory import MemoryProvider
from tests.factories import ANY_TIME
from tests.providers.support import DRAFT, ics

CALENDAR = "/john/work/"


def memory() -> MemoryProvider:
    provider = MemoryProvider()
    provider.add_calendar(CALENDAR, "Work")
    return provider


async def test_fail_next_fails_one_call_of_the_method_asked_for() -> None:
    provider = memory()
    provider.fail_next(RateLimited("slow down", 30), on="changes")
    provider.fail_next(InvalidCredentials("revoked"))
    with pytest.raises(InvalidCredentials):  # the first failure for any method
        await provider.create(CALENDAR, DRAFT)
    with pytest.raises(RateLimited):
        await provider.changes(CALENDAR, None, ANY_TIME)
    assert len((await provider.changes(CALENDAR, None, ANY_TIME)).changed) == 0
    assert provider.calls == ["create", "changes", "changes"]


async def test_a_full_listing_after_invalidate_cursors_reconciles_by_id() -> None:
    provider = memory()
    provider.put(CALENDAR, "michel.ics", ics("michel.ics"))
    first = await provider.changes(CALENDAR, None, ANY_TIME)
    provider.invalidate_cursors()
    again = await provider.changes(CALENDAR, first.cursor, ANY_TIME)
    assert again.full and [i.remote_id for i in again.changed] == ["michel.ics"]
    assert not (await provider.changes(CALENDAR, again.cursor, ANY_TIME)).full


operations = st.lists(st.tuples(st.sampled_from(["put", "remove", "sync", "invalidate"]), st.integers(0, 4)),
                      max_size=40)


@settings(max_examples=150, deadline=None)
@given(operations)
async def test_replaying_change_sets_always_gives_what_the_calendar_holds(steps: list[tuple[str, int]]) -> None:
    provider, seen, cursor = memory(), dict[str, RemoteItem](), None
    for step, n in [*steps, ("sync", 0)]:
        if step == "put":
            provider.put(CALENDAR, f"e{n}.ics", ics("free.ics").replace("free@", f"e{n}@"))
        elif step == "remove":
            provider.remove(CALENDAR, f"e{n}.ics")
        elif step == "invalidate":
            provider.invalidate_cursors()
        else:
            changes = await provider.changes(CALENDAR, cursor, ANY_TIME)
            if changes.full:
                seen.clear()
            seen.update({item.remote_id: item for item in changes.changed})
            for remote_id in changes.removed:
                seen.pop(remote_id, None)
            cursor = changes.cursor
    held = provider.calendars[CALENDAR].items
    assert {i: (item.etag, item.data) for i, item in seen.items()} == held
