"""Notice payloads are typed: one dataclass per kind, stored as JSON the Slack DMs (and their buttons) read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from storage.db import Database
from storage.models import Notice
from sync import notices
from sync.notices import Conflict, ConnectionBroken, NoticeKind, NoticePayload, PushedEventDeleted, notify
from tests.factories import add_user

START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_every_kind_has_exactly_one_payload_class() -> None:
    kinds = [cls.kind for cls in NoticePayload.__subclasses__()]
    assert sorted(kinds) == sorted(NoticeKind)
    assert all(getattr(notices, cls.__name__) is cls for cls in NoticePayload.__subclasses__())


async def test_a_stored_conflict_names_the_external_event_and_the_appointment(db: Database) -> None:
    user = await add_user(db)
    conflict = Conflict("appt1", "Dr. Michel", "Dentist", "cal1", START, START + timedelta(hours=1))
    async with db.write() as session:
        assert await notify(session, user.id, conflict, dedupe_key="conflict:appt1")
        assert not await notify(session, user.id, conflict, dedupe_key="conflict:appt1")  # a replayed cycle
    async with db.session() as session:
        (stored,) = await session.scalars(select(Notice))
    assert stored.kind == "conflict"
    assert stored.payload == {
        "appointment_id": "appt1", "appointment_title": "Dr. Michel", "event_title": "Dentist",
        "calendar_id": "cal1", "start": "2026-03-02T09:00:00+00:00", "end": "2026-03-02T10:00:00+00:00",
        "actions": [],
    }


def test_buttons_are_named_with_the_ids_they_need() -> None:
    kept = PushedEventDeleted("appt1", "cal1", cancelled=False).to_payload()
    assert kept["actions"] == ["restore_to_calendar", "cancel_appointment"] and kept["appointment_id"] == "appt1"
    assert PushedEventDeleted("appt1", "cal1", cancelled=True).to_payload()["actions"] == []  # nothing left to do
    broken = ConnectionBroken("conn1", "icloud", "john@icloud.com", "the password was revoked").to_payload()
    assert broken["actions"] == ["reconnect"] and (broken["connection_id"], broken["provider"]) == ("conn1", "icloud")
