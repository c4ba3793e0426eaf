"""CalDAV (any server) and iCloud, on the `caldav` library's async client.

The library does HTTP, authentication and response parsing; this module decides what to ask:
- discovery: principal, then its calendars, each with `current-user-privilege-set` (write = full access);
- changes: RFC 6578 `sync-collection` with our stored token (one request when idle), then
  `calendar-multiget` of only the changed hrefs in chunks. The library's own fallback silently downloads
  everything; we never use it. An invalid token (403 `valid-sync-token`, iCloud's way) restarts with an
  empty token and says so (`full=True`), so the engine reconciles by id without duplicates;
- writes: our event lives at `<calendar>/<appointment-id>.ics`; create is `PUT If-None-Match: *` and a 412
  means the copy already exists (a retry after a crash), update is `PUT If-Match`, delete treats 404 as done.

iCloud is the same protocol with its own base URL (discovery follows its partition host), app-specific
passwords, no push, and eventual consistency after writes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.sax.saxutils import escape

from caldav.aio import AsyncDAVClient
from caldav.lib import error as dav_error
from caldav.response import CalendarQueryResult, DAVResponse, PropfindResult

from storage.models import Access
from sync.ical import read_item, write_event
from sync.plan import RemoteObject
from sync.providers.base import (
    CalendarGone,
    ChangeSet,
    EventDraft,
    InvalidCredentials,
    PreconditionFailed,
    ProviderConfig,
    ProviderError,
    RateLimited,
    ReadContext,
    RemoteCalendarInfo,
    RemoteItem,
    Unreachable,
    WriteResult,
)

log = logging.getLogger(__name__)

MULTIGET_CHUNK = 200
_PRIVILEGES = (
    '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
    "<D:current-user-privilege-set/><D:displayname/><D:resourcetype/></D:prop></D:propfind>"
)
_CALDAV_NS = "urn:ietf:params:xml:ns:caldav"


class _TokenRejected(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"sync token rejected ({status})")
        self.status = status


class CalDAVProvider:
    def __init__(self, url: str, username: str, password: str, config: ProviderConfig) -> None:
        self._url, self._username, self._password, self._config = url, username, password, config

    def __repr__(self) -> str:  # never the password
        return f"CalDAVProvider(url={self._url!r}, username={self._username!r})"

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[AsyncDAVClient]:
        # Basic credentials up front: an idle cycle is one request, not a 401 and a retry. iCloud and
        # every common server take Basic; their TLS is what protects it.
        client = AsyncDAVClient(
            url=self._url, username=self._username, password=self._password, auth_type="basic",
            timeout=int(self._config.timeout_seconds), rate_limit_handle=False, enable_rfc6764=False,
        )
        try:
            async with client:
                yield client
        except ProviderError:
            raise
        except dav_error.RateLimitError as exc:
            raise RateLimited("the calendar server asks us to slow down", _retry_after(exc)) from None
        except dav_error.AuthorizationError as exc:
            if getattr(exc, "status", None) == 404:
                raise CalendarGone("the calendar no longer exists on the server") from None
            raise InvalidCredentials("the calendar server refused the username or password") from None
        except dav_error.NotFoundError:
            raise CalendarGone("the calendar no longer exists on the server") from None
        except (OSError, TimeoutError, dav_error.DAVError) as exc:
            raise Unreachable(f"the calendar server cannot be reached ({type(exc).__name__})") from None

    # Discovery -------------------------------------------------------------------------------------

    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        async with self._client() as client:
            principal = await client.get_principal()
            calendars = await client.get_calendars(principal)
            found = []
            for calendar in calendars:
                url = str(calendar.url)
                response = await client.propfind(url, body=_PRIVILEGES, depth=0)
                properties = _properties(response)
                resource_types = properties.get("{DAV:}resourcetype") or []
                if f"{{{_CALDAV_NS}}}calendar" not in resource_types:
                    continue
                name = str(properties.get("{DAV:}displayname") or url.rstrip("/").rsplit("/", 1)[-1])
                found.append(RemoteCalendarInfo(url, name, _access(properties)))
        return found

    # Reading ---------------------------------------------------------------------------------------

    async def changes(self, calendar_id: str, cursor: str | None) -> ChangeSet:
        async with self._client() as client:
            full = cursor is None
            try:
                listing = await self._sync_collection(client, calendar_id, cursor)
            except (dav_error.AuthorizationError, _TokenRejected) as exc:
                # iCloud and Radicale answer 403 valid-sync-token, Xandikos 412: start over, reconcile by id.
                if cursor is None or getattr(exc, "status", 403) not in (400, 403, 409, 412):
                    raise
                log.info("sync token rejected, listing everything", extra={"calendar_id": calendar_id})
                full, listing = True, await self._sync_collection(client, calendar_id, None)
            changed, removed, token = listing
            items = await self._multiget(client, calendar_id, [r.href for r in changed])
        return ChangeSet(tuple(items), tuple(removed), token, full)

    async def _sync_collection(
        self, client: AsyncDAVClient, calendar_id: str, token: str | None
    ) -> tuple[list[CalendarQueryResult], list[str], str | None]:
        """Follow truncated replies (RFC 6578 3.6) until the server says it has sent everything."""
        changed: list[CalendarQueryResult] = []
        removed: list[str] = []
        while True:
            response = await client.sync_collection(calendar_id, sync_token=token, props=["getetag"])
            if token is not None and response.status in (400, 409, 412):
                raise _TokenRejected(response.status)
            _raise_for_collection(response)
            result = response.parse_sync_collection()
            changed.extend(r for r in result.changed if r.href.rstrip("/") != _path(calendar_id).rstrip("/"))
            removed.extend(result.deleted)
            token = result.sync_token or token
            if not result.truncated:
                return changed, removed, token

    async def _multiget(self, client: AsyncDAVClient, calendar_id: str, hrefs: list[str]) -> list[RemoteItem]:
        items: list[RemoteItem] = []
        for start in range(0, len(hrefs), MULTIGET_CHUNK):
            chunk = hrefs[start:start + MULTIGET_CHUNK]
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                f'<C:calendar-multiget xmlns:D="DAV:" xmlns:C="{_CALDAV_NS}">'
                "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
                + "".join(f"<D:href>{escape(href)}</D:href>" for href in chunk)
                + "</C:calendar-multiget>"
            )
            response = await client.report(calendar_id, body, depth=None)
            _raise_for_collection(response)
            for result in response.parse_calendar_query():
                if result.status == 200 and result.calendar_data is not None:
                    items.append(RemoteItem(result.href, result.etag, result.calendar_data))
                # A 404 here is eventual consistency (iCloud) or a delete in between: the next cycle has it.
        return items

    def read(self, item: RemoteItem, context: ReadContext) -> RemoteObject:
        return read_item(item.remote_id, item.data, item.etag, context)

    # Writing ---------------------------------------------------------------------------------------

    async def create(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        href = urljoin(calendar_id, f"{draft.appointment_id}.ics")
        async with self._client() as client:
            response = await client.put(href, write_event(draft), headers=_put_headers({"If-None-Match": "*"}))
            if response.status == 412:  # already there: written before a crash or a lost reply
                return WriteResult(_path(href), await self._etag(client, href))
            _raise_for_write(response)
            return WriteResult(_path(href), _header(response, "etag") or await self._etag(client, href))

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        href = urljoin(calendar_id, remote_id)
        condition = {"If-Match": etag} if etag else {}
        async with self._client() as client:
            response = await client.put(href, write_event(draft), headers=_put_headers(condition))
            if response.status == 412:
                raise PreconditionFailed("the event changed on the server since it was read")
            _raise_for_write(response)
            return WriteResult(_path(href), _header(response, "etag") or await self._etag(client, href))

    async def delete(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        href = urljoin(calendar_id, remote_id)
        async with self._client() as client:
            response = await client.delete(href, headers={"If-Match": etag} if etag else None)
            if response.status in (404, 410):
                return
            if response.status == 412:
                raise PreconditionFailed("the event changed on the server since it was read")
            _raise_for_write(response)

    async def _etag(self, client: AsyncDAVClient, href: str) -> str | None:
        """Servers that rewrite what we PUT send no strong etag (RFC 4791 5.3.4): ask for it."""
        value = _properties(await client.propfind(href, props=["getetag"], depth=0)).get("{DAV:}getetag")
        return str(value) if value else None


def open_caldav(credentials: dict[str, Any], server_url: str, config: ProviderConfig) -> CalDAVProvider:
    return CalDAVProvider(server_url, str(credentials["username"]), str(credentials["password"]), config)


def _properties(response: DAVResponse) -> dict[str, Any]:
    first = response.results[0] if response.results else None
    return first.properties if isinstance(first, PropfindResult) else {}


def _access(properties: dict[str, Any]) -> Access:
    privileges = {str(p) for p in properties.get("{DAV:}current-user-privilege-set") or []}
    if privileges & {"{DAV:}write", "{DAV:}all", "{DAV:}write-content"}:
        return Access.FULL
    if privileges & {"{DAV:}read"} or not privileges:
        return Access.READ
    return Access.FREEBUSY


def _path(url: str) -> str:
    """Hrefs as servers list them: the path, so links compare equal whatever host was used to write."""
    return urlsplit(url).path or url


def _put_headers(condition: dict[str, str]) -> dict[str, str]:
    return {"Content-Type": "text/calendar; charset=utf-8", **condition}


def _header(response: DAVResponse, name: str) -> str | None:
    value = response.headers.get(name) if response.headers else None
    return str(value) if value else None


def _raise_for_collection(response: DAVResponse) -> None:
    if response.status == 404:
        raise CalendarGone("the calendar no longer exists on the server")
    if response.status >= 400:
        raise Unreachable(f"the calendar server answered {response.status}")


def _raise_for_write(response: DAVResponse) -> None:
    if response.status == 404:
        raise CalendarGone("the calendar no longer exists on the server")
    if response.status >= 400:
        raise ProviderError(f"the calendar server refused the write ({response.status})")


def _retry_after(exc: Exception) -> float:
    value = getattr(exc, "retry_after", None) or getattr(exc, "retry_after_seconds", None)
    try:
        return float(value) if value is not None else 60.0
    except (TypeError, ValueError):
        return 60.0
