"""The small protocol every calendar provider implements, and the errors it may raise.

Like vdirsyncer's storage interface: list, incremental changes, conditional create/update/delete, all async.
A provider also reads its own items into occurrences with busy/free already decided, because each provider's
free/busy, cancellation and id rules live in that provider alone (DESIGN.md section 2). Reading is pure:
`changes()` transfers raw items, `read()` maps one of them, so a bad item fails alone (BadRemoteData) and
the engine skips and reports it while the rest of the calendar syncs.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from storage.enums import Access
from sync.events import ItemEvents, RemoteObject

log = logging.getLogger(__name__)

MAX_CURSOR_LENGTH = 4000
"""A cursor is stored in `RemoteCalendar.sync_cursor` (VARCHAR(4000)); providers never return a longer one."""


class ProviderError(Exception):
    """Base of every provider failure. Messages are for people and never contain credentials."""


class InvalidCredentials(ProviderError):
    """The server refused the credentials (wrong password, revoked token or app password)."""


class GrantRevoked(InvalidCredentials):
    """The token endpoint refused our refresh token (OAuth `invalid_grant`): revoked by the user, unused for
    months, or superseded by newer tokens. Only connecting again helps, so it breaks the connection."""

    def __init__(self, error: str = "invalid_grant") -> None:
        super().__init__(f"the account's authorization was withdrawn ({error}): connect it again")
        self.error = error


class Unreachable(ProviderError):
    """The server could not be reached or did not answer like a calendar server."""


class CalendarGone(ProviderError):
    """The calendar collection no longer exists."""


class PreconditionFailed(ProviderError):
    """A conditional write lost a race: the remote item changed (or exists) since we read it."""


class RateLimited(ProviderError):
    """The server asked us to slow down; `retry_after` is in seconds (the engine postpones the calendar)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadRemoteData(ProviderError):
    """One item cannot be read (malformed iCalendar, no start, end before start); the rest can."""

    def __init__(self, remote_id: str, reason: str) -> None:
        super().__init__(f"{remote_id}: {reason}")
        self.remote_id, self.reason = remote_id, reason


@dataclass(frozen=True)
class AppPassword:
    """CalDAV and iCloud: a username and a (preferably app-specific) password."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class OAuthTokens:
    """Google and Microsoft: what the token endpoint answered. The access token expires at `expires_at`; the
    refresh token gets new ones and may itself be replaced on use (Microsoft always, Google sometimes)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    scope: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenCache:
    """Microsoft: msal's `SerializableTokenCache` as it serializes (its access and refresh tokens inside), and the
    home account id it holds them for. Graph rotates the refresh token on every refresh, so the whole cache is
    what is stored (encrypted) and handed back by `rotated_credentials()` each time it changed."""

    serialized: str = field(repr=False)
    home_account_id: str


Credentials = AppPassword | OAuthTokens | TokenCache


OAuthGrant = OAuthTokens | TokenCache
"""What an OAuth code exchange gives: Google's tokens, or msal's token cache (Microsoft)."""


@dataclass(frozen=True)
class ExchangedAccount:
    """The result of an OAuth code exchange: the account's address (the connection's `account`) and its tokens."""

    account: str
    tokens: OAuthGrant


@dataclass(frozen=True)
class RemoteCalendarInfo:
    remote_id: str
    name: str
    access: Access  # full: we may write; read: events with details; freebusy: busy times only
    primary: bool = False  # the account's own calendar (Google: its id, the account's email, is the `account`)


@dataclass(frozen=True)
class RemoteItem:
    """One remote object as transferred: its id (CalDAV: href path), version tag and raw content."""

    remote_id: str
    etag: str | None
    data: str


@dataclass(frozen=True)
class ChangeSet:
    """Changes since a cursor.

    With `full`, this is a complete listing and anything not in it is gone: the first sync, or the cursor was
    no longer valid and the provider silently started over. The engine reconciles by remote id either way,
    so a restart never duplicates anything.
    """

    changed: tuple[RemoteItem, ...]
    removed: tuple[str, ...]
    cursor: str | None
    full: bool
    removals_name_occurrences: bool = False
    """A removal may name one occurrence of a series listed as one item (Graph's delta, M1): one naming nothing
    stored makes the engine list the calendar again in full (plan's `Relist`)."""


@dataclass(frozen=True)
class EventDraft:
    """An appointment as we write it into a linked calendar."""

    appointment_id: str
    start: datetime
    end: datetime
    title: str
    sequence: int = 0


@dataclass(frozen=True)
class WriteResult:
    remote_id: str
    etag: str | None
    existed: bool = False  # `create` found our event already there (written before a crash, or cancelled)


@dataclass(frozen=True)
class TimeWindow:
    """The sync window [start, end): Graph's calendarView needs it on every call, Google's full listing takes
    it as timeMin/timeMax, CalDAV's free-busy-query as its time-range."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class ReadContext:
    """What reading an item needs to know about its owner and the sync window."""

    timezone: ZoneInfo
    user_email: str
    window_start: datetime
    window_end: datetime

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(self.window_start, self.window_end)


Reader = Callable[[RemoteItem, ReadContext], RemoteObject]

ItemSink = Callable[[tuple[RemoteItem, ...]], None]
"""`changes(on_items=...)`: receives the changed items batch by batch as they are transferred."""

ReadResults = list[RemoteObject | tuple[str, str]]
"""Per item: what it reads as, or (remote id, why it was skipped)."""


def told(mapped: ItemEvents) -> RemoteObject:
    """What a reader gives the planner: the item's objects, with whatever had to be guessed logged (never
    the event's content). Every provider's reader ends here."""
    for warning in mapped.warnings:
        log.warning("calendar item read with a guess", extra={"remote_id": mapped.remote_id, "warning": warning})
    return mapped.remote_object()


def json_events(remote_id: str, data: str) -> list[dict[str, Any]]:
    """An item of a JSON provider (Google, Graph): the list of event resources it was stored as."""
    try:
        resources = json.loads(data)
    except ValueError:
        raise BadRemoteData(remote_id, "malformed JSON") from None
    if not isinstance(resources, list) or not resources or not all(isinstance(e, dict) for e in resources):
        raise BadRemoteData(remote_id, "not a list of events")
    return resources


def read_items(reader: Reader, items: tuple[RemoteItem, ...], context: ReadContext) -> ReadResults:
    """Runs in a worker process: results and skip reasons come back as plain, picklable values. It lives
    here, away from the engine, so that a worker imports the readers and not the database layer."""
    results: ReadResults = []
    for item in items:
        try:
            results.append(reader(item, context))
        except BadRemoteData as exc:
            results.append((exc.remote_id, exc.reason))
    return results


def merged_periods(periods: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Busy periods in order with overlapping and touching ones joined: a free/busy answer may report one busy
    stretch in parts (by busy type, or by query chunk), and it must be one synthesized item with one id."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(p for p in periods if p[1] > p[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class CalendarProvider(Protocol):
    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        """Every calendar of the account with our access level."""
        ...

    async def changes(
        self, calendar_id: str, cursor: str | None, window: TimeWindow, *, on_items: ItemSink | None = None
    ) -> ChangeSet:
        """What changed since `cursor` (None: everything) among events overlapping `window`. An invalid cursor
        gives a full listing. A provider may return events outside the window (CalDAV lists everything); the
        reader drops their occurrences.

        `on_items`, if given, is called with each batch of changed items as soon as it is transferred, so the
        caller can read one batch while the next downloads. Batches arrive in order, never empty, and together
        they are exactly the result's `changed`; if `changes()` raises, the caller drops what it was given.
        """
        ...

    async def create(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        """Create our event; idempotent: a retry after a crash finds the first copy, never makes a second."""
        ...

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        """Overwrite our event if it still has `etag` (None: unconditionally); else PreconditionFailed."""
        ...

    async def delete(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        """Delete if it still has `etag` (None: unconditionally); an item already gone counts as deleted."""
        ...

    def reader(self) -> Reader:
        """`read` as a plain picklable function without credentials: the engine may run it in worker
        processes to read a large listing on every core."""
        ...

    def read(self, item: RemoteItem, context: ReadContext) -> RemoteObject:
        """The item's occurrences inside the window; raises BadRemoteData for an unreadable item."""
        ...

    def rotated_credentials(self) -> Credentials | None:
        """The credentials now in use if a token refresh replaced those the provider was opened with, else
        None. The engine stores them with the cycle's pull: a replaced refresh token may be the only one left."""
        ...


@dataclass(frozen=True)
class PushChannel:
    """A live push channel on one calendar (Google `events.watch`, a Graph subscription): the server calls
    our webhook when the calendar changes, until `expires_at`. `resource_id` is what stopping it needs."""

    channel_id: str
    resource_id: str
    expires_at: datetime


@runtime_checkable
class PushProvider(Protocol):
    """What a provider with push notifications adds to `CalendarProvider` (`sync/channels.py` drives it)."""

    async def watch(self, calendar_id: str, channel_id: str, address: str, token: str,
                    lifetime: timedelta) -> PushChannel:
        """Ask the server to call `address` on every change of the calendar, carrying `token`, for at most
        `lifetime` (the server may grant less: the answer's `expires_at` says)."""
        ...

    async def stop_watching(self, channel: PushChannel) -> None:
        """Stop a channel; one already gone or expired counts as stopped."""
        ...


@runtime_checkable
class RenewablePush(Protocol):
    """A push provider whose channels can be extended in place (Graph's subscriptions, M4), rather than
    replaced by a new channel as Google's must be."""

    async def renew_watch(self, channel: PushChannel, lifetime: timedelta) -> PushChannel | None:
        """Extend a live channel to at most `lifetime` from now (this also reauthorizes it); None when the
        server no longer has it, so a new one is made."""
        ...


@runtime_checkable
class BatchCreator(Protocol):
    """A provider that can create several events in one request (Google's batch, Graph's `$batch`)."""

    async def create_many(self, calendar_id: str, drafts: list[EventDraft]) -> list[WriteResult | ProviderError]:
        """`create` for each draft, in order, each result or failure on its own (one may fail alone)."""
        ...


class ConsentFailed(ProviderError):
    """The OAuth consent did not give us a working grant: the person declined (`access_denied`), the code was
    used or expired (`invalid_grant`), or the provider refused our client. `error` is the OAuth error code,
    which a page may name; the provider's own description is never kept."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


def code_refused(service: str, error: str) -> ConsentFailed:
    """The token endpoint's refusal of a sign-in code, by its OAuth error code alone (anything but a plain code
    is not repeated); the description the server sent with it is never kept."""
    code = error if error.replace("_", "").isalnum() and len(error) <= 64 else "error"
    if code == "invalid_grant":
        return ConsentFailed(code, f"{service} refused the sign-in code (invalid_grant): it was used already or "
                                   "has expired, so sign in again")
    return ConsentFailed(code, f"{service} refused to exchange the sign-in code ({code})")


class OAuthClient(Protocol):
    """What connecting a Google or Microsoft account through its consent page takes (sync/connect_links.py):
    the page to send the person to, and the code it sends back exchanged for tokens. PKCE: the verifier is
    ours, kept sealed with the link until the code comes back."""

    async def consent_url(self, state: str, code_verifier: str) -> str:
        ...

    async def exchange(self, code: str, code_verifier: str) -> OAuthGrant:
        """Raises ConsentFailed (the code is refused) or Unreachable."""
        ...

    async def account(self, grant: OAuthGrant, calendars: list[RemoteCalendarInfo]) -> str:
        """The connection's `account`, from the calendars the new grant lists (Google) or from the identity the
        grant belongs to (Microsoft's `/me`); ConsentFailed if none says, Unreachable if it cannot be asked."""
        ...


class InsecureEndpoint(ValueError):
    """A configured URL is plain http where only https will do. The message names the setting."""


@dataclass(frozen=True)
class GoogleConfig:
    """Google's OAuth client and endpoints (API.md "Slack and provider endpoints"): calls go to
    `{api_url}calendar/v3/...`, batches to `{api_url}batch/calendar/v3`, refreshes to `token_url`."""

    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    api_url: str = "https://www.googleapis.com/"
    auth_url: str = "https://accounts.google.com/o/oauth2/auth"
    token_url: str = "https://oauth2.googleapis.com/token"
    retries: int = 4  # of a rate-limited or failed call, with the library's exponential backoff (full jitter)


@dataclass(frozen=True)
class MicrosoftConfig:
    """Microsoft's OAuth client, its authority (https, with the tenant) and the Graph base URL (API.md)."""

    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    authority: str = "https://login.microsoftonline.com/common"
    graph_url: str = "https://graph.microsoft.com/v1.0/"


@dataclass(frozen=True)
class ProviderConfig:
    """Process-wide provider settings (base URLs and timeouts), injectable for tests and the demo."""

    icloud_url: str = "https://caldav.icloud.com/"
    timeout_seconds: float = 20.0
    google: GoogleConfig = GoogleConfig()
    microsoft: MicrosoftConfig = MicrosoftConfig()

    def push_origins(self) -> dict[str, str]:
        """Where each provider with push notifications is served, by provider name: the host that would call us."""
        return {"google": self.google.api_url, "microsoft": self.microsoft.graph_url}


class ProviderFactory(Protocol):
    def __call__(self, provider: str, credentials: Credentials, server_url: str | None) -> CalendarProvider:
        ...


def is_loopback(url: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: a server on this machine (an emulator, a developer's own Croco). Plain http
    is accepted there for OAuth (google-auth-oauthlib) and push (a provider calling us back), nowhere else."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
