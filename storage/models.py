"""Tables of DESIGN.md section 3.

Ids are opaque hex strings, times are aware UTC (`UTCDateTime`), enumerations are stored as short strings
so that adding a value never needs a database enum migration. Sets (conflict calendars, members, assignees,
contacts of an appointment) are association tables rather than JSON, so they can be joined and locked.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Computed, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.enums import Access, AppointmentStatus, ConnectionStatus, Origin, SyncMode
from storage.types import LastsAtLeast, UTCDateTime, new_id, utcnow

LONG_BUSY = timedelta(days=2)
"""Busy time lasting this long or more is flagged `long` by the database (blocked slots, appointments).
Availability finds the other rows by a range of starts that begins LONG_BUSY before its window and the long
ones through their own index, so neither query reads a member's history. Changing it needs a migration."""


def _id_field() -> Any:
    return Field(default_factory=new_id, primary_key=True, max_length=32)


def _time_field(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _long_field() -> Any:
    """Computed by the database from start and end (a generated column): no writer can forget it."""
    expression = LastsAtLeast(int(LONG_BUSY.total_seconds()))
    return Field(default=None, sa_column=Column(Boolean, Computed(expression), nullable=False))


def _created_field() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Workspace(SQLModel, table=True):
    """A tenant: one Slack team, or the default workspace of an API-only install."""

    id: str = _id_field()
    slack_team_id: str | None = Field(default=None, unique=True, max_length=32)
    name: str = Field(max_length=200)
    is_default: bool = Field(default=False)
    """The workspace API-created objects belong to; in single-workspace mode also the bot token's Slack team."""
    created_at: datetime = _created_field()


class User(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    id: str = _id_field()
    workspace_id: str = Field(foreign_key="workspace.id", index=True, max_length=32)
    slack_user_id: str | None = Field(default=None, max_length=32, index=True)
    email: str = Field(max_length=320)
    name: str = Field(max_length=200)
    timezone: str = Field(max_length=64)
    created_at: datetime = _created_field()


class Connection(SQLModel, table=True):
    """One connected account. `credentials` is a Fernet token, never plaintext (storage/secrets.py)."""

    id: str = _id_field()
    user_id: str = Field(foreign_key="user.id", index=True, max_length=32)
    provider: str = Field(max_length=16)
    account: str = Field(max_length=320)
    server_url: str | None = Field(default=None, max_length=2000)
    credentials: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default=ConnectionStatus.OK, max_length=16)
    last_error: str | None = Field(default=None, max_length=2000)
    calendars_listed_at: datetime | None = _time_field(nullable=True)  # the account's calendar list last read
    created_at: datetime = _created_field()


class ConnectLink(SQLModel, table=True):
    """A one-time link to the connect form (iCloud, CalDAV) or an OAuth consent (Google, Microsoft: the token
    is the `state`). Only the token's SHA-256 is stored, so the database alone opens no form and completes no
    consent; `connection_id` set: it renews that connection (reconnect)."""

    id: str = _id_field()
    user_id: str = Field(foreign_key="user.id", index=True, max_length=32)
    provider: str = Field(max_length=16)
    connection_id: str | None = Field(
        default=None, foreign_key="connection.id", max_length=32, index=True, ondelete="CASCADE"
    )
    token_hash: str = Field(max_length=64, unique=True)
    code_verifier: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))  # PKCE, sealed
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    used_at: datetime | None = _time_field(nullable=True)
    created_at: datetime = _created_field()


class RemoteCalendar(SQLModel, table=True):
    """A calendar of a connection, with its sync cursor and scheduling state."""

    __table_args__ = (UniqueConstraint("connection_id", "remote_id"),)

    id: str = _id_field()
    connection_id: str = Field(foreign_key="connection.id", index=True, max_length=32)
    remote_id: str = Field(max_length=2000)
    name: str = Field(max_length=500)
    access: str = Field(default=Access.READ, max_length=16)
    sync_cursor: str | None = Field(default=None, max_length=4000)
    last_synced_at: datetime | None = _time_field(nullable=True)
    last_error: str | None = Field(default=None, max_length=2000)
    last_full_sync_at: datetime | None = _time_field(nullable=True)
    removals_held_of: int | None = None  # removals held by the mass-deletion guard: items known at the hold
    removals_confirmed: bool = Field(default=False)  # the user confirmed: the next cycle applies them
    push_channel_id: str | None = Field(default=None, max_length=200, index=True)
    push_resource_id: str | None = Field(default=None, max_length=200)  # what stopping the channel needs
    push_channel_expires_at: datetime | None = _time_field(nullable=True)
    due_at: datetime | None = _time_field(nullable=True, index=True)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = _time_field(nullable=True)


class SyncSettings(SQLModel, table=True):
    """Per user: the linked calendar, the sync mode and the window (conflict set: ConflictCalendar)."""

    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=32)
    linked_calendar_id: str | None = Field(
        default=None, foreign_key="remotecalendar.id", max_length=32, ondelete="SET NULL"
    )
    mode: str = Field(default=SyncMode.ONE_WAY, max_length=16)
    window_days_back: int = Field(default=1)
    window_days_ahead: int = Field(default=180)
    daily_agenda: bool = Field(default=False)  # opted in: a DM at 08:00 in the user's time zone


class ConflictCalendar(SQLModel, table=True):
    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=32)
    calendar_id: str = Field(
        foreign_key="remotecalendar.id", primary_key=True, max_length=32, ondelete="CASCADE"
    )


class Calendar(SQLModel, table=True):
    """A team calendar that books appointments."""

    id: str = _id_field()
    workspace_id: str = Field(foreign_key="workspace.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=16)
    duration_minutes: int
    slot_interval_minutes: int
    timezone: str = Field(max_length=64)
    open_hours: dict[str, list[list[str]]] = Field(sa_column=Column(JSON, nullable=False))
    capacity: int | None = None
    buffer_before_minutes: int = 0
    buffer_after_minutes: int = 0
    min_notice_minutes: int = 0
    max_days_ahead: int = 60
    created_at: datetime = _created_field()


class CalendarMember(SQLModel, table=True):
    calendar_id: str = Field(foreign_key="calendar.id", primary_key=True, max_length=32, ondelete="CASCADE")
    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=32)
    position: int = 0
    priority: int = 2
    weight: int = 100


class Appointment(SQLModel, table=True):
    __table_args__ = (Index("ix_appointment_long_end", "long", "end"),)  # availability's long appointments

    id: str = _id_field()
    calendar_id: str | None = Field(default=None, foreign_key="calendar.id", index=True, max_length=32)
    start: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    end: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    long: bool | None = _long_field()
    title: str = Field(default="", max_length=500)
    status: str = Field(default=AppointmentStatus.BOOKED, max_length=16)
    origin: str = Field(default=Origin.SYSTEM, max_length=16)
    busy: bool = Field(default=True)
    version: int = Field(default=1)
    created_at: datetime = _created_field()
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class AppointmentAssignee(SQLModel, table=True):
    # Covers the availability query: a member's appointments are found without reading the table.
    __table_args__ = (Index("ix_appointmentassignee_user_id", "user_id", "appointment_id"),)

    appointment_id: str = Field(
        foreign_key="appointment.id", primary_key=True, max_length=32, ondelete="CASCADE"
    )
    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=32)
    push_suppressed: bool = Field(default=False)  # R7 one-way: deleted remotely, kept booked, not re-pushed


class AppointmentContact(SQLModel, table=True):
    appointment_id: str = Field(
        foreign_key="appointment.id", primary_key=True, max_length=32, ondelete="CASCADE"
    )
    contact_id: str = Field(foreign_key="contact.id", primary_key=True, max_length=32)


class EventLink(SQLModel, table=True):
    """Appointment x user x remote calendar: where its pushed or imported copy lives remotely."""

    __table_args__ = (
        UniqueConstraint("appointment_id", "user_id", "remote_calendar_id"),
        Index("ix_eventlink_calendar_remote", "remote_calendar_id", "remote_id"),
    )

    id: str = _id_field()
    appointment_id: str = Field(foreign_key="appointment.id", max_length=32, ondelete="CASCADE")
    user_id: str = Field(foreign_key="user.id", max_length=32)
    remote_calendar_id: str = Field(foreign_key="remotecalendar.id", max_length=32, ondelete="CASCADE")
    remote_id: str = Field(max_length=2000)
    occurrence_key: str = Field(default="", max_length=100)
    imported: bool = Field(default=False)  # a mirror of a foreign event (two-way), not a copy we pushed
    href: str | None = Field(default=None, max_length=2000)
    etag: str | None = Field(default=None, max_length=500)
    content_hash: str | None = Field(default=None, max_length=64)
    last_seen_at: datetime | None = _time_field(nullable=True)


class BlockedSlot(SQLModel, table=True):
    """Time taken by an external event; `busy` says whether it blocks availability."""

    __table_args__ = (
        # Covers the availability query: free slots read thousands of rows without touching the table.
        Index("ix_blockedslot_user_time", "user_id", "start", "end", "busy", "id"),
        Index("ix_blockedslot_calendar_remote", "remote_calendar_id", "remote_id"),
        Index("ix_blockedslot_user_long_end", "user_id", "long", "end"),  # availability's long slots
    )

    id: str = _id_field()
    user_id: str = Field(foreign_key="user.id", max_length=32)
    remote_calendar_id: str = Field(foreign_key="remotecalendar.id", max_length=32, ondelete="CASCADE")
    remote_id: str = Field(max_length=2000)
    start: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    end: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    long: bool | None = _long_field()
    busy: bool = Field(default=True)
    title: str | None = Field(default=None, max_length=500)
    all_day: bool = Field(default=False)
    fetched_at: datetime = _created_field()


class BusyPeriod(SQLModel, table=True):
    """A member's blocking blocked slots merged into disjoint periods (touching ones joined): what free slots
    read, a few rows per member per day instead of every overlapping event. Kept by
    `sync.availability.refresh_busy` in every transaction that changes blocked slots."""

    __table_args__ = (Index("ix_busyperiod_user_long_end", "user_id", "long", "end"),)

    user_id: str = Field(foreign_key="user.id", primary_key=True, max_length=32)
    start: datetime = Field(sa_column=Column(UTCDateTime(), primary_key=True))
    end: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    long: bool | None = _long_field()


class Contact(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    id: str = _id_field()
    workspace_id: str = Field(foreign_key="workspace.id", index=True, max_length=32)
    email: str = Field(max_length=320)
    name: str = Field(max_length=200)
    source: str = Field(max_length=16)
    created_at: datetime = _created_field()


class Automation(SQLModel, table=True):
    id: str = _id_field()
    workspace_id: str = Field(foreign_key="workspace.id", index=True, max_length=32)
    calendar_id: str | None = Field(default=None, foreign_key="calendar.id", max_length=32, ondelete="CASCADE")
    trigger: str = Field(max_length=32)
    action: str = Field(max_length=16)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _created_field()


class AutomationRun(SQLModel, table=True):
    """One firing of an automation for one appointment event; the unique key makes firing exactly-once."""

    __table_args__ = (UniqueConstraint("automation_id", "event_key"),)

    id: str = _id_field()
    automation_id: str = Field(foreign_key="automation.id", index=True, max_length=32, ondelete="CASCADE")
    appointment_id: str = Field(foreign_key="appointment.id", max_length=32, ondelete="CASCADE")
    contact_id: str | None = Field(default=None, foreign_key="contact.id", max_length=32)
    event_key: str = Field(max_length=200)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=2000)
    next_attempt_at: datetime | None = _time_field(nullable=True)
    at: datetime = _created_field()


class Notice(SQLModel, table=True):
    """Transactional outbox: written with the change it reports, delivered once by `sync.outbox`.

    A deliverer claims a notice with a lease (`lease_owner` until `lease_expires_at`); `next_attempt_at` is the
    backoff after a failed attempt, `failed_at` a permanent failure (never retried).
    """

    # The waiting notices, oldest first, from the index alone: `/metrics` counts them (bench/metrics.py).
    __table_args__ = (Index("ix_notice_delivery", "delivered_at", "failed_at", "created_at"),)

    id: str = _id_field()
    user_id: str = Field(foreign_key="user.id", index=True, max_length=32)
    kind: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    dedupe_key: str | None = Field(default=None, max_length=300, unique=True)
    created_at: datetime = _created_field()
    delivered_at: datetime | None = _time_field(nullable=True)
    attempts: int = 0
    next_attempt_at: datetime | None = _time_field(nullable=True)
    last_error: str | None = Field(default=None, max_length=2000)
    failed_at: datetime | None = _time_field(nullable=True)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = _time_field(nullable=True)


from storage import slack_tables as slack_tables  # noqa: E402  (slack_sdk's OAuth tables, on the same metadata)
