"""One occurrence of an Outlook series deleted: calendarView delta names only that occurrence's id, which no
stored item carries (a series is stored as one item under its master's id). The sync that sees it lists the
calendar again in full and the occurrence's slot or imported appointment goes; the rest of the series stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.db import Database
from storage.enums import AppointmentStatus, SyncMode
from storage.models import Appointment, AppointmentAssignee, BlockedSlot, SyncSettings
from storage.secrets import SecretBox
from tests.providers.fixtures import SeedEvent, Weekly
from tests.providers.support import seed_graph
from tests.providers.test_microsoft import JOHN, PARIS, Synced, World, connect
from tests.providers.test_microsoft import world as world  # noqa: F401  (the fixture, re-exported)

WEEKLY = SeedEvent("standup", datetime(2026, 3, 2, 9, tzinfo=PARIS), datetime(2026, 3, 2, 9, 30, tzinfo=PARIS),
                   "Stand-up", weekly=Weekly(4))
MONDAYS = [datetime(2026, 3, day, 8, tzinfo=UTC) for day in (2, 9, 16, 23)]  # 9:00 in Paris, before summer time


async def test_a_deleted_occurrence_frees_its_slot_in_the_same_sync(
    world: World, db: Database, secret_box: SecretBox  # noqa: F811
) -> None:
    series = seed_graph(world.graph, world.calendar, JOHN, WEEKLY)
    synced = await connect(world, db, secret_box)
    (calendar,) = synced.calendars
    assert (await synced.engine.sync_calendar(calendar.id)).error is None
    assert await slot_starts(synced) == MONDAYS

    world.graph.delete_event(world.calendar, f"{series}_20260309T080000")
    report = await synced.engine.sync_calendar(calendar.id)
    assert report.error is None and report.tally.blocked_slots == 3
    assert await slot_starts(synced) == [MONDAYS[0], *MONDAYS[2:]]  # the others stay, none twice

    before = world.graph.count()
    assert (await synced.engine.sync_calendar(calendar.id)).error is None
    assert world.graph.count() - before == 1 and "$deltatoken" in world.graph.requests[-1].params  # settled
    assert await slot_starts(synced) == [MONDAYS[0], *MONDAYS[2:]]


async def test_a_deleted_occurrence_cancels_its_imported_appointment_two_way(
    world: World, db: Database, secret_box: SecretBox  # noqa: F811
) -> None:
    series, synced = await linked_series(world, db, secret_box, SyncMode.TWO_WAY)
    (calendar,) = synced.calendars
    assert await appointments(synced) == [(start, AppointmentStatus.BOOKED) for start in MONDAYS]

    world.graph.delete_event(world.calendar, f"{series}_20260316T080000")
    report = await synced.engine.sync_calendar(calendar.id)
    assert report.error is None and report.tally.appointments_cancelled == 1
    assert await appointments(synced) == [(start, AppointmentStatus.CANCELLED if start == MONDAYS[2]
                                           else AppointmentStatus.BOOKED) for start in MONDAYS]
    assert await synced.rows(BlockedSlot) == []


async def linked_series(world: World, db: Database, secret_box: SecretBox, mode: SyncMode) -> tuple[str, Synced]:
    """The weekly series in John's calendar, connected, that calendar linked in `mode`, and synced once."""
    series = seed_graph(world.graph, world.calendar, JOHN, WEEKLY)
    synced = await connect(world, db, secret_box)
    (calendar,) = synced.calendars
    connection, _ = await synced.stored()
    async with db.write() as session:
        settings = await session.get(SyncSettings, connection.user_id)
        assert settings is not None
        settings.linked_calendar_id, settings.mode = calendar.id, mode
    assert (await synced.engine.sync_calendar(calendar.id)).error is None
    return series, synced


async def slot_starts(synced: Synced) -> list[datetime]:
    return sorted(slot.start for slot in await synced.rows(BlockedSlot))


async def appointments(synced: Synced) -> list[tuple[datetime, str]]:
    return sorted((a.start, a.status) for a in await synced.rows(Appointment))



async def test_a_deleted_occurrence_and_a_push_in_one_sync_leave_the_next_sync_idle(
    world: World, db: Database, secret_box: SecretBox  # noqa: F811
) -> None:
    """The pull after our writes lists from where the full listing left off, not from before the deletion."""
    series, synced = await linked_series(world, db, secret_box, SyncMode.ONE_WAY)
    (calendar,) = synced.calendars
    connection, _ = await synced.stored()

    world.graph.delete_event(world.calendar, f"{series}_20260309T080000")
    async with db.write() as session:
        appointment = Appointment(start=MONDAYS[1], end=MONDAYS[1] + timedelta(hours=1), title="Consultation")
        session.add(appointment)
        await session.flush()
        session.add(AppointmentAssignee(appointment_id=appointment.id, user_id=connection.user_id))
    report = await synced.engine.sync_calendar(calendar.id)
    assert report.error is None and report.tally.pushed == 1
    assert await slot_starts(synced) == [MONDAYS[0], *MONDAYS[2:]]

    before = world.graph.count()
    assert (await synced.engine.sync_calendar(calendar.id)).error is None
    assert world.graph.count() - before == 1 and "$deltatoken" in world.graph.requests[-1].params
