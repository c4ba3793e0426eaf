"""Automations a workspace (or one team calendar) configures, and the record of their runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import col

from storage.db import Database
from storage.models import Action, Automation, AutomationRun, Calendar, Contact, Trigger
from sync.errors import Invalid, NotFound


async def create_automation(db: Database, workspace_id: str, trigger: Trigger, action: Action,
                            calendar_id: str | None, url: str | None) -> Automation:
    if action == Action.WEBHOOK and not url:
        raise Invalid("url: a webhook automation needs the URL to call")
    async with db.write() as session:
        if calendar_id is not None and await session.get(Calendar, calendar_id) is None:
            raise Invalid(f"calendar_id: no calendar {calendar_id}")
        automation = Automation(workspace_id=workspace_id, calendar_id=calendar_id, trigger=trigger, action=action,
                                config={"url": url} if url else {})
        session.add(automation)
    return automation


async def automation_runs(db: Database, automation_id: str) -> list[AutomationRun]:
    async with db.session() as session:
        if await session.get(Automation, automation_id) is None:
            raise NotFound(f"no automation {automation_id}")
        return list(await session.scalars(select(AutomationRun).where(
            col(AutomationRun.automation_id) == automation_id).order_by(col(AutomationRun.at))))


async def list_contacts(db: Database, workspace_id: str, email: str | None) -> list[Contact]:
    query = select(Contact).where(col(Contact.workspace_id) == workspace_id)
    if email:
        query = query.where(col(Contact.email) == email.strip().lower())
    async with db.session() as session:
        return list(await session.scalars(query.order_by(col(Contact.created_at))))


def run_json(run: AutomationRun) -> dict[str, Any]:
    return {"appointment_id": run.appointment_id, "contact_id": run.contact_id, "status": run.status,
            "attempts": run.attempts, "last_error": run.last_error, "at": run.at.isoformat()}
