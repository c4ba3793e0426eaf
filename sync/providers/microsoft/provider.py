"""Microsoft 365 / Outlook over Microsoft Graph v1.0 with aiohttp, tokens from msal (provider-apis.md section M).

- tokens: msal's `ConfidentialClientApplication` on the connection's `SerializableTokenCache`, the home
  account's token from `acquire_token_silent` (blocking: in a thread). A refused refresh (`invalid_grant`) or a
  cache with no token left is GrantRevoked. Graph rotates the refresh token on every refresh (M6), so whenever
  the cache changed `rotated_credentials()` hands the whole cache back for the engine to store. A 401 from Graph
  is retried once with a forced refresh (the cached access token may be revoked before it expires);
- calendars: `/me/calendars`; `canEdit` is full access, otherwise read (M3); `isDefaultCalendar` is primary;
- changes: calendarView delta inside the window, paged by `@odata.nextLink` to the `@odata.deltaLink`, which
  (prefixed `delta:`) is the cursor (M1). Items via `group_items`; an incremental round names the occurrences
  that changed, so each series it touches is read whole again with `/events/{seriesMasterId}/instances` (a
  master that is gone removes the series). Delta returns no extended properties (M1), so each changed single
  event carrying a `transactionId` (ours always do) is read once more with our marker expanded. An expired
  token (410 `syncStateNotFound`, M1) starts a full listing;
- writes: create first looks our event up by its marker (`$filter` on the extended property, M2): found, it
  existed (written before a crash); else POST with `transactionId` = the appointment id, so a retry whose
  reply was lost returns the first event (M2). create_many does the same for many drafts in `$batch` requests
  of at most 20 (M5): a round of lookups, then one of POSTs for the drafts not found. Update is PATCH, delete
  DELETE, both with If-Match (412 is PreconditionFailed; a 404 on delete is done, on update PreconditionFailed);
- change notifications (M4): `watch` subscribes to one calendar's events with lifecycle events to the same
  webhook and our token as `clientState`; `renew_watch` PATCHes the expiry (which reauthorizes too);
  `stop_watching` deletes the subscription (404: already gone);
- throttling (M5): at most 4 concurrent requests per mailbox in the whole process (`MicrosoftShared`); 429 and
  503 honour Retry-After: a short wait is waited, a long one (or one too many) is RateLimited; in a batch
  (each request throttled on its own, M5) only the throttled requests are sent again. 401 is
  InvalidCredentials, a missing calendar CalendarGone, a network failure Unreachable. Messages are ours: never
  Graph's text, never a token.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import msal
import requests

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
    TokenCache,
    Unreachable,
    WriteResult,
)
from sync.providers.microsoft.reading import MARKER_PROPERTY_ID, group_items, read_item
from sync.telemetry import count_request

log = logging.getLogger(__name__)

DELTA = "delta:"
SCOPES = ["Calendars.ReadWrite"]
CONCURRENT_REQUESTS = 4  # per mailbox (M5)
PAGE_SIZE = 50
HAND_OVER_BATCH = 500
ATTEMPTS = 4  # of a throttled request
SHORT_WAIT = 10.0  # seconds: a Retry-After up to this is waited here, a longer one goes to the engine
DEFAULT_RETRY_AFTER = 5.0
FULL_LISTING_ATTEMPTS = 3
PUBLIC_CLOUD = "login.microsoftonline.com"
MAX_SUBSCRIPTION = timedelta(minutes=10_080 - 30)
"""Graph keeps an event subscription under 10,080 minutes (M4); half an hour less allows for clock skew."""
BATCH_LIMIT = 20  # requests in one $batch (M5)

_SERIES_MEMBERS = frozenset({"occurrence", "exception"})
_WORD = re.compile(r"[A-Za-z_]{1,60}")
_EXPAND_MARKER = f"singleValueExtendedProperties($filter=id eq '{MARKER_PROPERTY_ID}')"

_JSON = {"Content-Type": "application/json"}  # JSON batching: a request with a body must name its type

Event = dict[str, Any]
T = TypeVar("T")


class MicrosoftShared:
    """What every Graph provider of the process shares: one aiohttp session and each mailbox's four request
    slots (M5: Graph counts concurrency per app and mailbox, whichever connection sends). The composition
    root creates one and closes it; `ssl` is for tests trusting an emulator's certificate."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.http_cache: dict[str, Any] = {}
        """msal's cache of the authority's discovery answers (24 hours), shared: every provider opened builds a
        new msal app, which would otherwise fetch the OpenID configuration again, about once a sync."""

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else aiohttp.TCPConnector()
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def slots(self, account: str) -> asyncio.Semaphore:
        if account not in self._slots:
            self._slots[account] = asyncio.Semaphore(CONCURRENT_REQUESTS)
        return self._slots[account]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class _DeltaExpired(Exception):
    """Graph no longer knows the delta or skip token (M1): start over with a full listing."""


@dataclass(frozen=True)
class _Call:
    """One Graph request, sent alone or inside a `$batch`; the Authorization header is added as it is sent."""

    method: str
    url: str
    params: dict[str, str] | None
    body: Any
    headers: dict[str, str]


class _Answer:
    def __init__(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers

    @property
    def code(self) -> str:
        """Graph's error code (`syncStateNotFound`, `ErrorItemNotFound`), '' if there is none."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        return code if isinstance(code, str) and _WORD.fullmatch(code) else ""


_Sender = Callable[[list[_Call], str], Awaitable[list[_Answer]]]
"""Sends calls with an access token and gives each one's answer, in order."""


class MicrosoftProvider:
    def __init__(
        self, credentials: TokenCache, config: ProviderConfig, shared: MicrosoftShared, *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._config, self._shared, self._sleep, self._now = config, shared, sleep, now
        self._base = config.microsoft.graph_url.rstrip("/") + "/"
        self._home_account_id = credentials.home_account_id
        self._cache = msal.SerializableTokenCache()
        self._cache.deserialize(credentials.serialized)
        self._app: msal.ConfidentialClientApplication | None = None
        self._token: str | None = None
        self._token_lock = asyncio.Lock()
        self._slots = shared.slots(credentials.home_account_id)

    def __repr__(self) -> str:  # never a token
        return f"MicrosoftProvider(graph_url={self._base!r}, account={self._home_account_id!r})"

    def rotated_credentials(self) -> TokenCache | None:
        if not self._cache.has_state_changed:
            return None
        return TokenCache(self._cache.serialize(), self._home_account_id)

    # Tokens -------------------------------------------------------------------------------------------

    async def _access_token(self, *, force_refresh: bool = False) -> str:
        async with self._token_lock:
            if self._token is None or force_refresh:
                self._token = await asyncio.to_thread(self._acquire, force_refresh)
            return self._token

    def _acquire(self, force_refresh: bool) -> str:
        """msal's silent flow (blocking, in a thread): the cached token, or a refresh that rotates the cache."""
        try:
            if self._app is None:
                authority = self._config.microsoft.authority
                self._app = msal.ConfidentialClientApplication(
                    self._config.microsoft.client_id, client_credential=self._config.microsoft.client_secret,
                    authority=authority, token_cache=self._cache, http_cache=self._shared.http_cache,
                    instance_discovery=urlsplit(authority).hostname == PUBLIC_CLOUD,
                    http_client=_CountedSignIn(self._config.timeout_seconds),
                )
            account = next((a for a in self._app.get_accounts() if a.get("home_account_id") == self._home_account_id),
                           None)
            if account is None:
                raise GrantRevoked("no_account")
            result = self._app.acquire_token_silent_with_error(SCOPES, account, force_refresh=force_refresh)
        except requests.RequestException:
            raise Unreachable("Microsoft's sign-in service cannot be reached") from None
        except msal.exceptions.MsalServiceError:
            raise Unreachable("Microsoft's sign-in service failed") from None
        except ValueError:  # msal's own complaint about the authority or its discovery answer
            raise Unreachable("Microsoft's sign-in service did not answer like one") from None
        if not result:
            raise GrantRevoked("no_token")
        if "access_token" not in result:
            error = _word(str(result.get("error", ""))) or "refused"
            if error == "invalid_grant":
                raise GrantRevoked()
            raise InvalidCredentials(f"Microsoft refused to refresh the access token ({error})")
        return str(result["access_token"])

    # Calendars ----------------------------------------------------------------------------------------

    async def list_calendars(self) -> list[RemoteCalendarInfo]:
        found: list[RemoteCalendarInfo] = []
        url: str | None = self._base + "me/calendars"
        while url:
            page = await self._json("GET", url)
            for entry in page.get("value", []):
                access = Access.FULL if entry.get("canEdit") else Access.READ
                found.append(RemoteCalendarInfo(entry["id"], entry.get("name") or entry["id"], access,
                                                primary=bool(entry.get("isDefaultCalendar"))))
            url = page.get("@odata.nextLink")
        return found

    # Changes ------------------------------------------------------------------------------------------

    async def changes(
        self, calendar_id: str, cursor: str | None, window: TimeWindow, *, on_items: ItemSink | None = None
    ) -> ChangeSet:
        changes = await self._changes(calendar_id, cursor, window)
        if on_items is not None:
            for start in range(0, len(changes.changed), HAND_OVER_BATCH):
                on_items(changes.changed[start:start + HAND_OVER_BATCH])
        return changes

    async def _changes(self, calendar_id: str, cursor: str | None, window: TimeWindow) -> ChangeSet:
        link = cursor.removeprefix(DELTA) if cursor and cursor.startswith(DELTA) else ""
        if link.startswith(self._base):  # only a link into our Graph: a cursor is never followed elsewhere
            try:
                return await self._delta(calendar_id, window, link)
            except _DeltaExpired:
                log.info("delta token expired, listing everything", extra={"calendar_id": calendar_id})
        for _ in range(FULL_LISTING_ATTEMPTS):
            try:
                return await self._delta(calendar_id, window, None)
            except _DeltaExpired:  # a skip token went stale in the middle of paging
                log.info("listing expired while paging, starting over", extra={"calendar_id": calendar_id})
        raise Unreachable("Microsoft kept expiring the calendar's listing")

    async def _delta(self, calendar_id: str, window: TimeWindow, link: str | None) -> ChangeSet:
        """One delta round (incremental from `link`), paged to the end, grouped into whole items."""
        url: str | None = link or f"{self._base}me/calendars/{quote(calendar_id, safe='')}/calendarView/delta"
        params = None if link else _window_params(window)
        events: list[Event] = []
        page: dict[str, Any] = {}
        while url:
            answer = await self._request("GET", url, params=params, page_size=PAGE_SIZE)
            if answer.status == 410 or (answer.status in (400, 404) and answer.code == "syncStateNotFound"):
                raise _DeltaExpired()
            page = self._checked(answer)
            events += page.get("value", [])
            url, params = page.get("@odata.nextLink"), None
        marked = [await self._with_marker(event) for event in events]
        items, removed = group_items(marked)
        if link:  # only the occurrences that changed: each series they belong to is read whole again
            items, gone = await self._whole_series(items, window)
            removed += gone
        delta_link = page.get("@odata.deltaLink")
        cursor = DELTA + delta_link if delta_link and len(DELTA + delta_link) <= MAX_CURSOR_LENGTH else None
        return ChangeSet(tuple(items), tuple(removed), cursor, full=link is None, removals_name_occurrences=True)

    async def _with_marker(self, event: Event) -> Event:
        """A single event an app created with a transactionId, read again with our marker (delta has none)."""
        if "@removed" in event or not event.get("transactionId") or event.get("type") in _SERIES_MEMBERS:
            return event
        answer = await self._request("GET", f"{self._base}me/events/{quote(str(event['id']), safe='')}",
                                     params={"$expand": _EXPAND_MARKER})
        if answer.status == 404:
            return event  # deleted since: the next round says so
        found = self._checked(answer)
        return event | {"singleValueExtendedProperties": found.get("singleValueExtendedProperties") or []}

    async def _whole_series(self, items: list[RemoteItem], window: TimeWindow) -> tuple[list[RemoteItem], list[str]]:
        whole: list[RemoteItem] = []
        gone: list[str] = []
        for item in items:
            members: list[Event] = json.loads(item.data)
            if not any(member.get("type") in _SERIES_MEMBERS for member in members):
                whole.append(item)
                continue
            instances = await self._instances(item.remote_id, window)
            if instances:
                whole += group_items(instances)[0]
            else:
                gone.append(item.remote_id)
        return whole, gone

    async def _instances(self, series_id: str, window: TimeWindow) -> list[Event]:
        """A series' occurrences and exceptions in the window; none if its master is gone."""
        url: str | None = f"{self._base}me/events/{quote(series_id, safe='')}/instances"
        params: dict[str, str] | None = _window_params(window)
        instances: list[Event] = []
        while url:
            answer = await self._request("GET", url, params=params)
            if answer.status == 404 and params is not None:
                return []
            page = self._checked(answer)
            instances += page.get("value", [])
            url, params = page.get("@odata.nextLink"), None
        return instances

    def read(self, item: RemoteItem, context: ReadContext) -> RemoteObject:
        return read_item(item, context)

    def reader(self) -> Reader:
        return read_item

    # Writes -------------------------------------------------------------------------------------------

    async def create(self, calendar_id: str, draft: EventDraft) -> WriteResult:
        events_url = self._events_url(calendar_id)
        existing = _existing(self._checked(await self._call(_lookup(events_url, draft))))
        return existing or _written(self._checked(await self._call(_creation(events_url, draft))))

    async def create_many(self, calendar_id: str, drafts: list[EventDraft]) -> list[WriteResult | ProviderError]:
        """`create` for each draft in two rounds of `$batch` requests (M5: at most 20 requests each): every
        marker lookup, then a POST with its `transactionId` for each draft not found; 2 requests per 20 drafts
        where `create` sends 40. Each draft's failure (a lookup's or a POST's) is its own, in our words.

        The lookup stays: a POST with the same `transactionId` returns the first event only within a dedup
        window Graph does not publish (M2), so a retry long after a crash, with the first copy written but
        not recorded, would otherwise write a second copy. The `transactionId` covers what the lookup cannot:
        a POST whose reply was lost, retried at once (here, or by the engine's next cycle). A batch request
        failing whole (unreachable, refused) is raised as `create`'s request would be: nothing is lost, as a
        retry finds what it wrote."""
        events_url = self._events_url(calendar_id)
        found = [self._outcome(answer, _existing)
                 for answer in await self._batched([_lookup(events_url, draft) for draft in drafts])]
        missing = [n for n, result in enumerate(found) if result is None]
        created = await self._batched([_creation(events_url, drafts[n]) for n in missing])
        written = {n: self._outcome(answer, _written) for n, answer in zip(missing, created, strict=True)}
        return [written[n] if result is None else result for n, result in enumerate(found)]

    async def update(self, calendar_id: str, remote_id: str, draft: EventDraft, etag: str | None) -> WriteResult:
        answer = await self._request("PATCH", self._event_url(remote_id), json_body=_event_body(draft), if_match=etag)
        if answer.status == 404:
            raise PreconditionFailed("the event is no longer on Outlook")
        written = self._checked(answer)
        return WriteResult(written["id"], written.get("@odata.etag"))

    async def delete(self, calendar_id: str, remote_id: str, etag: str | None) -> None:
        answer = await self._request("DELETE", self._event_url(remote_id), if_match=etag)
        if answer.status != 404:  # already deleted: done
            self._checked(answer)

    # Change notifications (M4) ----------------------------------------------------------------------

    async def watch(self, calendar_id: str, channel_id: str, address: str, token: str,
                    lifetime: timedelta) -> PushChannel:
        """A subscription to the calendar's events, with lifecycle events to the same address. Graph names
        the subscription itself (`channel_id` is not used) and validates `address` before it answers."""
        body = {"changeType": "created,updated,deleted", "notificationUrl": address,
                "lifecycleNotificationUrl": address, "resource": f"me/calendars/{calendar_id}/events",
                "expirationDateTime": self._expiry(lifetime), "clientState": token}
        return _subscription(await self._json("POST", self._base + "subscriptions", json_body=body))

    async def renew_watch(self, channel: PushChannel, lifetime: timedelta) -> PushChannel | None:
        """PATCH the expiry, which also reauthorizes the subscription (M4); a 404 means Graph dropped it."""
        answer = await self._request("PATCH", self._subscription_url(channel),
                                     json_body={"expirationDateTime": self._expiry(lifetime)})
        if answer.status == 404:
            return None
        return _subscription(self._checked(answer))

    async def stop_watching(self, channel: PushChannel) -> None:
        answer = await self._request("DELETE", self._subscription_url(channel))
        if answer.status != 404:  # expired or removed already
            self._checked(answer)

    def _subscription_url(self, channel: PushChannel) -> str:
        return f"{self._base}subscriptions/{quote(channel.resource_id, safe='')}"

    def _expiry(self, lifetime: timedelta) -> str:
        return _iso(self._now() + min(lifetime, MAX_SUBSCRIPTION))

    def _event_url(self, event_id: str) -> str:
        return f"{self._base}me/events/{quote(event_id, safe='')}"

    def _events_url(self, calendar_id: str) -> str:
        return f"{self._base}me/calendars/{quote(calendar_id, safe='')}/events"

    # Calls --------------------------------------------------------------------------------------------

    async def _json(self, method: str, url: str, *, params: dict[str, str] | None = None,
                    json_body: Any = None) -> dict[str, Any]:
        return self._checked(await self._request(method, url, params=params, json_body=json_body))

    def _checked(self, answer: _Answer) -> dict[str, Any]:
        """A successful answer's JSON, or the failure as our error (in our words: no Graph text)."""
        status = answer.status
        if status < 300:
            return answer.body if isinstance(answer.body, dict) else {}
        if status == 401:
            raise InvalidCredentials("Microsoft refused the account's access token")
        if status == 404:
            raise CalendarGone("the calendar no longer exists on Outlook")
        if status == 412:
            raise PreconditionFailed("the event changed on Outlook since it was read")
        if status >= 500:
            raise Unreachable(f"Microsoft Graph failed ({status})")
        raise ProviderError(f"Microsoft Graph refused the request ({answer.code or status})")

    async def _request(self, method: str, url: str, *, params: dict[str, str] | None = None, json_body: Any = None,
                       if_match: str | None = None, page_size: int | None = None) -> _Answer:
        """One Graph call in UTC times, its answer whatever the status (`_checked` reads it)."""
        return await self._call(_Call(method, url, params, json_body, _headers(page_size=page_size, if_match=if_match)))

    async def _call(self, call: _Call) -> _Answer:
        """One Graph call on its own (see `_calls`); throttled too long, it is RateLimited."""
        (answer,) = await self._calls([call], self._send_each)
        if isinstance(answer, RateLimited):
            raise answer
        return answer

    def _outcome(self, answer: _Answer | RateLimited, read: Callable[[dict[str, Any]], T]) -> T | ProviderError:
        """A batched call's result as `read` makes it of the answer's JSON, or its failure as `_checked` says."""
        if isinstance(answer, RateLimited):
            return answer
        try:
            return read(self._checked(answer))
        except ProviderError as exc:
            return exc

    async def _batched(self, calls: list[_Call]) -> list[_Answer | RateLimited]:
        """Calls as `$batch` requests of at most 20 (M5), one after the other, each answer in order."""
        answers: list[_Answer | RateLimited] = []
        for start in range(0, len(calls), BATCH_LIMIT):
            answers += await self._calls(calls[start:start + BATCH_LIMIT], self._send_batch)
        return answers

    async def _calls(self, calls: list[_Call], send: _Sender) -> list[_Answer | RateLimited]:
        """Calls sent together by `send` (each alone, or as one `$batch`), each answer in order. The ones
        answered 401 are sent again once with a fresh token (the cached access token may be revoked before it
        expires), the throttled ones (429, 503) after a short Retry-After; a long one, or one too many, is
        RateLimited for those calls alone."""
        answers: dict[int, _Answer | RateLimited] = {}
        pending = list(range(len(calls)))
        refresh = refreshed = False
        for attempt in range(1, ATTEMPTS + 1):
            token = await self._access_token(force_refresh=refresh)
            sent = await send([calls[n] for n in pending], token)
            again: list[int] = []
            wait = 0.0
            for n, answer in zip(pending, sent, strict=True):
                if answer.status == 401 and not refreshed and attempt < ATTEMPTS:
                    again.append(n)
                elif answer.status in (429, 503):
                    delay = _retry_after(answer.headers)
                    if delay > SHORT_WAIT or attempt == ATTEMPTS:
                        answers[n] = RateLimited(f"Microsoft Graph asks us to slow down ({answer.status})", delay)
                    else:
                        again.append(n)
                        wait = max(wait, delay)
                else:
                    answers[n] = answer
            if not again:
                break
            refresh = not refreshed and any(answer.status == 401 for answer in sent)
            refreshed = refreshed or refresh
            if wait:
                log.info("throttled by Graph, waiting", extra={"retry_after": wait, "throttled": len(again)})
                await self._sleep(wait)
            pending = again
        return [answers[n] for n in range(len(calls))]

    async def _send_each(self, calls: list[_Call], token: str) -> list[_Answer]:
        return [await self._send(call, token) for call in calls]

    async def _send_batch(self, calls: list[_Call], token: str) -> list[_Answer]:
        """Calls as one `$batch` POST (M5), in one slot like any request. A batch refused whole for its token
        or throttled whole counts as each call answered so (`_calls` retries them); any other refusal of the
        batch is raised, as for any request."""
        requests = [{"id": str(n), "method": call.method, "url": self._relative(call), "headers": call.headers}
                    | ({"body": call.body, "headers": call.headers | _JSON} if call.body is not None else {})
                    for n, call in enumerate(calls)]
        answer = await self._send(_Call("POST", self._base + "$batch", None, {"requests": requests}, {}), token)
        if answer.status in (401, 429, 503):
            return [answer] * len(calls)
        replies = {str(reply.get("id")): reply for reply in self._checked(answer).get("responses") or []
                   if isinstance(reply, dict)}
        try:
            return [_Answer(int(reply["status"]), reply.get("body"), dict(reply.get("headers") or {}))
                    for reply in (replies[str(n)] for n in range(len(calls)))]
        except (KeyError, TypeError, ValueError):
            raise Unreachable("Microsoft Graph's batch answer left requests unanswered") from None

    def _relative(self, call: _Call) -> str:
        """A call's URL inside a batch: below the version root, with its query."""
        query = urlencode(call.params, quote_via=quote, safe="$") if call.params else ""
        return "/" + call.url.removeprefix(self._base) + (f"?{query}" if query else "")

    async def _send(self, call: _Call, token: str) -> _Answer:
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_seconds)
        headers = call.headers | {"Authorization": f"Bearer {token}"}
        answered = False  # counted by its status: a failure reading the body is not a second request
        try:
            async with self._slots, self._shared.session().request(
                    call.method, call.url, params=call.params, json=call.body, headers=headers,
                    timeout=timeout) as response:
                count_request(Provider.MICROSOFT, response.status)
                answered = True
                body = await response.json(content_type=None) if response.content_length != 0 else None
                return _Answer(response.status, body, dict(response.headers))
        except (aiohttp.ClientError, TimeoutError, OSError):
            if not answered:
                count_request(Provider.MICROSOFT, "unreachable")
            raise Unreachable("Microsoft Graph cannot be reached") from None
        except ValueError:
            raise Unreachable("Microsoft Graph did not answer with JSON") from None


class _CountedSignIn(requests.Session):
    """msal's HTTP client: each request to the sign-in service (discovery, token refreshes) counted as Graph's are
    (`croco_provider_requests_total`), with our timeout (msal sets its own only on a session it makes)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        try:
            response = super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]
        except requests.RequestException:
            count_request(Provider.MICROSOFT, "unreachable")
            raise
        count_request(Provider.MICROSOFT, response.status_code)
        return response


@functools.cache
def default_shared() -> MicrosoftShared:
    """For callers that open a provider without a composition root (scripts, tests): one per process."""
    return MicrosoftShared()


def open_microsoft(credentials: TokenCache, config: ProviderConfig,
                   shared: MicrosoftShared | None = None) -> MicrosoftProvider:
    return MicrosoftProvider(credentials, config, shared or default_shared())


def _subscription(found: dict[str, Any]) -> PushChannel:
    """Our channel for a Graph subscription: its id is both what notifications name and what deleting needs."""
    expires = datetime.fromisoformat(str(found["expirationDateTime"]).replace("Z", "+00:00"))
    return PushChannel(str(found["id"]), str(found["id"]), expires.astimezone(UTC))


def _event_body(draft: EventDraft) -> dict[str, Any]:
    """Our event (R1: our marker says so). No attendees: nobody is invited on our behalf."""
    return {
        "subject": draft.title, "showAs": "busy", "isReminderOn": False,
        "start": {"dateTime": _graph_time(draft.start), "timeZone": "UTC"},
        "end": {"dateTime": _graph_time(draft.end), "timeZone": "UTC"},
        "singleValueExtendedProperties": [{"id": MARKER_PROPERTY_ID, "value": draft.appointment_id}],
    }


def _headers(*, page_size: int | None = None, if_match: str | None = None) -> dict[str, str]:
    headers = {"Prefer": 'outlook.timezone="UTC"' + (f", odata.maxpagesize={page_size}" if page_size else "")}
    if if_match:
        headers["If-Match"] = if_match
    return headers


def _lookup(events_url: str, draft: EventDraft) -> _Call:
    """Our event of this draft, by its marker (M2): a create retried after a crash finds the first copy."""
    value = draft.appointment_id.replace("'", "''")
    return _Call("GET", events_url, {
        "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{MARKER_PROPERTY_ID}' and ep/value eq '{value}')",
        "$expand": _EXPAND_MARKER}, None, _headers())


def _creation(events_url: str, draft: EventDraft) -> _Call:
    """The POST of our event; its `transactionId` makes a retry whose reply was lost return the first (M2)."""
    return _Call("POST", events_url, None, _event_body(draft) | {"transactionId": draft.appointment_id}, _headers())


def _existing(found: dict[str, Any]) -> WriteResult | None:
    events = found.get("value") or []
    return WriteResult(events[0]["id"], events[0].get("@odata.etag"), existed=True) if events else None


def _written(created: dict[str, Any]) -> WriteResult:
    return WriteResult(created["id"], created.get("@odata.etag"))


def _window_params(window: TimeWindow) -> dict[str, str]:
    return {"startDateTime": _iso(window.start), "endDateTime": _iso(window.end)}


def _graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_after(headers: dict[str, str]) -> float:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(float(value), 0.0) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:  # an HTTP date: rare, and the default is near enough
        return DEFAULT_RETRY_AFTER


def _word(text: str) -> str:
    return text if _WORD.fullmatch(text) else ""
