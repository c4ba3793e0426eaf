"""Fixtures that start a real Radicale CalDAV server on a free loopback port (one per test session)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from croco.embedded_caldav import EmbeddedRadicale

USER, PASSWORD = "john", "app-specific-pass"


@dataclass
class CalDAVAccount:
    server: EmbeddedRadicale
    username: str
    password: str

    @property
    def url(self) -> str:
        return self.server.url

    def new_calendar(self) -> str:
        """A fresh, empty calendar collection for one test; returns its URL."""
        return self.server.make_calendar(self.username, f"cal-{uuid.uuid4().hex[:8]}")

    def put(self, calendar_url: str, name: str, ics: str) -> None:
        self.server.put_event(self.username, calendar_url, name, ics)


@pytest.fixture(scope="session")
def radicale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRadicale]:
    folder: Path = tmp_path_factory.mktemp("radicale")
    with EmbeddedRadicale(folder, users={USER: PASSWORD}) as server:
        yield server


@pytest.fixture
def radicale(radicale_server: EmbeddedRadicale) -> CalDAVAccount:
    return CalDAVAccount(radicale_server, USER, PASSWORD)
