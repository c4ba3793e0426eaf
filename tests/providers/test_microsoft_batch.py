"""The Microsoft provider's `create_many` on the Graph emulator's `$batch` (M5): two batch requests per 20 drafts,
results in order, no second copy on a retry, each draft failing or throttled on its own, and the sync engine
pushing several bookings at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import Database
from storage.models import Connection, EventLink, SyncSettings
from storage.secrets import SecretBox
from sync.providers.base import (
    CalendarGone,
    InvalidCredentials,
    ProviderError,
    RateLimited,
    WriteResult,
)
from tests.emulators.graph import Failure, _GraphError
from tests.integration.conftest import book
from tests.providers.support import START
from tests.providers.test_google import drafts
from tests.providers.test_microsoft import World, connect
from tests.providers.test_microsoft import world as world  # the fixture


def written(results: list[WriteResult | ProviderError]) -> list[WriteResult]:
    assert all(isinstance(result, WriteResult) for result in results), results
    return [result for result in results if isinstance(result, WriteResult)]


async def test_45_drafts_are_45_events_in_three_batches_of_lookups_and_three_of_posts(world: World) -> None:
    sent = drafts(45)
    results = written(await world.provider().create_many(world.calendar, sent))
    assert world.graph.count("batch") == 6 and world.graph.count() - world.graph.count("token") == 6 + 90
    assert world.graph.count("events.list") == 45 and world.graph.count("events.create") == 45
    assert len(world.graph.events(world.calendar)) == 45
    for draft, result in zip(sent, results, strict=True):  # in order, each with the id and etag Graph gave it
        stored = world.graph.event(world.calendar, result.remote_id)
        assert stored is not None and not result.existed
        assert (stored["transactionId"], stored["subject"]) == (draft.appointment_id, draft.title)
        assert result.etag == stored["@odata.etag"]


async def test_a_retry_finds_the_copies_already_written_and_posts_only_the_others(world: World) -> None:
    provider = world.provider()
    first = written(await provider.create_many(world.calendar, drafts(3)))  # its reply lost before a crash
    before = world.graph.count("batch")
    again = written(await provider.create_many(world.calendar, drafts(23)))
    assert [(r.remote_id, r.existed) for r in again[:3]] == [(r.remote_id, True) for r in first]
    assert not any(r.existed for r in again[3:]) and len(world.graph.events(world.calendar)) == 23
    assert world.graph.count("batch") - before == 2 + 1  # 23 lookups, then the 20 drafts not found in one batch


async def test_a_post_whose_reply_was_lost_is_retried_without_a_second_copy(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph wrote the first event but its answer failed (503): the POST sent again carries the same
    transactionId, and Graph returns the first event (M2)."""
    create = world.graph._events_create
    lost: list[str] = []

    def written_then_lost(context: Any) -> Any:
        answer = create(context)
        if not lost:
            lost.append(answer.body["id"] if answer.body else "")
            raise _GraphError(503, "ServiceUnavailable", "Lost.", headers={"Retry-After": "1"})
        return answer

    monkeypatch.setattr(world.graph, "_events_create", written_then_lost)
    results = written(await world.provider().create_many(world.calendar, drafts(2)))
    assert results[0].remote_id == lost[0] and world.waits == [1]
    assert sorted(e["id"] for e in world.graph.events(world.calendar)) == sorted(r.remote_id for r in results)
    assert world.graph.count("events.create") == 3


async def test_one_refused_create_fails_alone_in_our_words(world: World) -> None:
    world.graph.fail(Failure(403, "ErrorAccessDenied"), method="events.create")
    refused, *others = await world.provider().create_many(world.calendar, drafts(3))
    assert isinstance(refused, ProviderError) and not isinstance(refused, RateLimited)
    assert "ErrorAccessDenied" in str(refused) and "Injected failure" not in str(refused)
    assert len(written(others)) == 2 and len(world.graph.events(world.calendar)) == 2


async def test_a_calendar_gone_fails_every_draft_as_calendar_gone(world: World) -> None:
    calendar = world.calendar
    world.john.entries.clear()
    results = await world.provider().create_many(calendar, drafts(2))
    assert all(isinstance(result, CalendarGone) for result in results) and world.graph.count("events.create") == 0


async def test_a_throttled_request_alone_is_sent_again_after_a_short_retry_after(world: World) -> None:
    world.graph.fail(Failure(429, retry_after=2), method="events.create")
    results = written(await world.provider().create_many(world.calendar, drafts(2)))
    assert world.waits == [2] and world.graph.count("batch") == 1 + 2 and world.graph.count("events.create") == 3
    assert sorted(e["id"] for e in world.graph.events(world.calendar)) == sorted(r.remote_id for r in results)


async def test_a_long_retry_after_rate_limits_that_draft_alone(world: World) -> None:
    world.graph.fail(Failure(429, retry_after=120), method="events.list")
    limited, created = await world.provider().create_many(world.calendar, drafts(2))
    assert isinstance(limited, RateLimited) and limited.retry_after == 120 and world.waits == []
    assert isinstance(created, WriteResult) and world.graph.count("events.create") == 1


async def test_an_expired_access_token_is_refreshed_once_for_the_whole_batch(world: World) -> None:
    provider = world.provider()
    world.graph.expire_access_tokens()
    tokens = world.graph.count("token")
    assert len(written(await provider.create_many(world.calendar, drafts(3)))) == 3
    assert world.graph.count("token") == tokens + 1 and world.graph.count("batch") == 2 + 1
    assert provider.rotated_credentials() is not None  # the refresh rotated the cache: the engine stores it

    world.graph.fail(Failure(401, "InvalidAuthenticationToken", times=2), method="events.list")
    (refused,) = await provider.create_many(world.calendar, drafts(1))
    assert isinstance(refused, InvalidCredentials) and world.graph.count("token") == tokens + 2


# Through the sync engine ---------------------------------------------------------------------------------


@dataclass
class Booker:
    db: Database
    user_id: str


async def test_the_engine_pushes_several_bookings_in_one_batch_of_each(
    world: World, db: Database, secret_box: SecretBox
) -> None:
    """Its calendar linked: the three bookings are pushed with one batch of lookups and one of POSTs."""
    synced = await connect(world, db, secret_box)
    (calendar,) = synced.calendars
    async with db.write() as session:
        (connection,) = await session.scalars(select(Connection))
        settings = await session.get(SyncSettings, connection.user_id)
        assert settings is not None
        settings.linked_calendar_id = calendar.id
    booked = [await book(Booker(db, connection.user_id), START + timedelta(days=n)) for n in range(3)]
    before = world.graph.count("batch")
    report = await synced.engine.sync_calendar(calendar.id)
    assert report.error is None and report.tally.pushed == 3
    assert world.graph.count("batch") - before == 2 and world.graph.count("events.create") == 3
    links = await synced.rows(EventLink)
    assert sorted(link.appointment_id for link in links) == sorted(booked) and all(link.etag for link in links)
    stored = {e["id"]: e["transactionId"] for e in world.graph.events(world.calendar)}
    assert {link.remote_id: link.appointment_id for link in links} == stored
