"""The actions behind notice buttons against a real CalDAV server; confirming a held mass deletion is in
test_engine_safety.py, with the hold."""

from __future__ import annotations

import asyncio

import pytest

from storage.db import Database
from storage.enums import SyncMode
from storage.models import AppointmentAssignee, EventLink, Notice
from storage.secrets import SecretBox
from sync.actions import Actions
from sync.errors import Conflict
from sync.providers.base import ProviderConfig
from sync.providers.caldav.provider import CalDAVProvider
from tests.caldav_servers import CalDAVAccount
from tests.factories import ANY_TIME
from tests.integration.conftest import DAY, World, book, make_world, paris


def caldav(world: World) -> CalDAVProvider:
    return CalDAVProvider(world.account.url, world.account.username, world.account.password, ProviderConfig())


async def our_copies(world: World) -> list[str]:
    """The data of every event in the calendar."""
    return [item.data for item in (await caldav(world).changes(world.calendar_url, None, ANY_TIME)).changed]


@pytest.fixture
async def one_way(db: Database, secret_box: SecretBox, radicale: CalDAVAccount) -> World:
    return await make_world(db, secret_box, radicale, SyncMode.ONE_WAY)


async def deleted_remotely(world: World, *, cancel_in_place: bool) -> str:
    """R7 one-way: our copy of a booked appointment is deleted (or set to CANCELLED) in John's calendar app."""
    appointment_id = await book(world, paris(DAY, 10))
    await world.sync()
    (data,) = await our_copies(world)
    if cancel_in_place:
        world.put(f"{appointment_id}.ics", data.replace("END:VEVENT", "STATUS:CANCELLED\r\nEND:VEVENT"))
    else:
        world.account.delete(f"{world.calendar_url}{appointment_id}.ics")
    await world.sync()
    (assignee,) = await world.rows(AppointmentAssignee)
    assert assignee.push_suppressed
    return appointment_id


@pytest.mark.parametrize("cancel_in_place", [False, True])
async def test_restore_writes_our_copy_back_and_it_stays(one_way: World, cancel_in_place: bool) -> None:
    appointment_id = await deleted_remotely(one_way, cancel_in_place=cancel_in_place)
    actions = Actions(one_way.db, one_way.engine)
    await actions.restore(appointment_id)
    (data,) = await our_copies(one_way)
    assert f"DTSTART:{paris(DAY, 10):%Y%m%dT%H%M%SZ}" in data and "STATUS:CANCELLED" not in data
    (link,) = await one_way.rows(EventLink)
    assert link.appointment_id == appointment_id
    assert (await one_way.sync())["pushed"] == 0  # the pull after it sees our copy: R7 is not applied again
    assert not (await one_way.rows(AppointmentAssignee))[0].push_suppressed
    assert len(await one_way.rows(Notice, Notice.kind == "pushed_event_deleted")) == 1
    with pytest.raises(Conflict) as second:
        await actions.restore(appointment_id)
    assert second.value.code == "nothing_to_restore"


async def test_two_restores_at_once_write_one_copy(one_way: World) -> None:
    appointment_id = await deleted_remotely(one_way, cancel_in_place=False)
    actions = Actions(one_way.db, one_way.engine)
    outcomes = await asyncio.gather(actions.restore(appointment_id), actions.restore(appointment_id),
                                    return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "NoneType"]
    assert len(await our_copies(one_way)) == 1

