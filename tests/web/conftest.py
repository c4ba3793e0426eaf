"""A served API on the `db` fixture (SQLite and PostgreSQL), with a fake calendar account behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from storage.db import Database
from storage.enums import Access
from storage.secrets import SecretBox
from sync.providers.base import AppPassword, CalendarProvider, Credentials, InvalidCredentials, Unreachable
from sync.providers.memory import MemoryProvider
from web.app import create_app
from web.context import WebContext

TOKEN = "test-api-token-0123456789"
GOOD_PASSWORD = "app-specific-pass-42"
Client = TestClient[Any, Any]
NOW = datetime(2021, 3, 1, 8, tzinfo=UTC)
"""The API's injected clock: years before any real today, so a time read from the wall clock shows."""


@dataclass
class Accounts:
    """The fake `ProviderFactory`: the right password opens the in-memory account, a wrong one is refused,
    a URL in `unreachable_urls` cannot be reached. `calls` records (provider, username, server_url)."""

    provider: MemoryProvider = field(default_factory=MemoryProvider)
    unreachable_urls: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)

    def __call__(self, provider: str, credentials: Credentials, server_url: str | None) -> CalendarProvider:
        assert isinstance(credentials, AppPassword)
        self.calls.append((provider, credentials.username, server_url))
        if server_url in self.unreachable_urls:
            raise Unreachable("connection refused")
        if credentials.password != GOOD_PASSWORD:
            return _Refusing()  # type: ignore[return-value]
        return self.provider.opened_with(credentials)


class _Refusing:
    async def list_calendars(self) -> list[Any]:
        raise InvalidCredentials("the server refused the credentials")


def context(db: Database, secret_box: SecretBox, accounts: Accounts) -> WebContext:
    """Built as the brief's CLI builds it (no engine given, the context makes its own), on a fixed clock."""
    return WebContext(db=db, secrets=secret_box, api_token=TOKEN, webhook_secret="whsec", providers=accounts,
                      clock=lambda: NOW)


@pytest.fixture
def accounts() -> Accounts:
    found = Accounts()
    found.provider.add_calendar("/john/work/", "Work")
    found.provider.add_calendar("/john/holidays/", "Holidays (shared)", Access.READ)
    return found


@pytest.fixture
async def api(db: Database, secret_box: SecretBox, accounts: Accounts) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(context(db, secret_box, accounts)))) as client:
        client.session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client
