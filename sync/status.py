"""A user's sync status as one snapshot: connections, each calendar's role, when it last synced, and what
needs the user's attention. `/croco status` and the Slack App Home show it; finding the problems is domain
logic, so it lives here and the view builders only word them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from storage.db import Database
from storage.enums import Access, ConnectionStatus, Provider, SyncMode
from sync import accounts


class Role(StrEnum):
    LINKED = "linked"  # appointments go here (and, in the conflict set too, its busy events block)
    CONFLICT = "conflict"  # busy events block availability
    UNUSED = "unused"  # connected, not synced


class ProblemKind(StrEnum):
    NO_CONNECTION = "no_connection"
    CONNECTION_BROKEN = "connection_broken"
    NO_LINKED_CALENDAR = "no_linked_calendar"
    CALENDAR_FAILING = "calendar_failing"
    REMOVALS_HELD = "removals_held"


@dataclass(frozen=True)
class CalendarState:
    id: str
    name: str
    access: Access
    linked: bool
    conflict: bool
    last_synced_at: datetime | None
    last_error: str | None
    removals_held: bool

    @property
    def role(self) -> Role:
        if self.linked:
            return Role.LINKED
        return Role.CONFLICT if self.conflict else Role.UNUSED


@dataclass(frozen=True)
class ConnectionState:
    id: str
    provider: Provider
    account: str
    ok: bool
    last_error: str | None
    calendars: tuple[CalendarState, ...]


@dataclass(frozen=True)
class Problem:
    """Something the user should act on. `connection_id` / `calendar_id` name what it is about (None when it
    is about the user as a whole); `subject` is that thing's name, `detail` the reason the system recorded."""

    kind: ProblemKind
    subject: str = ""
    detail: str | None = None
    connection_id: str | None = None
    calendar_id: str | None = None
    provider: Provider | None = None


@dataclass(frozen=True)
class UserStatus:
    connections: tuple[ConnectionState, ...]
    mode: SyncMode
    problems: tuple[Problem, ...]
    now: datetime
    """The clock's time when this was read: "last synced N min ago" is counted from it."""


async def read_status(db: Database, user_id: str, *, now: datetime) -> UserStatus:
    """The user's status as of `now` (the injected clock, never the wall clock)."""
    connections = await accounts.list_connections(db, user_id)
    calendars = await accounts.user_calendars(db, user_id)
    settings = await accounts.get_settings(db, user_id)
    by_connection: dict[str, list[CalendarState]] = {c.id: [] for c in connections}
    for found in calendars:
        row = found.calendar
        by_connection.setdefault(row.connection_id, []).append(CalendarState(
            row.id, row.name, Access(row.access), found.is_linked, found.is_conflict, row.last_synced_at,
            row.last_error, row.removals_held_of is not None and not row.removals_confirmed))
    states = tuple(
        ConnectionState(c.id, Provider(c.provider), c.account, c.status == ConnectionStatus.OK, c.last_error,
                        tuple(by_connection.get(c.id, ())))
        for c in connections)
    return UserStatus(states, settings.mode, find_problems(states, settings.linked_calendar_id), now)


def find_problems(connections: tuple[ConnectionState, ...], linked_calendar_id: str | None) -> tuple[Problem, ...]:
    """What needs the user, most blocking first: nothing connected, then broken connections (nothing of theirs
    syncs), then no linked calendar (appointments go nowhere), then single calendars failing or held."""
    if not connections:
        return (Problem(ProblemKind.NO_CONNECTION),)
    problems = [Problem(ProblemKind.CONNECTION_BROKEN, c.account, c.last_error, connection_id=c.id,
                        provider=c.provider) for c in connections if not c.ok]
    if linked_calendar_id is None:
        problems.append(Problem(ProblemKind.NO_LINKED_CALENDAR))
    for connection in connections:
        if not connection.ok:
            continue  # its calendars fail for the connection's reason, told once above
        for calendar in connection.calendars:
            if calendar.role is Role.UNUSED:
                continue  # not synced, so an old error is not the user's problem now
            if calendar.removals_held:
                problems.append(Problem(ProblemKind.REMOVALS_HELD, calendar.name, connection_id=connection.id,
                                        calendar_id=calendar.id, provider=connection.provider))
            if calendar.last_error:
                problems.append(Problem(ProblemKind.CALENDAR_FAILING, calendar.name, calendar.last_error,
                                        connection_id=connection.id, calendar_id=calendar.id,
                                        provider=connection.provider))
    return tuple(problems)
