"""The outbox backlog gauges follow the notices waiting for the sink: a retry still waits, a notice failed for
good no longer does, a delivered one is gone."""

from __future__ import annotations

from datetime import timedelta

from storage.db import Database
from storage.models import Notice, User
from sync.notices import ContactCreated
from sync.outbox import DeliveryFailed, Outbox, Undeliverable
from tests.clocks import ManualClock
from tests.factories import add_user
from tests.ops.scrape import scrape
from tests.sinks import RecordingSink
from tests.web.conftest import NOW, Client


async def backlog(api: Client) -> tuple[float, float]:
    found = await scrape(api)
    return found.value("croco_outbox_undelivered"), found.value("croco_outbox_oldest_undelivered_seconds")


async def test_the_backlog_counts_waiting_notices_and_the_oldest_ones_age(api: Client, db: Database) -> None:
    assert await backlog(api) == (0, 0)
    user = await add_user(db)
    async with db.write() as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.slack_user_id = "U123"
        for name, age in (("Old", 300), ("New", 60)):
            payload = ContactCreated(name, name, f"{name}@example.com", "a1").to_payload()
            session.add(Notice(user_id=user.id, kind="contact_created", payload=payload,
                               created_at=NOW - timedelta(seconds=age)))
    assert await backlog(api) == (2, 300)

    clock = ManualClock(NOW)
    sink = RecordingSink(failures=[Undeliverable("no Slack id"), DeliveryFailed("HTTP 503")])
    deliverer = Outbox(db, sink, owner="test", clock=clock, batch=1)
    assert await deliverer.deliver_due() == 0  # the oldest, failed for good: no longer waiting
    assert await backlog(api) == (1, 60)
    assert await deliverer.deliver_due() == 0  # the other, to be retried: still waiting
    assert await backlog(api) == (1, 60)
    clock.at(timedelta(minutes=1))
    assert await deliverer.deliver_due() == 1
    assert await backlog(api) == (0, 0)
    assert [c.payload["name"] for c in sink.calls] == ["Old", "New", "New"]
