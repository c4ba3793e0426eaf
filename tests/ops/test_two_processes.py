"""Two `croco serve` processes on one database report the same freshness and backlog: the gauges are read from
the database at scrape time, not kept by either process. Run on every backend of tests/conftest.py, PostgreSQL
(the deployment of several processes) when CROCO_TEST_DATABASE_URL is set."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col

from storage.db import Database
from storage.models import Notice, RemoteCalendar
from storage.secrets import SecretBox
from storage.types import utcnow
from sync.notices import ContactCreated
from tests.factories import add_connection, add_user, select_calendars
from tests.integration.serving import TOKEN, croco_serve
from tests.integration.test_serve import _clean_env, free_port
from tests.ops.scrape import scrape


async def test_two_processes_on_one_database_report_the_same_gauges(
    tmp_path: Path, db: Database, database_url: str, secret_box: SecretBox
) -> None:
    now = utcnow()  # serve reads the wall clock: the rows are placed relative to it
    user = await add_user(db)
    _, (linked, other) = await add_connection(db, user, secret_box, calendars=2)
    await select_calendars(db, user, linked=linked, conflicts=[linked, other])
    async with db.write() as session:
        for calendar, late in ((linked, 600), (other, 120)):
            await session.execute(update(RemoteCalendar).where(col(RemoteCalendar.id) == calendar.id)
                                  .values(due_at=now - timedelta(seconds=late)))
        for name, age, failed in (("Old", 900, False), ("New", 30, False), ("Dead", 3600, True)):
            session.add(Notice(user_id=user.id, kind="contact_created", created_at=now - timedelta(seconds=age),
                               payload=ContactCreated(name, name, f"{name}@example.com", "a1").to_payload(),
                               failed_at=now if failed else None))

    # no scheduler: neither process syncs a due calendar or delivers a notice while the test reads
    env = _clean_env(CROCO_API_TOKEN=TOKEN, CROCO_DATABASE_URL=database_url, CROCO_SCHEDULER_ENABLED="false")
    ports = free_port(), free_port()
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    async with croco_serve(tmp_path / "one", ports[0], env) as http, croco_serve(tmp_path / "two", ports[1], env):
        first_read = utcnow()
        one, two = [await scrape(http, f"http://127.0.0.1:{port}/metrics") for port in ports]
        last_read = utcnow()

    counts = [(s.value("croco_calendars_due"), s.value("croco_outbox_undelivered")) for s in (one, two)]
    assert counts == [(2, 2), (2, 2)]  # the failed notice is no backlog
    between = (last_read - first_read).total_seconds()  # the reads are this far apart on the wall clock
    for name, oldest in (("croco_sync_lag_seconds", 600), ("croco_outbox_oldest_undelivered_seconds", 900)):
        ages = [s.value(name) for s in (one, two)]
        assert abs(ages[0] - ages[1]) <= between, (name, ages)
        floor = (first_read - now).total_seconds() + oldest
        assert all(floor <= age <= floor + between for age in ages), (name, ages)
