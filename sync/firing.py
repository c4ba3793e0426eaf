"""Automations fire exactly once per appointment event.

Firing records an `AutomationRun` whose `(automation, event_key)` is unique, in the same transaction as the
appointment change. A retried or re-planned cycle finds the run already there and fires nothing. `slack_dm`
runs become a notice in the outbox at once; `webhook` runs stay `pending` until a delivery attempt succeeds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.enums import Action, Trigger
from storage.models import Appointment, Automation, AutomationRun, Contact
from sync.notices import AutomationFired, notify
from sync.payloads import appointment_payload, contact_payload
from sync.retry import Backoff
from sync.telemetry import TELEMETRY

log = logging.getLogger(__name__)

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
                fired_notice = AutomationFired(
                    trigger, appointment.id, appointment.title, appointment.start, contact_id
                )
                await notify(session, user_id, fired_notice, dedupe_key=f"automation:{automation.id}:{key}:{user_id}")
        session.add(run)
        fired += 1
    return fired


# Webhook delivery --------------------------------------------------------------------------------------

MAX_ATTEMPTS = 8
RETRYING = "retrying"
GAVE_UP = "gave_up"
"""An attempt's outcome in `croco_webhook_deliveries_total{result}`: `delivered`; `retrying` (it failed, the run
stays pending); `gave_up` (the last allowed attempt failed: the run is `failed` for good). Not `failed`, which as
a run's status means given up."""
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)
BACKOFF = Backoff(FIRST_RETRY, LAST_RETRY)


class WebhookSender(Protocol):
    """POSTs a body and returns the HTTP status; raises OSError/TimeoutError when the host cannot be reached.

    Implemented with aiohttp outside `sync/` (croco wires it in); tests pass their own.
    """

    async def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int: ...


def signature(secret: str, body: bytes) -> str:
    """`X-Croco-Signature` as API.md defines it: sha256=<hex HMAC of the body>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: 30 s, 1 min, 2 min, ... capped at one hour."""
    return BACKOFF.after(attempts)


async def deliver_due(db: Database, sender: WebhookSender, secret: str, now: datetime, *, limit: int = 100) -> int:
    """Attempt every pending webhook run that is due. Returns how many were delivered.

    Each run is claimed (its next attempt pushed back) before the request, so a crash mid-delivery retries
    later instead of losing the run, and two processes never post the same run at the same moment.
    """
    async with db.write() as session:
        query = (
            select(AutomationRun, Automation)
            .join(Automation, col(Automation.id) == col(AutomationRun.automation_id))
            .where(
                col(AutomationRun.status) == PENDING,
                col(Automation.action) == Action.WEBHOOK,
                or_(col(AutomationRun.next_attempt_at).is_(None), col(AutomationRun.next_attempt_at) <= now),
            )
            .limit(limit)
        )
        claimed = list((await session.execute(db.skip_locked(query, AutomationRun))).tuples())
        bodies: list[tuple[str, str, bytes]] = []
        for run, automation in claimed:
            run.next_attempt_at = now + retry_delay(run.attempts + 1)
            bodies.append((run.id, str(automation.config.get("url", "")), await _body(session, run, automation)))

    delivered = 0
    for run_id, url, body in bodies:
        headers = {"Content-Type": "application/json", "X-Croco-Signature": signature(secret, body)}
        try:
            status, error = await sender(url, body, headers), None
        except (OSError, TimeoutError) as exc:
            status, error = 0, f"unreachable: {type(exc).__name__}"
        ok = 200 <= status < 300
        delivered += ok
        async with db.write() as session:
            attempted = await session.get(AutomationRun, run_id)
            if attempted is None:
                continue
            attempted.attempts += 1
            attempted.at = now
            if ok:
                attempted.status, attempted.last_error, attempted.next_attempt_at = DELIVERED, None, None
                result = DELIVERED
            else:
                attempted.last_error = error or f"HTTP {status}"
                if attempted.attempts >= MAX_ATTEMPTS:
                    attempted.status, attempted.next_attempt_at = FAILED, None
                    result = GAVE_UP
                else:
                    attempted.next_attempt_at = now + retry_delay(attempted.attempts)
                    result = RETRYING
        TELEMETRY.webhook_deliveries.labels(result).inc()
        log.info("webhook attempt", extra={"run_id": run_id, "status": status, "delivered": ok, "result": result})
    return delivered


async def _body(session: AsyncSession, run: AutomationRun, automation: Automation) -> bytes:
    appointment = await session.get(Appointment, run.appointment_id)
    contact = await session.get(Contact, run.contact_id) if run.contact_id else None
    document = {
        "event": automation.trigger,
        "appointment": await appointment_payload(session, appointment) if appointment else None,
        "contact": contact_payload(contact) if contact else None,
    }
    return json.dumps(document, sort_keys=True).encode("utf-8")
