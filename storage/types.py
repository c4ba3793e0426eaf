"""Column types shared by every table."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.types import TypeDecorator


def new_id() -> str:
    """Opaque identifier: 32 lowercase hex digits (also valid as a Google event id, base32hex)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


Clock = Callable[[], datetime]
"""What time it is, for the domain (sync window, stamps, due times, bookings, R8). One is made in the
composition root (`croco/runtime.py`, the wall clock `utcnow`) and handed down; tests hand a fixed one."""


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL keeps `timestamptz`; SQLite has no zone, so values are stored as naive UTC and the zone
    is put back on read. Naive input is refused: a naive time in the domain is always a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class LastsAtLeast(ColumnElement[bool]):
    """Whether a row's `"end" - start` is at least `seconds`: the expression of a generated column, so the
    database itself keeps it right whoever writes the row. SQLite counts whole seconds (`strftime('%s')`
    truncates), so a row it does not flag lasts less than `seconds`, as on PostgreSQL."""

    type = Boolean()
    inherit_cache = False

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds


@compiles(LastsAtLeast, "sqlite")
def _lasts_at_least_sqlite(element: LastsAtLeast, compiler: SQLCompiler, **kw: Any) -> str:
    return f"""strftime('%s', "end") - strftime('%s', start) >= {element.seconds}"""


@compiles(LastsAtLeast, "postgresql")
def _lasts_at_least_postgresql(element: LastsAtLeast, compiler: SQLCompiler, **kw: Any) -> str:
    return f""""end" - start >= interval '{element.seconds} seconds'"""
