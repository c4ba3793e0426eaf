"""Request bodies of the REST API, validated straight from the JSON text (API.md).

Strict: unknown fields and wrong JSON types are refused (422), enumerations take their string values.
Rules that belong to the domain (open hours, members, who may be linked) live in `sync/`.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
)

from storage.enums import Action, CalendarKind, SyncMode, Trigger

MAX_URL_LENGTH = 2000  # Connection.server_url is VARCHAR(2000)
YEARS = range(1900, 2201)
"""The years (in UTC) a time or date the API is given may lie in: wide enough for any real calendar, far
enough from 1 and 9999 that converting between zones and adding durations never overflows."""


@functools.cache
def _zones() -> frozenset[str]:
    # "localtime" and "posixrules" name whatever the host is set to, not a place.
    return frozenset(available_timezones() - {"localtime", "posixrules"})


def _zone(value: str) -> str:
    if value not in _zones():
        raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Paris")
    return value


def _url(value: AnyHttpUrl) -> AnyHttpUrl:
    if len(str(value)) > MAX_URL_LENGTH:
        raise ValueError(f"at most {MAX_URL_LENGTH} characters")
    return value


def _instant(value: datetime) -> datetime:
    try:
        instant = value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+00:01 is before the first representable UTC instant
        instant = None
    if instant is None or instant.year not in YEARS:
        raise ValueError(f"out of the supported years, {YEARS[0]} to {YEARS[-1]} (UTC)")
    return instant


Zone = Annotated[str, AfterValidator(_zone)]
Url = Annotated[AnyHttpUrl, AfterValidator(_url)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
"""Names lose surrounding blanks; nothing else is altered (a password may well end with a space)."""
Instant = Annotated[AwareDatetime, AfterValidator(_instant)]
"""Every time the API takes, in a body or a query: RFC 3339 with an offset, within `YEARS`, given in UTC."""
INSTANT = TypeAdapter(Instant)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: object) -> object:
        """PostgreSQL can neither store nor compare text with NUL characters."""
        if any(isinstance(v, str) and "\x00" in v for v in (value if isinstance(value, list) else [value])):
            raise ValueError("text must not contain NUL characters")
        return value


class NewUser(Body):
    name: Name
    email: EmailStr
    timezone: Zone
    slack_user_id: str | None = Field(default=None, min_length=1, max_length=32)


class NewConnection(Body):
    provider: Literal["caldav", "icloud"]
    username: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1000)
    url: Url | None = None

    @field_validator("url")
    @classmethod
    def _no_userinfo(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        """The URL is stored in clear: credentials go in their own (encrypted) fields."""
        if value is not None and (value.username or value.password):
            raise ValueError("put the username and password in their own fields, not in the URL")
        return value


class NewConnectLink(Body):
    provider: Literal["google", "microsoft", "icloud", "caldav"]
    connection_id: str | None = Field(default=None, min_length=1, max_length=32)
    """Reconnect: the link renews this connection of the user instead of adding one."""


class SyncSettingsBody(Body):
    linked_calendar_id: str | None
    conflict_calendar_ids: list[str] | None = Field(default=None, max_length=500)
    mode: SyncMode | None = None
    window_days_back: int | None = Field(default=None, ge=0, le=365)
    window_days_ahead: int | None = Field(default=None, ge=1, le=730)
    daily_agenda: bool | None = None


class NewTeamCalendar(Body):
    name: Name
    kind: CalendarKind
    member_ids: list[str] = Field(max_length=500)
    duration_minutes: int = Field(ge=5, le=24 * 60)
    slot_interval_minutes: int | None = Field(default=None, ge=5, le=24 * 60)
    timezone: Zone
    open_hours: dict[str, list[list[str]]] | None = None
    capacity: int | None = Field(default=None, ge=1, le=10_000)
    buffer_before_minutes: int = Field(default=0, ge=0, le=24 * 60)
    buffer_after_minutes: int = Field(default=0, ge=0, le=24 * 60)
    min_notice_minutes: int = Field(default=0, ge=0, le=365 * 24 * 60)
    max_days_ahead: int = Field(default=60, ge=1, le=730)


class NewAutomation(Body):
    trigger: Trigger
    action: Action
    calendar_id: str | None = None
    url: Url | None = None


class ContactIn(Body):
    name: Name
    email: EmailStr = Field(max_length=320)


class NewAppointment(Body):
    start: Instant
    contact: ContactIn
    title: str | None = Field(default=None, max_length=500)
    member_id: str | None = Field(default=None, max_length=32)


class AppointmentChange(Body):
    start: Instant | None = None
    end: Instant | None = None
    title: str | None = Field(default=None, max_length=500)
