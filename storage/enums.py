"""The enumerations of the tables, apart from them: the planner and the readers of calendar data use them in
worker processes, which should not import SQLAlchemy for a few strings (DESIGN.md section 3)."""

from __future__ import annotations

from enum import StrEnum


class Provider(StrEnum):
    GOOGLE = "google"
    MICROSOFT = "microsoft"
    ICLOUD = "icloud"
    CALDAV = "caldav"


class ConnectionStatus(StrEnum):
    OK = "ok"
    BROKEN = "broken"


class Access(StrEnum):
    FULL = "full"
    READ = "read"
    FREEBUSY = "freebusy"


class SyncMode(StrEnum):
    ONE_WAY = "one_way"
    TWO_WAY = "two_way"


class CalendarKind(StrEnum):
    ROUND_ROBIN = "round_robin"
    SERVICE = "service"
    CLASS = "class"
    COLLECTIVE = "collective"


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"


class Origin(StrEnum):
    SYSTEM = "system"
    IMPORTED = "imported"


class ContactSource(StrEnum):
    BOOKING = "booking"
    TWO_WAY_IMPORT = "two_way_import"


class Trigger(StrEnum):
    CREATED = "appointment.created"
    RESCHEDULED = "appointment.rescheduled"
    CANCELLED = "appointment.cancelled"


class Action(StrEnum):
    WEBHOOK = "webhook"
    SLACK_DM = "slack_dm"
