"""Calendars are claimed by one process at a time; expired leases come back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from storage.db import Database
from storage.enums import ConnectionStatus
from storage.models import RemoteCalendar
from storage.secrets import SecretBox
from sync import leases
from tests.factories import add_connection, add_user, select_calendars

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


async def test_concurrent_claimers_split_the_due_calendars(db: Database, secret_box: SecretBox) -> None:
    user = await add_user(db)
    _, calendars = await add_connection(db, user, secret_box, calendars=6)
    await select_calendars(db, user, linked=calendars[0], conflicts=calendars)

    first, second = await asyncio.gather(
        leases.claim_due(db, "proc-a", NOW, limit=4), leases.claim_due(db, "proc-b", NOW, limit=4)
    )
    assert not set(first) & set(second)
    assert set(first) | set(second) == {c.id for c in calendars}
    assert await leases.claim_due(db, "proc-c", NOW) == []


async def test_expired_lease_is_claimable_and_release_sets_the_next_due_time(db: Database, secret_box: SecretBox) -> None:
    user = await add_user(db)
    _, (calendar,) = await add_connection(db, user, secret_box)
    await select_calendars(db, user, linked=calendar, conflicts=[calendar])

    assert await leases.claim_due(db, "dead", NOW, lease=timedelta(minutes=5)) == [calendar.id]
    later = NOW + timedelta(minutes=6)
    assert await leases.claim_due(db, "alive", later) == [calendar.id]

    await leases.release(db, calendar.id, "dead", next_due=later)  # a stale owner cannot release
    assert await leases.claim_due(db, "third", later) == []
    await leases.release(db, calendar.id, "alive", next_due=later + timedelta(minutes=5))
    assert await leases.claim_due(db, "third", later + timedelta(minutes=1)) == []
    assert await leases.claim_due(db, "third", later + timedelta(minutes=5)) == [calendar.id]


async def test_unselected_calendars_and_broken_connections_are_not_claimed(db: Database, secret_box: SecretBox) -> None:
    user = await add_user(db)
    _, (chosen, unchosen) = await add_connection(db, user, secret_box, calendars=2)
    _, (broken,) = await add_connection(db, user, secret_box, status=ConnectionStatus.BROKEN)
    await select_calendars(db, user, linked=None, conflicts=[chosen, broken])
    assert await leases.claim_due(db, "p", NOW) == [chosen.id]


async def test_an_unrenewed_lease_lapses_after_its_length_and_a_renewed_one_does_not(
    db: Database, secret_box: SecretBox
) -> None:
    user = await add_user(db)
    _, calendars = await add_connection(db, user, secret_box, calendars=2)
    await select_calendars(db, user, linked=None, conflicts=calendars)
    renewed, abandoned = (c.id for c in calendars)
    lease = timedelta(seconds=30)
    assert set(await leases.claim_due(db, "holder", NOW, lease=lease)) == {renewed, abandoned}

    assert await leases.renew(db, [renewed], "holder", expires_at=NOW + timedelta(seconds=20) + lease) == 1
    assert await leases.leased(db, NOW + lease) == [renewed]
    assert await leases.claim_due(db, "other", NOW + lease) == [abandoned]  # lapsed: the holder died
    assert await leases.renew(db, [abandoned], "holder", expires_at=NOW + 2 * lease) == 0  # lost, not taken back
    assert await leases.claim_due(db, "third", NOW + timedelta(seconds=49)) == []
    assert await leases.claim_due(db, "third", NOW + timedelta(seconds=50)) == [renewed]


async def test_a_due_time_set_while_a_calendar_is_held_survives_its_release(db: Database, secret_box: SecretBox) -> None:
    """A booking or a push notification while the calendar syncs: that sync may have read it too early."""
    user = await add_user(db)
    _, (calendar,) = await add_connection(db, user, secret_box)
    await select_calendars(db, user, linked=calendar, conflicts=[calendar])

    assert await leases.claim_due(db, "holder", NOW) == [calendar.id]
    await leases.release(db, calendar.id, "holder", next_due=NOW + timedelta(minutes=5))
    assert await leases.claim_due(db, "holder", NOW + timedelta(minutes=4)) == []

    assert await leases.claim_due(db, "holder", NOW + timedelta(minutes=5)) == [calendar.id]
    async with db.write() as session:
        await session.execute(update(RemoteCalendar).values(due_at=NOW + timedelta(minutes=6)))
    await leases.release(db, calendar.id, "holder", next_due=NOW + timedelta(minutes=10))
    assert await leases.claim_due(db, "holder", NOW + timedelta(minutes=6)) == [calendar.id]
