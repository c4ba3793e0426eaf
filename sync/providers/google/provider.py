"""Google Calendar API v3 on google-api-python-client, google-auth and httplib2 (provider-apis.md section G).

The libraries are blocking: every call runs in one bounded thread pool the process shares (`GoogleShared`),
and one provider instance runs one call at a time, because an httplib2.Http is not thread-safe. Every call
first spends from the account's request budget (`budget.py`), which the process shares too.

- calendars: calendarList.list; accessRole owner/writer is full access, reader and writerWithoutPrivateAccess
  read, freeBusyReader free/busy only. The primary calendar's id is the account's email;
- changes: events.list with the same parameters every time (G1: singleEvents, showDeleted, maxResults), the
  window as timeMin/timeMax on a full listing and the sync token alone on an incremental one, paged to the
  end. A token Google no longer accepts (410, also in the middle of paging) restarts a full listing without
  it. One item per single event (`[event]`) and one per recurring series (its instances in the window, under
  the series id, its etag a digest of theirs): an incremental listing names changed instances only, so each
  named series is read whole again with events.instances (a series whose master is gone is removed).
  A cancelled single event is removed on an incremental listing and read as cancelled on a full one. Items
  are handed over once the listing is complete: a restart never hands anything over twice, and reading
  JSON costs little next to the transfer;
- free/busy only: a full listing first asks calendarList for the calendar's role (one request a day, as the
  engine relists daily); a freeBusyReader calendar is read with freebusy.query in chunks of at most 90 days
  (G5), each busy period one synthesized opaque event whose id is its UTC start and end. Its cursor (the
  window's first day) sends later cycles straight there; on another day the role is asked again. An idle
  cycle of any other calendar is one request;
- writes: our event's id is the appointment id (lowercase hex is base32hex, G3) and it carries the private
  extended property `croco_appointment`. Create is events.insert, and a 409 means our copy exists (written
  before a crash, or cancelled since): it is returned and the engine rewrites it. Update is events.update
  (PUT, the whole event as we write it: a restore shows exactly our copy, and an update revives a cancelled
  one) with If-Match; delete with If-Match, where 404 and 410 are done, and so is a 412 on an event that
  reads as cancelled (deleting changed its etag). create_many sends up to 50 inserts in
  one batch request (G3);
- failures: the library retries 403 rate limits, 429 and 5xx itself (`execute(num_retries=...)`, exponential
  backoff with full jitter); what is left is RateLimited, as is 403 quotaExceeded. A refused refresh
  (`invalid_grant`) is GrantRevoked, a 401 after refreshing InvalidCredentials, a missing calendar
  CalendarGone, a lost If-Match race PreconditionFailed, a network failure Unreachable. Messages are ours:
  never Google's text, never a token.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import Resource, build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from storage.enums import Access, Provider
from sync.events import RemoteObject
from sync.providers.base import (
    MAX_CURSOR_LENGTH,
    CalendarGone,
    ChangeSet,
    EventDraft,
    GrantRevoked,
    InvalidCredentials,
    ItemSink,
    OAuthTokens,
    PreconditionFailed,
    ProviderConfig,
    ProviderError,
    PushChannel,
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
from sync.providers.google.budget import REQUESTS_PER_MINUTE, RequestBudget
from sync.providers.google.reading import MARKER, read_item
from sync.telemetry import count_request

log = logging.getLogger(__name__)
T = TypeVar("T")

SYNC, FREEBUSY = "sync:", "freebusy:"
"""Cursor kinds: a sync token, and a free/busy-only calendar (the day it was last found so)."""
PAGE_SIZE = 2500  # the most events.list gives (G1)
BATCH_LIMIT = 50  # calls in one batch request (G3)
FREEBUSY_SPAN = timedelta(days=90)  # the longest range freebusy.query answers (G5)
HAND_OVER_BATCH = 500
FULL_LISTING_ATTEMPTS = 3
DEFAULT_RETRY_AFTER = 60.0
WORKERS = 16
"""Threads for blocking Google calls in the whole process (each mostly waits on the network)."""

_ACCESS = {"owner": Access.FULL, "writer": Access.FULL, "reader": Access.READ,
           "writerWithoutPrivateAccess": Access.READ, "freeBusyReader": Access.FREEBUSY}
_RATE_LIMITS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
_WORD = re.compile(r"[A-Za-z_]{1,40}")


class GoogleShared:
    """What every Google provider of the process shares: the thread pool that runs their blocking calls and
    each account's request budget. The composition root creates one and closes it."""

    def __init__(self, *, workers: int = WORKERS, requests_per_minute: int = REQUESTS_PER_MINUTE,
                 budget: Callable[[], RequestBudget] | None = None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="google")
        self._new_budget = budget or functools.partial(RequestBudget, requests_per_minute)
        self._budgets: dict[str, RequestBudget] = {}

    def budget(self, account: str) -> RequestBudget:
        if account not in self._budgets:
            self._budgets[account] = self._new_budget()
        return self._budgets[account]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@functools.cache
def default_shared() -> GoogleShared:
    """For callers that open a provider without a composition root (scripts, tests): one per process."""
    return GoogleShared()


class _TokenExpired(Exception):
    """Google no longer accepts the sync token or page token (410): start over with a full listing."""


class GoogleProvider:
    def __init__(
        self, tokens: OAuthTokens, config: ProviderConfig, shared: GoogleShared, *, account: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`account` (the connection's email) keys the request budget; without it, the grant does."""
        google = config.google
        self._config, self._shared, self._opened_with, self._account, self._now = config, shared, tokens, account, now
        self._credentials = Credentials(  # type: ignore[no-untyped-call]
            tokens.access_token, refresh_token=tokens.refresh_token, token_uri=google.token_url,
            client_id=google.client_id, client_secret=google.client_secret, scopes=list(tokens.scope) or None,
            expiry=tokens.expires_at.astimezone(UTC).replace(tzinfo=None),  # google-auth compares naive UTC
        )
        self._budget = shared.budget(account or hashlib.sha256(tokens.refresh_token.encode()).hexdigest())
        self._http = google_auth_httplib2.AuthorizedHttp(
            self._credentials, http=_CountedHttp(timeout=config.timeout_seconds, proxy_info=None)
        )
        self._api: Resource | None = None
        self._turn = asyncio.Lock()  # one call of this instance at a time on the event loop...
        self._in_thread = threading.Lock()  # ...and in the pool, even after a caller gave up waiting for one
        self._roles: dict[str, Access] | None = None

    def __repr__(self) -> str:  # never a token
        return f"GoogleProvider(api_url={self._config.google.api_url!r}, account={self._account!r})"

    def rotated_credentials(self) -> OAuthTokens | None:
        creds, opened = self._credentials, self._opened_with
        if creds.token is None or creds.token == opened.access_token:
            return None
        expiry = creds.expiry.replace(tzinfo=UTC) if creds.expiry else self._now()
        scopes = tuple(creds.granted_scopes or creds.scopes or opened.scope)
        return OAuthTokens(creds.token, creds.refresh_token or opened.refresh_token, expiry, scopes)

    # Calendars ----------------------------------------------------------------------------------------

    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        with self._failures():
            return await self._calendar_list()

    async def _calendar_list(self) -> list[RemoteCalendarInfo]:
        found: list[RemoteCalendarInfo] = []
        page_token = None
        while True:
            page = await self._call(functools.partial(_calendar_list_page, page_token))
            for entry in page.get("items", []):
                name = entry.get("summaryOverride") or entry.get("summary") or entry["id"]
                access = _ACCESS.get(entry.get("accessRole", ""), Access.READ)  # unknown: never written to
                found.append(RemoteCalendarInfo(entry["id"], name, access, primary=bool(entry.get("primary"))))
            page_token = page.get("nextPageToken")
            if not page_token:
                break
        self._roles = {calendar.remote_id: calendar.access for calendar in found}
        return found

    async def _access(self, calendar_id: str) -> Access | None:
        """The calendar's access as calendarList says (asked once per instance); None if it is not listed."""
        if self._roles is None:
            await self._calendar_list()
        assert self._roles is not None
        return self._roles.get(calendar_id)

    # Changes ------------------------------------------------------------------------------------------

    async def changes(
        self, calendar_id: str, cursor: str | None, window: TimeWindow, *, on_items: ItemSink | None = None
    ) -> ChangeSet:
        with self._failures():
            changes = await self._changes(calendar_id, cursor, window)
        if on_items is not None:
            for start in range(0, len(changes.changed), HAND_OVER_BATCH):
                on_items(changes.changed[start:start + HAND_OVER_BATCH])
        return changes

    async def _changes(self, calendar_id: str, cursor: str | None, window: TimeWindow) -> ChangeSet:
        if cursor == _freebusy_cursor(window):
            return await self._busy_periods(calendar_id, window)
        if cursor and cursor.startswith(SYNC) and len(cursor) > len(SYNC):
            try:
                return await self._events(calendar_id, window, cursor.removeprefix(SYNC))
            except _TokenExpired:
                log.info("sync token expired, listing everything", extra={"calendar_id": calendar_id})
        if await self._access(calendar_id) == Access.FREEBUSY:
            return await self._busy_periods(calendar_id, window)
        for _ in range(FULL_LISTING_ATTEMPTS):
            try:
                return await self._events(calendar_id, window, None)
            except _TokenExpired:  # a page token went stale in the middle of paging
                log.info("listing expired while paging, starting over", extra={"calendar_id": calendar_id})
        raise Unreachable("Google kept expiring the calendar's listing")

    async def _events(self, calendar_id: str, window: TimeWindow, token: str | None) -> ChangeSet:
        """One listing (incremental with `token`), paged to the end, grouped into items."""
        query: dict[str, Any] = {"calendarId": calendar_id, "singleEvents": True, "showDeleted": True,
                                 "maxResults": PAGE_SIZE}
        query |= {"syncToken": token} if token else {"timeMin": _rfc3339(window.start), "timeMax": _rfc3339(window.end)}
        listed: dict[str, dict[str, Any]] = {}  # by id: a later page's version of an event wins
        page_token = None
        while True:
            page = await self._page(functools.partial(_events_page, query | {"pageToken": page_token}))
            listed |= {event["id"]: event for event in page.get("items", [])}
            page_token = page.get("nextPageToken")
            if not page_token:
                break
        singles: list[RemoteItem] = []
        series: dict[str, list[dict[str, Any]]] = {}
        removed: list[str] = []
        for event_id, event in listed.items():
            if event.get("recurringEventId"):
                series.setdefault(event["recurringEventId"], []).append(event)
            elif token and event.get("status") == "cancelled":
                removed.append(event_id)
            else:
                singles.append(RemoteItem(event_id, event.get("etag"), json.dumps([event])))
        if token:  # the listing names the instances that changed: each series is read whole again
            for series_id in series:
                series[series_id] = await self._instances(calendar_id, series_id, window)
        removed += [series_id for series_id, instances in series.items() if not instances]
        items = singles + [_series_item(series_id, instances) for series_id, instances in series.items() if instances]
        next_token = page.get("nextSyncToken")
        cursor = SYNC + next_token if next_token and len(SYNC + next_token) <= MAX_CURSOR_LENGTH else None
        return ChangeSet(tuple(items), tuple(removed), cursor, full=token is None)

    async def _instances(self, calendar_id: str, series_id: str, window: TimeWindow) -> list[dict[str, Any]]:
        """A series' instances in the window, cancelled ones included; none if its master is gone. A later
        page going stale (410) starts the whole listing over, as in `_events`."""
        query = {"calendarId": calendar_id, "eventId": series_id, "timeMin": _rfc3339(window.start),
                 "timeMax": _rfc3339(window.end), "showDeleted": True, "maxResults": PAGE_SIZE}
        instances: list[dict[str, Any]] = []
        page_token = None
        while True:
            try:
                page = await self._page(functools.partial(_instances_page, query | {"pageToken": page_token}))
            except _TokenExpired:
                if page_token is None:  # 410 deleted: the master is gone
                    return []
                raise
            except HttpError as exc:
                if page_token is None and _status(exc) == 404:
                    return []
                raise
            instances += page.get("items", [])
            page_token = page.get("nextPageToken")
            if not page_token:
                return instances

    async def _page(self, request: Callable[[Resource], HttpRequest]) -> dict[str, Any]:
        try:
            page: dict[str, Any] = await self._call(request)
        except HttpError as exc:
            if _status(exc) == 410:
                raise _TokenExpired() from None
            raise
        return page

    async def _busy_periods(self, calendar_id: str, window: TimeWindow) -> ChangeSet:
        """A free/busy-only calendar: its busy periods as synthesized events, a full listing every cycle."""
        periods: list[tuple[datetime, datetime]] = []
        start = window.start
        while start < window.end:
            end = min(start + FREEBUSY_SPAN, window.end)
            answer = await self._call(functools.partial(_freebusy, calendar_id, start, end))
            entry = answer.get("calendars", {}).get(calendar_id, {})
            reasons = [str(error.get("reason")) for error in entry.get("errors", [])]
            if "notFound" in reasons:
                raise CalendarGone("the calendar no longer exists on Google")
            if reasons:
                raise ProviderError(f"Google did not give the calendar's busy times ({_word(reasons[0])})")
            periods += [(_instant(busy["start"]), _instant(busy["end"])) for busy in entry.get("busy", [])]
            start = end
        items = tuple(_busy_item(start, end) for start, end in merged_periods(periods))
        return ChangeSet(items, (), _freebusy_cursor(window), full=True)

    def read(self, item: RemoteItem, context: ReadContext) -> RemoteObject:
        return read_item(item, context)

    def reader(self) -> Reader:
        return read_item

    # Writes -------------------------------------------------------------------------------------------

    async def create(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        with self._failures():
            try:
                created = await self._call(functools.partial(_insert, calendar_id, draft))
            except HttpError as exc:
                if _status(exc) != 409:
                    raise
                return await self._existing(calendar_id, draft)
            return WriteResult(created["id"], created.get("etag"))

    async def create_many(self, calendar_id: str, drafts: list[EventDraft]) -> list[WriteResult | ProviderError]:
        results: list[WriteResult | ProviderError] = []
        for start in range(0, len(drafts), BATCH_LIMIT):
            chunk = drafts[start:start + BATCH_LIMIT]
            with self._failures():
                answers = await self._run(functools.partial(self._batch, calendar_id, chunk), cost=len(chunk))
            for draft, answer in zip(chunk, answers, strict=True):
                results.append(await self._created(calendar_id, draft, answer))
        return results

    async def _created(self, calendar_id: str, draft: EventDraft, answer: dict[str, Any] | HttpError
                       ) -> WriteResult | ProviderError:
        """One answer of a batch as `create` would give it, or its failure."""
        if isinstance(answer, dict):
            return WriteResult(answer["id"], answer.get("etag"))
        try:
            with self._failures():
                if _status(answer) != 409:
                    raise answer
                return await self._existing(calendar_id, draft)
        except ProviderError as exc:
            return exc

    async def _existing(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        """Our event already exists (409 duplicate): the copy written before a crash, or cancelled since."""
        found = await self._call(functools.partial(_get, calendar_id, draft.appointment_id))
        return WriteResult(found["id"], found.get("etag"), existed=True)

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        with self._failures():
            try:
                written = await self._call(functools.partial(_update, calendar_id, remote_id, draft), if_match=etag)
            except HttpError as exc:
                if _status(exc) in (404, 410):
                    raise PreconditionFailed("the event is no longer on Google") from None
                raise
            return WriteResult(written["id"], written.get("etag"))

    async def delete(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        with self._failures():
            try:
                await self._call(functools.partial(_delete, calendar_id, remote_id), if_match=etag)
            except HttpError as exc:
                if _status(exc) == 412 and await self._cancelled(calendar_id, remote_id):
                    return  # the etag changed because it was deleted (cancelled) meanwhile: done
                if _status(exc) not in (404, 410):  # already deleted: done (G3)
                    raise

    async def _cancelled(self, calendar_id: str, event_id: str) -> bool:
        """Whether the event is deleted: a deleted event reads as cancelled until Google forgets it."""
        try:
            found = await self._call(functools.partial(_get, calendar_id, event_id))
        except HttpError as exc:
            if _status(exc) in (404, 410):
                return True
            raise
        return bool(found.get("status") == "cancelled")

    # Push ---------------------------------------------------------------------------------------------

    async def watch(self, calendar_id: str, channel_id: str, address: str, token: str,
                    lifetime: timedelta) -> PushChannel:
        expiration = int((self._now() + lifetime).timestamp() * 1000)
        body = {"id": channel_id, "type": "web_hook", "address": address, "token": token, "expiration": expiration}
        with self._failures():
            answer = await self._call(functools.partial(_watch, calendar_id, body))
        granted = int(answer.get("expiration") or expiration)  # the answer's expiration is authoritative
        return PushChannel(answer["id"], answer["resourceId"], datetime.fromtimestamp(granted / 1000, UTC))

    async def stop_watching(self, channel: PushChannel) -> None:
        with self._failures():
            try:
                await self._call(functools.partial(_stop, channel.channel_id, channel.resource_id))
            except HttpError as exc:
                if _status(exc) != 404:  # already stopped or expired
                    raise

    # Calls --------------------------------------------------------------------------------------------

    async def _call(self, request: Callable[[Resource], HttpRequest], *, if_match: str | None = None) -> Any:
        """One request, retried by the library as `retries` says."""
        return await self._run(functools.partial(self._execute, request, if_match))

    async def _run(self, operation: Callable[[Resource], T], *, cost: int = 1) -> T:
        """A blocking operation on the shared pool, after spending `cost` requests from the account's budget."""
        async with self._turn:
            wait = self._budget.reserve(cost)
            if wait:
                await asyncio.sleep(wait)
            # In this task's context: the pool's thread counts its requests into this sync cycle's
            return await asyncio.get_running_loop().run_in_executor(
                self._shared.pool, contextvars.copy_context().run, self._in_pool, operation
            )

    def _in_pool(self, operation: Callable[[Resource], T]) -> T:
        with self._in_thread:
            if self._api is None:
                self._api = build(
                    "calendar", "v3", static_discovery=True, cache_discovery=False, http=self._http,
                    client_options={"api_endpoint": self._config.google.api_url + "calendar/v3/"},
                )
            return operation(self._api)

    def _execute(self, request: Callable[[Resource], HttpRequest], if_match: str | None, api: Resource) -> Any:
        built = request(api)
        if if_match:
            built.headers["If-Match"] = if_match
        return built.execute(num_retries=self._config.google.retries)

    def _batch(self, calendar_id: str, drafts: list[EventDraft], api: Resource) -> list[dict[str, Any] | HttpError]:
        """Inserts in one batch request (in the pool); each answer is the event or its error."""
        answers: dict[str, dict[str, Any] | HttpError] = {}

        def answered(request_id: str, response: dict[str, Any], error: HttpError | None) -> None:
            answers[request_id] = error if error is not None else response

        batch = BatchHttpRequest(callback=answered, batch_uri=self._config.google.api_url + "batch/calendar/v3")
        for n, draft in enumerate(drafts):
            batch.add(_insert(calendar_id, draft, api), request_id=str(n))
        batch.execute(http=self._http)
        return [answers[str(n)] for n in range(len(drafts))]

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """Library and network failures as our errors, in our words (`from None`: no server text attached)."""
        try:
            yield
        except HttpError as exc:
            raise _mapped(exc) from None
        except RefreshError as exc:
            error = _refresh_error(exc)
            if error == "invalid_grant":
                raise GrantRevoked() from None
            raise ProviderError(f"Google refused to refresh the access token ({error})") from None
        except TransportError:
            raise Unreachable("Google's token endpoint cannot be reached") from None
        except (OSError, httplib2.HttpLib2Error) as exc:
            raise Unreachable(f"Google cannot be reached ({type(exc).__name__})") from None


class _CountedHttp(httplib2.Http):  # type: ignore[misc]  # (untyped)
    """httplib2 counting each request it sends to Google: every call, each of the library's retries, each batch
    POST and each token refresh goes through `request`. (A redirect would be counted by its final answer, twice:
    Google's API answers where it is asked.)"""

    def request(self, *args: Any, **kwargs: Any) -> tuple[httplib2.Response, bytes]:
        try:
            response, content = super().request(*args, **kwargs)
        except (OSError, httplib2.HttpLib2Error):
            count_request(Provider.GOOGLE, "unreachable")
            raise
        count_request(Provider.GOOGLE, response.status)
        return response, content


def open_google(tokens: OAuthTokens, config: ProviderConfig, shared: GoogleShared | None = None, *,
                account: str | None = None) -> GoogleProvider:
    return GoogleProvider(tokens, config, shared or default_shared(), account=account)


# Requests (built in the pool, on the instance's API object) ---------------------------------------------


def _calendar_list_page(page_token: str | None, api: Resource) -> HttpRequest:
    return api.calendarList().list(maxResults=250, pageToken=page_token)


def _events_page(query: dict[str, Any], api: Resource) -> HttpRequest:
    return api.events().list(**query)


def _instances_page(query: dict[str, Any], api: Resource) -> HttpRequest:
    return api.events().instances(**query)


def _freebusy(calendar_id: str, start: datetime, end: datetime, api: Resource) -> HttpRequest:
    body = {"timeMin": _rfc3339(start), "timeMax": _rfc3339(end), "timeZone": "UTC", "items": [{"id": calendar_id}]}
    return api.freebusy().query(body=body)


def _insert(calendar_id: str, draft: EventDraft, api: Resource) -> HttpRequest:
    return api.events().insert(calendarId=calendar_id, body=_event_body(draft), sendUpdates="none")


def _get(calendar_id: str, event_id: str, api: Resource) -> HttpRequest:
    return api.events().get(calendarId=calendar_id, eventId=event_id)


def _update(calendar_id: str, event_id: str, draft: EventDraft, api: Resource) -> HttpRequest:
    return api.events().update(calendarId=calendar_id, eventId=event_id, body=_event_body(draft), sendUpdates="none")


def _delete(calendar_id: str, event_id: str, api: Resource) -> HttpRequest:
    return api.events().delete(calendarId=calendar_id, eventId=event_id, sendUpdates="none")


def _watch(calendar_id: str, body: dict[str, Any], api: Resource) -> HttpRequest:
    return api.events().watch(calendarId=calendar_id, body=body)


def _stop(channel_id: str, resource_id: str, api: Resource) -> HttpRequest:
    return api.channels().stop(body={"id": channel_id, "resourceId": resource_id})


def _event_body(draft: EventDraft) -> dict[str, Any]:
    """Our event (R1: its id and private property mark it as ours). No attendees: nobody is invited on our
    behalf; `status` confirmed revives a copy the user cancelled."""
    return {
        "id": draft.appointment_id, "summary": draft.title, "status": "confirmed", "transparency": "opaque",
        "start": {"dateTime": _rfc3339(draft.start)}, "end": {"dateTime": _rfc3339(draft.end)},
        "extendedProperties": {"private": {MARKER: draft.appointment_id}},
    }


# Answers ----------------------------------------------------------------------------------------------


def _series_item(series_id: str, instances: list[dict[str, Any]]) -> RemoteItem:
    """A recurring series as one item: its instances in order, its etag a digest of theirs (any instance
    that changes changes it)."""
    instances = sorted(instances, key=lambda i: (json.dumps(i.get("originalStartTime"), sort_keys=True), i["id"]))
    digest = hashlib.sha256("\n".join(str(i.get("etag")) for i in instances).encode()).hexdigest()[:32]
    return RemoteItem(series_id, f'"{digest}"', json.dumps(instances))


def _busy_item(start: datetime, end: datetime) -> RemoteItem:
    """One busy period as the reader reads any event: opaque and untitled (free/busy says no more)."""
    remote_id = f"freebusy/{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}"
    event = {"id": remote_id, "status": "confirmed", "transparency": "opaque",
             "start": {"dateTime": _rfc3339(start)}, "end": {"dateTime": _rfc3339(end)}}
    return RemoteItem(remote_id, None, json.dumps([event]))


def _freebusy_cursor(window: TimeWindow) -> str:
    return f"{FREEBUSY}{window.start.astimezone(UTC):%Y-%m-%d}"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _status(exc: HttpError) -> int:
    return int(exc.resp.status)


def _reason(exc: HttpError) -> str:
    """The first error reason of Google's JSON error (e.g. rateLimitExceeded), '' if it has none."""
    try:
        error = json.loads(exc.content.decode("utf-8"))["error"]
        errors = error.get("errors") or error.get("details") or []
        return str(errors[0].get("reason", "")) if errors else ""
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return ""


def _mapped(exc: HttpError) -> ProviderError:
    status, reason = _status(exc), _reason(exc)
    if status == 401:
        return InvalidCredentials("Google refused the account's access token")
    if status in (404, 410):
        return CalendarGone("the calendar no longer exists on Google")
    if status == 412:
        return PreconditionFailed("the event changed on Google since it was read")
    if status == 429 or status >= 500 or (status == 403 and reason in _RATE_LIMITS):
        return RateLimited(f"Google asks us to slow down ({status})", _retry_after(exc))
    if status == 403:
        return ProviderError(f"Google refused access ({_word(reason) or status})")
    return ProviderError(f"Google refused the request ({status})")


def _retry_after(exc: HttpError) -> float:
    try:
        return max(float(exc.resp.get("retry-after", DEFAULT_RETRY_AFTER)), 0.0)
    except (TypeError, ValueError):  # an HTTP date: rare, and the default is near enough
        return DEFAULT_RETRY_AFTER


def _refresh_error(exc: RefreshError) -> str:
    """The OAuth error code of a refused refresh (RFC 6749 5.2), never its description."""
    answer = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(answer, dict) and answer.get("error"):
        return _word(str(answer["error"])) or "refused"
    return "invalid_grant" if "invalid_grant" in str(exc.args[0] if exc.args else "") else "refused"


def _word(text: str) -> str:
    """A server's code word if it is one (`rateLimitExceeded`, `invalid_client`), else nothing."""
    return text if _WORD.fullmatch(text) else ""
