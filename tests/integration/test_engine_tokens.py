"""OAuth tokens through a sync cycle, with the in-memory provider refreshing them like Graph: replaced tokens
are stored encrypted with the cycle's pull, and a refused refresh breaks the connection once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import SQLModel

from storage.db import Database
from storage.enums import ConnectionStatus, Provider
from storage.models import BlockedSlot, Connection, Notice, RemoteCalendar
from storage.secrets import SecretBox
from sync import accounts, credentials, state
from sync.engine import SyncEngine
from sync.providers.base import CalendarProvider, Credentials, ExchangedAccount, OAuthTokens
from sync.providers.memory import MemoryProvider
from tests.factories import add_connection, add_user, select_calendars, tables_holding
from tests.ics import vevent

NOW = datetime(2031, 3, 3, 8, tzinfo=UTC)
OLD = OAuthTokens("access-old-1a2b", "refresh-old-3c4d", NOW - timedelta(minutes=1), ("Calendars.ReadWrite",))
NEW = OAuthTokens("access-new-5e6f", "refresh-new-7a8b", NOW + timedelta(hours=1), ("Calendars.ReadWrite",))


class World:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db, self.box, self.account = db, box, MemoryProvider()
        self.engine = SyncEngine(db, box, self.open, clock=lambda: NOW)

    def open(self, provider: str, login: Credentials, server_url: str | None) -> CalendarProvider:
        return self.account.opened_with(login)

    async def connect(self, calendars: int = 1) -> tuple[Connection, list[RemoteCalendar]]:
        user = await add_user(self.db)
        connection, rows = await add_connection(self.db, user, self.box, calendars=calendars, provider="microsoft",
                                                login=OLD)
        for row in rows:
            self.account.add_calendar(row.remote_id)
            self.account.put(row.remote_id, "busy.ics", vevent("busy", "DTSTART:20310304T100000Z",
                                                               "DTEND:20310304T110000Z"))
        await select_calendars(self.db, user, linked=None, conflicts=rows)
        return connection, rows

    async def stored(self) -> tuple[Credentials, bytes, str]:
        async with self.db.session() as session:
            (connection,) = await session.scalars(select(Connection))
        return credentials.unseal(self.box, connection.credentials), connection.credentials, connection.status

    async def rows(self, model: type[SQLModel]) -> list[SQLModel]:
        async with self.db.session() as session:
            return list(await session.scalars(select(model)))


@pytest.fixture
def world(db: Database, secret_box: SecretBox) -> World:
    return World(db, secret_box)


async def test_an_oauth_exchange_connects_the_account_by_its_email_with_its_tokens(world: World) -> None:
    world.account.add_calendar("primary", "john@gmail.example")
    user = await add_user(world.db)
    connection, calendars = await accounts.connect(world.db, world.box, world.open, user.id, Provider.GOOGLE,
                                                   ExchangedAccount("john@gmail.example", OLD), None, now=NOW)
    assert (connection.provider, connection.account) == ("google", "john@gmail.example")
    assert [c.remote_id for c in calendars] == ["primary"]
    assert world.account.credentials == OLD  # the calendars were listed with the tokens
    stored, _, status = await world.stored()
    assert stored == OLD and status == ConnectionStatus.OK


async def test_rotated_tokens_are_stored_encrypted_with_the_cycle_and_used_next(world: World) -> None:
    _, (calendar,) = await world.connect()
    world.account.rotate_tokens(NEW)
    report = await world.engine.sync_calendar(calendar.id)
    assert report.error is None and report.tally.blocked_slots == 1
    stored, raw, _ = await world.stored()
    assert stored == NEW
    assert await tables_holding(world.db, NEW.refresh_token, NEW.access_token) == []  # sealed, nowhere in clear
    await world.engine.sync_calendar(calendar.id)
    assert world.account.credentials == NEW  # the next cycle opens the account with the new tokens


async def test_a_cycle_whose_transaction_fails_keeps_the_tokens_it_had(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, (calendar,) = await world.connect()
    world.account.rotate_tokens(NEW)

    class Crash(Exception):
        pass

    async def crash(*_: object) -> int:
        raise Crash()

    monkeypatch.setattr(state, "count_slots", crash)  # inside the pull's transaction, after the plan was applied
    assert (await world.engine.sync_calendar(calendar.id)).error  # recorded on the calendar, the tick goes on
    monkeypatch.undo()
    stored, _, status = await world.stored()
    assert stored == OLD and status == ConnectionStatus.OK
    assert await world.rows(BlockedSlot) == []  # the whole pull rolled back, the tokens with it

    report = await world.engine.sync_calendar(calendar.id)  # Graph leaves a replaced refresh token valid
    assert report.error is None and len(await world.rows(BlockedSlot)) == 1


async def test_a_refused_refresh_breaks_the_connection_once_and_keeps_its_slots(world: World) -> None:
    _, calendars = await world.connect(calendars=2)
    for calendar in calendars:
        await world.engine.sync_calendar(calendar.id)
    assert len(await world.rows(BlockedSlot)) == 2

    world.account.revoke_grant()
    reports = [await world.engine.sync_calendar(c.id) for c in calendars + calendars]
    assert "invalid_grant" in str(reports[0].error)
    stored, _, status = await world.stored()
    assert status == ConnectionStatus.BROKEN and stored == OLD
    assert len(await world.rows(BlockedSlot)) == 2  # availability does not silently open
    notices = await world.rows(Notice)
    assert [n.kind for n in notices] == ["connection_broken"]  # type: ignore[attr-defined]
