"""The counters of the work done (API.md "Operations"), each read from `/metrics` over HTTP as it moves.

`TELEMETRY` is the process's, shared by every test the worker runs: each test compares a scrape before its event
with one after.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from storage.db import Database
from storage.models import User
from sync import firing
from sync.notices import ContactCreated, notify
from sync.outbox import DeliveryFailed, Outbox
from tests.clocks import ManualClock
from tests.factories import add_user
from tests.ops.scrape import Scrape, scrape
from tests.sinks import RecordingSink
from tests.web.conftest import NOW, Client
from tests.web.test_api import NINE_TO_FIVE, ada, created, error_of, johns_desk, new_user, tomorrow_at

NOTICES = "croco_notices_delivered_total"
BOOKINGS = "croco_bookings_total"
WEBHOOKS = "croco_webhook_deliveries_total"


def moved(before: Scrape, after: Scrape, name: str, label: str) -> dict[str, float]:
    """How much each series of `name` grew, by its value of `label`; series that did not move are left out."""
    values = before.label_values(name, label) | after.label_values(name, label)
    grown = {v: after.total(name, **{label: v}) - before.total(name, **{label: v}) for v in values}
    return {v: d for v, d in grown.items() if d}


def moved_bookings(before: Scrape, after: Scrape) -> dict[tuple[str, str], float]:
    keys = {(k, r) for s in (before, after) for k in s.label_values(BOOKINGS, "kind")
            for r in s.label_values(BOOKINGS, "result")}
    grown = {(k, r): after.value(BOOKINGS, kind=k, result=r) - before.value(BOOKINGS, kind=k, result=r)
             for k, r in keys}
    return {key: d for key, d in grown.items() if d}


async def test_a_notice_counts_once_the_sink_accepted_it(api: Client, db: Database) -> None:
    user = await add_user(db)
    async with db.write() as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.slack_user_id = "U123"
        await notify(session, user.id, ContactCreated("c1", "Ada", "ada@example.com", "a1"))
    clock = ManualClock(NOW)
    deliverer = Outbox(db, RecordingSink(failures=[DeliveryFailed("HTTP 503")]), owner="test", clock=clock)

    before = await scrape(api)
    assert await deliverer.deliver_due() == 0
    refused = await scrape(api)
    assert moved(before, refused, NOTICES, "kind") == {}  # a failed attempt is no delivery
    clock.at(timedelta(minutes=1))
    assert await deliverer.deliver_due() == 1
    assert moved(before, await scrape(api), NOTICES, "kind") == {"contact_created": 1}


async def test_bookings_and_refusals_count_by_calendar_kind(api: Client) -> None:
    john = await new_user(api)
    desk = await johns_desk(api, john)
    yoga = await created(await api.post("/api/v1/calendars", json={
        "name": "Yoga", "kind": "class", "member_ids": [john["id"]], "duration_minutes": 60,
        "timezone": "Europe/Paris", "open_hours": NINE_TO_FIVE, "capacity": 1}))
    book = f"/api/v1/calendars/{desk['id']}/appointments"
    seat = f"/api/v1/calendars/{yoga['id']}/appointments"
    before = await scrape(api)

    await created(await api.post(book, json=ada(tomorrow_at(9))))
    assert await error_of(await api.post(book, json=ada(tomorrow_at(9))), 409) == "slot_unavailable"  # taken
    assert await error_of(await api.post(book, json=ada(tomorrow_at(9, 10))), 409) == "slot_unavailable"  # off grid
    await created(await api.post(seat, json=ada(tomorrow_at(14))))
    grace = {"start": tomorrow_at(14), "contact": {"name": "Grace Hopper", "email": "grace@example.com"}}
    assert await error_of(await api.post(seat, json=grace), 409) == "slot_unavailable"  # the class is full
    after = await scrape(api)
    assert moved_bookings(before, after) == {
        ("round_robin", "booked"): 1, ("round_robin", "refused"): 2, ("class", "booked"): 1, ("class", "refused"): 1}

    # a bad request is no attempt on the calendar: neither booked nor refused
    not_a_member = ada(tomorrow_at(11)) | {"member_id": "0" * 32}
    assert await error_of(await api.post(book, json=not_a_member), 422) == "validation_error"
    assert await error_of(await api.post(f"/api/v1/calendars/{'0' * 32}/appointments", json=ada(tomorrow_at(11))),
                          404) == "not_found"
    assert moved_bookings(after, await scrape(api)) == {}


class Sender:
    """A webhook endpoint answering `statuses` in order, then 204."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls: list[str] = []

    async def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.calls.append(url)
        return self.statuses.pop(0) if self.statuses else 204


async def _booked_with_webhook(api: Client, url: str) -> dict[str, Any]:
    await created(await api.post("/api/v1/automations", json={
        "trigger": "appointment.created", "action": "webhook", "url": url}))
    desk = await johns_desk(api, await new_user(api))
    return await created(await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(tomorrow_at(9))))


async def test_a_webhook_attempt_counts_as_delivered_or_retrying(api: Client, db: Database) -> None:
    await _booked_with_webhook(api, "https://hooks.example.com/croco")
    send = Sender(503)
    before = await scrape(api)
    assert await firing.deliver_due(db, send, "whsec", NOW) == 0
    retried = await scrape(api)
    assert moved(before, retried, WEBHOOKS, "result") == {"retrying": 1}
    assert await firing.deliver_due(db, send, "whsec", NOW + firing.retry_delay(1)) == 1
    assert moved(retried, await scrape(api), WEBHOOKS, "result") == {"delivered": 1}
    assert len(send.calls) == 2


async def test_a_webhook_whose_last_attempt_fails_counts_as_given_up(api: Client, db: Database) -> None:
    await _booked_with_webhook(api, "https://hooks.example.com/down")
    send = Sender(*[500] * firing.MAX_ATTEMPTS)
    before = await scrape(api)
    for attempt in range(firing.MAX_ATTEMPTS + 1):  # one more pass finds nothing left to attempt
        await firing.deliver_due(db, send, "whsec", NOW + timedelta(days=attempt))
    assert len(send.calls) == firing.MAX_ATTEMPTS
    assert moved(before, await scrape(api), WEBHOOKS, "result") == {"retrying": firing.MAX_ATTEMPTS - 1, "gave_up": 1}
