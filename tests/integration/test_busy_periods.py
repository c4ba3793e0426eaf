"""Free slots and booking read each member's merged busy periods (`busyperiod`), the troubleshooter the blocked
slots themselves: whatever the slots (touching, nested, overlapping, equal, free, long, on a second or a
broken connection) and however a sync changes them, both must give exactly the slots a naive overlap test
over the blocking slots gives, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlmodel import col

from storage import migrate
from storage.db import Database
from storage.enums import ConnectionStatus
from storage.models import BlockedSlot, BusyPeriod, RemoteCalendar, User
from storage.secrets import SecretBox
from sync import availability, state
from sync.events import Occurrence
from tests.factories import add_connection
from tests.integration.test_availability_window import HIGH, LOW, member_and_calendar, view_of

QUARTER = timedelta(minutes=15)
MONDAY = LOW.replace(hour=7)  # 08:00 in Paris: the working day's slots and their neighbours
Spans = dict[str, list[tuple[datetime, datetime, bool]]]

SHAPES: dict[str, list[tuple[int, int, bool]]] = {  # item -> occurrences (start, end, busy), in quarters of an hour after MONDAY (08:00 UTC: 4)
    "touching-a": [(4, 6, True)], "touching-b": [(6, 8, True)],  # 08:00-08:30 and 08:30-09:00 join
    "outer": [(10, 15, True)], "nested": [(11, 12, True)],
    "chain": [(18, 20, True), (19, 21, True), (20, 22, True)], "instant": [(22, 22, True)],  # one item repeating
    "equal-a": [(24, 25, True)], "equal-b": [(24, 25, True)],
    "tentative": [(26, 28, False)],  # not busy: never blocks
    "inside": [(29, 29, True)],  # starts and ends at once, inside the 14:00 slot
    "gap-a": [(30, 31, True)], "gap-b": [(34, 35, True)],
}
MONDAY_FREE = {"09:00", "11:00", "12:30", "13:30", "15:00"}  # UTC: open 08:00-16:00, 30-minute slots


def at(quarters: int) -> datetime:
    return MONDAY + quarters * QUARTER


def occurrences(spans: list[tuple[datetime, datetime, bool]]) -> tuple[Occurrence, ...]:
    return tuple(Occurrence(f"{n}", start, end, busy) for n, (start, end, busy) in enumerate(spans))


async def write(db: Database, user_id: str, remote_id: str, items: Spans, *, replacing: bool) -> None:
    """As a sync cycle writes them (`SlotWriter`)."""
    async with db.write() as session:
        user, calendar = await session.get(User, user_id), await session.get(RemoteCalendar, remote_id)
        assert user is not None and calendar is not None
        writer = state.SlotWriter(user, calendar, LOW)
        for item, spans in items.items():
            await writer.set(session, item, occurrences(spans), replacing=replacing)
        await writer.flush(session)


async def naive_free(db: Database, calendar_id: str) -> list[datetime]:
    """The bookable starts by the definition: no busy blocked slot overlapping the slot's window."""
    async with db.session() as session:
        busy = (await session.execute(select(col(BlockedSlot.start), col(BlockedSlot.end))
                                      .where(col(BlockedSlot.busy).is_(True)))).tuples().all()
    view = await view_of(db, calendar_id)
    return [s for s in availability.open_slots(view.rules, LOW, HIGH)
            if not any(start < s + view.rules.duration and end > s for start, end in busy)]


async def assert_agree(db: Database, user_id: str, calendar_id: str) -> None:
    async with db.session() as session:
        stored = (await session.execute(select(col(BusyPeriod.start), col(BusyPeriod.end))
                                        .where(col(BusyPeriod.user_id) == user_id)
                                        .order_by(col(BusyPeriod.start)))).tuples().all()
        rows = (await session.execute(select(col(BlockedSlot.start), col(BlockedSlot.end))
                                      .where(col(BlockedSlot.user_id) == user_id, col(BlockedSlot.busy).is_(True))
                                      )).tuples().all()
    assert list(stored) == availability.merge(rows)
    expected = await naive_free(db, calendar_id)
    assert [s.start for s in await availability.free_slots_of(db, calendar_id, LOW, HIGH, LOW)] == expected
    by_rows = await view_of(db, calendar_id)  # the troubleshooter's view: every blocked slot
    assert [s for s in availability.open_slots(by_rows.rules, LOW, HIGH)
            if availability.check(by_rows, s).available] == expected


@pytest.fixture
async def member(db: Database, secret_box: SecretBox) -> tuple[str, str, str, str]:
    """A member with two connected calendars, the second on a broken connection (its slots still block)."""
    user_id, remote_id, calendar_id = await member_and_calendar(db, secret_box)
    async with db.session() as session:
        user = await session.get(User, user_id)
    assert user is not None
    _, (other,) = await add_connection(db, user, secret_box, status=ConnectionStatus.BROKEN)
    return user_id, remote_id, other.id, calendar_id


async def test_merged_periods_give_the_free_slots_of_the_slots_themselves(
    db: Database, member: tuple[str, str, str, str]
) -> None:
    user_id, remote_id, other_id, calendar_id = member
    spans = {item: [(at(a), at(b), busy) for a, b, busy in shapes] for item, shapes in SHAPES.items()}
    await write(db, user_id, remote_id, spans, replacing=False)
    await write(db, user_id, other_id, {"holiday": [(LOW - timedelta(days=3), at(5), True)],  # long, merged
                                        "late": [(at(28 + 96 * 2), at(36 + 96 * 2), True)]}, replacing=False)
    await assert_agree(db, user_id, calendar_id)
    async with db.session() as session:
        stored = (await session.execute(select(col(BusyPeriod.start), col(BusyPeriod.end))
                                        .order_by(col(BusyPeriod.start)))).tuples().all()
    assert stored == [(LOW - timedelta(days=3), at(8)), *((at(a), at(b)) for a, b in (
        (10, 15), (18, 22), (24, 25), (29, 29), (30, 31), (34, 35), (28 + 96 * 2, 36 + 96 * 2)))]
    free = await naive_free(db, calendar_id)
    assert {f"{s:%H:%M}" for s in free if s.date() == MONDAY.date()} == MONDAY_FREE
    assert not {f"{s:%H:%M}" for s in free if s.date() == at(96 * 2).date()} & {"14:00", "14:30", "15:00", "15:30"}

async def test_periods_follow_every_change_a_sync_makes(db: Database, member: tuple[str, str, str, str]) -> None:
    """Items moved, shortened, freed, split and deleted, at random on a grid of quarters (touching and
    overlapping everywhere), then a disconnect of one calendar."""
    user_id, remote_id, other_id, calendar_id = member
    rng = random.Random(14)

    def spans() -> list[tuple[datetime, datetime, bool]]:
        starts = [rng.randrange(0, 44) for _ in range(rng.choice((0, 1, 1, 2)))]
        return [(at(s), at(s + rng.randrange(0, 9)), rng.random() < 0.85) for s in starts]

    for calendar in (remote_id, other_id):
        await write(db, user_id, calendar, {f"ev{n}": spans() for n in range(12)}, replacing=False)
    await assert_agree(db, user_id, calendar_id)
    for _ in range(6):
        changed = {f"ev{n}": spans() for n in rng.sample(range(12), 4)}
        await write(db, user_id, rng.choice((remote_id, other_id)), changed, replacing=True)
        await assert_agree(db, user_id, calendar_id)
    async with db.write() as session:
        await state.remove_connection_mirrors(session, [other_id])
    await assert_agree(db, user_id, calendar_id)


async def test_upgrade_to_0008_merges_the_slots_already_stored(database_url: str, secret_box: SecretBox) -> None:
    db = Database(database_url)
    try:
        await migrate.upgrade(db.engine, "0007")
        async with db.engine.begin() as conn:  # the workspace columns of 0007 (the model has more now)
            await conn.execute(text("INSERT INTO workspace (id, name, created_at) VALUES ('w', 'Acme', :at)"),
                               {"at": LOW})
        user_id, remote_id, calendar_id = await member_and_calendar(db, secret_box, workspace="w", as_of=True)
        async with db.write() as session:  # the rows of SHAPES, as stored before the table existed
            session.add_all(BlockedSlot(user_id=user_id, remote_calendar_id=remote_id, remote_id=item,
                                        start=at(a), end=at(b), busy=busy, fetched_at=LOW)
                            for item, shapes in SHAPES.items() for a, b, busy in shapes)
        await migrate.upgrade(db.engine)
        await assert_agree(db, user_id, calendar_id)
        async with db.session() as session:
            assert await session.scalar(select(col(BusyPeriod.start)).order_by(col(BusyPeriod.start))) == at(4)
    finally:
        await db.dispose()
