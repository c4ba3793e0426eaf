"""A served API on the `db` fixture (SQLite and PostgreSQL), with an in-memory calendar account behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from storage.db import Database
from storage.models import Access
from storage.secrets import SecretBox
from sync.engine import SyncEngine
from sync.providers.base import CalendarProvider, InvalidCredentials, Unreachable
from sync.providers.memory import MemoryProvider
from web.app import create_app
from web.context import WebContext

TOKEN = "test-api-token-0123456789"
GOOD_PASSWORD = "app-specific-pass-42"


@dataclass
class Accounts:
    """The calendar servers the API talks to: right password -> the account, else refused."""

    provider: MemoryProvider = field(default_factory=MemoryProvider)
    unreachable_urls: set[str] = field(default_factory=set)

    def __call__(self, provider: str, credentials: dict[str, Any], server_url: str | None) -> CalendarProvider:
        if server_url in self.unreachable_urls:
            raise Unreachable("connection refused")
        if credentials["password"] != GOOD_PASSWORD:
            return _Refusing()  # type: ignore[return-value]
        return self.provider


class _Refusing:
    async def list_calendars(self) -> list[Any]:
        raise InvalidCredentials("the server refused the credentials")


@pytest.fixture
def accounts() -> Accounts:
    found = Accounts()
    found.provider.add_calendar("/john/work/", "Work")
    found.provider.add_calendar("/john/holidays/", "Holidays (shared)", Access.READ)
    return found


@pytest.fixture
async def api(db: Database, secret_box: SecretBox, accounts: Accounts) -> AsyncIterator[TestClient[Any, Any]]:
    engine = SyncEngine(db, secret_box, accounts)
    context = WebContext(db=db, secrets=secret_box, api_token=TOKEN, webhook_secret="whsec", providers=accounts,
                         engine=engine)
    async with TestClient(TestServer(create_app(context))) as client:
        client.session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client
