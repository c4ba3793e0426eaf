"""One calendar on each backend the contract tests run against: Radicale, Xandikos and the in-memory fake."""

from __future__ import annotations

import pytest

from sync.providers.memory import MemoryProvider
from tests.caldav_servers import CalDAVServer
from tests.providers.support import Remote, caldav


def _memory() -> Remote:
    memory, calendar = MemoryProvider(), "/john/work/"
    memory.add_calendar(calendar, "Work")

    def seed(name: str, data: str) -> str:
        memory.put(calendar, name, data)
        return name

    def stale(cursor: str) -> str:
        memory.invalidate_cursors()
        return cursor

    return Remote("memory", memory, calendar, seed, lambda: memory.remove_calendar(calendar), stale)


@pytest.fixture(params=["radicale", "xandikos", "memory"])
def remote(request: pytest.FixtureRequest) -> Remote:
    if request.param == "memory":
        return _memory()
    server: CalDAVServer = request.getfixturevalue(str(request.param))
    url = server.new_calendar()
    return Remote(server.name, caldav(server), url, lambda name, data: server.put(url, name, data),
                  lambda: server.delete(url), lambda _: "sync:http://radicale.org/ns/sync/expired-long-ago")
