"""The CalDAV provider against a real Radicale: discovery, incremental changes, conditional writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.models import Access
from sync.providers.base import (
    EventDraft,
    InvalidCredentials,
    PreconditionFailed,
    ProviderConfig,
    Unreachable,
)
from sync.providers.caldav import CalDAVProvider
from tests.caldav_servers import CalDAVAccount
from tests.ics import michel, vevent

CONFIG = ProviderConfig(timeout_seconds=5)
START = datetime(2026, 3, 2, 12, tzinfo=UTC)


def provider(account: CalDAVAccount, password: str | None = None) -> CalDAVProvider:
    return CalDAVProvider(account.url, account.username, password or account.password, CONFIG)


async def test_discovery_lists_calendars_with_full_access(radicale: CalDAVAccount) -> None:
    url = radicale.new_calendar()
    calendars = {c.remote_id: c for c in await provider(radicale).list_calendars()}
    assert calendars[url].access == Access.FULL
    assert calendars[url].name == url.rstrip("/").rsplit("/", 1)[-1]


async def test_wrong_password_is_invalid_credentials_and_never_echoed(radicale: CalDAVAccount) -> None:
    with pytest.raises(InvalidCredentials) as caught:
        await provider(radicale, "wrong-password-123").list_calendars()
    assert "wrong-password-123" not in str(caught.value) and "wrong-password-123" not in repr(caught.value)


async def test_unreachable_server() -> None:
    with pytest.raises(Unreachable):
        await CalDAVProvider("http://127.0.0.1:1/", "john", "pw", CONFIG).list_calendars()


async def test_first_listing_then_idle_then_incremental_edit_and_delete(radicale: CalDAVAccount) -> None:
    url = radicale.new_calendar()
    radicale.put(url, "michel.ics", michel())
    radicale.put(url, "other.ics", vevent("other", "DTSTART:20260303T090000Z", "DTEND:20260303T100000Z"))
    caldav = provider(radicale)

    first = await caldav.changes(url, None)
    assert first.full and sorted(i.remote_id.rsplit("/", 1)[-1] for i in first.changed) == ["michel.ics", "other.ics"]

    idle = await caldav.changes(url, first.cursor)
    assert (idle.changed, idle.removed, idle.full) == ((), (), False)

    radicale.put(url, "michel.ics", michel("20260304"))
    await caldav.delete(url, "other.ics", None)
    later = await caldav.changes(url, idle.cursor)
    assert [i.remote_id.rsplit("/", 1)[-1] for i in later.changed] == ["michel.ics"]
    assert "20260304T130000" in later.changed[0].data
    assert [r.rsplit("/", 1)[-1] for r in later.removed] == ["other.ics"]


async def test_invalid_cursor_gives_a_full_listing(radicale: CalDAVAccount) -> None:
    url = radicale.new_calendar()
    radicale.put(url, "michel.ics", michel())
    listing = await provider(radicale).changes(url, "http://radicale.org/ns/sync/not-a-real-token")
    assert listing.full and len(listing.changed) == 1 and listing.cursor


async def test_create_is_idempotent_and_update_is_conditional(radicale: CalDAVAccount) -> None:
    url = radicale.new_calendar()
    caldav = provider(radicale)
    draft = EventDraft("a1b2c3", START, START + timedelta(hours=1), "Consultation")
    first = await caldav.create(url, draft)
    again = await caldav.create(url, draft)  # a retry after a crash
    assert first.remote_id == again.remote_id and first.etag == again.etag
    listing = await caldav.changes(url, None)
    assert len(listing.changed) == 1 and "X-CROCO-APPOINTMENT:a1b2c3" in listing.changed[0].data

    moved = EventDraft("a1b2c3", START + timedelta(hours=2), START + timedelta(hours=3), "Consultation", 1)
    updated = await caldav.update(url, first.remote_id, moved, first.etag)
    with pytest.raises(PreconditionFailed):
        await caldav.update(url, first.remote_id, draft, first.etag)  # stale etag
    await caldav.delete(url, first.remote_id, updated.etag)
    await caldav.delete(url, first.remote_id, None)  # already gone counts as done
    assert (await caldav.changes(url, None)).changed == ()
