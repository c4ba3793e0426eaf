"""Connect links (API.md "Connecting in a browser"): a person opens a link and connects an account there,
because a Slack modal has no password field and OAuth needs a browser.

iCloud and CalDAV get a one-time form at `{public_url}/connect/{token}`, valid 15 minutes and spent by the
first success. Only the token's SHA-256 is stored. A failed attempt leaves the link usable; checking the
credentials happens outside any transaction, and spending the link is a conditional update in the same
transaction that saves the connection (and writes the `connected` notice, the DM that follows), so two
submissions of one link connect once. A reconnect link renews
the connection it names instead of adding one (the button on a `connection_broken` notice).

Used by the REST API and, without HTTP, by the Slack app.
"""

from __future__ import annotations

import hashlib
import logging
import secrets as tokens
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.enums import Provider
from storage.models import Connection, ConnectLink, RemoteCalendar
from storage.secrets import SecretBox
from storage.types import Clock, utcnow
from sync import accounts
from sync.errors import Gone, Invalid, NotFound
from sync.notices import AccountConnected, notify
from sync.providers.base import AppPassword, ProviderFactory

log = logging.getLogger(__name__)

LIFETIME = timedelta(minutes=15)
FORM_PROVIDERS = frozenset({Provider.ICLOUD, Provider.CALDAV})
OAUTH_SETTINGS = {Provider.GOOGLE: "CROCO_GOOGLE", Provider.MICROSOFT: "CROCO_MICROSOFT"}


@dataclass(frozen=True)
class IssuedLink:
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class OpenLink:
    """What the form shows: for a reconnect, the account and server it renews."""

    provider: Provider
    user_id: str
    connection_id: str | None
    account: str | None
    server_url: str | None


@dataclass(frozen=True)
class Connected:
    connection: Connection
    calendars: list[RemoteCalendar]
    renewed: bool


class ConnectLinks:
    def __init__(
        self, db: Database, secrets: SecretBox, providers: ProviderFactory, *, public_url: str,
        oauth_clients: frozenset[str] = frozenset(), clock: Clock = utcnow,
    ) -> None:
        """`oauth_clients`: the providers whose OAuth client id and secret are configured."""
        self.db, self.secrets, self.providers = db, secrets, providers
        self.public_url, self.oauth_clients, self.clock = public_url.rstrip("/"), oauth_clients, clock

    async def issue(self, user_id: str, provider: Provider, connection_id: str | None = None) -> IssuedLink:
        """A link for the user to connect an account of `provider`, or to renew `connection_id` (theirs)."""
        if provider not in FORM_PROVIDERS:
            raise _not_configured(provider, configured=provider in self.oauth_clients)
        async with self.db.write() as session:
            await accounts.get_user(session, user_id)
            if connection_id is not None:
                connection = await session.get(Connection, connection_id)
                if connection is None or connection.user_id != user_id:
                    raise NotFound(f"connection_id: no connection {connection_id} of this user")
                if connection.provider != provider:
                    raise Invalid(f"connection_id: connection {connection_id} is a {connection.provider} connection")
            token, expires_at = tokens.token_urlsafe(32), self.clock() + LIFETIME
            session.add(ConnectLink(user_id=user_id, provider=provider, connection_id=connection_id,
                                    token_hash=_digest(token), expires_at=expires_at))
        return IssuedLink(f"{self.public_url}/connect/{token}", expires_at)

    async def reconnect(self, connection_id: str) -> IssuedLink:
        """The `reconnect` button: a link that renews this connection with new credentials."""
        async with self.db.session() as session:
            connection = await session.get(Connection, connection_id)
        if connection is None:
            raise NotFound(f"no connection {connection_id}")
        return await self.issue(connection.user_id, Provider(connection.provider), connection_id)

    async def open(self, token: str) -> OpenLink:
        """The link a form shows; Gone when it is unknown, expired or spent."""
        async with self.db.session() as session:
            link = await _usable(session, token, self.clock())
            connection = await session.get(Connection, link.connection_id) if link.connection_id else None
        return OpenLink(Provider(link.provider), link.user_id, link.connection_id,
                        connection.account if connection else None, connection.server_url if connection else None)

    async def submit(self, token: str, login: AppPassword, url: str | None) -> Connected:
        """Check the credentials, then connect (or renew) and spend the link in one transaction.

        Invalid (wrong credentials, unreachable, no URL for CalDAV) leaves the link usable; Gone when it is
        unknown, expired or spent, also by a submission that won the race while this one was checking."""
        link = await self.open(token)
        if link.provider == Provider.CALDAV and not url:
            raise Invalid("url: required for a CalDAV connection")
        calendars = await accounts.check_login(self.providers, link.provider, login, url)
        now = self.clock()
        async with self.db.write() as session:
            spent = await session.execute(
                update(ConnectLink).where(col(ConnectLink.token_hash) == _digest(token),
                                          col(ConnectLink.used_at).is_(None), col(ConnectLink.expires_at) > now)
                .values(used_at=now))
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                raise _gone()
            if link.connection_id is None:
                connection, rows = await accounts.save_connection(
                    session, self.secrets, link.user_id, link.provider, login, url, calendars, now)
            else:
                renewing = await session.get(Connection, link.connection_id)
                assert renewing is not None  # a disconnect deletes its links (ON DELETE CASCADE): not spent then
                connection, rows = await accounts.renew_connection(
                    session, self.secrets, renewing, login, url, calendars, now)
            renewed = link.connection_id is not None
            await notify(session, link.user_id, AccountConnected(  # the DM after the browser step, with the change
                connection.id, str(link.provider), connection.account, tuple(r.name for r in rows), renewed))
        log.info("connected through a link", extra={"user_id": link.user_id, "connection_id": connection.id,
                                                    "provider": link.provider, "renewed": renewed})
        return Connected(connection, rows, renewed)


async def _usable(session: AsyncSession, token: str, now: datetime) -> ConnectLink:
    link = await session.scalar(select(ConnectLink).where(col(ConnectLink.token_hash) == _digest(token)))
    if link is None or link.used_at is not None or link.expires_at <= now:
        raise _gone()
    return link


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _gone() -> Gone:
    return Gone("this link is unknown, expired or already used: ask for a new one")


def _not_configured(provider: Provider, *, configured: bool) -> Invalid:
    if configured:  # the consent page comes with the provider's own issue
        message = f"connecting {provider} accounts is not available in this version"
    else:
        prefix = OAUTH_SETTINGS[provider]
        message = f"{provider} is not configured: set {prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET"
    return Invalid(message, code="provider_not_configured")
