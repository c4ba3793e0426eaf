"""One calendar on each backend the contract tests run against: Radicale, Xandikos and the in-memory fake.

A backend joins the contract suite (tests/providers/test_contract.py) as one more parameter of `remote`: a
`Remote` with its provider, an empty calendar, and `seed`, which writes a neutral `SeedEvent` the way
another client of that backend would (CalDAV and the fake store its iCalendar text, `fixtures.ical`).
"""

from __future__ import annotations

import pytest

from sync.providers.memory import MemoryProvider
from tests.caldav_servers import CalDAVServer
from tests.providers.fixtures import SeedEvent, ical
from tests.providers.support import Remote, caldav


def _memory() -> Remote:
    memory, calendar = MemoryProvider(), "/john/work/"
    memory.add_calendar(calendar, "Work")

    def seed(event: SeedEvent) -> str:
        memory.put(calendar, f"{event.name}.ics", ical(event))
        return f"{event.name}.ics"

    def stale(cursor: str) -> str:
        memory.invalidate_cursors()
        return cursor

    return Remote("memory", memory, calendar, seed, lambda: memory.remove_calendar(calendar), stale)


def _caldav(server: CalDAVServer) -> Remote:
    url = server.new_calendar()
    return Remote(server.name, caldav(server), url, lambda event: server.put(url, f"{event.name}.ics", ical(event)),
                  lambda: server.delete(url), lambda _: "sync:http://radicale.org/ns/sync/expired-long-ago")


@pytest.fixture(params=["radicale", "xandikos", "memory"])
def remote(request: pytest.FixtureRequest) -> Remote:
    if request.param == "memory":
        return _memory()
    return _caldav(request.getfixturevalue(str(request.param)))
