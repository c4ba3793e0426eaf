"""Outbox delivery: each notice reaches the sink once, failures are retried with backoff and recorded, and
neither concurrent deliverers nor a crash deliver a notice twice. The clock is injected: nothing sleeps."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlmodel import col

from storage.db import Database
from storage.models import Notice, User
from sync import outbox
from sync.notices import ContactCreated, notify
from sync.outbox import DeliveryFailed, Outbox, OutgoingNotice, Undeliverable
from tests.clocks import ManualClock
from tests.conftest import PG_URL
from tests.factories import add_user
from tests.sinks import RecordingSink

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)




class Crash(BaseException):
    """The process dies inside the sink call: nothing after it runs (like `kill -9`)."""


async def _notices(db: Database, count: int = 1, *, slack_user_id: str | None = "U123") -> tuple[User, list[str]]:
    user = await add_user(db)
    async with db.write() as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.slack_user_id = slack_user_id
        for n in range(count):
            await notify(session, user.id, ContactCreated(f"c{n}", f"Ada {n}", f"ada{n}@example.com", "a1"))
    async with db.session() as session:
        return user, list(await session.scalars(select(col(Notice.id)).order_by(col(Notice.id))))


async def _notice(db: Database, notice_id: str) -> Notice:
    async with db.session() as session:
        found = await session.get(Notice, notice_id)
        assert found is not None
        return found


async def test_a_notice_is_delivered_once_and_marked_delivered(db: Database) -> None:
    user, (notice_id,) = await _notices(db)
    sink, clock = RecordingSink(), ManualClock(NOW)
    deliverer = Outbox(db, sink, owner="test", clock=clock)

    assert await deliverer.deliver_due() == 1
    clock.at(timedelta(minutes=5))
    assert await deliverer.deliver_due() == 0

    (sent,) = sink.calls
    assert (sent.id, sent.user_id, sent.slack_user_id, sent.kind, sent.attempt) == (
        notice_id, user.id, "U123", "contact_created", 1)
    assert sent.payload["name"] == "Ada 0" and sent.idempotency_key == notice_id
    stored = await _notice(db, notice_id)
    assert (stored.delivered_at, stored.attempts, stored.last_error, stored.lease_owner) == (NOW, 1, None, None)


async def test_a_failing_sink_is_retried_with_backoff_and_records_the_last_error(db: Database) -> None:
    _, (notice_id,) = await _notices(db)
    sink = RecordingSink(failures=[DeliveryFailed("HTTP 503"), RuntimeError("a bug in the sink")])
    clock = ManualClock(NOW)
    deliverer = Outbox(db, sink, owner="test", clock=clock)

    assert await deliverer.deliver_due() == 0
    stored = await _notice(db, notice_id)
    assert (stored.attempts, stored.last_error, stored.next_attempt_at) == (1, "HTTP 503", NOW + timedelta(seconds=1))
    assert stored.delivered_at is None and stored.lease_owner is None

    clock.at(timedelta(seconds=0.9))
    assert await deliverer.deliver_due() == 0 and len(sink.calls) == 1  # not due yet
    clock.at(timedelta(seconds=1))
    assert await deliverer.deliver_due() == 0  # the sink's own bug: recorded and retried, not lost
    stored = await _notice(db, notice_id)
    assert (stored.attempts, stored.last_error) == (2, "sink error: RuntimeError")
    assert stored.next_attempt_at == NOW + timedelta(seconds=3)  # the backoff doubled

    clock.at(timedelta(seconds=2.9))
    assert await deliverer.deliver_due() == 0 and len(sink.calls) == 2
    clock.at(timedelta(seconds=3))
    assert await deliverer.deliver_due() == 1
    stored = await _notice(db, notice_id)
    assert (stored.attempts, stored.last_error, stored.delivered_at) == (3, None, NOW + timedelta(seconds=3))
    assert [c.attempt for c in sink.calls] == [1, 2, 3] and len(sink.accepted) == 1


async def test_a_rate_limited_notice_waits_its_retry_after(db: Database) -> None:
    _, (notice_id,) = await _notices(db)
    sink, clock = RecordingSink(failures=[DeliveryFailed("rate limited", retry_after=30)]), ManualClock(NOW)
    deliverer = Outbox(db, sink, owner="test", clock=clock)

    assert await deliverer.deliver_due() == 0
    clock.at(timedelta(seconds=29))  # the backoff alone (1 s) would have retried long before
    assert await deliverer.deliver_due() == 0 and len(sink.calls) == 1
    clock.at(timedelta(seconds=30))
    assert await deliverer.deliver_due() == 1
    assert (await _notice(db, notice_id)).delivered_at == NOW + timedelta(seconds=30)


async def test_an_undeliverable_notice_is_failed_once_and_never_retried(db: Database) -> None:
    _, (notice_id,) = await _notices(db, slack_user_id=None)
    sink, clock = RecordingSink(failures=[Undeliverable("the user has no Slack id")]), ManualClock(NOW)
    deliverer = Outbox(db, sink, owner="test", clock=clock)

    assert await deliverer.deliver_due() == 0
    assert sink.calls[0].slack_user_id is None
    clock.at(timedelta(days=30))
    assert await deliverer.deliver_due() == 0 and len(sink.calls) == 1
    stored = await _notice(db, notice_id)
    assert (stored.failed_at, stored.last_error, stored.delivered_at) == (NOW, "the user has no Slack id", None)


async def test_a_crash_after_claiming_is_redelivered_once_when_the_lease_expires(db: Database) -> None:
    _, (notice_id,) = await _notices(db)
    clock = ManualClock(NOW)
    with pytest.raises(Crash):
        await Outbox(db, RecordingSink(failures=[Crash()]), owner="dead", clock=clock).deliver_due()

    sink = RecordingSink()
    restarted = Outbox(db, sink, owner="restarted", clock=clock)
    clock.at(outbox.LEASE - timedelta(seconds=1))
    assert await restarted.deliver_due() == 0 and sink.calls == []  # the dead process's lease still holds
    clock.at(outbox.LEASE)
    assert await restarted.deliver_due() == 1
    clock.at(outbox.LEASE * 3)
    assert await restarted.deliver_due() == 0
    assert [c.id for c in sink.calls] == [notice_id] and sink.calls[0].attempt == 2


async def test_a_repeat_after_a_lost_mark_delivered_carries_the_same_idempotency_key(db: Database) -> None:
    """The one repeat the outbox cannot rule out: the sink accepted, then the process died before the mark."""
    _, (notice_id,) = await _notices(db)
    clock, keys = ManualClock(NOW), []

    async def accept_then_die(notice: OutgoingNotice) -> None:
        keys.append(notice.idempotency_key)
        raise Crash

    with pytest.raises(Crash):
        await Outbox(db, RecordingSink(during=accept_then_die), owner="dead", clock=clock).deliver_due()
    clock.at(outbox.LEASE)
    sink = RecordingSink()
    assert await Outbox(db, sink, owner="restarted", clock=clock).deliver_due() == 1
    assert keys + [c.idempotency_key for c in sink.calls] == [notice_id, notice_id]


async def test_the_sink_runs_with_no_transaction_open(db: Database) -> None:
    """Neither the SQLite write lock nor the notice's row lock is held while the sink talks to the network."""
    _, (notice_id,) = await _notices(db)

    async def write_the_notice_meanwhile(notice: OutgoingNotice) -> None:
        async with asyncio.timeout(10), db.write() as session:
            row = await session.get(Notice, notice.id, with_for_update=True)
            assert row is not None

    assert await Outbox(db, RecordingSink(during=write_the_notice_meanwhile), owner="test").deliver_due() == 1
    assert (await _notice(db, notice_id)).delivered_at is not None


async def test_two_concurrent_deliverers_on_two_engines_never_deliver_one_notice_twice(
    db: Database, database_url: str
) -> None:
    """Two processes' worth: each deliverer has its own engine (own connections), and they interleave."""
    _, ids = await _notices(db, 30)
    other = Database(database_url)
    sink = RecordingSink(during=lambda _: asyncio.sleep(0))  # a yield, not a wait: the deliverers interleave
    try:
        async def drain(database: Database, name: str) -> int:
            deliverer, total = Outbox(database, sink, owner=name, batch=4), 0
            while delivered := await deliverer.deliver_due():
                total += delivered
            return total

        totals = await asyncio.gather(drain(db, "one"), drain(other, "two"), drain(db, "three"))
    finally:
        await other.dispose()
    assert sum(totals) == 30
    assert Counter(c.id for c in sink.calls) == Counter(ids)  # each exactly once
    async with db.session() as session:
        assert await session.scalar(select(col(Notice.id)).where(col(Notice.delivered_at).is_(None))) is None


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL row locks: set CROCO_TEST_DATABASE_URL")
@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite has no row locks: its claims are serialised
async def test_postgresql_claims_skip_a_notice_another_deliverer_is_claiming(db: Database) -> None:
    """A notice locked by another transaction (a claim in progress elsewhere) is skipped, not waited for."""
    _, (locked_id, free_id) = await _notices(db, 2)
    async with db.engine.connect() as other:
        await other.begin()
        await other.execute(text("SELECT id FROM notice WHERE id = :id FOR UPDATE"), {"id": locked_id})
        sink = RecordingSink()
        async with asyncio.timeout(10):
            assert await Outbox(db, sink, owner="test").deliver_due() == 1
        await other.rollback()
    assert [c.id for c in sink.calls] == [free_id]
