"""A Google Calendar API v3 and Google OAuth emulator (research/provider-apis.md section G).

`GoogleEmulator` is one aiohttp server on 127.0.0.1 speaking the real v3 paths and JSON, so the real
google-api-python-client (static discovery, `api_endpoint={root_url}calendar/v3/`), its `BatchHttpRequest`
(`batch_uri={root_url}batch/calendar/v3`), google-auth (refresh at `token_url`) and google-auth-oauthlib
(`Flow` with PKCE) run against it unmodified. Its public API is /work/notes/google-emulator-api.md.

State lives in memory: accounts, the calendars they see (one store per calendar id, shared by every account
that lists it), events with their change numbers (which drive sync tokens), OAuth codes and tokens, push
channels. Tests change it with `put_event`/`delete_event` (another client's writes), make calls fail with
`fail()`, and wait on notifications without sleeping. Comments cite provider-apis.md as `G1`..`G7`; "Google:"
marks behaviour that file is silent on, done as Google does it.
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import itertools
import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import googleapiclient
from aiohttp import web
from dateutil import rrule
from multidict import CIMultiDict, MultiDict

from tests.emulators.common import (
    Answer,
    Code,
    OAuthEmulator,
    Request,
    Token,
    b64url,
    client_form,
    pkce_matches,
    real_now,
    with_query,
)

CLIENT_ID = "croco-test.apps.googleusercontent.com"
CLIENT_SECRET = "croco-test-client-secret"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"

# G7: the scopes each method accepts, read from the discovery document the client itself uses (G-DISC).
_DISCOVERY = json.loads((Path(googleapiclient.__file__).parent
                         / "discovery_cache/documents/calendar.v3.json").read_text())
_SCOPES: dict[str, frozenset[str]] = {
    f"{resource}.{name}": frozenset(method.get("scopes", ()))
    for resource, spec in _DISCOVERY["resources"].items() for name, method in spec.get("methods", {}).items()
}
_ROLE_RANK = {"freeBusyReader": 0, "reader": 1, "writerWithoutPrivateAccess": 2, "writer": 2, "owner": 3}
_EVENT_ID = re.compile(r"[a-v0-9]{5,1024}")  # G3: base32hex, 5-1024 characters
_SYNC_BANNED = ("iCalUID", "orderBy", "privateExtendedProperty", "q", "sharedExtendedProperty", "timeMin",
                "timeMax", "updatedMin")  # G1
_EVENT_TYPES = {"default", "birthday", "focusTime", "fromGmail", "outOfOffice", "workingLocation"}  # G2
_READ_ONLY = ("kind", "etag", "id", "htmlLink", "created", "updated", "iCalUID", "recurringEventId",
              "originalStartTime", "creator", "organizer")
# Google: the google.rpc status names it puts beside each HTTP code (410 has none of its own: ours).
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ALREADY_EXISTS", 410: "FAILED_PRECONDITION", 412: "FAILED_PRECONDITION",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
# G6: the domain and message Google sends with each failure reason.
_REASONS = {"rateLimitExceeded": ("usageLimits", "Rate Limit Exceeded"),
            "userRateLimitExceeded": ("usageLimits", "User Rate Limit Exceeded"),
            "quotaExceeded": ("usageLimits", "Calendar usage limits exceeded."),
            "backendError": ("global", "Backend Error"),
            "fullSyncRequired": ("global", "Sync token is no longer valid, a full sync is required.")}
_UNAUTHENTICATED = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                    "or other valid authentication credential. See "
                    "https://developers.google.com/identity/sign-in/web/devconsole-project.")  # Google's 401
_FULL_SYNC = "Sync token is no longer valid, a full sync is required."  # G1
_MAX_INSTANCES = 730  # Google: how far it expands an endless series is undocumented; two years of dailies
_CODE_LIFETIME = timedelta(minutes=10)  # Google: authorization codes live about ten minutes
_TOKEN_LIFETIME = 3599  # Google: expires_in of every access token


@dataclass(frozen=True)
class Failure:
    """What `fail()` makes a call answer: Google's error JSON with this status and reason (G6); for the
    token endpoint, `{"error": reason}` (an OAuth error code such as `invalid_grant` or `internal_failure`)."""

    status: int
    reason: str = "backendError"
    times: int = 1
    retry_after: int | None = None


@dataclass(frozen=True)
class Channel:
    id: str
    resource_id: str
    calendar_id: str
    address: str
    token: str | None = field(repr=False)
    expiration_ms: int
    account: str = field(default="", repr=False)


@dataclass(frozen=True)
class Notification:
    """A push the emulator delivered: `status_code` is the receiver's answer, None if it was unreachable."""

    channel_id: str
    state: str
    status_code: int | None


@dataclass
class CalendarEntry:
    """An account's calendarList entry: its role and its own name for a calendar."""

    calendar_id: str
    access_role: str
    summary_override: str | None = None


@dataclass
class Account:
    email: str
    entries: dict[str, CalendarEntry] = field(default_factory=dict)
    _emulator: GoogleEmulator | None = field(default=None, repr=False)

    def add_calendar(self, calendar_id: str, summary: str, access_role: str = "writer", *,
                     time_zone: str = "UTC", summary_override: str | None = None) -> CalendarEntry:
        """The account sees `calendar_id` with `access_role`; accounts adding the same id share its events."""
        assert self._emulator is not None and access_role in _ROLE_RANK
        self._emulator._calendar_store(calendar_id, summary, time_zone)
        entry = CalendarEntry(calendar_id, access_role, summary_override)
        self.entries[calendar_id] = entry
        return entry


@dataclass
class _Stored:
    resource: dict[str, Any]
    seq: int


@dataclass
class _Calendar:
    id: str
    summary: str
    time_zone: str
    resource_id: str
    events: dict[str, _Stored] = field(default_factory=dict)
    generation: int = 0
    """expire_sync_tokens bumps it: tokens of an older generation answer 410."""


@dataclass(frozen=True)
class _SyncState:
    calendar_id: str
    seq: int
    generation: int
    window: tuple[datetime | None, datetime | None]
    """The timeMin/timeMax of the full listing that started the chain (for singleEvents expansion)."""


@dataclass
class _Listing:
    key: tuple[Any, ...]
    items: list[dict[str, Any]]
    page_size: int
    envelope: dict[str, Any]
    calendar_id: str | None = None
    sync: _SyncState | None = None
    offset: int = 0
    pages: int = 0


@dataclass
class _Code(Code):
    offline: bool = False
    """G7: whether the consent gives a refresh token."""


class _ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, *, domain: str = "global",
                 headers: Mapping[str, str] | None = None, summary: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.domain = status, reason, message, domain
        self.summary = summary or message
        """The top-level message, which Google words apart from errors[0].message for a 401."""
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Google's error JSON: googleapiclient's retry reads error.errors[0].reason (G6)."""
        return {"error": {"code": self.status, "message": self.summary,
                          "errors": [{"domain": self.domain, "reason": self.reason, "message": self.message}],
                          "status": _STATUS.get(self.status, "UNKNOWN")}}


@dataclass(frozen=True)
class _Call:
    http_method: str
    path: str
    query: MultiDict[str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class _Context:
    account: Account
    args: dict[str, str]
    query: MultiDict[str]
    headers: Mapping[str, str]
    body: dict[str, Any]


def _rfc3339(moment: datetime) -> str:
    """RFC 3339 with the offset; UTC as `Z` (Google)."""
    text = moment.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def _stamp(moment: datetime) -> str:
    """`updated`/`created`: UTC with milliseconds, as Google writes them."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_instant(text: str, name: str) -> datetime:
    """A timeMin/timeMax query value: RFC 3339 with a mandatory offset (Google answers 400 without one)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _ApiError(400, "badRequest", f"Bad Request: invalid {name}") from None
    if moment.tzinfo is None:
        raise _ApiError(400, "badRequest", f"Bad Request: {name} needs an offset")
    return moment


def _bool(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


def _all_day(edt: Mapping[str, Any]) -> bool:
    return "date" in edt


def _edt_instant(edt: Mapping[str, Any], zone: str) -> datetime:
    """Where an EventDateTime lies on the time line; an all-day date starts at midnight in `zone` (G2)."""
    if "date" in edt:
        return datetime.combine(date.fromisoformat(edt["date"]), time(), ZoneInfo(edt.get("timeZone") or zone))
    return datetime.fromisoformat(edt["dateTime"])


class _Series:
    """The instances of a recurring event: RRULE/EXRULE/RDATE/EXDATE lines expanded in start.timeZone (G2)."""

    def __init__(self, master: Mapping[str, Any], calendar_zone: str) -> None:
        start, end = master["start"], master["end"]
        self.all_day = _all_day(start)
        self.zone = ZoneInfo(start.get("timeZone") or calendar_zone)
        if self.all_day:
            self.first: datetime = datetime.combine(date.fromisoformat(start["date"]), time())  # naive local days
            self.duration = datetime.combine(date.fromisoformat(end["date"]), time()) - self.first
        else:
            self.first = datetime.fromisoformat(start["dateTime"]).astimezone(self.zone)
            self.duration = datetime.fromisoformat(end["dateTime"]) - datetime.fromisoformat(start["dateTime"])
        self.rules = rrule.rruleset()
        self.rules.rdate(self.first)  # iCalendar: the start is always the first instance
        for line in master.get("recurrence", []):
            name_params, _, value = line.partition(":")
            name, *param_texts = name_params.split(";")
            name = name.upper()
            params = {key.upper(): value for key, _, value in (p.partition("=") for p in param_texts)}
            if name in ("RRULE", "EXRULE"):
                rule = rrule.rrulestr(self._until_fixed(value), dtstart=self.first)
                (self.rules.rrule if name == "RRULE" else self.rules.exrule)(rule)
            elif name in ("RDATE", "EXDATE"):
                for moment in self._dates(params, value):
                    (self.rules.rdate if name == "RDATE" else self.rules.exdate)(moment)

    def _until_fixed(self, rule: str) -> str:
        """dateutil wants UNTIL in UTC for a zoned start and floating for all-day; Google accepts either."""
        def fix(match: re.Match[str]) -> str:
            value = match.group(1)
            if self.all_day:
                return "UNTIL=" + value[:8]
            if value.endswith("Z"):
                return match.group(0)
            moment = datetime.strptime(value[:15] if "T" in value else value[:8] + "T235959", "%Y%m%dT%H%M%S")
            return "UNTIL=" + moment.replace(tzinfo=self.zone).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        return re.sub(r"UNTIL=([0-9TZ]+)", fix, rule.upper())

    def _dates(self, params: Mapping[str, str], value: str) -> Iterator[datetime]:
        for text in value.split(","):
            if self.all_day:
                yield datetime.strptime(text[:8], "%Y%m%d")
            elif params.get("VALUE") == "DATE" or len(text) == 8:
                yield datetime.combine(datetime.strptime(text[:8], "%Y%m%d").date(), self.first.timetz())
            elif text.endswith("Z"):
                yield datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone(self.zone)
            else:
                zone = ZoneInfo(params["TZID"]) if "TZID" in params else self.zone
                yield datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=zone).astimezone(self.zone)

    def instant(self, occurrence: datetime) -> datetime:
        return occurrence.replace(tzinfo=self.zone) if self.all_day else occurrence

    def between(self, low: datetime | None, high: datetime | None, horizon: datetime) -> list[datetime]:
        """Occurrences whose span overlaps [low, high); an open end stops at `horizon` (Google: undocumented)."""
        found: list[datetime] = []
        for occurrence in self.rules:
            start = self.instant(occurrence)
            if (high is not None and start >= high) or (high is None and start >= horizon):
                break
            if low is None or start + self.duration > low:
                found.append(occurrence)
                if len(found) >= _MAX_INSTANCES:
                    break
        return found

    def suffix(self, occurrence: datetime) -> str:
        """G1: instance ids are `{masterId}_{YYYYMMDDTHHMMSSZ}`, or `_{YYYYMMDD}` for all-day series."""
        if self.all_day:
            return occurrence.strftime("%Y%m%d")
        return occurrence.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    def edt(self, moment: datetime, zone_name: str | None) -> dict[str, Any]:
        if self.all_day:
            return {"date": moment.date().isoformat()}
        shown = {"dateTime": _rfc3339(moment.astimezone(self.zone))}
        return shown | ({"timeZone": zone_name} if zone_name else {})


class GoogleEmulator(OAuthEmulator[Account, Failure, Notification]):
    def __init__(self, *, clock: Callable[[], datetime] = real_now) -> None:
        super().__init__(clock=clock)
        self.page_size_cap = 2500
        self.channel_lifetime = timedelta(days=7)  # G4: about 7 days in practice
        self.channels: dict[str, Channel] = {}
        self.root_url = ""
        self._calendars: dict[str, _Calendar] = {}
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._etags = itertools.count(3181161784712000)
        self._message_numbers = itertools.count(5, 3)  # G4: increasing, not sequential (1 is the sync)
        self._codes: dict[str, _Code] = {}
        self._fail_after: dict[str, int] = {}
        self._sync_tokens: dict[str, _SyncState] = {}
        self._listings: dict[str, _Listing] = {}
        self._outboxes: dict[str, asyncio.Queue[str]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    # Test controls -------------------------------------------------------------------------------------

    @property
    def auth_url(self) -> str:
        return f"{self.root_url}o/oauth2/auth"

    @property
    def token_url(self) -> str:
        return f"{self.root_url}token"

    def add_account(self, email_address: str, *, time_zone: str = "UTC") -> Account:
        """A Google account whose primary calendar's id is its email, with accessRole owner."""
        account = Account(email_address, _emulator=self)
        account.add_calendar(email_address, email_address, "owner", time_zone=time_zone)
        self.accounts[email_address] = account
        return account

    def grant(self, email_address: str, scopes: list[str] | None = None) -> dict[str, Any]:
        """The tokens an offline consent would yield, without the browser step."""
        granted = tuple(scopes or [CALENDAR_SCOPE])
        return self._issue(email_address, granted, offline=True)

    def expire_access_tokens(self) -> None:
        for token in self._access.values():
            token.revoked = True

    def fail_after_pages(self, calendar_id: str, pages: int = 1) -> None:
        """The next listing of `calendar_id` answers 410 when asked for the page after `pages` pages."""
        self._fail_after[calendar_id] = pages

    def expire_sync_tokens(self, calendar_id: str) -> None:
        """G1: every sync token handed out so far for this calendar answers 410 fullSyncRequired."""
        self._calendars[calendar_id].generation += 1

    def event(self, calendar_id: str, event_id: str) -> dict[str, Any] | None:
        stored = self._calendars[calendar_id].events.get(event_id)
        return None if stored is None else self._render(self._calendars[calendar_id], stored.resource)

    def events(self, calendar_id: str) -> list[dict[str, Any]]:
        calendar = self._calendars[calendar_id]
        return [self._render(calendar, stored.resource) for stored in calendar.events.values()
                if stored.resource["status"] != "cancelled"]

    def put_event(self, calendar_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Another client writes `event` (a new one, or a full replacement of the one with its id)."""
        calendar = self._calendars[calendar_id]
        existing = calendar.events.get(event.get("id", ""))
        if existing is None:
            resource = self._new_event(calendar, event, creator=calendar_id)
        else:
            resource = self._replaced(calendar, existing.resource, event)
        return self._render(calendar, self._save(calendar, resource))

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        """Another client deletes the event: it stays, cancelled, for sync (G1)."""
        calendar = self._calendars[calendar_id]
        self._cancel(calendar, calendar.events[event_id].resource)

    def expire_channel(self, channel_id: str) -> None:
        self._end_channel(channel_id)

    # Server ------------------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/o/oauth2/auth", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_post("/batch/calendar/v3", self._batch)
        app.router.add_route("*", "/calendar/v3/{tail:.*}", self._api)
        self.root_url = f"http://127.0.0.1:{await self._serve(app)}/"
        self._http = aiohttp.ClientSession()
        return self.root_url

    async def close(self) -> None:
        workers = list(self._workers.values())
        for channel_id in list(self._workers):
            self._end_channel(channel_id)
        await asyncio.gather(*workers, return_exceptions=True)
        await self._stop_serving()

    # OAuth (G7) --------------------------------------------------------------------------------------

    async def _authorize(self, request: web.Request) -> web.Response:
        """Google's consent page, auto-approved by `consent_as`; errors before redirect_uri is trusted are a page."""
        query = request.query
        if query.get("client_id") != CLIENT_ID:
            return web.Response(status=401, text="Error 401: invalid_client")
        redirect_uri = query.get("redirect_uri")
        if not redirect_uri:  # Google: also checked against the registered URIs; any loopback port goes here
            return web.Response(status=400, text="Error 400: redirect_uri_mismatch")
        state = {"state": query["state"]} if "state" in query else {}
        missing = [name for name in ("response_type", "scope") if not query.get(name)]
        method = query.get("code_challenge_method", "plain")  # RFC 7636: plain unless said otherwise
        if missing or query.get("response_type") != "code" or method not in ("S256", "plain"):
            return web.Response(status=400, text=f"Error 400: invalid_request {' '.join(missing)}")
        if (error := self._denial()) is not None:
            raise web.HTTPFound(with_query(redirect_uri, {"error": error} | state))
        if (who := self._consenter()) is None:
            return web.Response(status=400, text="no account signed in (set consent_as)")
        code = "4/emu-" + secrets.token_urlsafe(24)
        self._codes[code] = _Code(
            who, redirect_uri, tuple(query["scope"].split()), query.get("code_challenge"), method,
            self.clock() + _CODE_LIFETIME, offline=self._offline_consent(who, query))
        raise web.HTTPFound(with_query(redirect_uri, {"code": code, "scope": query["scope"]} | state))

    def _offline_consent(self, email_address: str, query: Mapping[str, str]) -> bool:
        """G7: a refresh token comes with access_type=offline; once the account holds one for this client,
        only prompt=consent yields another (Google)."""
        if query.get("access_type") != "offline":
            return False
        holds_one = any(token.email == email_address and not token.revoked for token in self._refresh.values())
        return not holds_one or "consent" in query.get("prompt", "").split()

    async def _token(self, request: web.Request) -> web.Response:
        form = client_form(dict(parse_qsl(await request.text())), request.headers.get("Authorization", ""))
        self.requests.append(Request("token", "POST", "/token", {"grant_type": form.get("grant_type", "")}, None))
        if (failure := self._next_failure("token")) is not None:
            return _oauth_error(failure.status, failure.reason, "Injected failure")
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return _oauth_error(401, "invalid_client", "Unauthorized")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            token = self._refresh.get(form.get("refresh_token", ""))
            if token is None or token.revoked:
                return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
            return web.json_response(self._issue(token.email, token.scopes, offline=False))
        return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type")

    def _exchange_code(self, form: Mapping[str, str]) -> web.Response:
        code = self._codes.get(form.get("code", ""))
        if code is None or not code.spend(self.clock()):
            return _oauth_error(400, "invalid_grant", "Malformed auth code.")
        if form.get("redirect_uri") != code.redirect_uri:
            return _oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        if code.challenge is not None:
            verifier = form.get("code_verifier")
            if verifier is None:
                return _oauth_error(400, "invalid_grant", "Missing code verifier.")
            if not pkce_matches(code.challenge, code.challenge_method, verifier):
                return _oauth_error(400, "invalid_grant", "Invalid code verifier.")
        return web.json_response(self._issue(code.email, code.scopes, offline=code.offline))

    def _issue(self, email_address: str, scopes: tuple[str, ...], *, offline: bool) -> dict[str, Any]:
        """An access token (3599 s) and, for offline access only, a refresh token (G7)."""
        access = "ya29.emu-" + secrets.token_urlsafe(24)
        self._access[access] = Token(email_address, scopes, self.clock() + timedelta(seconds=_TOKEN_LIFETIME))
        tokens: dict[str, Any] = {"access_token": access, "expires_in": _TOKEN_LIFETIME,
                                  "scope": " ".join(scopes), "token_type": "Bearer"}
        if offline:
            refresh = "1//emu-" + secrets.token_urlsafe(32)
            self._refresh[refresh] = Token(email_address, scopes)
            tokens["refresh_token"] = refresh
        return tokens

    # Dispatch ----------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        call = _Call(request.method, request.raw_path.partition("?")[0], MultiDict(request.query),
                     request.headers, await request.read())
        return self._answer(call).response()

    def _answer(self, call: _Call) -> Answer:
        try:
            return self._dispatch(call)
        except _ApiError as error:
            return Answer(error.status, error.body(), error.headers)

    def _dispatch(self, call: _Call) -> Answer:
        segments = [unquote(part) for part in call.path.removeprefix("/calendar/v3/").split("/")]
        method, args = _route(call.http_method, segments)
        token = self._bearer(call.headers)
        self.requests.append(Request(method, call.http_method, call.path, dict(call.query.items()),
                                     token.email if token is not None else None))
        if token is None or not token.usable(self.clock()):
            raise _ApiError(401, "authError", "Invalid Credentials", summary=_UNAUTHENTICATED,
                            headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                                                         'error="invalid_token"'})
        if method not in _SCOPES or not _SCOPES[method] & set(token.scopes):  # G7: method-level scopes
            raise _ApiError(403, "insufficientPermissions", "Request had insufficient authentication scopes.")
        if (failure := self._next_failure(method)) is not None:
            domain, message = _REASONS.get(failure.reason, ("global", failure.reason))
            headers = {"Retry-After": str(failure.retry_after)} \
                if failure.retry_after is not None and failure.status in (403, 429) else {}
            raise _ApiError(failure.status, failure.reason, message, domain=domain, headers=headers)
        body = json.loads(call.body) if call.body else {}
        context = _Context(self.accounts[token.email], args, call.query, call.headers, body)
        handler: Callable[[_Context], Answer] = getattr(self, "_" + method.replace(".", "_"))
        return handler(context)

    # Calendars and access (G7) ---------------------------------------------------------------------------

    def _calendar_store(self, calendar_id: str, summary: str, time_zone: str) -> _Calendar:
        if calendar_id not in self._calendars:
            self._calendars[calendar_id] = _Calendar(calendar_id, summary, time_zone, secrets.token_urlsafe(18))
        return self._calendars[calendar_id]

    def _calendar(self, context: _Context, need: str) -> tuple[_Calendar, CalendarEntry]:
        """The calendar in the path if the account may `need` (read|write) it: else 404 or 403."""
        calendar_id = context.args["calendarId"]
        if calendar_id == "primary":  # Google: the alias of the account's primary calendar
            calendar_id = context.account.email
        entry = context.account.entries.get(calendar_id)
        if entry is None:
            raise _ApiError(404, "notFound", "Not Found")
        rank = _ROLE_RANK[entry.access_role]
        if need == "write" and rank < 2:
            raise _ApiError(403, "requiredAccessLevel", "You need to have writer access to this calendar.")
        if need == "read" and rank < 1:  # a freeBusyReader may only ask freebusy.query
            raise _ApiError(403, "requiredAccessLevel", "You need to have reader access to this calendar.")
        return self._calendars[calendar_id], entry

    def _calendarList_list(self, context: _Context) -> Answer:
        query = context.query
        if "pageToken" in query:
            return Answer(200, self._next_page(query, ("calendarList", context.account.email)))
        minimum = _ROLE_RANK.get(query.get("minAccessRole", "freeBusyReader"))
        if minimum is None:
            raise _ApiError(400, "invalid", "Invalid minAccessRole value.")
        items = []
        for entry in context.account.entries.values():
            if _ROLE_RANK[entry.access_role] < minimum:
                continue
            calendar = self._calendars[entry.calendar_id]
            item: dict[str, Any] = {
                "kind": "calendar#calendarListEntry", "etag": f'"{calendar.resource_id[:8]}"', "id": calendar.id,
                "summary": calendar.summary, "timeZone": calendar.time_zone, "colorId": "1",
                "backgroundColor": "#9fe1e7", "foregroundColor": "#000000", "selected": True,
                "accessRole": entry.access_role, "defaultReminders": []}
            if entry.summary_override is not None:
                item["summaryOverride"] = entry.summary_override
            if calendar.id == context.account.email:
                item["primary"] = True  # Google: present only on the primary calendar
            items.append(item)
        page_size = min(int(query.get("maxResults", "100")), 250)  # Google: default 100, at most 250
        listing = _Listing(("calendarList", context.account.email), items, page_size,
                           {"kind": "calendar#calendarList", "etag": f'"{next(self._etags)}"'})
        return Answer(200, self._page(listing, final_sync=False))

    # Paging (G1) -------------------------------------------------------------------------------------

    def _page(self, listing: _Listing, *, final_sync: bool = True) -> dict[str, Any]:
        """One page: `nextPageToken` on every page but the last, `nextSyncToken` on the last only (G1)."""
        page = listing.items[listing.offset:listing.offset + listing.page_size]
        listing.offset += len(page)
        listing.pages += 1
        answer = dict(listing.envelope) | {"items": page}
        if listing.offset < len(listing.items):
            token = secrets.token_urlsafe(16)  # opaque, tied to this listing
            self._listings[token] = listing
            answer["nextPageToken"] = token
        elif final_sync and listing.sync is not None:
            token = secrets.token_urlsafe(24)
            self._sync_tokens[token] = listing.sync
            answer["nextSyncToken"] = token
        return answer

    def _next_page(self, query: MultiDict[str], key: tuple[Any, ...]) -> dict[str, Any]:
        listing = self._listings.get(query["pageToken"])
        if listing is None or listing.key != key:
            raise _ApiError(400, "invalid", "Invalid page token value.")
        if listing.calendar_id is not None:
            pages = self._fail_after.get(listing.calendar_id)
            if pages is not None and listing.pages >= pages:  # a token going stale mid-paging
                del self._fail_after[listing.calendar_id]
                raise _ApiError(410, "fullSyncRequired", _FULL_SYNC)
            calendar = self._calendars[listing.calendar_id]
            if listing.sync is not None and listing.sync.generation != calendar.generation:
                raise _ApiError(410, "fullSyncRequired", _FULL_SYNC)
        return self._page(listing)

    # Events: reading (G1, G2) --------------------------------------------------------------------------

    def _events_list(self, context: _Context) -> Answer:
        calendar, entry = self._calendar(context, "read")
        query = context.query
        key = ("events", calendar.id, context.account.email,
               tuple(sorted((k, v) for k, v in query.items() if k != "pageToken")))
        if "pageToken" in query:
            return Answer(200, self._next_page(query, key))
        single = _bool(query.get("singleEvents"))
        if query.get("orderBy") == "startTime" and not single:  # G1: startTime order needs singleEvents
            raise _ApiError(400, "badRequest", "The requested ordering is not available for the particular query.")
        started = self._last_seq  # changes from now on belong to the next token
        if "syncToken" in query:
            banned = [name for name in _SYNC_BANNED if name in query]
            if banned:  # G1: these cannot go with syncToken (the message is ours)
                raise _ApiError(400, "invalid", f"{banned[0]} cannot be used together with syncToken.")
            state = self._sync_tokens.get(query["syncToken"])
            if state is None or state.calendar_id != calendar.id or state.generation != calendar.generation:
                raise _ApiError(410, "fullSyncRequired", _FULL_SYNC)  # G1
            items = self._changes(calendar, state, single)
            window = state.window
        else:
            window = (_parse_instant(query["timeMin"], "timeMin") if "timeMin" in query else None,
                      _parse_instant(query["timeMax"], "timeMax") if "timeMax" in query else None)
            items = self._full_listing(calendar, _bool(query.get("showDeleted")), single, window)
        items = [item for item in items if self._matches(item, query)]
        if query.get("orderBy") == "startTime":
            items.sort(key=lambda item: _edt_instant(item["start"], calendar.time_zone)
                       if "start" in item else datetime.min.replace(tzinfo=UTC))
        elif query.get("orderBy") == "updated":
            items.sort(key=lambda item: item.get("updated", ""))
        max_results = int(query.get("maxResults", "250"))  # G1: default 250, never above 2500
        if max_results < 1:
            raise _ApiError(400, "invalid", "Invalid value for maxResults.")
        envelope = {"kind": "calendar#events", "etag": f'"{next(self._etags)}"', "summary": calendar.summary,
                    "updated": _stamp(self.clock()), "timeZone": calendar.time_zone,
                    "accessRole": entry.access_role, "defaultReminders": []}
        sync = _SyncState(calendar.id, started, calendar.generation, window)
        listing = _Listing(key, items, min(max_results, self.page_size_cap, 2500), envelope, calendar.id, sync)
        return Answer(200, self._page(listing))

    def _matches(self, item: Mapping[str, Any], query: MultiDict[str]) -> bool:
        """The filters other than time: eventTypes, extended properties (ANDed, G2), q, iCalUID, updatedMin."""
        if item["status"] == "cancelled" and "start" not in item:
            return True  # G1: a deletion carries only ids and always reaches the client
        types = query.getall("eventTypes", [])
        if types and item.get("eventType", "default") not in types:
            return False
        for kind in ("private", "shared"):
            properties = item.get("extendedProperties", {}).get(kind, {})
            for pair in query.getall(f"{kind}ExtendedProperty", []):
                name, _, value = pair.partition("=")
                if properties.get(name) != value:
                    return False
        if "q" in query:
            text = " ".join(str(item.get(name, "")) for name in ("summary", "description", "location")).lower()
            if not all(word in text for word in query["q"].lower().split()):
                return False
        if "iCalUID" in query and item.get("iCalUID") != query["iCalUID"]:
            return False
        return "updatedMin" not in query or datetime.fromisoformat(item["updated"]) >= _parse_instant(
            query["updatedMin"], "updatedMin")

    def _full_listing(self, calendar: _Calendar, show_deleted: bool, single: bool,
                      window: tuple[datetime | None, datetime | None]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for stored in calendar.events.values():
            resource = stored.resource
            cancelled = resource["status"] == "cancelled"
            exception = "recurringEventId" in resource and resource["recurringEventId"] in calendar.events
            if single and exception:
                continue  # placed among its series' instances below
            if single and "recurrence" in resource:
                if not cancelled:  # G1: deleted masters are not listed, even with showDeleted
                    items.extend(item for item in self._instances(calendar, resource, window)
                                 if show_deleted or item["status"] != "cancelled")
                continue
            if cancelled and not show_deleted:
                master = calendar.events.get(resource.get("recurringEventId", ""))
                # G1: without showDeleted, cancelled instances of a live series still come (singleEvents=false)
                if single or master is None or master.resource["status"] == "cancelled":
                    continue
            if self._overlaps(calendar, resource, window):
                items.append(self._listed(calendar, resource))
        return items

    def _changes(self, calendar: _Calendar, state: _SyncState, single: bool) -> list[dict[str, Any]]:
        """G1: only what changed since the token, deletions included. With singleEvents a changed series
        answers its instances within the window of the listing that began the chain (Google: undocumented)."""
        items: dict[str, dict[str, Any]] = {}
        for stored in calendar.events.values():
            if stored.seq <= state.seq:
                continue
            resource = stored.resource
            series = calendar.events.get(resource.get("recurringEventId", ""))
            if single and series is not None:
                resource = series.resource
            if single and "recurrence" in resource:
                for item in self._instances(calendar, resource, state.window):
                    items[item["id"]] = item
            else:
                items[resource["id"]] = self._listed(calendar, resource)
        return list(items.values())

    def _overlaps(self, calendar: _Calendar, resource: Mapping[str, Any],
                  window: tuple[datetime | None, datetime | None]) -> bool:
        """timeMin bounds the end, timeMax the start (Google); a series counts if any instance overlaps."""
        low, high = window
        if low is None and high is None:
            return True
        if "recurrence" in resource:
            return bool(_Series(resource, calendar.time_zone).between(low, high, self._horizon(resource)))
        start = _edt_instant(resource["start"], calendar.time_zone)
        end = _edt_instant(resource["end"], calendar.time_zone)
        return (high is None or start < high) and (low is None or end > low)

    def _horizon(self, master: Mapping[str, Any]) -> datetime:
        return max(self.clock(), _edt_instant(master["start"], "UTC")) + timedelta(days=366)

    def _instances(self, calendar: _Calendar, master: Mapping[str, Any],
                   window: tuple[datetime | None, datetime | None]) -> list[dict[str, Any]]:
        """The series' instances in the window; stored exceptions replace theirs (G1), all cancelled with
        the series when the master is deleted."""
        series = _Series(master, calendar.time_zone)
        exceptions = {self._original_key(calendar, stored.resource["originalStartTime"]): stored.resource
                      for stored in calendar.events.values()
                      if stored.resource.get("recurringEventId") == master["id"]}
        items: list[dict[str, Any]] = []
        for occurrence in series.between(*window, self._horizon(master)):
            instance = exceptions.pop(self._original_key(calendar, series.edt(occurrence, None)), None)
            if instance is None:
                instance = self._virtual_instance(series, master, occurrence)
            if master["status"] == "cancelled":
                instance = instance | {"status": "cancelled"}
            items.append(self._listed(calendar, instance))
        for moved in exceptions.values():  # exceptions moved into the window from an instance outside it
            if self._overlaps(calendar, moved, window):
                items.append(self._listed(calendar, moved))
        return items

    def _original_key(self, calendar: _Calendar, edt: Mapping[str, Any]) -> datetime:
        return _edt_instant(edt, calendar.time_zone).astimezone(UTC).replace(tzinfo=None)

    def _virtual_instance(self, series: _Series, master: Mapping[str, Any], occurrence: datetime) -> dict[str, Any]:
        """An instance as Google lists it: the master's fields without recurrence, its own id and times."""
        zone_name = master["start"].get("timeZone")
        instance = {key: value for key, value in master.items() if key != "recurrence"}
        instance |= {"id": f"{master['id']}_{series.suffix(occurrence)}", "recurringEventId": master["id"],
                     "start": series.edt(occurrence, zone_name),
                     "end": series.edt(occurrence + series.duration, master["end"].get("timeZone")),
                     "originalStartTime": series.edt(occurrence, zone_name)}
        return instance

    def _listed(self, calendar: _Calendar, resource: Mapping[str, Any]) -> dict[str, Any]:
        """A listed resource; a cancelled one carries only ids, plus the series ids for an exception (G1)."""
        if resource["status"] != "cancelled":
            return self._render(calendar, resource)
        keep = ("kind", "etag", "id", "status", "updated", "recurringEventId", "originalStartTime")
        return {key: resource[key] for key in keep if key in resource}

    def _render(self, calendar: _Calendar, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Google marks `self` on people whose email is this copy's calendar (G2)."""
        shown: dict[str, Any] = json.loads(json.dumps(resource))
        for key in ("organizer", "creator"):
            if key in shown and shown[key].get("email", "").lower() == calendar.id.lower():
                shown[key]["self"] = True
        organizer = shown.get("organizer", {}).get("email", "").lower()
        for attendee in shown.get("attendees", []):
            if attendee.get("email", "").lower() == calendar.id.lower():
                attendee["self"] = True
            if attendee.get("email", "").lower() == organizer:
                attendee["organizer"] = True
        return shown

    def _find(self, calendar: _Calendar, event_id: str) -> dict[str, Any] | None:
        """A stored event, or an instance of a series not stored on its own yet (Google: same ids)."""
        stored = calendar.events.get(event_id)
        if stored is not None:
            return stored.resource
        master_id, _, suffix = event_id.rpartition("_")
        master = calendar.events.get(master_id)
        if master is None or "recurrence" not in master.resource:
            return None
        series = _Series(master.resource, calendar.time_zone)
        try:
            if series.all_day:
                moment = datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=series.zone)
            else:
                moment = datetime.strptime(suffix, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        for occurrence in series.between(moment, moment + timedelta(seconds=1), moment):
            if series.suffix(occurrence) == suffix:
                return self._virtual_instance(series, master.resource, occurrence)
        return None

    def _events_get(self, context: _Context) -> Answer:
        calendar, _ = self._calendar(context, "read")
        resource = self._find(calendar, context.args["eventId"])
        if resource is None:
            raise _ApiError(404, "notFound", "Not Found")
        return Answer(200, self._render(calendar, resource))  # Google: a deleted event reads as cancelled

    def _events_instances(self, context: _Context) -> Answer:
        calendar, entry = self._calendar(context, "read")
        query = context.query
        key = ("instances", calendar.id, context.args["eventId"],
               tuple(sorted((k, v) for k, v in query.items() if k != "pageToken")))
        if "pageToken" in query:
            return Answer(200, self._next_page(query, key))
        stored = calendar.events.get(context.args["eventId"])
        if stored is None:
            raise _ApiError(404, "notFound", "Not Found")
        window = (_parse_instant(query["timeMin"], "timeMin") if "timeMin" in query else None,
                  _parse_instant(query["timeMax"], "timeMax") if "timeMax" in query else None)
        items = []  # Google: a single event has no instances to list (undocumented: an empty list)
        if "recurrence" in stored.resource:
            items = [item for item in self._instances(calendar, stored.resource, window)
                     if _bool(query.get("showDeleted")) or item["status"] != "cancelled"]
        envelope = {"kind": "calendar#events", "etag": f'"{next(self._etags)}"', "summary": calendar.summary,
                    "updated": _stamp(self.clock()), "timeZone": calendar.time_zone,
                    "accessRole": entry.access_role, "defaultReminders": []}
        page_size = min(int(query.get("maxResults", "250")), self.page_size_cap, 2500)
        return Answer(200, self._page(_Listing(key, items, page_size, envelope, calendar.id)))

    # Events: writing (G2, G3) --------------------------------------------------------------------------

    def _events_insert(self, context: _Context) -> Answer:
        calendar, _ = self._calendar(context, "write")
        event_id = context.body.get("id")
        if event_id is not None:
            if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
                raise _ApiError(400, "invalid", "Invalid resource id value.")  # G3
            if event_id in calendar.events:  # G3: even a deleted one
                raise _ApiError(409, "duplicate", "The requested identifier already exists.")
        resource = self._new_event(calendar, context.body, creator=context.account.email)
        return Answer(200, self._render(calendar, self._save(calendar, resource)))

    def _events_patch(self, context: _Context) -> Answer:
        calendar, resource = self._target(context)
        merged = _merged(resource, context.body)
        return Answer(200, self._render(calendar, self._save(calendar, self._replaced(calendar, resource, merged))))

    def _events_update(self, context: _Context) -> Answer:
        calendar, resource = self._target(context)
        return Answer(200, self._render(calendar, self._save(calendar,
                                                              self._replaced(calendar, resource, context.body))))

    def _events_delete(self, context: _Context) -> Answer:
        calendar, resource = self._target(context)
        if resource["status"] == "cancelled":
            raise _ApiError(410, "deleted", "Resource has been deleted")  # G3
        self._cancel(calendar, resource)
        return Answer(204)

    def _target(self, context: _Context) -> tuple[_Calendar, dict[str, Any]]:
        """The event a write names, checked against If-Match (G3: a stale etag answers 412)."""
        calendar, _ = self._calendar(context, "write")
        resource = self._find(calendar, context.args["eventId"])
        if resource is None:
            raise _ApiError(404, "notFound", "Not Found")
        expected = context.headers.get("If-Match")
        if expected is not None and expected != "*" and expected != resource["etag"]:
            raise _ApiError(412, "conditionNotMet", "Precondition Failed")
        return calendar, resource

    def _new_event(self, calendar: _Calendar, body: Mapping[str, Any], *, creator: str) -> dict[str, Any]:
        event_id = body.get("id") or secrets.token_hex(13)  # Google: 26 base32hex characters
        now = _stamp(self.clock())
        fixed = {"kind": "calendar#event", "id": event_id, "created": now,
                 "htmlLink": "https://www.google.com/calendar/event?eid="
                             + b64url(f"{event_id} {calendar.id}".encode()),
                 "iCalUID": body.get("iCalUID") or f"{event_id}@google.com",
                 "creator": body.get("creator") or {"email": creator},
                 "organizer": body.get("organizer") or {"email": calendar.id, "displayName": calendar.summary}}
        for key in ("recurringEventId", "originalStartTime"):
            if key in body:
                fixed[key] = body[key]
        return self._normalised(calendar, {"sequence": 0} | dict(body) | fixed)

    def _replaced(self, calendar: _Calendar, old: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        """A full replacement (update): the read-only fields stay (G2: recurringEventId, originalStartTime)."""
        kept = {key: old[key] for key in _READ_ONLY if key in old}
        fresh = {key: value for key, value in body.items() if key not in _READ_ONLY}
        return self._normalised(calendar, {"sequence": old.get("sequence", 0)} | fresh | kept)

    def _normalised(self, calendar: _Calendar, resource: dict[str, Any]) -> dict[str, Any]:
        """Validate and fill in an event as Google stores it (G2)."""
        resource.setdefault("status", "confirmed")
        if resource["status"] not in ("confirmed", "tentative", "cancelled"):
            raise _ApiError(400, "invalid", "Invalid value for: status")
        resource.setdefault("eventType", "default")
        if resource["eventType"] not in _EVENT_TYPES:
            raise _ApiError(400, "invalid", "Invalid event type.")
        if resource.get("transparency") == "opaque":
            del resource["transparency"]  # Google omits the default
        resource.setdefault("reminders", {"useDefault": True})
        for name in ("start", "end"):
            if name not in resource or not isinstance(resource[name], dict):
                raise _ApiError(400, "required", f"Missing {name} time.")
            resource[name] = _normalised_time(resource[name], calendar.time_zone, name,
                                              recurring=bool(resource.get("recurrence")))
        if _all_day(resource["start"]) != _all_day(resource["end"]) or \
                _edt_instant(resource["end"], calendar.time_zone) <= _edt_instant(resource["start"], calendar.time_zone):
            raise _ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        if not resource.get("recurrence"):
            resource.pop("recurrence", None)  # G2: omitted for single events
        properties = resource.get("extendedProperties")
        if properties:
            # G2: keys over 44 characters are dropped, values over 1024 truncated, silently
            resource["extendedProperties"] = {
                kind: {key: str(value)[:1024] for key, value in (properties.get(kind) or {}).items()
                       if len(key) <= 44 and value is not None}
                for kind in ("private", "shared") if kind in properties}
        for attendee in resource.get("attendees", []):
            if "email" not in attendee:
                raise _ApiError(400, "required", "Missing attendee email.")  # G2
            attendee.setdefault("responseStatus", "needsAction")
            attendee.pop("self", None)
            attendee.pop("organizer", None)
        for key in ("organizer", "creator"):
            resource[key] = {k: v for k, v in resource[key].items() if k != "self"}
        return resource

    def _save(self, calendar: _Calendar, resource: dict[str, Any]) -> dict[str, Any]:
        """Store a write: new etag and `updated`, a change number for sync tokens, a push to watchers."""
        self._last_seq = next(self._seq)
        resource["etag"] = f'"{next(self._etags)}"'
        resource["updated"] = _stamp(self.clock())
        calendar.events[resource["id"]] = _Stored(resource, self._last_seq)
        self._changed(calendar)
        return resource

    def _cancel(self, calendar: _Calendar, resource: dict[str, Any]) -> None:
        """Deleting a series cancels its exceptions too (Google)."""
        self._save(calendar, resource | {"status": "cancelled"})
        if "recurrence" in resource:
            for stored in list(calendar.events.values()):
                if stored.resource.get("recurringEventId") == resource["id"] \
                        and stored.resource["status"] != "cancelled":
                    self._save(calendar, stored.resource | {"status": "cancelled"})

    # freebusy.query (G5) -----------------------------------------------------------------------------

    def _freebusy_query(self, context: _Context) -> Answer:
        body = context.body
        for name in ("timeMin", "timeMax"):
            if name not in body:
                raise _ApiError(400, "required", f"Missing {name} parameter.")
        low, high = _parse_instant(body["timeMin"], "timeMin"), _parse_instant(body["timeMax"], "timeMax")
        if high <= low:
            raise _ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        if high - low > timedelta(days=90):  # G5 (the reason name is ours)
            raise _ApiError(400, "timeRangeTooLong", "The requested time range is too long.")
        zone = ZoneInfo(body.get("timeZone") or "UTC")
        calendars: dict[str, Any] = {}
        for index, item in enumerate(body.get("items", [])):
            calendar_id = item.get("id", "")
            own_id = context.account.email if calendar_id == "primary" else calendar_id
            if index >= 50:  # G5: calendarExpansionMax is at most 50
                calendars[calendar_id] = {"errors": [{"domain": "global", "reason": "tooManyCalendarsRequested"}],
                                          "busy": []}
            elif own_id not in context.account.entries:
                calendars[calendar_id] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
            else:
                busy = self._busy(self._calendars[own_id], low, high)
                calendars[calendar_id] = {"busy": [{"start": _rfc3339(start.astimezone(zone)),
                                                    "end": _rfc3339(end.astimezone(zone))} for start, end in busy]}
        return Answer(200, {"kind": "calendar#freeBusy", "timeMin": _rfc3339(low.astimezone(UTC)),
                             "timeMax": _rfc3339(high.astimezone(UTC)), "calendars": calendars})

    def _busy(self, calendar: _Calendar, low: datetime, high: datetime) -> list[tuple[datetime, datetime]]:
        """G2/G5: opaque, not cancelled, not declined by the calendar's own attendee; merged, clipped."""
        periods: list[tuple[datetime, datetime]] = []
        for item in self._full_listing(calendar, False, True, (low, high)):
            declined = any(attendee.get("self") and attendee.get("responseStatus") == "declined"
                           for attendee in item.get("attendees", []))
            if item["status"] == "cancelled" or item.get("transparency") == "transparent" or declined:
                continue
            start = max(_edt_instant(item["start"], calendar.time_zone), low)
            end = min(_edt_instant(item["end"], calendar.time_zone), high)
            periods.append((start, end))
        merged: list[tuple[datetime, datetime]] = []
        for start, end in sorted(periods):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    # Push (G4) ---------------------------------------------------------------------------------------

    def _events_watch(self, context: _Context) -> Answer:
        calendar, _ = self._calendar(context, "read")
        body = context.body
        channel_id = body.get("id")
        if not channel_id or len(channel_id) > 64 or body.get("type") not in ("web_hook", "webhook") \
                or not body.get("address"):
            raise _ApiError(400, "invalid", "Invalid channel: id (at most 64), type web_hook and address needed.")
        if channel_id in self.channels:
            raise _ApiError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique")
        # G4: Google wants an https address; loopback http is accepted here, since tests receive on it.
        longest = int((self.clock() + self.channel_lifetime).timestamp() * 1000)
        expiration = min(int(body["expiration"]), longest) if body.get("expiration") else longest
        channel = Channel(channel_id, calendar.resource_id, calendar.id, body["address"], body.get("token"),
                          expiration, context.account.email)
        self.channels[channel_id] = channel
        self._outboxes[channel_id] = asyncio.Queue()
        self._workers[channel_id] = asyncio.get_running_loop().create_task(self._deliver(channel))
        self._outboxes[channel_id].put_nowait("sync")  # G4: may arrive before the watch answer
        answer = {"kind": "api#channel", "id": channel.id, "resourceId": channel.resource_id,
                  "resourceUri": self._resource_uri(calendar.id), "expiration": str(expiration)}
        return Answer(200, answer | ({"token": channel.token} if channel.token is not None else {}))

    def _channels_stop(self, context: _Context) -> Answer:
        channel = self.channels.get(context.body.get("id", ""))
        if channel is None or channel.resource_id != context.body.get("resourceId") \
                or channel.account != context.account.email:  # G4: only the same user may stop it
            raise _ApiError(404, "notFound", f"Channel '{context.body.get('id')}' not found for project")
        self._end_channel(channel.id)
        return Answer(204)

    def _resource_uri(self, calendar_id: str) -> str:
        return f"{self.root_url}calendar/v3/calendars/{quote(calendar_id, safe='')}/events?alt=json"

    def _end_channel(self, channel_id: str) -> None:
        self.channels.pop(channel_id, None)
        self._outboxes.pop(channel_id, None)
        worker = self._workers.pop(channel_id, None)
        if worker is not None:
            worker.cancel()

    def _changed(self, calendar: _Calendar) -> None:
        """G4: every change to a watched calendar posts `exists` to each live channel; expired ones end."""
        now_ms = int(self.clock().timestamp() * 1000)
        for channel in list(self.channels.values()):
            if channel.calendar_id != calendar.id:
                continue
            if channel.expiration_ms <= now_ms:
                self._end_channel(channel.id)
            else:
                self._outboxes[channel.id].put_nowait("exists")

    async def _deliver(self, channel: Channel) -> None:
        """One channel's notifications, in order: a POST with no body and the X-Goog-* headers (G4)."""
        outbox = self._outboxes[channel.id]
        assert self._http is not None
        while True:
            state = await outbox.get()
            headers = {"X-Goog-Channel-ID": channel.id, "X-Goog-Resource-ID": channel.resource_id,
                       "X-Goog-Resource-State": state, "X-Goog-Resource-URI": self._resource_uri(channel.calendar_id),
                       "X-Goog-Message-Number": "1" if state == "sync" else str(next(self._message_numbers)),
                       "X-Goog-Channel-Expiration": format_datetime(
                           datetime.fromtimestamp(channel.expiration_ms / 1000, UTC), usegmt=True)}
            if channel.token is not None:
                headers["X-Goog-Channel-Token"] = channel.token
            status: int | None
            try:
                async with self._http.post(channel.address, data=b"", headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=10)) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = None
            await self._delivered_one(Notification(channel.id, state, status))

    # Batch (G3) ----------------------------------------------------------------------------------------

    async def _batch(self, request: web.Request) -> web.Response:
        """multipart/mixed of application/http parts, answered part by part with `<response-...>` ids."""
        head = f"Content-Type: {request.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser().parsebytes(head + await request.read())
        parts = message.get_payload() if message.is_multipart() else []
        assert isinstance(parts, list)
        if not parts or len(parts) > 50:  # G3: at most 50 calls (the message is ours)
            error = _ApiError(400, "badRequest", "A batch request holds between 1 and 50 calls.")
            return web.json_response(error.body(), status=400)
        boundary = "batch_" + secrets.token_hex(12)
        chunks = []
        for part in parts:
            payload = part.get_payload() if isinstance(part, email.message.Message) else None
            if not isinstance(payload, str) or not isinstance(part, email.message.Message):
                return web.json_response(_ApiError(400, "badRequest", "Bad batch part.").body(), status=400)
            answer = self._answer(_inner_call(payload))
            content_id = str(part.get("Content-ID", ""))
            lines = [f"HTTP/1.1 {answer.status} {_reason(answer.status)}"]
            lines += [f"{name}: {value}" for name, value in answer.headers.items()]
            text = json.dumps(answer.body) if answer.body is not None else ""
            lines += ["Content-Type: application/json; charset=UTF-8", f"Content-Length: {len(text.encode())}"]
            chunks.append(f"--{boundary}\r\nContent-Type: application/http\r\n"
                          f"Content-ID: <response-{content_id.strip('<>')}>\r\n\r\n"
                          + "\r\n".join(lines) + "\r\n\r\n" + text + "\r\n")
        return web.Response(body=("".join(chunks) + f"--{boundary}--\r\n").encode(), status=200,
                            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})


def _inner_call(payload: str) -> _Call:
    """One part of a batch: a request line, headers and a body, as googleapiclient serializes them."""
    request_line, _, rest = payload.lstrip("\r\n").partition("\n")
    http_method, target, _ = request_line.strip().split(" ", 2)
    message = email.parser.Parser().parsestr(rest)
    parsed = urlsplit(target)
    body = message.get_payload()
    assert isinstance(body, str)
    return _Call(http_method, parsed.path, MultiDict(parse_qsl(parsed.query)), CIMultiDict(message.items()),
                 body.encode())


def _reason(status: int) -> str:
    return {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 409: "Conflict", 410: "Gone", 412: "Precondition Failed",
            429: "Too Many Requests"}.get(status, "Error")


def _route(http_method: str, segments: list[str]) -> tuple[str, dict[str, str]]:
    """The discovery method a path names (G-DISC paths), with its path parameters."""
    match segments:
        case ["users", "me", "calendarList"] if http_method == "GET":
            return "calendarList.list", {}
        case ["calendars", calendar_id, "events"] if http_method in ("GET", "POST"):
            return ("events.list" if http_method == "GET" else "events.insert"), {"calendarId": calendar_id}
        case ["calendars", calendar_id, "events", "watch"] if http_method == "POST":
            return "events.watch", {"calendarId": calendar_id}
        case ["calendars", calendar_id, "events", event_id, "instances"] if http_method == "GET":
            return "events.instances", {"calendarId": calendar_id, "eventId": event_id}
        case ["calendars", calendar_id, "events", event_id] if http_method in _EVENT_METHODS:
            return _EVENT_METHODS[http_method], {"calendarId": calendar_id, "eventId": event_id}
        case ["freeBusy"] if http_method == "POST":
            return "freebusy.query", {}
        case ["channels", "stop"] if http_method == "POST":
            return "channels.stop", {}
    raise _ApiError(404, "notFound", "Not Found")


_EVENT_METHODS = {"GET": "events.get", "PATCH": "events.patch", "PUT": "events.update", "DELETE": "events.delete"}


def _normalised_time(edt: Mapping[str, Any], calendar_zone: str, name: str, *, recurring: bool) -> dict[str, Any]:
    """An EventDateTime as Google answers it: dateTime with its offset, in timeZone when one is given (G2)."""
    if "date" in edt and edt.get("dateTime"):
        raise _ApiError(400, "invalid", f"Invalid {name} time.")
    if "date" in edt:
        return {"date": date.fromisoformat(edt["date"]).isoformat()}
    zone_name = edt.get("timeZone")
    if recurring and not zone_name:  # G2: required for recurring events
        raise _ApiError(400, "required", f"Missing time zone definition for {name} time.")
    try:
        moment = datetime.fromisoformat(edt["dateTime"])
        zone = ZoneInfo(zone_name or calendar_zone)
    except (KeyError, ValueError):
        raise _ApiError(400, "invalid", f"Invalid {name} time.") from None
    if moment.tzinfo is None:
        if not zone_name:
            raise _ApiError(400, "required", f"Missing time zone definition for {name} time.")
        moment = moment.replace(tzinfo=zone)
    shown = {"dateTime": _rfc3339(moment.astimezone(zone))}
    return shown | ({"timeZone": zone_name} if zone_name else {})


def _merged(old: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Patch semantics: objects merge key by key, arrays and values replace, null removes (Google)."""
    merged = dict(old)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    """The token endpoint's error JSON (RFC 6749 5.2), which google-auth turns into RefreshError."""
    return web.json_response({"error": error, "error_description": description}, status=status)


__all__ = ["CALENDAR_SCOPE", "CLIENT_ID", "CLIENT_SECRET", "Account", "CalendarEntry", "Channel", "Failure",
           "GoogleEmulator", "Notification", "Request"]
