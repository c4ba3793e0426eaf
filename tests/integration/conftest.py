"""A user with a real Radicale calendar connected and selected, ready for the engine."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.enums import Action, Provider, SyncMode, Trigger
from storage.models import Appointment, AppointmentAssignee, Automation
from storage.secrets import SecretBox
from sync import accounts
from sync.engine import SyncEngine
from sync.providers.base import AppPassword, ProviderConfig
from sync.providers.registry import open_provider
from tests.caldav_servers import CalDAVAccount

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2021, 3, 1, 8, tzinfo=UTC)
"""The engine's injected clock: years before any real today, so what follows the wall clock shows."""
DAY = NOW.astimezone(PARIS).date() + timedelta(days=2)
D = DAY.strftime("%Y%m%d")


def paris(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS).astimezone(UTC)


@dataclass
class Clock:
    """An injected clock that moves only when a test moves it."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    db: Database
    engine: SyncEngine
    account: CalDAVAccount
    calendar_url: str
    user_id: str
    workspace_id: str
    calendar_id: str
    clock: Clock

    async def sync(self) -> dict[str, object]:
        (report,) = await self.engine.sync_user(self.user_id)
        return report.as_json()

    async def rows(self, model: type, *where: object) -> list:  # type: ignore[type-arg]
        async with self.db.session() as session:
            return list(await session.scalars(select(model).where(*where)))  # type: ignore[arg-type]

    async def count(self, model: type) -> int:
        async with self.db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    def put(self, name: str, ics: str) -> None:
        self.account.put(self.calendar_url, name, ics)


async def make_world(
    db: Database, box: SecretBox, account: CalDAVAccount, mode: SyncMode, email: str = "john@example.com"
) -> World:
    factory = functools.partial(open_provider, config=ProviderConfig(timeout_seconds=5))
    workspace = await accounts.default_workspace(db)
    user = await accounts.create_user(db, workspace, "John", email, "Europe/Paris", None)
    url = account.new_calendar()
    _, calendars = await accounts.connect(db, box, factory, user.id, Provider.CALDAV,
                                          AppPassword(account.username, account.password), account.url, now=NOW)
    (calendar,) = [c for c in calendars if c.remote_id == url]
    await accounts.put_settings(db, user.id, calendar.id, None, mode, None, None, now=NOW)
    clock = Clock()
    engine = SyncEngine(db, box, factory, clock=clock)
    return World(db, engine, account, url, user.id, workspace, calendar.id, clock)


@pytest.fixture
async def one_way(db: Database, secret_box: SecretBox, caldav_server: CalDAVAccount) -> World:
    """On Radicale and on Xandikos: the rules suite is written once and run against each server."""
    return await make_world(db, secret_box, caldav_server, SyncMode.ONE_WAY)


@pytest.fixture
async def two_way(db: Database, secret_box: SecretBox, caldav_server: CalDAVAccount) -> World:
    world = await make_world(db, secret_box, caldav_server, SyncMode.TWO_WAY)
    async with db.write() as session:
        session.add(Automation(workspace_id=world.workspace_id, trigger=Trigger.CREATED, action=Action.SLACK_DM))
    return world


class Booker(Protocol):
    db: Database
    user_id: str


async def book(world: Booker, start: datetime) -> str:
    """An appointment of one hour from `start`, assigned to the world's user (who then has it pushed)."""
    async with world.db.write() as session:
        appointment = Appointment(start=start, end=start + timedelta(hours=1), title="Consultation", created_at=NOW,
                                  updated_at=NOW)
        session.add(appointment)
        await session.flush()
        session.add(AppointmentAssignee(appointment_id=appointment.id, user_id=world.user_id))
    return appointment.id


