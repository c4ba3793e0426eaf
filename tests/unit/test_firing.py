"""Automations fire once per appointment event; webhooks are signed, retried with backoff and recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from storage.db import Database
from storage.enums import Action, Trigger
from storage.models import Appointment, Automation, AutomationRun, Notice, Workspace
from sync import firing
from web.webhooks import AiohttpWebhookSender

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
SECRET = "whsec-test-secret"


async def _setup(db: Database, action: Action, url: str = "") -> tuple[Workspace, Appointment]:
    from tests.factories import add_user

    user = await add_user(db)
    async with db.write() as session:
        workspace = await session.get(Workspace, user.workspace_id)
        assert workspace is not None
        appointment = Appointment(start=NOW, end=NOW + timedelta(hours=1), title="Dr. Michel")
        session.add(appointment)
        session.add(Automation(workspace_id=workspace.id, trigger=Trigger.CREATED, action=action, config={"url": url}))
        await session.flush()
        await firing.fire(session, workspace.id, appointment, Trigger.CREATED, contact_id=None,
                          notify_user_ids=[user.id])
        await firing.fire(session, workspace.id, appointment, Trigger.CREATED, contact_id=None,
                          notify_user_ids=[user.id])  # a replayed cycle
    return workspace, appointment


async def _runs(db: Database) -> list[AutomationRun]:
    async with db.session() as session:
        return list(await session.scalars(select(AutomationRun)))


async def test_slack_dm_automation_fires_once_into_the_outbox(db: Database) -> None:
    await _setup(db, Action.SLACK_DM)
    (run,) = await _runs(db)
    assert run.status == firing.DELIVERED
    async with db.session() as session:
        (notice,) = list(await session.scalars(select(Notice)))
    assert notice.kind == "automation" and notice.payload["title"] == "Dr. Michel"


class Receiver:
    """A webhook endpoint that fails the first `failures` calls, then accepts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[bytes, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((await request.read(), request.headers.get("X-Croco-Signature", "")))
        return web.Response(status=503 if len(self.requests) <= self.failures else 204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver(failures=2)
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield hook, str(server.make_url("/hook"))


async def test_webhook_is_signed_retried_with_backoff_and_recorded(db: Database, receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    _, appointment = await _setup(db, Action.WEBHOOK, url)
    async with aiohttp.ClientSession() as client:
        send = AiohttpWebhookSender(client)
        assert await firing.deliver_due(db, send, SECRET, NOW) == 0
        (run,) = await _runs(db)
        assert (run.status, run.attempts, run.last_error) == ("pending", 1, "HTTP 503")
        assert await firing.deliver_due(db, send, SECRET, NOW + timedelta(seconds=10)) == 0  # not due yet
        assert len(hook.requests) == 1
        assert await firing.deliver_due(db, send, SECRET, NOW + firing.retry_delay(1)) == 0
        assert await firing.deliver_due(db, send, SECRET, NOW + timedelta(hours=1)) == 1
    (run,) = await _runs(db)
    assert (run.status, run.attempts) == ("delivered", 3)

    body, header = hook.requests[-1]
    assert header == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    document = json.loads(body)
    assert document["event"] == "appointment.created" and document["contact"] is None
    assert document["appointment"]["id"] == appointment.id and document["appointment"]["start"] == "2026-03-02T09:00:00Z"


async def test_unreachable_webhook_gives_up_after_max_attempts(db: Database) -> None:
    await _setup(db, Action.WEBHOOK, "http://127.0.0.1:1/hook")
    async with aiohttp.ClientSession() as client:
        send = AiohttpWebhookSender(client, timeout_seconds=2)
        for attempt in range(firing.MAX_ATTEMPTS):
            await firing.deliver_due(db, send, SECRET, NOW + timedelta(days=attempt))
    (run,) = await _runs(db)
    assert run.status == firing.FAILED and run.attempts == firing.MAX_ATTEMPTS
    assert run.last_error is not None and run.last_error.startswith("unreachable")


def test_backoff_doubles_and_is_capped() -> None:
    assert [firing.retry_delay(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert firing.retry_delay(20) == firing.LAST_RETRY
