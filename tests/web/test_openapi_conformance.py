"""Schemathesis against the served API: no 5xx, and every response matches the OpenAPI document."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis import checks

from croco.embedded_caldav import free_port
from storage import migrate
from storage.db import Database
from storage.secrets import SecretBox, generate_key
from sync.engine import SyncEngine
from tests.web.conftest import TOKEN, Accounts
from web.app import create_app, load_openapi
from web.context import WebContext

schema = schemathesis.openapi.from_dict(load_openapi())
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a real loopback port, served from its own event loop in a thread."""
    database_file: Path = tmp_path_factory.mktemp("schemathesis") / "croco.db"
    port, started, loop = free_port(), threading.Event(), asyncio.new_event_loop()
    state: dict[str, object] = {}

    async def start() -> None:
        db = Database(f"sqlite+aiosqlite:///{database_file}")
        await migrate.upgrade(db.engine)
        box, accounts = SecretBox(generate_key()), Accounts()
        accounts.provider.add_calendar("/john/work/", "Work")
        context = WebContext(db=db, secrets=box, api_token=TOKEN, webhook_secret="whsec", providers=accounts,
                             engine=SyncEngine(db, box, accounts))
        runner = web.AppRunner(create_app(context))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        state.update(runner=runner, db=db)
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(30), "the API did not start"
    yield f"http://127.0.0.1:{port}"

    async def stop() -> None:
        await state["runner"].cleanup()  # type: ignore[attr-defined]
        await state["db"].dispose()  # type: ignore[attr-defined]

    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
