"""Connect links (API.md "Connecting in a browser"): a person opens a link and connects an account there,
because a Slack modal has no password field and OAuth needs a browser.

iCloud and CalDAV get a one-time form at `{public_url}/connect/{token}`, valid 15 minutes and spent by the
first success. Only the token's SHA-256 is stored. A failed attempt leaves the link usable; checking the
credentials happens outside any transaction, and spending the link is a conditional update in the same
transaction that saves the connection (and writes the `connected` notice, the DM that follows), so two
submissions of one link connect once. A reconnect link renews
the connection it names instead of adding one (the button on a `connection_broken` notice).

Google and Microsoft (behind the same `OAuthClient`) get its consent page instead, valid 10 minutes: the
link's token travels as the OAuth `state`, signed (`<token>.<mac>`), so a forged state is refused before any
database read; the PKCE verifier is sealed in the link. The callback exchanges the code and lists the
calendars outside any transaction, then spends the link and saves the connection like the form does,
renewing the user's existing connection to the same account rather than adding a second one.

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

from storage import repositories
from storage.db import Database
from storage.enums import Provider
from storage.models import Connection, ConnectLink, RemoteCalendar
from storage.secrets import SecretBox
from storage.types import Clock, utcnow
from sync import accounts
from sync.errors import Gone, Invalid, NotFound
from sync.notices import AccountConnected, notify
from sync.providers.base import (
    AppPassword,
    ConsentFailed,
    ExchangedAccount,
    InsecureEndpoint,
    OAuthClient,
    ProviderConfig,
    ProviderFactory,
    RemoteCalendarInfo,
    Unreachable,
)
from sync.providers.google.oauth import GoogleOAuth
from sync.providers.microsoft.oauth import MicrosoftOAuth

log = logging.getLogger(__name__)

FORM_LIFETIME = timedelta(minutes=15)
OAUTH_LIFETIME = timedelta(minutes=10)
FORM_PROVIDERS = frozenset({Provider.ICLOUD, Provider.CALDAV})
OAUTH_SETTINGS = {Provider.GOOGLE: "CROCO_GOOGLE", Provider.MICROSOFT: "CROCO_MICROSOFT"}
STATE_PURPOSE = "oauth-state"
DEFAULT_CONFIG = ProviderConfig()


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


def callback_path(provider: Provider) -> str:
    """Where the provider sends the browser back; the redirect URI registered is the public URL plus this."""
    return f"/oauth/{provider}/callback"


class ConnectLinks:
    def __init__(
        self, db: Database, secrets: SecretBox, providers: ProviderFactory, *, public_url: str,
        oauth_clients: frozenset[str] = frozenset(), provider_config: ProviderConfig = DEFAULT_CONFIG,
        clock: Clock = utcnow,
    ) -> None:
        """`oauth_clients`: the providers whose OAuth client id and secret are configured; `provider_config`
        holds those clients and their endpoints."""
        self.db, self.secrets, self.providers = db, secrets, providers
        self.public_url, self.oauth_clients, self.clock = public_url.rstrip("/"), oauth_clients, clock
        self.provider_config = provider_config

    def redirect_uri(self, provider: Provider) -> str:
        return self.public_url + callback_path(provider)

    def oauth(self, provider: Provider) -> OAuthClient:
        """The provider's consent flow; Invalid `provider_not_configured` when it cannot offer one."""
        if provider not in self.oauth_clients:
            raise _not_configured(provider)
        config, timeout = self.provider_config, self.provider_config.timeout_seconds
        try:
            if provider == Provider.GOOGLE:
                return GoogleOAuth(config.google, self.redirect_uri(provider), timeout_seconds=timeout)
            return MicrosoftOAuth(config.microsoft, self.redirect_uri(provider), timeout_seconds=timeout)
        except InsecureEndpoint as exc:
            raise Invalid(f"{provider} is not usable: {exc}", code="provider_not_configured") from None

    async def issue(self, user_id: str, provider: Provider, connection_id: str | None = None) -> IssuedLink:
        """A link for the user to connect an account of `provider`, or to renew `connection_id` (theirs):
        the form (iCloud, CalDAV) or the provider's consent page (OAuth)."""
        oauth = None if provider in FORM_PROVIDERS else self.oauth(provider)
        token = tokens.token_urlsafe(32)
        if oauth is None:
            url, verifier, expires_at = f"{self.public_url}/connect/{token}", None, self.clock() + FORM_LIFETIME
        else:
            verifier = tokens.token_urlsafe(64)  # 86 characters of the unreserved set: RFC 7636 wants 43-128
            try:
                url = await oauth.consent_url(self._state(token), verifier)
            except Unreachable as exc:  # msal reads the authority's metadata first
                raise Invalid(str(exc), code="unreachable") from None
            expires_at = self.clock() + OAUTH_LIFETIME
        async with self.db.write() as session:
            await accounts.get_user(session, user_id)
            if connection_id is not None:
                connection = await session.get(Connection, connection_id)
                if connection is None or connection.user_id != user_id:
                    raise NotFound(f"connection_id: no connection {connection_id} of this user")
                if connection.provider != provider:
                    raise Invalid(f"connection_id: connection {connection_id} is a {connection.provider} connection")
            session.add(ConnectLink(
                user_id=user_id, provider=provider, connection_id=connection_id, token_hash=_digest(token),
                code_verifier=None if verifier is None else self.secrets.seal({"code_verifier": verifier}),
                expires_at=expires_at))
        return IssuedLink(url, expires_at)

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
        return await self._connect(token, link, login, url, calendars, same_account_renews=False)

    async def complete_oauth(self, provider: Provider, state: str, code: str) -> Connected:
        """The consent page's answer: exchange the code, list the calendars, then connect (or renew) and
        spend the link in one transaction, as `submit` does.

        Invalid `provider_not_configured` first, when this Croco cannot connect `provider`; Gone for a forged,
        unknown, expired or spent state (a forged one without reading the database); Invalid when the code is
        refused, the provider cannot be reached or lists no account, the link staying usable until it expires."""
        oauth = self.oauth(provider)
        token = self._verified(state)
        async with self.db.session() as session:
            row = await _usable(session, token, self.clock())
        if row.provider != provider or row.code_verifier is None:  # a state given to another provider's page
            raise _gone()
        link = OpenLink(provider, row.user_id, row.connection_id, None, None)
        verifier = str(self.secrets.open(row.code_verifier)["code_verifier"])
        try:
            granted = await oauth.exchange(code, verifier)
            calendars = await accounts.check_login(self.providers, provider, granted, None)
            login = ExchangedAccount(await oauth.account(granted, calendars), granted)
        except (ConsentFailed, Unreachable) as exc:
            error = exc.error if isinstance(exc, ConsentFailed) else "unreachable"
            log.info("consent not completed", extra={"user_id": row.user_id, "provider": provider, "error": error})
            raise Invalid(str(exc), code=error) from None
        return await self._connect(token, link, login, None, calendars, same_account_renews=True)

    async def _connect(
        self, token: str, link: OpenLink, login: accounts.Login, url: str | None,
        calendars: list[RemoteCalendarInfo], *, same_account_renews: bool,
    ) -> Connected:
        """Spend the link (conditionally: one of two racing attempts wins, the other is Gone), save the new
        or renewed connection and write the `connected` notice, all in one transaction. With
        `same_account_renews`, the user's existing connection to this account is renewed, not doubled."""
        now = self.clock()
        async with self.db.write() as session:
            spent = await session.execute(
                update(ConnectLink).where(col(ConnectLink.token_hash) == _digest(token),
                                          col(ConnectLink.used_at).is_(None), col(ConnectLink.expires_at) > now)
                .values(used_at=now))
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                raise _gone()
            renewing_id = link.connection_id
            if renewing_id is None and same_account_renews:
                renewing_id = await _same_account(session, link, accounts.account_of(login))
            if renewing_id is None:
                connection, rows = await accounts.save_connection(
                    session, self.secrets, link.user_id, link.provider, login, url, calendars, now)
            else:
                renewing = await session.get(Connection, renewing_id)
                assert renewing is not None  # a disconnect deletes its links (ON DELETE CASCADE): not spent then
                connection, rows = await accounts.renew_connection(
                    session, self.secrets, renewing, login, url, calendars, now)
            renewed = renewing_id is not None
            await notify(session, link.user_id, AccountConnected(  # the DM after the browser step, with the change
                connection.id, str(link.provider), connection.account, tuple(r.name for r in rows), renewed))
        log.info("connected through a link", extra={"user_id": link.user_id, "connection_id": connection.id,
                                                    "provider": link.provider, "renewed": renewed})
        return Connected(connection, rows, renewed)

    def _state(self, token: str) -> str:
        return f"{token}.{self.secrets.mac(STATE_PURPOSE, token)}"

    def _verified(self, state: str) -> str:
        """The link's token, if `state` carries our signature of it; else Gone."""
        token, _, signature = state.rpartition(".")
        if not token or not self.secrets.verify_mac(STATE_PURPOSE, token, signature):
            raise _gone()
        return token


async def _same_account(session: AsyncSession, link: OpenLink, account: str) -> str | None:
    """The user's connection to this account of this provider, if any; two consents for one account at once
    take turns here, so the second renews what the first created."""
    await repositories.serialize(session, f"connection:{link.user_id}:{link.provider}:{account}")
    found: str | None = await session.scalar(
        select(col(Connection.id)).where(col(Connection.user_id) == link.user_id,
                                    col(Connection.provider) == link.provider, col(Connection.account) == account)
        .order_by(col(Connection.created_at)).limit(1))
    return found


async def _usable(session: AsyncSession, token: str, now: datetime) -> ConnectLink:
    link = await session.scalar(select(ConnectLink).where(col(ConnectLink.token_hash) == _digest(token)))
    if link is None or link.used_at is not None or link.expires_at <= now:
        raise _gone()
    return link


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _gone() -> Gone:
    return Gone("this link is unknown, expired or already used: ask for a new one")


def _not_configured(provider: Provider) -> Invalid:
    prefix = OAUTH_SETTINGS[provider]
    return Invalid(f"{provider} is not configured: set {prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET",
                   code="provider_not_configured")
