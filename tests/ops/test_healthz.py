"""`/healthz` (API.md "Operations"): the database, and this process's scheduler's last tick; 503 names the part."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from croco.scheduler import Ticker
from storage.db import Database
from storage.secrets import SecretBox
from tests.web.conftest import Accounts, Client, context
from web.app import create_app

TICK_SECONDS = 0.05


@pytest.fixture
async def ticker() -> AsyncIterator[Ticker]:
    ticks: list[None] = []

    async def tick() -> None:
        ticks.append(None)

    found = Ticker({"sync": tick}, TICK_SECONDS)
    yield found
    await found.stop()


@pytest.fixture
async def served(db: Database, secret_box: SecretBox, accounts: Accounts, ticker: Ticker) -> AsyncIterator[Client]:
    ctx = context(db, secret_box, accounts)
    ctx.scheduler = ticker
    async with TestClient(TestServer(create_app(ctx))) as client:
        yield client


async def health(client: Client) -> tuple[int, dict[str, str]]:
    async with client.get("/healthz") as response:
        return response.status, await response.json()


async def test_a_ticking_scheduler_and_a_database_are_healthy(served: Client, ticker: Ticker) -> None:
    ticker.start()
    assert await health(served) == (200, {"status": "ok", "database": "ok", "scheduler": "ok"})


async def test_a_stopped_scheduler_is_503_naming_it(served: Client, ticker: Ticker) -> None:
    ticker.start()
    await ticker.stop()
    async with asyncio.timeout(5):
        while (found := await health(served))[0] == 200:  # until three tick intervals have passed, bounded
            await asyncio.sleep(TICK_SECONDS)
    assert found == (503, {"status": "degraded", "database": "ok", "scheduler": "not_ticking"})


async def test_a_scheduler_that_never_started_is_503(served: Client) -> None:
    assert (await health(served))[1]["scheduler"] == "not_ticking"


async def test_a_database_that_is_gone_is_503_naming_it(db: Database, secret_box: SecretBox, accounts: Accounts,
                                                        ticker: Ticker, unused_tcp_port: int) -> None:
    ctx = context(db, secret_box, accounts)
    ctx.scheduler = ticker
    async with TestClient(TestServer(create_app(ctx))) as client:
        ticker.start()
        assert (await health(client))[0] == 200
        gone = Database(f"postgresql+asyncpg://croco@127.0.0.1:{unused_tcp_port}/croco")  # nothing listens there
        ctx.db = gone
        try:
            assert await health(client) == (503, {"status": "degraded", "database": "unavailable",
                                                  "scheduler": "ok"})
        finally:
            await gone.dispose()
