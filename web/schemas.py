"""Request bodies of the REST API. Unknown fields are refused (422), as API.md requires."""

from __future__ import annotations

import re
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, EmailStr, Field, field_validator

from storage.models import Action, CalendarKind, SyncMode, Trigger

HHMM = re.compile(r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Paris") from exc
    return value


class NewUser(Body):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    timezone: str = Field(min_length=1, max_length=64)
    slack_user_id: str | None = Field(default=None, max_length=32)

    _tz = field_validator("timezone")(_zone)


class NewConnection(Body):
    provider: Literal["caldav", "icloud"]
    username: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1000)
    url: AnyHttpUrl | None = None


class SyncSettingsBody(Body):
    linked_calendar_id: str | None
    conflict_calendar_ids: list[str] | None = None
    mode: SyncMode = SyncMode.ONE_WAY
    window_days_back: int | None = Field(default=None, ge=0, le=365)
    window_days_ahead: int | None = Field(default=None, ge=1, le=730)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        return SyncMode(value) if isinstance(value, str) and value in {m.value for m in SyncMode} else value


class NewTeamCalendar(Body):
    name: str = Field(min_length=1, max_length=200)
    kind: CalendarKind
    member_ids: list[str] = Field(max_length=500)
    duration_minutes: int = Field(ge=5, le=24 * 60)
    slot_interval_minutes: int | None = Field(default=None, ge=5, le=24 * 60)
    timezone: str = Field(min_length=1, max_length=64)
    open_hours: dict[str, list[list[str]]] | None = None
    capacity: int | None = Field(default=None, ge=1, le=10_000)
    buffer_before_minutes: int = Field(default=0, ge=0, le=24 * 60)
    buffer_after_minutes: int = Field(default=0, ge=0, le=24 * 60)
    min_notice_minutes: int = Field(default=0, ge=0, le=365 * 24 * 60)
    max_days_ahead: int = Field(default=60, ge=1, le=730)

    _tz = field_validator("timezone")(_zone)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: object) -> object:
        return CalendarKind(value) if isinstance(value, str) and value in {k.value for k in CalendarKind} else value

    @field_validator("open_hours")
    @classmethod
    def _hours(cls, value: dict[str, list[list[str]]] | None) -> dict[str, list[list[str]]] | None:
        for ranges in (value or {}).values():
            for pair in ranges:
                if len(pair) != 2 or not all(HHMM.match(t) for t in pair) or pair[0] == "24:00":
                    raise ValueError(f"{pair}: each range is [start, end] in HH:MM, 00:00 to 24:00")
        return value


class NewAutomation(Body):
    trigger: Trigger
    action: Action
    calendar_id: str | None = None
    url: AnyHttpUrl | None = None

    @field_validator("trigger", "action", mode="before")
    @classmethod
    def _enum(cls, value: object, info: object) -> object:
        kinds = {t.value: t for t in Trigger} | {a.value: a for a in Action}
        return kinds.get(value, value) if isinstance(value, str) else value
