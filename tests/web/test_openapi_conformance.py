"""Schemathesis against the served API (SQLite, real loopback port): no 5xx, and every response matches the
OpenAPI document the server itself serves at /api/v1/openapi.json.

The schema is loaded when the module is collected, from the function that serves it (`load_openapi`), and the
fixture checks that the served document is that one: schemathesis' lazy `from_fixture` loader, which could
load it over HTTP, fails under pytest 9 (it sets `Function._nodeid`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis import checks

from storage import migrate
from storage.db import Database
from storage.secrets import SecretBox, generate_key
from tests.web.conftest import TOKEN, Accounts, context
from web.app import create_app, load_openapi

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a port the OS picks, served from its own event loop in a thread (schemathesis is sync)."""
    database_file: Path = tmp_path_factory.mktemp("schemathesis") / "croco.db"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, Database, str]:
        db = Database(f"sqlite+aiosqlite:///{database_file}")
        await migrate.upgrade(db.engine)
        accounts = Accounts()
        accounts.provider.add_calendar("/john/work/", "Work")
        runner = web.AppRunner(create_app(context(db, SecretBox(generate_key()), accounts)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return runner, db, f"http://{host}:{port}"

    runner, db, url = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    with urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=10) as served:
        assert json.load(served) == load_openapi()
    yield url

    async def stop() -> None:
        await runner.cleanup()
        await db.dispose()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


schema = schemathesis.openapi.from_dict(load_openapi())


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case[Any], base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
