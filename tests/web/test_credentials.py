"""A password given to the API is encrypted at rest and never comes back: not in a response, the database
(any table, any column, the SQLite files themselves) or the logs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from storage.db import Database
from storage.models import Connection
from storage.secrets import SecretBox
from sync import credentials
from sync.providers.base import AppPassword
from tests.factories import tables_holding
from tests.web.conftest import GOOD_PASSWORD, Accounts, Client

WRONG_PASSWORD = "wrong-password-shh-7"


async def every_response(api: Client, accounts: Accounts) -> list[str]:
    """Connect (right, wrong and unreachable), then read everything the user has: each response's text."""
    texts = []

    async def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await api.request(method, path, **kwargs)
        texts.append(f"{response.status} {dict(response.headers)} {await response.text()}")
        return dict(await response.json()) if response.status not in (204,) else {}

    user = await call("POST", "/api/v1/users", json={"name": "J", "email": "j@example.com", "timezone": "UTC"})
    connections = f"/api/v1/users/{user['id']}/connections"
    accounts.unreachable_urls.add("https://down.example.com/")
    for password, url in [(WRONG_PASSWORD, "https://dav.example.com/"), (GOOD_PASSWORD, "https://down.example.com/")]:
        await call("POST", connections, json={"provider": "caldav", "username": "j", "password": password, "url": url})
    await call("POST", connections, json={"provider": "caldav", "username": "j", "password": GOOD_PASSWORD,
                                          "url": "https://dav.example.com/", "extra": GOOD_PASSWORD})
    await call("POST", connections, json={"provider": "caldav", "username": "j", "password": GOOD_PASSWORD + "x" * 1000,
                                          "url": "https://dav.example.com/"})
    await call("POST", connections, json={"provider": "caldav", "username": "j", "password": GOOD_PASSWORD,
                                          "url": "https://dav.example.com/"})
    for path in [connections, f"/api/v1/users/{user['id']}/calendars", f"/api/v1/users/{user['id']}/sync-settings",
                 f"/api/v1/users/{user['id']}"]:
        await call("GET", path)
    return texts


async def test_the_password_is_encrypted_at_rest_and_never_shown(
    api: Client, accounts: Accounts, db: Database, secret_box: SecretBox, database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = await every_response(api, accounts)
    assert not [t for t in texts if GOOD_PASSWORD in t or WRONG_PASSWORD in t]

    async with db.session() as session:
        connection = (await session.scalars(select(Connection))).one()  # only the good attempt was saved
        assert credentials.unseal(secret_box, connection.credentials) == AppPassword("j", GOOD_PASSWORD)
    assert await tables_holding(db, GOOD_PASSWORD, WRONG_PASSWORD) == []  # every column, credentials included

    if db.dialect == "sqlite":  # the files themselves, write-ahead log included
        database = Path(make_url(database_url).database or "")
        files = list(database.parent.glob(database.name + "*"))
        assert database in files
        for file in files:
            assert GOOD_PASSWORD.encode() not in file.read_bytes(), file.name

    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert GOOD_PASSWORD not in logged and WRONG_PASSWORD not in logged
