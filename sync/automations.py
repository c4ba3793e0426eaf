"""Automations a workspace (or one team calendar) configures, and the record of their runs.

Delivery is `sync.firing`; this module only creates automations and reads their runs.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from storage.db import Database
from storage.enums import Action, Trigger
from storage.models import Automation, AutomationRun, Calendar
from sync.errors import Invalid, NotFound


async def create_automation(db: Database, workspace_id: str, trigger: Trigger, action: Action,
                            calendar_id: str | None, url: str | None) -> Automation:
    """A webhook needs its URL and only a webhook has one; `calendar_id` narrows it to one team calendar."""
    if action == Action.WEBHOOK and not url:
        raise Invalid("url: a webhook automation needs the URL to call")
    if action != Action.WEBHOOK and url:
        raise Invalid(f"url: only webhook automations call a URL, not {action.value}")
    async with db.write() as session:
        if calendar_id is not None:
            calendar = await session.get(Calendar, calendar_id)
            if calendar is None or calendar.workspace_id != workspace_id:
                raise Invalid(f"calendar_id: no team calendar {calendar_id}")
        automation = Automation(workspace_id=workspace_id, calendar_id=calendar_id, trigger=trigger, action=action,
                                config={"url": url} if url else {})
        session.add(automation)
    return automation


async def automation_runs(db: Database, automation_id: str) -> list[AutomationRun]:
    """Every run, oldest first: one per appointment event (and contact) the automation fired for."""
    async with db.session() as session:
        if await session.get(Automation, automation_id) is None:
            raise NotFound(f"no automation {automation_id}")
        return list(await session.scalars(select(AutomationRun).where(
            col(AutomationRun.automation_id) == automation_id).order_by(col(AutomationRun.at), col(AutomationRun.id))))
