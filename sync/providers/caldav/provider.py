"""CalDAV (any server) and iCloud, on the `caldav` library's async client.

Why the async client and not the sync one in a thread: caldav 3 ships `caldav.aio.AsyncDAVClient`, a real
asyncio client on niquests' AsyncSession. It does HTTP, authentication and multistatus parsing; this module
only decides what to ask. Its high-level objects are not used: `get_objects_by_sync_token` silently falls
back to downloading everything and GETs one object per request (provider-apis.md C1, C5).

- discovery: principal, then its calendar-home-set, which may be on another host (iCloud's partition hosts:
  calendar ids are absolute URLs, so later calls go there directly), then one Depth:1 PROPFIND listing the
  calendars with `current-user-privilege-set` (write: full, read: read, read-free-busy only: freebusy);
- changes: RFC 6578 `sync-collection` with the stored token (one request when idle), asking for
  `calendar-data` with `getetag`, so a server that gives it (Radicale) sends a first import in one reply
  instead of one multiget per 250 events. What it leaves out (Xandikos answers 404 for the property) comes
  by `calendar-multiget`, in chunks. RFC 6578 does not promise `calendar-data` there: a server that
  refuses the request is asked again without it, and its cursor kind (`SYNC_HREFS`) remembers that.
  A rejected token (403 or 412 `valid-sync-token`; iCloud uses 403) restarts with an empty token and says
  so (`full=True`). Servers without sync-collection get a getctag/getetag fallback whose cursor carries the
  last etag listing (`_EtagState`);
- free/busy only (a calendar shared with read-free-busy and no read): the engine keeps no provider and does
  not say a calendar's access, so the server's answer decides. A sync-collection refused with a bare 403 is
  asked as an RFC 4791 7.10 `free-busy-query` over the window; if that is answered, the cursor (`FREEBUSY`
  and the window's first day) sends later cycles straight to it (one request), until the window starts on
  another day: then the listing is tried again first, so access granted since is found within a day. Each
  busy period becomes one synthesized VEVENT (opaque, no title) whose id is its UTC start and end, so an
  unchanged period keeps its id; a free/busy answer has no incremental form, so each cycle is a full listing
  and a period that went away is removed;
- writes: our event lives at `<calendar>/<appointment-id>.ics`; create is `PUT If-None-Match: *`, and a 412
  (or a UID conflict) means our copy already exists, written before a crash or a lost reply: we return it
  and never write a second one. Update is `PUT If-Match`, delete `DELETE If-Match`; 404/410 on delete is done;
- discovery: a server that takes requests without credentials answers a wrong password's retry without
  asking for one; a current-user-principal of `<unauthenticated/>` (RFC 5397), or none at all once the server
  sent a 401, is InvalidCredentials, never an account with no calendars;
- failures: 401 is InvalidCredentials, 404 on the collection CalendarGone, 429 (or 503 with Retry-After)
  RateLimited, connection trouble Unreachable. Messages are ours: nothing the server or the library says,
  and never a credential, reaches an exception, a repr or a log line.

Credentials go with the first request (preemptive Basic), so an idle cycle costs one request instead of a
401 challenge plus the request. A server that wants Digest answers 401, and the operation is retried once
with the library's negotiation.

iCloud is this protocol with its own base URL and wording (`ICLOUD`): app-specific passwords, partition
hosts, the collection itself listed among its members (skipped), eventual consistency after writes. An href
that a listing names but a multiget cannot fetch yet comes back next cycle (the cursor does not move past
it) instead of being lost.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import math
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from caldav.aio import AsyncDAVClient
from caldav.lib import error as dav_error
from caldav.response import DAVResponse, PropfindResult
from icalendar import Calendar, Event
from niquests import Response

from storage.enums import Access, Provider
from sync.events import RemoteObject
from sync.providers.base import (
    MAX_CURSOR_LENGTH,
    AppPassword,
    CalendarGone,
    ChangeSet,
    EventDraft,
    InvalidCredentials,
    ItemSink,
    PreconditionFailed,
    ProviderConfig,
    ProviderError,
    RateLimited,
    ReadContext,
    Reader,
    RemoteCalendarInfo,
    RemoteItem,
    TimeWindow,
    Unreachable,
    WriteResult,
    merged_periods,
)
from sync.providers.caldav.ical import PRODID, UID_SUFFIX, read_object, write_event
from sync.telemetry import count_request

log = logging.getLogger(__name__)
T = TypeVar("T")

MULTIGET_CHUNK = 250
"""Hrefs per calendar-multiget: few requests, and well under servers' report limits (research C5)."""
DEFAULT_RETRY_AFTER = 60.0
SYNC, SYNC_HREFS, ETAGS, FREEBUSY = "sync:", "sync-hrefs:", "etags:", "freebusy:"
"""Cursor kinds: an RFC 6578 token (events' data asked for with it), the same for a server that refuses
that (hrefs and etags only, data by multiget), the fallback's etag listing, and a calendar we may only read
the free/busy time of (the day it was last found so: each cycle asks for the whole window)."""
_REFUSALS = frozenset({400, 403, 409, 412, 415, 422, 501})
"""Answers to a sync-collection asking for calendar-data that may mean "not with calendar-data": asked again
without it, which then tells a rejected token or a missing REPORT apart."""

_DAV, _CALDAV, _CS = "DAV:", "urn:ietf:params:xml:ns:caldav", "http://calendarserver.org/ns/"
_GETETAG, _GETCTAG = f"{{{_DAV}}}getetag", f"{{{_CS}}}getctag"
_WRITE = {f"{{{_DAV}}}all", f"{{{_DAV}}}write", f"{{{_DAV}}}write-content", f"{{{_DAV}}}bind"}
_XML = '<?xml version="1.0" encoding="utf-8"?>'


@dataclass(frozen=True)
class Profile:
    """How we name a server in messages people read (iCloud is CalDAV with Apple's words), and in metrics."""

    provider: Provider  # the connection's provider, the label its requests are counted under
    label: str
    credentials: str


CALDAV = Profile(Provider.CALDAV, "The calendar server", "username or password")
ICLOUD = Profile(Provider.ICLOUD, "iCloud", "Apple ID or app-specific password")


class _TokenRejected(Exception):
    """The server no longer knows our sync token: start over with a full listing (asking for data as before)."""

    def __init__(self, *, inline: bool) -> None:
        super().__init__()
        self.inline = inline


class _NoSyncCollection(Exception):
    """The server does not do RFC 6578: use the getctag/getetag fallback."""


class _ReadRefused(Exception):
    """A bare 403 to the listing: perhaps a calendar shared free/busy only. `refusal` is raised if it is not."""

    def __init__(self, refusal: dav_error.AuthorizationError) -> None:
        super().__init__()
        self.refusal = refusal


class CalDAVProvider:
    def __init__(
        self, url: str, username: str, password: str, config: ProviderConfig, *, profile: Profile = CALDAV,
        account_email: str | None = None,
    ) -> None:
        self._url, self._username, self._password = _without_userinfo(url), username, password
        self._config, self._profile = config, profile
        self._account_email = account_email or (username if "@" in username else None)

    def __repr__(self) -> str:  # never the password
        return f"CalDAVProvider(url={self._url!r}, username={self._username!r}, profile={self._profile.label!r})"

    def rotated_credentials(self) -> None:
        """A password is never replaced by the server."""
        return None

    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        challenged = False  # the server answered 401 to our credentials: the retry must end up signed in

        def retry() -> bool:
            nonlocal challenged
            challenged = True
            return True

        async def run(client: AsyncDAVClient) -> list[RemoteCalendarInfo]:
            principal, anonymous = await _principal(client, self._url)
            if anonymous or (principal is None and challenged):
                raise self._refused()
            principal_url = urljoin(self._url, principal) if principal else self._url
            homes = _first(await _propfind(client, principal_url, _HOME_SET), f"{{{_CALDAV}}}calendar-home-set")
            found: list[RemoteCalendarInfo] = []
            for home in homes if isinstance(homes, list) else [homes or principal_url]:
                home_url = urljoin(principal_url, str(home))  # iCloud: a partition host (pNN-caldav.icloud.com)
                listing = await _propfind(client, home_url, _CALENDARS, depth=1)
                found += [_calendar_info(home_url, result) for result in listing if _is_event_calendar(result)]
            return found

        return await self._run(run, negotiate=retry)

    async def changes(
        self, calendar_id: str, cursor: str | None, window: TimeWindow, *, on_items: ItemSink | None = None
    ) -> ChangeSet:
        handed: list[int] = []  # batches already given to `on_items`: those must never be given twice

        def hand_over(items: tuple[RemoteItem, ...]) -> None:
            if items and on_items is not None:
                handed.append(len(items))
                on_items(items)

        async def run(client: AsyncDAVClient) -> ChangeSet:
            if cursor is not None and cursor.startswith(ETAGS):
                return await _etag_changes(client, calendar_id, _EtagState.decode(cursor), hand_over)
            if cursor == _freebusy_cursor(window):  # else the day changed: see if we may list the events now
                busy = await _busy_periods(client, calendar_id, window, hand_over)
                if busy is not None:
                    return busy
            inline = not (cursor and cursor.startswith(SYNC_HREFS))
            token = cursor.split(":", 1)[1] if cursor and cursor.startswith((SYNC, SYNC_HREFS)) else None
            try:
                try:
                    return await _sync_changes(client, calendar_id, token, hand_over, inline=inline)
                except _TokenRejected as rejected:
                    log.info("sync token rejected, listing everything", extra={"calendar_url": calendar_id})
                    return await _sync_changes(client, calendar_id, None, hand_over, inline=rejected.inline)
            except _NoSyncCollection:
                return await _etag_changes(client, calendar_id, None, hand_over)
            except _ReadRefused as refused:
                busy = await _busy_periods(client, calendar_id, window, hand_over)
                if busy is None:
                    raise refused.refusal from None
                log.info("listing refused, read as free/busy only", extra={"calendar_url": calendar_id})
                return busy

        return await self._run(run, negotiate=lambda: not handed)

    def read(self, item: RemoteItem, context: ReadContext) -> RemoteObject:
        return self.reader()(item, context)

    def reader(self) -> Reader:
        return functools.partial(read_object, account_email=self._account_email)

    async def create(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        url = urljoin(calendar_id, quote(f"{draft.appointment_id}.ics", safe=""))
        uid = f"{draft.appointment_id}{UID_SUFFIX}"

        async def run(client: AsyncDAVClient) -> WriteResult:
            try:
                response = await client.put(url, write_event(draft), headers=_put_headers({"If-None-Match": "*"}))
            except dav_error.AuthorizationError as exc:  # some servers refuse a UID clash with 403
                if f"{{{_CALDAV}}}no-uid-conflict" not in exc.preconditions:
                    raise
                return await _existing(client, calendar_id, url, uid)
            if response.status in (409, 412):
                return await _existing(client, calendar_id, url, uid)
            return await _written(client, url, response)

        return await self._run(run)

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        url = urljoin(calendar_id, _quoted(remote_id))

        async def run(client: AsyncDAVClient) -> WriteResult:
            response = await client.put(url, write_event(draft), headers=_put_headers(_if_match(etag)))
            if response.status == 412:
                raise PreconditionFailed("the event changed on the server since it was read")
            return await _written(client, url, response)

        return await self._run(run)

    async def delete(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        async def run(client: AsyncDAVClient) -> None:
            response = await client.delete(urljoin(calendar_id, _quoted(remote_id)), headers=_if_match(etag))
            if response.status == 412:
                raise PreconditionFailed("the event changed on the server since it was read")
            if response.status not in (404, 410):
                _check_write(response)

        await self._run(run)

    async def _run(
        self, operation: Callable[[AsyncDAVClient], Awaitable[T]], *, negotiate: Callable[[], bool] = lambda: True
    ) -> T:
        """One operation on a fresh client (the engine keeps no provider between cycles), failures mapped.

        A 401 is retried once with negotiation while `negotiate()` says the operation may start over (a
        listing that already handed items to its caller may not: it would hand them over twice)."""
        with self._failures():
            try:
                async with self._client(preemptive=True) as client:
                    return await operation(client)
            except dav_error.AuthorizationError as exc:
                if exc.status != 401 or not negotiate():
                    raise
            async with self._client(preemptive=False) as client:  # maybe a Digest server: negotiate
                return await operation(client)

    @asynccontextmanager
    async def _client(self, *, preemptive: bool) -> AsyncIterator[AsyncDAVClient]:
        client = AsyncDAVClient(
            url=self._url, username=self._username, password=self._password,
            auth_type="basic" if preemptive else None, timeout=math.ceil(self._config.timeout_seconds),
            enable_rfc6764=False, rate_limit_handle=False,
            features={"http.multiplexing": False},  # HTTP/1.1: a 401 is an answer, not a reason to retry
        )
        client.session.hooks["response"].append(self._count)  # each exchange, a redirect or a 401 challenge too
        async with client:
            yield client

    def _count(self, response: Response, **_: Any) -> None:
        count_request(self._profile.provider, response.status_code or "unreachable")

    def _refused(self) -> InvalidCredentials:
        return InvalidCredentials(f"{self._profile.label} refused the {self._profile.credentials}")

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """Library and network failures as our errors, in our words (`from None`: no server text attached)."""
        label = self._profile.label
        try:
            yield
        except dav_error.RateLimitError as exc:
            wait = DEFAULT_RETRY_AFTER if exc.retry_after_seconds is None else max(exc.retry_after_seconds, 0.0)
            raise RateLimited(f"{label} asks us to slow down", wait) from None
        except dav_error.AuthorizationError as exc:
            if exc.status == 401:
                raise self._refused() from None
            raise ProviderError(f"{label} refused access ({exc.status or 403})") from None
        except OSError as exc:  # niquests' connection errors and timeouts are OSErrors
            count_request(self._profile.provider, "unreachable")  # the request that failed had no answer to count
            raise Unreachable(f"{label} cannot be reached ({type(exc).__name__})") from None
        except (dav_error.DAVError, SyntaxError, NotImplementedError) as exc:  # lxml's parse errors are SyntaxErrors
            raise Unreachable(f"{label} did not answer like a calendar server ({type(exc).__name__})") from None


def open_caldav(
    credentials: AppPassword, server_url: str, config: ProviderConfig, *, profile: Profile = CALDAV,
    account_email: str | None = None,
) -> CalDAVProvider:
    return CalDAVProvider(
        server_url, credentials.username, credentials.password, config, profile=profile, account_email=account_email,
    )


# Changes ----------------------------------------------------------------------------------------------


async def _sync_changes(
    client: AsyncDAVClient, calendar_id: str, token: str | None, hand_over: ItemSink, *, inline: bool
) -> ChangeSet:
    """RFC 6578, following truncated replies (3.6) until the server says it sent everything; the events
    whose data came with the listing are handed over at once, the rest fetched by multiget."""
    changed: dict[str, RemoteItem | None] = {}  # ordered: a truncated reply's pages may name an href twice
    removed: dict[str, None] = {}
    page_token = token
    while True:
        response, inline = await _sync_report(client, calendar_id, page_token, first=page_token == token, inline=inline)
        result = response.parse_sync_collection()
        for member in result.changed:
            if _is_member(calendar_id, member.href):
                changed[member.href] = (
                    RemoteItem(member.href, member.etag, member.calendar_data) if member.calendar_data else None
                )
                removed.pop(member.href, None)
        for href in result.deleted:
            changed.pop(href, None)
            removed[href] = None
        truncated = result.truncated and bool(result.sync_token) and result.sync_token != page_token
        page_token = result.sync_token or page_token
        if not truncated:
            break
    sent = tuple(item for item in changed.values() if item is not None)
    hand_over(sent)
    left_out = [href for href, item in changed.items() if item is None]
    fetched, missing = await _multiget(client, calendar_id, left_out, hand_over)
    kind = SYNC if inline else SYNC_HREFS
    if missing:  # listed but not fetchable yet (iCloud): the cursor never moves past an item we could not read
        return _partial(sent + fetched, tuple(removed), kind + token if token else None)
    cursor = kind + page_token if page_token else None
    return ChangeSet(sent + fetched, tuple(removed), cursor if cursor and len(cursor) <= MAX_CURSOR_LENGTH else None,
                     full=token is None)


async def _sync_report(
    client: AsyncDAVClient, calendar_id: str, token: str | None, *, first: bool, inline: bool
) -> tuple[DAVResponse, bool]:
    """The REPORT and whether it carries events' data, with the answers that are not errors: a refusal of
    calendar-data (asked again without it), a rejected token and an unknown REPORT."""
    rejected = token is not None and first
    try:
        response = await client.report(calendar_id, _sync_collection(token, inline=inline), depth=1)
    except dav_error.AuthorizationError as exc:  # the library raises every 403
        if inline and exc.status == 403:
            return await _without_data(client, calendar_id, token, first=first)
        if exc.status == 403 and rejected:
            raise _TokenRejected(inline=inline) from None
        if exc.status == 403 and f"{{{_DAV}}}supported-report" in exc.preconditions:
            raise _NoSyncCollection from None
        if exc.status == 403 and token is None:
            raise _ReadRefused(exc) from None
        raise
    if inline and response.status in _REFUSALS:
        return await _without_data(client, calendar_id, token, first=first)
    if rejected and response.status in (400, 409, 412):  # Xandikos: 412 valid-sync-token
        raise _TokenRejected(inline=inline)
    if token is None and response.status in (400, 405, 415, 501):
        raise _NoSyncCollection
    _check_collection(response)
    return response, inline


async def _without_data(
    client: AsyncDAVClient, calendar_id: str, token: str | None, *, first: bool
) -> tuple[DAVResponse, bool]:
    """Asked again without calendar-data. If the token is what the server refused (iCloud says so with a
    bare 403 too), the full listing asks for data again: only a refusal of the data itself is remembered."""
    try:
        response, _ = await _sync_report(client, calendar_id, token, first=first, inline=False)
    except _TokenRejected:
        raise _TokenRejected(inline=True) from None
    log.info("sync-collection refused with calendar-data, asked without", extra={"calendar_url": calendar_id})
    return response, False


async def _etag_changes(
    client: AsyncDAVClient, calendar_id: str, state: _EtagState | None, hand_over: ItemSink
) -> ChangeSet:
    """Without sync-collection: getctag says whether anything changed, a getetag listing says what."""
    if state is not None and state.ctag is not None:
        response = await client.propfind(calendar_id, body=_CTAG, depth=0)
        if _collection_ctag(calendar_id, response) == state.ctag:
            return ChangeSet((), (), state.encode(), full=False)
    response = await client.propfind(calendar_id, body=_ETAG_LISTING, depth=1)
    ctag = _collection_ctag(calendar_id, response)
    listing = {
        r.href: str(r.properties.get(_GETETAG) or "") for r in _results(response) if _is_member(calendar_id, r.href)
    }
    known = state.etags if state is not None else None
    changed = [href for href, etag in listing.items() if known is None or known.get(href) != etag]
    removed = [href for href in known or {} if href not in listing]
    items, missing = await _multiget(client, calendar_id, changed, hand_over)
    if missing and known is None:
        return _partial(items, (), None)
    kept = {href: "" if href in missing else etag for href, etag in listing.items()}  # "": changed next cycle
    return ChangeSet(items, tuple(removed), _EtagState(None if missing else ctag, kept).encode(), full=known is None)


def _partial(items: tuple[RemoteItem, ...], removed: tuple[str, ...], cursor: str | None) -> ChangeSet:
    """Some listed items could not be fetched: never `full` (their absence must not read as a deletion, e.g.
    of the event we just pushed) and the old cursor (None: list everything again), so they come back."""
    return ChangeSet(items, removed, cursor, full=False)


async def _busy_periods(
    client: AsyncDAVClient, calendar_id: str, window: TimeWindow, hand_over: ItemSink
) -> ChangeSet | None:
    """A calendar we may read the free/busy time of only: its busy periods in the window as synthesized
    events, a full listing; None if the server does not answer the query with a VFREEBUSY.

    Periods of every busy type are merged: the server reports BUSY and BUSY-TENTATIVE apart, even where they
    overlap, and one busy stretch must be one item (and one id). FBTYPE=FREE is free; any other type is busy,
    unknown ones included, as RFC 5545 3.2.9 says."""
    response = await client.report(calendar_id, _free_busy_query(window), depth=1)
    if response.status in (404, 410):
        raise CalendarGone("the calendar no longer exists on the server")
    periods = _busy_in(response.raw) if response.status == 200 else None
    if periods is None:
        return None
    items = tuple(_busy_item(calendar_id, start, end) for start, end in merged_periods(periods))
    hand_over(items)
    return ChangeSet(items, (), _freebusy_cursor(window), full=True)


def _freebusy_cursor(window: TimeWindow) -> str:
    return f"{FREEBUSY}{_utc(window.start):%Y-%m-%d}"


def _busy_in(text: str) -> list[tuple[datetime, datetime]] | None:
    try:
        components = Calendar.from_ical(text).walk("VFREEBUSY")
    except ValueError:
        return None
    if not components:
        return None
    periods = []
    for component in components:
        found = component.get("FREEBUSY", [])
        for period in found if isinstance(found, list) else [found]:
            if str(period.params.get("FBTYPE", "BUSY")).upper() != "FREE":
                start, end = period.start, period.end
                periods.append((_utc(start), _utc(end)))
    return periods


def _busy_item(calendar_id: str, start: datetime, end: datetime) -> RemoteItem:
    """One busy period as the reader reads any event: opaque and untitled (free/busy says no more)."""
    remote_id = f"{unquote(urlsplit(calendar_id).path)}#freebusy/{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}"
    calendar, event = Calendar(), Event()
    calendar.add("version", "2.0")
    calendar.add("prodid", PRODID)
    event.add("uid", remote_id)
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("transp", "OPAQUE")
    calendar.add_component(event)
    return RemoteItem(remote_id, None, calendar.to_ical().decode("utf-8"))


def _utc(value: datetime) -> datetime:
    """FREEBUSY values are UTC (RFC 5545 3.8.2.6); a floating one is read as UTC too."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class _EtagState:
    """The fallback's cursor: the last getctag and getetag listing (href -> etag), compressed.

    Only as long as it fits the cursor column: for a calendar too big for that it keeps the ctag alone, and
    a changed ctag then means a full listing (still reconciled by href, only more to download).
    """

    ctag: str | None
    etags: dict[str, str] | None

    def encode(self) -> str:
        for payload in ({"c": self.ctag, "e": self.etags}, {"c": self.ctag}):
            packed = base64.urlsafe_b64encode(zlib.compress(json.dumps(payload).encode("utf-8"), 9))
            if len(ETAGS) + len(packed) <= MAX_CURSOR_LENGTH:
                return ETAGS + packed.decode("ascii")
        return ETAGS  # a ctag longer than the column: every cycle lists everything

    @classmethod
    def decode(cls, cursor: str) -> _EtagState | None:
        """None for anything unreadable: the caller then starts over with a full listing."""
        try:
            payload = json.loads(zlib.decompress(base64.urlsafe_b64decode(cursor.removeprefix(ETAGS))))
            ctag, etags = payload.get("c"), payload.get("e")
            return cls(str(ctag) if ctag else None, {str(k): str(v) for k, v in etags.items()} if etags else None)
        except (ValueError, zlib.error, AttributeError):
            return None


async def _multiget(
    client: AsyncDAVClient, calendar_id: str, hrefs: list[str], hand_over: ItemSink
) -> tuple[tuple[RemoteItem, ...], set[str]]:
    """The changed objects in chunks (never one GET each), each chunk handed over as it arrives, and the
    hrefs the server could not give yet."""
    items: list[RemoteItem] = []
    for start in range(0, len(hrefs), MULTIGET_CHUNK):
        body = (
            f'{_XML}<C:calendar-multiget xmlns:D="{_DAV}" xmlns:C="{_CALDAV}">'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            + "".join(f"<D:href>{escape(_quoted(href))}</D:href>" for href in hrefs[start:start + MULTIGET_CHUNK])
            + "</C:calendar-multiget>"
        )
        response = await client.report(calendar_id, body, depth=None)
        _check_collection(response)
        chunk = tuple(
            RemoteItem(r.href, r.etag, r.calendar_data) for r in response.parse_calendar_query()
            if r.status == 200 and r.calendar_data is not None and _is_member(calendar_id, r.href)
        )
        items += chunk
        hand_over(chunk)
    return tuple(items), set(hrefs) - {item.remote_id for item in items}


# Writes -----------------------------------------------------------------------------------------------


async def _existing(client: AsyncDAVClient, calendar_id: str, url: str, uid: str) -> WriteResult:
    """Our event already exists: at our href, or (a UID conflict) wherever a client moved it."""
    for result in _results(await client.propfind(url, body=_ETAG, depth=0)):
        if result.status == 200 and result.properties.get(_GETETAG):
            return WriteResult(result.href, str(result.properties[_GETETAG]), existed=True)
    response = await client.report(calendar_id, _by_uid(uid), depth=1)
    _check_collection(response)
    for found in response.parse_calendar_query():
        if found.status == 200 and _is_member(calendar_id, found.href):
            return WriteResult(found.href, found.etag, existed=True)
    raise PreconditionFailed("an event with our identifier exists but the server does not show it")


async def _written(client: AsyncDAVClient, url: str, response: DAVResponse) -> WriteResult:
    """A server that rewrites what we PUT sends no etag (RFC 4791 5.3.4): then we ask for it."""
    _check_write(response)
    etag = response.headers.get("ETag") if response.headers else None
    if not etag:
        etag = _first(_results(await client.propfind(url, body=_ETAG, depth=0)), _GETETAG)
    return WriteResult(unquote(urlsplit(url).path), str(etag) if etag else None)


# Requests ---------------------------------------------------------------------------------------------


def _propfind_body(*props: str) -> str:
    return (
        f'{_XML}<D:propfind xmlns:D="{_DAV}" xmlns:C="{_CALDAV}" xmlns:CS="{_CS}"><D:prop>'
        + "".join(f"<{p}/>" for p in props) + "</D:prop></D:propfind>"
    )


_PRINCIPAL = _propfind_body("D:current-user-principal")
_HOME_SET = _propfind_body("C:calendar-home-set")
_CALENDARS = _propfind_body(
    "D:resourcetype", "D:displayname", "D:current-user-privilege-set", "C:supported-calendar-component-set"
)
_CTAG = _propfind_body("CS:getctag")
_ETAG = _propfind_body("D:getetag")
_ETAG_LISTING = _propfind_body("D:resourcetype", "D:getetag", "CS:getctag")


def _sync_collection(token: str | None, *, inline: bool) -> str:
    data = "<C:calendar-data/>" if inline else ""
    return (
        f'{_XML}<D:sync-collection xmlns:D="{_DAV}" xmlns:C="{_CALDAV}"><D:sync-token>{escape(token or "")}'
        f"</D:sync-token><D:sync-level>1</D:sync-level><D:prop><D:getetag/>{data}</D:prop></D:sync-collection>"
    )


def _free_busy_query(window: TimeWindow) -> str:
    return (
        f'{_XML}<C:free-busy-query xmlns:C="{_CALDAV}"><C:time-range start="{_utc(window.start):%Y%m%dT%H%M%SZ}"'
        f' end="{_utc(window.end):%Y%m%dT%H%M%SZ}"/></C:free-busy-query>'
    )


def _by_uid(uid: str) -> str:
    return (
        f'{_XML}<C:calendar-query xmlns:D="{_DAV}" xmlns:C="{_CALDAV}"><D:prop><D:getetag/></D:prop>'
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="UID">'
        f'<C:text-match collation="i;octet">{escape(uid)}</C:text-match></C:prop-filter></C:comp-filter>'
        "</C:comp-filter></C:filter></C:calendar-query>"
    )


def _put_headers(condition: dict[str, str]) -> dict[str, str]:
    return {"Content-Type": "text/calendar; charset=utf-8", **condition}


def _if_match(etag: str | None) -> dict[str, str]:
    return {"If-Match": etag} if etag else {}


# Responses --------------------------------------------------------------------------------------------


async def _propfind(client: AsyncDAVClient, url: str, body: str, *, depth: int = 0) -> list[PropfindResult]:
    """A discovery PROPFIND: anything but a multistatus means this is no CalDAV service for us."""
    return _checked(await client.propfind(url, body=body, depth=depth))


def _checked(response: DAVResponse) -> list[PropfindResult]:
    if response.status >= 400:
        raise Unreachable(f"no calendar service at this address ({response.status})")
    return [r for r in _results(response) if r.status == 200]


_ANONYMOUS = f".//{{{_DAV}}}current-user-principal/{{{_DAV}}}unauthenticated"


async def _principal(client: AsyncDAVClient, url: str) -> tuple[str | None, bool]:
    """The current-user-principal's href (None if the server names none) and whether the server says we are
    nobody (RFC 5397 `<unauthenticated/>`, which the library reads as no value: the XML itself is looked at)."""
    response = await client.propfind(url, body=_PRINCIPAL, depth=0)
    principal = _first(_checked(response), f"{{{_DAV}}}current-user-principal")
    anonymous = response.tree is not None and response.tree.find(_ANONYMOUS) is not None
    return (str(principal) if principal else None), anonymous


def _results(response: DAVResponse) -> list[PropfindResult]:
    return [r for r in response.results or [] if isinstance(r, PropfindResult)]


def _first(results: list[PropfindResult], name: str) -> Any:
    return next((r.properties[name] for r in results if r.properties.get(name)), None)


def _check_collection(response: DAVResponse) -> None:
    if response.status in (404, 410):
        raise CalendarGone("the calendar no longer exists on the server")
    if response.status >= 400:
        raise Unreachable(f"the calendar server answered {response.status}")


def _check_write(response: DAVResponse) -> None:
    if response.status in (404, 410):
        raise CalendarGone("the calendar no longer exists on the server")
    if response.status >= 400:
        raise ProviderError(f"the calendar server refused the write ({response.status})")


def _collection_ctag(calendar_id: str, response: DAVResponse) -> str | None:
    """The collection's own getctag; a collection missing (404, or listed as 404 by Xandikos) is gone."""
    _check_collection(response)
    for result in _results(response):
        if _same_path(result.href, calendar_id):
            if result.status in (404, 410):
                raise CalendarGone("the calendar no longer exists on the server")
            return str(result.properties[_GETCTAG]) if result.properties.get(_GETCTAG) else None
    return None


def _calendar_info(home: str, result: PropfindResult) -> RemoteCalendarInfo:
    name = result.properties.get(f"{{{_DAV}}}displayname") or result.href.rstrip("/").rsplit("/", 1)[-1]
    return RemoteCalendarInfo(urljoin(home, _quoted(result.href)), str(name), _access(result.properties))


def _is_event_calendar(result: PropfindResult) -> bool:
    """Calendars that may hold events: not the home itself, inboxes, address books or task lists (Reminders)."""
    components = result.properties.get(f"{{{_CALDAV}}}supported-calendar-component-set")
    return f"{{{_CALDAV}}}calendar" in (result.properties.get(f"{{{_DAV}}}resourcetype") or []) and (
        not components or "VEVENT" in components
    )


def _access(properties: dict[str, Any]) -> Access:
    """Unknown privileges count as read: a calendar is offered for pushing only when the server says so."""
    privileges = set(properties.get(f"{{{_DAV}}}current-user-privilege-set") or [])
    if privileges & _WRITE:
        return Access.FULL
    if privileges and f"{{{_DAV}}}read" not in privileges and f"{{{_CALDAV}}}read-free-busy" in privileges:
        return Access.FREEBUSY
    return Access.READ


def _is_member(calendar_id: str, href: str) -> bool:
    """An object of this calendar: iCloud lists the collection itself among the results, never sync that."""
    return not href.endswith("/") and not _same_path(href, calendar_id)


def _same_path(href: str, url: str) -> bool:
    return href.rstrip("/") == unquote(urlsplit(url).path).rstrip("/")


def _quoted(href: str) -> str:
    """Hrefs arrive decoded from the library; back on the wire they are percent-encoded paths again."""
    return quote(href, safe="/:@!$&'()*+,;=~")


def _without_userinfo(url: str) -> str:
    """A base URL typed as https://user:pass@host/ must not carry the password into reprs and messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))
