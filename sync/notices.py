"""The transactional outbox: notices for users, written in the same transaction as the change they report.

`bot/` delivers them as Slack DMs and marks them delivered; `sync/` only ever writes them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import Notice


class NoticeKind(StrEnum):
    CONTACT_CREATED = "contact_created"
    CONFLICT = "conflict"  # an imported busy event overlaps a booked appointment
    REMOTE_EDIT_REVERTED = "remote_edit_reverted"
    REMOTE_EDIT_APPLIED = "remote_edit_applied"
    BOTH_CHANGED = "both_changed"  # R8: one side won, the loser is in the payload
    PUSHED_EVENT_DELETED = "pushed_event_deleted"
    CONNECTION_BROKEN = "connection_broken"
    MASS_DELETION_HELD = "mass_deletion_held"
    ITEM_SKIPPED = "item_skipped"
    AUTOMATION = "automation"  # a `slack_dm` automation fired


async def notify(
    session: AsyncSession, user_id: str, kind: NoticeKind, payload: dict[str, Any], *, dedupe_key: str | None = None
) -> bool:
    """Add a notice unless one with the same `dedupe_key` exists. Returns whether it was added.

    The key makes a retried or re-planned cycle (after a crash, after an invalid cursor) tell the user once.
    """
    if dedupe_key is not None:
        existing = await session.scalar(select(col(Notice.id)).where(col(Notice.dedupe_key) == dedupe_key))
        if existing is not None:
            return False
    session.add(Notice(user_id=user_id, kind=kind, payload=payload, dedupe_key=dedupe_key))
    return True
