"""Automations fire exactly once per appointment event.

Firing records an `AutomationRun` whose `(automation, event_key)` is unique, in the same transaction as the
appointment change. A retried or re-planned cycle finds the run already there and fires nothing. `slack_dm`
runs become a notice in the outbox at once; `webhook` runs stay `pending` until a delivery attempt succeeds.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import Action, Appointment, Automation, AutomationRun, Trigger
from sync.notices import NoticeKind, notify

DELIVERED = "delivered"
PENDING = "pending"
FAILED = "failed"


async def fire(
    session: AsyncSession, workspace_id: str, appointment: Appointment, trigger: Trigger, *,
    contact_id: str | None, notify_user_ids: list[str], occasion: str = "",
) -> int:
    """Record one run per matching automation; returns how many fired now (0 on a replay).

    `occasion` tells apart two events of the same trigger on one appointment (two reschedules), so each
    fires once; use the appointment version or the new start time.
    """
    automations = await session.scalars(
        select(Automation).where(
            col(Automation.workspace_id) == workspace_id,
            col(Automation.trigger) == trigger,
            or_(col(Automation.calendar_id).is_(None), col(Automation.calendar_id) == appointment.calendar_id),
        )
    )
    fired = 0
    for automation in automations:
        key = f"{appointment.id}:{trigger}:{occasion}"
        exists = await session.scalar(
            select(col(AutomationRun.id)).where(
                col(AutomationRun.automation_id) == automation.id, col(AutomationRun.event_key) == key
            )
        )
        if exists is not None:
            continue
        run = AutomationRun(
            automation_id=automation.id, appointment_id=appointment.id, contact_id=contact_id, event_key=key,
            status=PENDING,
        )
        if automation.action == Action.SLACK_DM:
            run.status = DELIVERED
            for user_id in notify_user_ids:
                await notify(session, user_id, NoticeKind.AUTOMATION, {
                    "trigger": str(trigger), "appointment_id": appointment.id, "title": appointment.title,
                    "start": appointment.start.isoformat(), "contact_id": contact_id,
                }, dedupe_key=f"automation:{automation.id}:{key}:{user_id}")
        session.add(run)
        fired += 1
    return fired
