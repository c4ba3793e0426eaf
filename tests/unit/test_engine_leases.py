"""The engine's side of leases: a failing calendar never stays leased, a running sync keeps its lease, a crashed
process's leases run out within one lease length, and a manual sync never reports an empty success."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.db import Database
from storage.models import RemoteCalendar
from storage.secrets import SecretBox
from sync import leases
from sync.engine import SyncEngine
from sync.leases import LeasePolicy
from sync.providers.base import ChangeSet
from sync.providers.memory import MemoryProvider
from tests.factories import add_connection, add_user, select_calendars
from tests.ics import michel

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
INTERVAL = timedelta(minutes=5)


class Calendars(MemoryProvider):
    """John's account: each calendar holds Dr. Michel's appointment; `failing` ones raise what no one foresaw,
    `stalled` ones wait in `changes` until `go` is set (a slow server)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.failing: dict[str, Exception] = {}
        self.stalled: set[str] = set()
        self.entered, self.go = asyncio.Event(), asyncio.Event()
        for n in range(count):
            self.add_calendar(f"/cal{n}/")
            self.put(f"/cal{n}/", "michel.ics", michel("20260304"))

    async def changes(self, calendar_id: str, *args: Any, **kwargs: Any) -> ChangeSet:
        if calendar_id in self.failing:
            raise self.failing[calendar_id]
        if calendar_id in self.stalled:
            self.entered.set()
            await self.go.wait()
        return await super().changes(calendar_id, *args, **kwargs)


class Clock:
    """The engine's injected clock; `step` moves it on at every reading (time passing while a test waits)."""

    def __init__(self, step: timedelta = timedelta(0)) -> None:
        self.now, self.step = NOW, step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


async def john(db: Database, box: SecretBox, count: int) -> tuple[str, list[str]]:
    """John, with `count` calendars chosen as conflict calendars; his id and theirs."""
    user = await add_user(db)
    _, calendars = await add_connection(db, user, box, calendars=count)
    await select_calendars(db, user, linked=None, conflicts=calendars)
    return user.id, [c.id for c in calendars]


def engine(db: Database, box: SecretBox, provider: MemoryProvider, clock: Callable[[], datetime],
           lease: LeasePolicy = leases.DEFAULT_POLICY) -> SyncEngine:
    return SyncEngine(db, box, lambda *_: provider, owner="this-process", interval=INTERVAL, clock=clock, lease=lease)


async def row(db: Database, calendar_id: str) -> RemoteCalendar:
    async with db.session() as session:
        found = await session.get(RemoteCalendar, calendar_id)
    assert found is not None
    return found


async def eventually(check: Callable[[], Any], seconds: float = 10) -> None:
    """Poll an outcome of a background task, bounded."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("error", [RuntimeError("server said: <secret agenda>"), KeyError("secret agenda")])
async def test_a_calendar_whose_sync_raises_is_recorded_released_and_the_tick_goes_on(
    db: Database, secret_box: SecretBox, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    _, ids = await john(db, secret_box, 3)
    provider, clock = Calendars(3), Clock()
    broken = (await row(db, ids[1])).remote_id
    provider.failing[broken] = error
    with caplog.at_level(logging.ERROR, logger="sync.engine"):
        reports = await engine(db, secret_box, provider, clock).run_due()

    by_id = {r.calendar_id: r for r in reports}
    assert set(by_id) == set(ids)  # the tick went on past the failing calendar
    assert [by_id[i].tally.blocked_slots for i in (ids[0], ids[2])] == [1, 1]
    assert by_id[ids[1]].error == f"internal error ({type(error).__name__})"
    failed = await row(db, ids[1])
    assert failed.last_error == by_id[ids[1]].error and "secret" not in failed.last_error
    assert (failed.lease_owner, failed.lease_expires_at, failed.due_at) == (None, None, NOW + INTERVAL)
    (logged,) = [r for r in caplog.records if r.message == "calendar sync failed unexpectedly"]
    assert logged.exc_info is not None and logged.__dict__["calendar_id"] == ids[1]
    assert logged.__dict__["user_id"] and logged.__dict__["provider"] == "caldav"

    del provider.failing[broken]
    clock.now = NOW + INTERVAL  # due again, like the others, and syncs once the cause is gone
    again = await engine(db, secret_box, provider, clock).run_due()
    assert {r.calendar_id for r in again} == set(ids) and not any(r.error for r in again)
    assert (await row(db, ids[1])).last_error is None


async def test_a_running_sync_keeps_its_lease_past_the_lease_length(db: Database, secret_box: SecretBox) -> None:
    _, (calendar_id,) = await john(db, secret_box, 1)
    provider, clock = Calendars(1), Clock()
    provider.stalled.add("/cal0/")
    policy = LeasePolicy(timedelta(seconds=30), heartbeat=timedelta(seconds=0.02))
    tick = asyncio.create_task(engine(db, secret_box, provider, clock, policy).run_due())
    await asyncio.wait_for(provider.entered.wait(), 10)

    clock.now = NOW + timedelta(minutes=10)  # twenty lease lengths into a slow sync
    await eventually(lambda: leases.leased(db, clock.now))  # renewed by the heartbeat, from the current time
    assert await leases.claim_due(db, "other-process", clock.now) == []

    provider.go.set()
    (report,) = await asyncio.wait_for(tick, 10)
    assert report.error is None and report.tally.blocked_slots == 1
    assert (await row(db, calendar_id)).lease_owner is None


async def test_a_manual_sync_waits_for_a_dead_process_lease_to_run_out(db: Database, secret_box: SecretBox) -> None:
    user_id, (calendar_id,) = await john(db, secret_box, 1)
    assert await leases.claim_due(db, "killed-process", NOW, lease=timedelta(seconds=30)) == [calendar_id]
    policy = LeasePolicy(timedelta(seconds=30), poll=timedelta(seconds=0.01))
    clock = Clock(step=timedelta(seconds=2))  # the dead lease runs out a few polls into the wait

    (report,) = await engine(db, secret_box, Calendars(1), clock, policy).sync_user(user_id)
    assert report.as_json()["error"] is None and report.tally.blocked_slots == 1


async def test_a_manual_sync_says_when_a_live_sync_holds_a_calendar(db: Database, secret_box: SecretBox) -> None:
    user_id, (held, free) = await john(db, secret_box, 2)
    assert await leases.claim_due(db, "busy-process", NOW, lease=timedelta(hours=1), only=[held]) == [held]
    policy = LeasePolicy(timedelta(seconds=0.05), poll=timedelta(seconds=0.01))

    reports = await engine(db, secret_box, Calendars(2), Clock(), policy).sync_user(user_id)
    assert [(r.calendar_id, r.as_json()["error"]) for r in reports] == [(free, None), (held, "sync_in_progress")]
    assert reports[0].tally.blocked_slots == 1
    assert (await row(db, held)).lease_owner == "busy-process"  # left to its holder



async def test_a_manual_sync_syncs_a_calendar_whose_holder_let_go_just_after_the_claim(
    db: Database, secret_box: SecretBox
) -> None:
    """The scheduler's tick held it when the user asked, and released it before a look at the leases: the
    calendar is synced all the same, never left out of the answer (seen: an empty `calendars` list)."""
    user_id, (calendar_id,) = await john(db, secret_box, 1)
    assert await leases.claim_due(db, "the-tick", NOW, lease=timedelta(seconds=30)) == [calendar_id]
    syncing = engine(db, secret_box, Calendars(1), Clock(), LeasePolicy(timedelta(seconds=30),
                                                                        poll=timedelta(seconds=0.01)))
    claim_now = syncing.claim_now

    async def tick_finishes_right_after(*args: Any, **kwargs: Any) -> list[str]:
        claimed = await claim_now(*args, **kwargs)
        await leases.release(db, calendar_id, "the-tick", next_due=NOW + INTERVAL)
        return claimed

    syncing.claim_now = tick_finishes_right_after  # type: ignore[method-assign]
    (report,) = await syncing.sync_user(user_id)
    assert (report.calendar_id, report.error, report.tally.blocked_slots) == (calendar_id, None, 1)
