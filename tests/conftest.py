"""Shared fixtures: a migrated database on SQLite and, when CROCO_TEST_DATABASE_URL is set, PostgreSQL; a
started Google emulator (`google`) and Microsoft identity + Graph emulator (`graph`, with `graph_shared` for
the real Graph providers).

Every PostgreSQL test gets a schema of its own (dropped afterwards), so reruns and parallel runs never see
each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from storage import migrate
from storage.db import Database
from storage.secrets import SecretBox, generate_key
from sync.providers.microsoft.provider import MicrosoftShared
from tests.emulators.google import GoogleEmulator
from tests.emulators.graph import GraphEmulator

# Hypothesis's default 200 ms deadline per example is a timing test, and fails a property on a loaded machine
# (seen when tests ran beside others): the properties here are about answers, not speed (bench/ measures that).
settings.register_profile("croco", deadline=None)
settings.load_profile("croco")

pytest_plugins = ["tests.caldav_servers"]

PG_URL = os.environ.get("CROCO_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL to an empty database of the requested backend."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'croco.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(PG_URL)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_url_with_schema(PG_URL, schema)
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def pg_url_with_schema(url: str, schema: str) -> str:
    """`storage.db.Database` reads `search_path` from the URL: every table then lives in `schema`."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}search_path={schema}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


@pytest.fixture
def secret_key() -> str:
    return generate_key()


@pytest.fixture
def secret_box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key)


@pytest.fixture
async def google() -> AsyncIterator[GoogleEmulator]:
    """A Google Calendar API and OAuth emulator on a free loopback port (tests/emulators/google.py)."""
    emulator = GoogleEmulator()
    await emulator.start()
    yield emulator
    await emulator.close()


@pytest.fixture
async def graph() -> AsyncIterator[GraphEmulator]:
    """A Microsoft identity platform and Graph v1.0 emulator over HTTPS on a free loopback port
    (tests/emulators/graph.py); tests trusting it set REQUESTS_CA_BUNDLE to `graph.ca_bundle_path`."""
    emulator = GraphEmulator()
    await emulator.start()
    yield emulator
    await emulator.close()


@pytest.fixture
async def graph_shared(graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MicrosoftShared]:
    """The Graph providers' shared session as the runtime makes it, trusting the emulator, and msal trusting
    it too (REQUESTS_CA_BUNDLE): what the real Microsoft side of Croco needs to run against `graph`."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_bundle_path))
    shared = MicrosoftShared(ssl_context=graph.client_ssl_context())
    yield shared
    await shared.close()
