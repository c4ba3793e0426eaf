"""Key rotation's middle step (`croco rotate-secrets`, the README's run book): every sealed value re-encrypted with
the newest key, so the old key can go; nothing a configured key cannot open is touched."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from croco.cli import main
from storage import migrate
from storage.db import Database
from storage.models import Connection
from storage.rotation import reseal_all
from storage.secrets import SecretBox, UndecryptableSecret, generate_key
from storage.slack_tables import slack_bots
from sync import credentials
from sync.providers.base import AppPassword
from tests.factories import add_connection, add_user

OLD, NEW = generate_key(), generate_key()


async def seal_with_old_key(db: Database) -> str:
    """A connection's password and a Slack bot token, sealed with OLD; the connection's id."""
    old = SecretBox(OLD)
    user = await add_user(db)
    connection, _ = await add_connection(db, user, old, login=AppPassword("john", "s3cret"))
    async with db.write() as session:
        await session.execute(insert(slack_bots).values(
            client_id="c", app_id="A1", team_id="T1", bot_token=old.seal({"t": "xoxb-1"}).decode("ascii"),
            bot_id="B1", bot_user_id="U1", bot_scopes="chat:write", is_enterprise_install=False,
            installed_at=datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)))
    return connection.id


async def stored(db: Database, connection_id: str) -> tuple[bytes, str]:
    async with db.session() as session:
        found = await session.get(Connection, connection_id)
        token = (await session.execute(select(slack_bots.c.bot_token))).scalar_one()
    assert found is not None
    return found.credentials, token


async def test_every_sealed_value_opens_with_the_new_key_alone_afterwards(db: Database) -> None:
    connection_id = await seal_with_old_key(db)
    resealed = await reseal_all(db, SecretBox(f"{NEW},{OLD}"))
    assert (resealed.rotated, resealed.unreadable) == (2, {})
    sealed, token = await stored(db, connection_id)
    new = SecretBox(NEW)
    assert credentials.unseal(new, sealed) == AppPassword("john", "s3cret")
    assert new.open(token.encode("ascii")) == {"t": "xoxb-1"}
    with pytest.raises(UndecryptableSecret):
        SecretBox(OLD).open(sealed)


async def test_a_value_no_configured_key_opens_is_left_alone_and_counted(db: Database) -> None:
    connection_id = await seal_with_old_key(db)
    before = await stored(db, connection_id)
    resealed = await reseal_all(db, SecretBox(NEW))  # the old key dropped too early
    assert (resealed.rotated, resealed.unreadable) == (0, {"connection.credentials": 1, "slack_bots.bot_token": 1})
    assert await stored(db, connection_id) == before


def test_the_command_re_encrypts_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'croco.db'}"

    async def prepare() -> str:
        db = Database(url)
        try:
            await migrate.upgrade(db.engine)
            return await seal_with_old_key(db)
        finally:
            await db.dispose()

    connection_id = asyncio.run(prepare())
    for name, value in {"CROCO_DATABASE_URL": url, "CROCO_SECRET_KEY": f"{NEW},{OLD}", "CROCO_API_TOKEN": "t" * 20,
                        "CROCO_WEBHOOK_SECRET": "w" * 20, "CROCO_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    assert main(["rotate-secrets"]) == 0
    assert "2 stored secret(s) re-encrypted with the newest key" in capsys.readouterr().err

    async def opened() -> AppPassword:
        db = Database(url)
        try:
            sealed, _ = await stored(db, connection_id)
            found = credentials.unseal(SecretBox(NEW), sealed)
            assert isinstance(found, AppPassword)
            return found
        finally:
            await db.dispose()

    assert asyncio.run(opened()) == AppPassword("john", "s3cret")
