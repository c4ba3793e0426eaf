"""Calendar lists stay current: a calendar shared later appears within the hour or when the settings open, a
renamed one is renamed, one the account lost goes unless the user chose it (sync/calendar_lists.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.enums import Access, ConnectionStatus
from storage.models import BlockedSlot, ConflictCalendar, Connection, Notice, RemoteCalendar
from storage.secrets import SecretBox
from sync.calendar_lists import CalendarLists, ListChanges
from sync.engine import SyncEngine
from sync.providers.base import CalendarProvider, Credentials, GrantRevoked, Unreachable
from sync.providers.memory import MemoryProvider
from tests.factories import add_connection, add_user, select_calendars
from tests.ics import vevent

NOW = datetime(2031, 3, 3, 8, tzinfo=UTC)


class World:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db, self.box, self.account = db, box, MemoryProvider()
        self.lists = CalendarLists(db, box, self.open)

    def open(self, provider: str, login: Credentials, server_url: str | None) -> CalendarProvider:
        return self.account.opened_with(login)

    async def connect(self) -> tuple[str, list[RemoteCalendar]]:
        """John with two calendars, the first linked; listed at NOW (as connecting does)."""
        self.user = await add_user(self.db)
        connection, rows = await add_connection(self.db, self.user, self.box, calendars=2)
        for row in rows:
            self.account.add_calendar(row.remote_id, row.name)
        await select_calendars(self.db, self.user, linked=rows[0], conflicts=[rows[0]])
        async with self.db.write() as session:
            stored = await session.get(Connection, connection.id)
            assert stored is not None
            stored.calendars_listed_at = NOW
        return connection.id, rows

    async def calendars(self) -> dict[str, tuple[str, str]]:
        async with self.db.session() as session:
            return {c.remote_id: (c.name, c.access) for c in await session.scalars(select(RemoteCalendar))}


@pytest.fixture
def world(db: Database, secret_box: SecretBox) -> World:
    return World(db, secret_box)


async def test_a_calendar_shared_later_appears_within_the_hour_due_at_once(world: World) -> None:
    await world.connect()
    world.account.add_calendar("/shared/", "Team", Access.READ)

    assert await world.lists.refresh_due(NOW + timedelta(minutes=59)) == ListChanges()
    assert "/shared/" not in await world.calendars() and world.account.calls == []  # not asked within the hour

    assert await world.lists.refresh_due(NOW + timedelta(hours=1)) == ListChanges(added=1)
    assert (await world.calendars())["/shared/"] == ("Team", Access.READ)
    async with world.db.session() as session:
        (shared,) = await session.scalars(select(RemoteCalendar).where(RemoteCalendar.remote_id == "/shared/"))
    assert shared.due_at == NOW + timedelta(hours=1)
    assert await world.lists.refresh_due(NOW + timedelta(hours=1, minutes=30)) == ListChanges()  # listed just now


async def test_a_renamed_calendar_and_a_new_access_level_are_taken(world: World) -> None:
    await world.connect()
    world.account.calendars["/cal1/"].name = "Family"
    world.account.calendars["/cal1/"].access = Access.READ
    assert await world.lists.refresh_user(world.user.id, NOW + timedelta(minutes=2)) == ListChanges(updated=1)
    assert (await world.calendars())["/cal1/"] == ("Family", Access.READ)


async def test_a_lost_calendar_goes_with_its_slots_unless_the_user_chose_it(world: World, db: Database) -> None:
    _, (linked, other) = await world.connect()
    world.account.put(other.remote_id, "busy.ics", vevent("busy", "DTSTART:20310304T100000Z",
                                                           "DTEND:20310304T110000Z"))
    async with db.write() as session:  # a conflict calendar for one sync, then no longer: its slot stays for now
        session.add(ConflictCalendar(user_id=world.user.id, calendar_id=other.id))
    await SyncEngine(db, world.box, world.open, clock=lambda: NOW).sync_calendar(other.id)
    async with db.write() as session:
        await session.delete(await session.get(ConflictCalendar, (world.user.id, other.id)))
    async with db.session() as session:
        assert len(list(await session.scalars(select(BlockedSlot)))) == 1

    world.account.remove_calendar(linked.remote_id)
    world.account.remove_calendar(other.remote_id)
    assert await world.lists.refresh_due(NOW + timedelta(hours=2)) == ListChanges(removed=1)
    assert list(await world.calendars()) == [linked.remote_id]  # the linked one stays: its sync says it is gone
    async with db.session() as session:
        assert list(await session.scalars(select(BlockedSlot))) == []


async def test_opening_the_settings_twice_within_a_minute_lists_once(world: World) -> None:
    await world.connect()
    later = NOW + timedelta(minutes=5)
    await asyncio.gather(world.lists.refresh_user(world.user.id, later), world.lists.refresh_user(world.user.id, later))
    await world.lists.refresh_user(world.user.id, later + timedelta(seconds=30))
    assert world.account.calls == ["list_calendars"]


async def test_a_provider_failure_keeps_the_list_and_the_connection(world: World) -> None:
    connection_id, _ = await world.connect()
    world.account.add_calendar("/shared/", "Team")
    world.account.fail_next(Unreachable("down"))
    assert await world.lists.refresh_due(NOW + timedelta(hours=1)) == ListChanges()
    assert "/shared/" not in await world.calendars()
    async with world.db.session() as session:
        connection = await session.get(Connection, connection_id)
    assert connection is not None and connection.status == ConnectionStatus.OK
    assert await world.lists.refresh_due(NOW + timedelta(hours=2)) == ListChanges(added=1)  # the next hour


async def test_a_revoked_grant_found_while_listing_breaks_the_connection_and_tells_once(world: World) -> None:
    connection_id, _ = await world.connect()
    world.account.fail_next(GrantRevoked())
    assert await world.lists.refresh_due(NOW + timedelta(hours=1)) == ListChanges()
    async with world.db.session() as session:
        connection = await session.get(Connection, connection_id)
        notices = list(await session.scalars(select(Notice)))
    assert connection is not None and connection.status == ConnectionStatus.BROKEN
    assert [n.kind for n in notices] == ["connection_broken"]
    assert await world.lists.refresh_due(NOW + timedelta(hours=3)) == ListChanges()  # broken: not listed again
    assert world.account.calls == ["list_calendars"]
