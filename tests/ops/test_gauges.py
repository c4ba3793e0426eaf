"""The freshness and backlog gauges, read from the database at scrape time (API.md "Operations")."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from storage.db import Database
from storage.models import RemoteCalendar
from storage.secrets import SecretBox
from tests.factories import add_connection, add_user, select_calendars
from tests.ops.scrape import scrape
from tests.web.conftest import NOW, Client


async def test_a_calendar_past_its_due_time_shows_as_due_with_its_lag(api: Client, db: Database,
                                                                       secret_box: SecretBox) -> None:
    before = await scrape(api)
    assert (before.value("croco_calendars_due"), before.value("croco_sync_lag_seconds")) == (0, 0)
    user = await add_user(db)
    _, (linked, other) = await add_connection(db, user, secret_box, calendars=2)
    await select_calendars(db, user, linked=linked, conflicts=[linked])
    async with db.write() as session:  # both overdue, but only the selected one is synced, so only it counts
        await session.execute(update(RemoteCalendar).values(due_at=NOW - timedelta(minutes=7)))
    found = await scrape(api)
    assert (found.value("croco_calendars_due"), found.value("croco_sync_lag_seconds")) == (1, 420)
