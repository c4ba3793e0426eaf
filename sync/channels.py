"""Push channels: one live channel per watched calendar, so a change reaches us as a notification within
seconds and an idle calendar costs no request between safety polls (provider-apis.md section 0 and G4).

Watched: a selected calendar (linked or conflict) of a working connection whose provider implements
`PushProvider`, while CROCO_PUBLIC_URL is one the provider can call (https, or a loopback address for an
emulator). Otherwise no channel, and the poll alone keeps calendars fresh.

Channels expire (Google: about 7 days; Graph: under 7 days, M4) and are renewed a day ahead by
`PushChannels.renew`: a Graph subscription is extended in place (`RenewablePush`); a Google channel cannot
be, so a new one with a new id is made, then the old one stopped. A notification only records what it says
(`take_notification`): the scheduler's sync tick, or the next run of this job, does the work. The channel's
token (Graph: the `clientState`) is our signature of the calendar row's id, echoed in every notification:
not a secret from the provider, but unforgeable for anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlparse

from sqlalchemy import or_, select, update
from sqlmodel import col

from storage.db import Database
from storage.models import Connection, RemoteCalendar
from storage.secrets import SecretBox
from sync import accounts, credentials, leases
from sync.providers.base import (
    CalendarProvider,
    InvalidCredentials,
    ProviderConfig,
    ProviderError,
    ProviderFactory,
    PushChannel,
    PushProvider,
    RateLimited,
    RenewablePush,
    Unreachable,
    is_loopback,
)

log = logging.getLogger(__name__)

TOKEN_PURPOSE = "push-channel"
LIFETIME = timedelta(days=7)
"""What we ask for; Google grants about 7 days at most, and the answer's expiry is what counts."""
RENEW_AHEAD = timedelta(days=1)
"""A channel expiring sooner than this is replaced: a day of retries before it lapses."""
TICK_SECONDS = 300.0
"""How often `renew` runs (`croco serve`); saving settings also runs it at once (`WebContext.settings_saved`)."""
class Change(StrEnum):
    """What a notification says of its calendar, each provider's words mapped to ours (web/webhooks.py)."""

    NONE = "none"  # a handshake (Google's `sync` message): the channel works, nothing changed
    CHANGED = "changed"  # the calendar changed, or changes were lost (Graph's `missed`): sync it
    REAUTHORIZE = "reauthorize"  # the channel needs renewing now (Graph's `reauthorizationRequired`)
    REMOVED = "removed"  # the server ended the channel (Graph's `subscriptionRemoved`): a new one, and a sync


class Notified(StrEnum):
    """What a notification did (the web layer answers 2xx to the first three, 4xx to the others)."""

    MARKED_DUE = "marked_due"  # the calendar syncs at the next tick: run it now
    CHANNEL_DUE = "channel_due"  # the channel job has work now (and the calendar may be due too)
    ACKNOWLEDGED = "acknowledged"  # nothing to do
    UNKNOWN_CHANNEL = "unknown_channel"
    BAD_TOKEN = "bad_token"


async def take_notification(db: Database, secrets: SecretBox, provider: str, channel_id: str, token: str,
                            change: Change, now: datetime) -> Notified:
    """A webhook's only work: find the channel's calendar (one indexed read), check the token, and record what
    the notification says (one update). A change makes the calendar due `now` (a due time already earlier is
    kept); a channel to renew is made to expire `now`, and one the server ended loses its resource id, so the
    channel job (`PushChannels.renew`) renews or replaces it at its next run."""
    async with db.session() as session:
        found = (await session.execute(
            select(col(RemoteCalendar.id), col(Connection.provider))
            .join(Connection, col(Connection.id) == col(RemoteCalendar.connection_id))
            .where(col(RemoteCalendar.push_channel_id) == channel_id)
        )).first()
    if found is None or found.provider != provider:
        return Notified.UNKNOWN_CHANNEL
    calendar_id = found.id
    if not secrets.verify_mac(TOKEN_PURPOSE, calendar_id, token):
        return Notified.BAD_TOKEN
    if change is Change.NONE:
        return Notified.ACKNOWLEDGED
    this_calendar = col(RemoteCalendar.id) == calendar_id
    async with db.write() as session:
        if change is Change.REAUTHORIZE:
            await session.execute(update(RemoteCalendar).where(this_calendar).values(push_channel_expires_at=now))
            return Notified.CHANNEL_DUE
        await session.execute(
            update(RemoteCalendar)
            .where(this_calendar, or_(col(RemoteCalendar.due_at).is_(None), col(RemoteCalendar.due_at) > now))
            .values(due_at=now)
        )
        if change is Change.REMOVED:
            await session.execute(update(RemoteCalendar).where(this_calendar).values(push_resource_id=None))
            return Notified.CHANNEL_DUE
    return Notified.MARKED_DUE


def can_push(public_url: str) -> bool:
    """Whether providers can call us at `public_url`: Google calls https addresses only (with a valid
    certificate); a loopback address is an emulator on this machine."""
    parsed = urlparse(public_url)
    https = parsed.scheme == "https" and bool(parsed.hostname)
    return https or (parsed.scheme == "http" and is_loopback(public_url))


def reaches(public_url: str, provider_url: str) -> bool:
    """Whether a provider served at `provider_url` can call us at `public_url`: an https one from anywhere, a
    loopback one only from this machine (an emulator; the real Google or Graph would refuse the channel)."""
    return can_push(public_url) and (not is_loopback(public_url) or is_loopback(provider_url))


def push_address(public_url: str, provider: str) -> str:
    """The webhook `provider`'s notifications are posted to (web/webhooks.py)."""
    return f"{public_url.rstrip('/')}/webhooks/{provider}"


def channel_token(secrets: SecretBox, calendar_id: str) -> str:
    return secrets.mac(TOKEN_PURPOSE, calendar_id)


Stored = tuple[str | None, str | None, datetime | None]
"""A calendar's channel columns: id, resource id, expiry (an id alone: stored before the watch answered)."""


def _stored(row: RemoteCalendar) -> Stored:
    return row.push_channel_id, row.push_resource_id, row.push_channel_expires_at


@dataclass
class Upkeep:
    """What one `renew` run did, by calendar id (`broken`: by connection id)."""

    created: list[str]
    stopped: list[str]
    failed: list[str]
    broken: list[str] = field(default_factory=list)  # refused our credentials: its other calendars wait
    renewed: list[str] = field(default_factory=list)  # extended in place (`RenewablePush`)


@dataclass(frozen=True)
class _Calendar:
    """A calendar with its connection, as one run of `renew` handles it."""

    row: RemoteCalendar
    connection: Connection

    @property
    def channel(self) -> PushChannel | None:
        """The stored channel, if it was ever confirmed (a crash between storing an id and the watch's
        answer leaves an id with no resource: nothing to stop, it expires by itself)."""
        row = self.row
        if row.push_channel_id is None or row.push_resource_id is None or row.push_channel_expires_at is None:
            return None
        return PushChannel(row.push_channel_id, row.push_resource_id, row.push_channel_expires_at)

    @property
    def log_extra(self) -> dict[str, str | None]:
        return {"user_id": self.connection.user_id, "calendar_id": self.row.id,
                "provider": self.connection.provider, "channel_id": self.row.push_channel_id}


class PushChannels:
    def __init__(self, db: Database, secrets: SecretBox, providers: ProviderFactory, public_url: str, *,
                 config: ProviderConfig) -> None:
        """`config` says where each provider is served, so a loopback public URL gets channels only from a provider
        on this machine (an emulator)."""
        self.db, self.secrets, self.providers, self.public_url = db, secrets, providers, public_url
        self._without_push: set[str] = set()  # providers found not to implement PushProvider (CalDAV)
        self._unreachable = {name for name, url in config.push_origins().items() if not reaches(public_url, url)}

    async def renew(self, now: datetime) -> Upkeep:
        """Create the channels missing, replace those expiring within RENEW_AHEAD (or past their expiry),
        stop those of calendars no longer watched. A calendar that fails is logged and tried again at the
        next run; the others go on. Refused credentials break the connection (one notice)."""
        upkeep = Upkeep([], [], [])
        opened: dict[str, CalendarProvider] = {}  # one provider per connection and run: one token refresh
        for calendar in await self._unwatched():
            await self._retire(calendar, opened, upkeep)
        for calendar in await self._needing_channel(now):
            await self._replace(calendar, opened, upkeep, now)
        await self._keep_rotated(opened)
        return upkeep

    async def remake_all(self, now: datetime) -> Upkeep:
        """After a key rotation (`croco rotate-secrets`): every channel stopped and made again, so its token is
        signed with the newest key (a Graph subscription renewed in place would keep its old `clientState`,
        refused once the old key is dropped). Each calendar is synced once for the moment between."""
        upkeep = Upkeep([], [], [])
        opened: dict[str, CalendarProvider] = {}
        for calendar in await self._calendars(col(RemoteCalendar.push_channel_id).is_not(None)):
            await self._retire(calendar, opened, upkeep)
        async with self.db.write() as session:
            await session.execute(update(RemoteCalendar).where(col(RemoteCalendar.id).in_(upkeep.stopped))
                                  .values(due_at=now))
        await self._keep_rotated(opened)
        made = await self.renew(now)
        return Upkeep(made.created, upkeep.stopped, upkeep.failed + made.failed, made.broken)

    async def stop_connection(self, connection_id: str) -> None:
        """Before a disconnect: stop the connection's channels. Best effort: a failure is logged and never
        keeps the disconnect from going on (a channel left running expires by itself)."""
        try:
            calendars = await self._calendars(col(RemoteCalendar.connection_id) == connection_id,
                                              col(RemoteCalendar.push_channel_id).is_not(None))
            opened: dict[str, CalendarProvider] = {}
            await asyncio.gather(*(self._stop(c, self._push_of(c, opened), c.channel) for c in calendars))
        except Exception:
            log.exception("push channels not stopped before disconnect", extra={"connection_id": connection_id})

    # Which calendars ---------------------------------------------------------------------------------

    async def _needing_channel(self, now: datetime) -> list[_Calendar]:
        if not can_push(self.public_url):
            return []
        expires = col(RemoteCalendar.push_channel_expires_at)
        return await self._calendars(
            col(RemoteCalendar.id).in_(leases.syncable()),
            col(Connection.provider).not_in(self._without_push | self._unreachable),
            or_(col(RemoteCalendar.push_resource_id).is_(None), expires.is_(None), expires <= now + RENEW_AHEAD),
        )

    async def _unwatched(self) -> list[_Calendar]:
        """Calendars with a channel that are no longer selected, or whose connection broke or went; all of
        them when the public URL no longer takes notifications."""
        conditions = [col(RemoteCalendar.push_channel_id).is_not(None)]
        if can_push(self.public_url):
            conditions.append(col(RemoteCalendar.id).not_in(leases.syncable()))
        return await self._calendars(*conditions)

    async def _calendars(self, *conditions: object) -> list[_Calendar]:
        async with self.db.session() as session:
            rows = (await session.execute(
                select(RemoteCalendar, Connection)
                .join(Connection, col(Connection.id) == col(RemoteCalendar.connection_id))
                .where(*conditions)  # type: ignore[arg-type]
                .order_by(col(RemoteCalendar.id))
            )).all()
        return [_Calendar(row, connection) for row, connection in rows]

    # One calendar ------------------------------------------------------------------------------------

    async def _replace(self, calendar: _Calendar, opened: dict[str, CalendarProvider], upkeep: Upkeep,
                       now: datetime) -> None:
        """A new channel, then the old one stopped (they overlap: no change falls between them)."""
        extra, old, row = calendar.log_extra, calendar.channel, calendar.row
        if calendar.connection.provider in self._without_push or calendar.connection.id in upkeep.broken:
            return
        try:
            push = self._push_of(calendar, opened)
            if push is None:
                return
            if old is not None and isinstance(push, RenewablePush) and await self._renew(calendar, push, old, upkeep):
                return
            new_id, address = str(uuid.uuid4()), push_address(self.public_url, calendar.connection.provider)
            # The `sync` message may come before the watch's answer (G4): the id is stored first.
            before, pending = _stored(row), (new_id, None, None)
            if not await self._swap(row.id, before, pending):
                return  # another process is replacing it
            try:
                channel = await push.watch(row.remote_id, new_id, address, channel_token(self.secrets, row.id),
                                           LIFETIME)
            except Exception:
                await self._swap(row.id, pending, before)
                raise
            # Notifications of the channel replaced were refused since its id was: the calendar syncs once.
            live = (channel.channel_id, channel.resource_id, channel.expires_at)
            if not await self._swap(row.id, pending, live, due=now if row.push_channel_id else None):
                await self._stop(calendar, push, channel)  # the calendar went meanwhile (a disconnect)
                return
            upkeep.created.append(row.id)
            log.info("push channel created", extra=extra | {
                "channel_id": new_id, "replaces": old.channel_id if old else None,
                "expires_at": channel.expires_at.isoformat()})
            if old is not None:
                await self._stop(calendar, push, old)
        except Exception as exc:
            upkeep.failed.append(row.id)
            self._log_failure("push channel not created", exc, extra)
            if isinstance(exc, InvalidCredentials):  # told now, not at the next sync an hour away
                await accounts.break_connection(self.db, calendar.connection.id, str(exc))
                upkeep.broken.append(calendar.connection.id)

    async def _renew(self, calendar: _Calendar, push: RenewablePush, old: PushChannel, upkeep: Upkeep) -> bool:
        """Extend the live channel in place (one request, no gap); False when the server no longer has it, so a
        new one is made."""
        renewed = await push.renew_watch(old, LIFETIME)
        if renewed is None:
            return False
        if await self._swap(calendar.row.id, _stored(calendar.row),
                            (renewed.channel_id, renewed.resource_id, renewed.expires_at)):
            upkeep.renewed.append(calendar.row.id)
            log.info("push channel renewed", extra=calendar.log_extra | {"expires_at": renewed.expires_at.isoformat()})
        return True  # or another process changed the row meanwhile: its channel stands

    async def _retire(self, calendar: _Calendar, opened: dict[str, CalendarProvider], upkeep: Upkeep) -> None:
        """Stop the channel of a calendar no longer watched and forget it; a server that cannot be reached
        now keeps it for the next run."""
        extra = calendar.log_extra
        try:
            push = self._push_of(calendar, opened) if calendar.channel else None
            if push is not None and calendar.channel is not None:
                await push.stop_watching(calendar.channel)
        except (RateLimited, Unreachable) as exc:
            upkeep.failed.append(calendar.row.id)
            self._log_failure("push channel not stopped", exc, extra)
            return
        except Exception as exc:  # refused credentials (a broken connection) or worse: it expires by itself
            self._log_failure("push channel not stopped", exc, extra)
        await self._swap(calendar.row.id, _stored(calendar.row), (None, None, None))
        upkeep.stopped.append(calendar.row.id)
        log.info("push channel stopped", extra=extra)

    async def _stop(self, calendar: _Calendar, push: PushProvider | None, channel: PushChannel | None) -> None:
        """Stop one channel, best effort: one left running expires by itself."""
        if push is None or channel is None:
            return
        try:
            await push.stop_watching(channel)
        except Exception as exc:
            self._log_failure("push channel not stopped", exc, calendar.log_extra | {"channel_id": channel.channel_id})

    def _push_of(self, calendar: _Calendar, opened: dict[str, CalendarProvider]) -> PushProvider | None:
        """The connection's provider if it implements push; one that does not is remembered and its calendars
        are no longer looked at."""
        connection = calendar.connection
        if connection.id not in opened:
            opened[connection.id] = self.providers(
                connection.provider, credentials.unseal(self.secrets, connection.credentials), connection.server_url)
        provider = opened[connection.id]
        if isinstance(provider, PushProvider):
            return provider
        self._without_push.add(connection.provider)
        return None

    async def _swap(self, calendar_id: str, expected: Stored, new: Stored, *, due: datetime | None = None) -> bool:
        """Store `new` if the row still holds `expected`, so of two processes renewing at once one goes on
        and the other's channel is stopped. False when the row changed meanwhile (or is gone)."""
        columns = (col(RemoteCalendar.push_channel_id), col(RemoteCalendar.push_resource_id),
                   col(RemoteCalendar.push_channel_expires_at))
        values: dict[str, object] = dict(zip(("push_channel_id", "push_resource_id", "push_channel_expires_at"), new,
                                             strict=True))
        if due is not None:
            values["due_at"] = due
        async with self.db.write() as session:
            result = await session.execute(
                update(RemoteCalendar)
                .where(col(RemoteCalendar.id) == calendar_id,
                       *(column.is_(None) if value is None else column == value
                         for column, value in zip(columns, expected, strict=True)))
                .values(**values)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _keep_rotated(self, opened: dict[str, CalendarProvider]) -> None:
        """Tokens a watch or stop refreshed are kept, as a sync keeps them."""
        for connection_id, provider in opened.items():
            if provider.rotated_credentials() is not None:
                async with self.db.write() as session:
                    await credentials.keep_rotated(session, self.secrets, connection_id, provider)

    @staticmethod
    def _log_failure(message: str, exc: Exception, extra: dict[str, str | None]) -> None:
        if isinstance(exc, InvalidCredentials):
            log.warning(message, extra=extra | {"error": "credentials refused: the connection is broken"})
        elif isinstance(exc, ProviderError):
            log.warning(message, extra=extra | {"error": str(exc)})
        else:
            log.exception(message, extra=extra | {"error": type(exc).__name__})
