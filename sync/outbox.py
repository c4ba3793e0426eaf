"""Outbox delivery: each notice is handed to a sink (Slack's DMs) and marked delivered once the sink accepted it.

The pattern is the webhooks' (`sync.firing.deliver_due`): claim in one short transaction, call the sink with no
transaction open (no SQLite write lock, no row lock across a network call), record the outcome in another.

- Claim: a lease (`lease_owner` until `lease_expires_at`), taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL
  and under `BEGIN IMMEDIATE` on SQLite, so two deliverers, in one process or many, never hold one notice.
- Retry: a `DeliveryFailed` (5xx, network error) waits an exponential backoff, a rate limit its `retry_after`;
  `last_error` keeps the reason. An `Undeliverable` notice (no Slack user id) is failed for good: retrying it
  forever would only grow the queue, and a DM written long after the change would mislead.
- Crash: a deliverer that died holding a lease leaves the notice claimable once the lease expires.

"Never twice" holds up to one edge: a sink call that succeeded but whose mark-delivered was lost (a crash
between the two, or a call outlasting the lease) is repeated. Every attempt passes the notice id as
`idempotency_key`, stable across attempts and processes, so the sink can refuse the repeat (the Slack sink
finds the key in the DM's recent messages' metadata); without that a repeat is possible (at-least-once).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlmodel import col

from storage.db import Database
from storage.models import Notice, User, Workspace
from storage.types import Clock, utcnow
from sync.accounts import get_user
from sync.notices import NoticeKind
from sync.retry import Backoff
from sync.telemetry import TELEMETRY

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
"""Longer than any sink call may take (Slack's HTTP timeout is far shorter): a live deliverer never loses it."""
BACKOFF = Backoff(first=timedelta(seconds=1), cap=timedelta(minutes=10))
"""Short at first: API.md wants a notice to reach its user within 5 s of the change."""
TICK_SECONDS = 1.0
ERROR_LENGTH = 2000


@dataclass(frozen=True)
class OutgoingNotice:
    """What a sink is given: the notice, and whom it is for."""

    id: str
    user_id: str
    slack_user_id: str | None
    kind: NoticeKind
    payload: dict[str, Any]
    created_at: datetime
    attempt: int  # 1 on the first try
    slack_team_id: str | None = None  # the user's workspace's Slack team (None: the default, not yet bound)
    timezone: str = "UTC"  # the user's, for the times the message shows

    def expired(self, now: datetime) -> bool:
        """A payload with `until` (the agenda: the end of its day) tells of something over by then: delivered
        later it would mislead, so no sink is given it."""
        until = self.payload.get("until")
        return isinstance(until, str) and datetime.fromisoformat(until) <= now

    @property
    def idempotency_key(self) -> str:
        """The same on every attempt at this notice, in every process: a sink that honours it sends once."""
        return self.id


class DeliveryFailed(Exception):
    """The sink could not deliver now and a later attempt may succeed; `retry_after` is in seconds (a 429)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class Undeliverable(Exception):
    """The notice can never be delivered by this sink (e.g. its user has no Slack id): it is not retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoticeSink(Protocol):
    async def deliver(self, notice: OutgoingNotice) -> None:
        """Deliver or raise `DeliveryFailed` / `Undeliverable`. Returning means the recipient has it."""


class Outbox:
    """Delivers due notices to one sink; run `deliver_due` often (the scheduler does, every `TICK_SECONDS`)."""

    def __init__(
        self, db: Database, sink: NoticeSink, *, owner: str, clock: Clock = utcnow,
        lease: timedelta = LEASE, backoff: Backoff = BACKOFF, batch: int = 50,
    ) -> None:
        self.db, self.sink, self.owner, self.clock = db, sink, owner, clock
        self.lease, self.backoff, self.batch = lease, backoff, batch

    async def deliver_due(self) -> int:
        """Claim the due notices, oldest first, and hand each to the sink. Returns how many were delivered."""
        claim = f"{secrets.token_hex(6)}@{self.owner}"[:64]  # tells apart two claims of one process
        delivered = 0
        for notice in await self._claim(claim):
            delivered += await self._deliver(notice, claim)
        return delivered

    async def _claim(self, claim: str) -> list[OutgoingNotice]:
        now = self.clock()
        query = (
            select(Notice, col(User.slack_user_id), col(Workspace.slack_team_id), col(User.timezone))
            .join(User, col(User.id) == col(Notice.user_id))
            .join(Workspace, col(Workspace.id) == col(User.workspace_id))
            .where(
                col(Notice.delivered_at).is_(None), col(Notice.failed_at).is_(None),
                or_(col(Notice.next_attempt_at).is_(None), col(Notice.next_attempt_at) <= now),
                or_(col(Notice.lease_expires_at).is_(None), col(Notice.lease_expires_at) <= now),
            )
            .order_by(col(Notice.created_at), col(Notice.id))
            .limit(self.batch)
        )
        async with self.db.write() as session:
            claimed = list((await session.execute(self.db.skip_locked(query, Notice))).tuples())
            for notice, *_ in claimed:
                notice.lease_owner, notice.lease_expires_at = claim, now + self.lease
                notice.attempts += 1
        return [
            OutgoingNotice(n.id, n.user_id, slack_id, NoticeKind(n.kind), n.payload, n.created_at, n.attempts,
                           team_id, zone)
            for n, slack_id, team_id, zone in claimed
        ]

    async def _deliver(self, notice: OutgoingNotice, claim: str) -> int:
        extra = {"user_id": notice.user_id, "notice_id": notice.id, "kind": notice.kind, "attempt": notice.attempt}
        retry_at: datetime | None = None
        try:
            if notice.expired(self.clock()):
                raise Undeliverable("out of date: its `until` has passed")
            await self.sink.deliver(notice)
        except DeliveryFailed as exc:
            error, now = exc.reason, self.clock()
            wait = self.backoff.after(notice.attempt) if exc.retry_after is None else timedelta(seconds=exc.retry_after)
            retry_at = now + wait
        except Undeliverable as exc:
            error, now = exc.reason, self.clock()
        except Exception as exc:  # a sink bug must not lose the notice: retried like any failure, and logged
            log.exception("notice sink failed", extra=extra)
            error, now = f"sink error: {type(exc).__name__}", self.clock()
            retry_at = now + self.backoff.after(notice.attempt)
        else:
            async with self.db.write() as session:  # the sink has it: true whoever holds the lease now
                await session.execute(
                    update(Notice).where(col(Notice.id) == notice.id, col(Notice.delivered_at).is_(None))
                    .values(delivered_at=self.clock(), last_error=None, lease_owner=None, lease_expires_at=None)
                )
            TELEMETRY.notices_delivered.labels(notice.kind.value).inc()
            log.info("notice delivered", extra=extra)
            return 1
        outcome = {"next_attempt_at": retry_at} if retry_at is not None else {"failed_at": now}
        async with self.db.write() as session:  # a lease lost to another deliverer is theirs to record
            await session.execute(
                update(Notice).where(col(Notice.id) == notice.id, col(Notice.lease_owner) == claim)
                .values(last_error=error[:ERROR_LENGTH], lease_owner=None, lease_expires_at=None, **outcome)
            )
        log.warning("notice not delivered", extra=extra | {"error": error, "retry_at": retry_at})
        return 0


async def list_notices(db: Database, user_id: str, *, undelivered: bool = False) -> list[Notice]:
    """The user's notices, newest first (API.md); `undelivered` keeps those no sink has accepted yet."""
    query = select(Notice).where(col(Notice.user_id) == user_id)
    if undelivered:
        query = query.where(col(Notice.delivered_at).is_(None))
    async with db.session() as session:
        await get_user(session, user_id)
        return list(await session.scalars(query.order_by(col(Notice.created_at).desc(), col(Notice.id).desc())))
