"""A Microsoft identity platform and Microsoft Graph v1.0 emulator (research/provider-apis.md section M).

`GraphEmulator` is one aiohttp server on 127.0.0.1 serving HTTPS with a certificate made at start (msal
refuses http authorities), so the real msal (`authority=emulator.authority`, `instance_discovery=False`,
trusting `ca_bundle_path` through REQUESTS_CA_BUNDLE) and any aiohttp Graph client (`graph_url`,
`client_ssl_context()`) run against it unmodified.

State lives in memory: accounts (mailboxes), their calendars, events with the change numbers that drive delta
tokens, OAuth codes and tokens, subscriptions. Tests change it with `put_event`/`delete_event` (another
client's writes), make calls fail with `fail()`, and wait on notifications without sleeping. Comments cite
provider-apis.md as `M1`..`M6`; "Graph:" marks behaviour that file is silent on, done as Microsoft does it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import re
import secrets
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dateutil import rrule

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

CLIENT_ID = "00000000-0000-0000-0000-00000000c0c0"
CLIENT_SECRET = "croco-test-graph-secret"
CALENDAR_SCOPE = "Calendars.ReadWrite"
PERSONAL_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"  # Graph: the tenant id of every Microsoft account
WORK_TENANT = "72f988bf-0000-4000-8000-00000000e17e"
_COMMON_TENANTS = ("common", "organizations", "consumers")  # Graph: their issuer says `{tenantid}`
_MAX_SUBSCRIPTION_MINUTES = 10_080  # M4: Outlook events, without resource data
_MAX_CLIENT_STATE = 128  # M4
_VALIDATION_TIMEOUT = 10  # M4: the validation token must come back within 10 s
_MAX_BATCH = 20  # M5
_DEFAULT_PAGE_SIZE = 10  # Graph: calendarView delta pages hold 10 items unless odata.maxpagesize says
_CODE_LIFETIME = timedelta(minutes=10)  # Graph: authorization codes live about ten minutes
_TOKEN_LIFETIME = 3599  # Graph: expires_in of an access token (60-90 min in practice)
_HORIZON = timedelta(days=1825)  # M1: calendarView spans are limited to 1825 days
_WINDOWS_ZONES = {"Pacific Standard Time": "America/Los_Angeles", "Eastern Standard Time": "America/New_York",
                  "W. Europe Standard Time": "Europe/Berlin", "GMT Standard Time": "Europe/London"}
_READ_ONLY = ("id", "@odata.etag", "changeKey", "createdDateTime", "lastModifiedDateTime", "iCalUId", "type",
              "seriesMasterId", "originalStart", "transactionId")
_EXPAND_FILTER = re.compile(r"singleValueExtendedProperties\(\$filter=id eq '([^']+)'\)", re.IGNORECASE)
_ANY_FILTER = re.compile(r"singleValueExtendedProperties/Any\(ep: ep/id eq '([^']+)' and ep/value eq '([^']*)'\)",
                         re.IGNORECASE)
# Graph: the AADSTS number and wording Microsoft sends with each token error.
_AADSTS = {"invalid_client": (7000215, "Invalid client secret provided. Ensure the secret being sent in the "
                                       "request is the client secret value, not the client secret ID."),
           "invalid_grant": (50173, "The provided grant has expired due to it being revoked, a fresh auth "
                                    "token is needed. The user might have changed or reset their password."),
           "expired_code": (70008, "The provided authorization code or refresh token has expired due to "
                                   "inactivity. Send a new interactive authorization request for this user "
                                   "and resource."),
           "bad_verifier": (501481, "The Code_Verifier does not match the code_challenge supplied in the "
                                    "authorization request."),
           "temporarily_unavailable": (50196, "The server terminated an operation because it encountered a "
                                              "client request loop.")}


@dataclass(frozen=True)
class Failure:
    """What `fail()` makes a call answer: Graph's error JSON `{"error": {"code", "message"}}` (M5); for
    `token`, the identity platform's `{"error": code, "error_description": "AADSTS..."}`."""

    status: int
    code: str = "TooManyRequests"
    retry_after: int | None = None
    times: int = 1


@dataclass(frozen=True)
class Notification:
    """A POST the emulator made to a subscriber: `kind` is the changeType or the lifecycleEvent;
    `status_code` is the receiver's answer, None if it was unreachable."""

    subscription_id: str
    kind: str
    body: dict[str, Any]
    status_code: int | None


@dataclass
class Subscription:
    id: str
    account: str
    resource: str
    calendar_ids: frozenset[str]
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    expiration: datetime
    client_state: str | None = field(repr=False)


@dataclass
class CalendarEntry:
    """How an account sees a calendar: whether it may write (M3 canEdit) and whether it is its default."""

    calendar_id: str
    can_edit: bool
    is_default: bool = False


@dataclass
class Account:
    email: str
    tenant_id: str
    object_id: str
    name: str
    entries: dict[str, CalendarEntry] = field(default_factory=dict)
    _emulator: GraphEmulator | None = field(default=None, repr=False)

    @property
    def default_calendar_id(self) -> str:
        return next(entry.calendar_id for entry in self.entries.values() if entry.is_default)

    def add_calendar(self, name: str, *, can_edit: bool = True, calendar_id: str | None = None) -> str:
        """A calendar of this mailbox, or (given `calendar_id`) another's calendar shared with it."""
        assert self._emulator is not None
        calendar = self._emulator._store(calendar_id, name, owner=self)
        self.entries[calendar.id] = CalendarEntry(calendar.id, can_edit)
        return calendar.id


@dataclass
class _Calendar:
    id: str
    name: str
    owner: Account
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Single instances and series masters by id; private keys start with `_`."""
    touched: dict[str, int] = field(default_factory=dict)
    """The change number at which each event id (deleted ones too) last changed."""
    generation: int = 0
    """expire_delta_tokens bumps it: delta links of an older generation answer 410."""


@dataclass(frozen=True)
class _DeltaState:
    calendar_id: str
    generation: int
    seq: int
    window: tuple[datetime, datetime]
    seen: Mapping[str, str]
    """Item id -> changeKey of every item the client was handed in the window so far."""


@dataclass
class _Listing:
    items: list[dict[str, Any]]
    next_state: _DeltaState
    page_size: int
    offset: int = 0


@dataclass
class _Code(Code):
    nonce: str | None = None
    """M6: the OpenID nonce, returned in the id token."""


class _GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Graph's error JSON with the innerError it always adds."""
        return {"error": {"code": self.code, "message": self.message,
                          "innerError": {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                         "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}}}


@dataclass(frozen=True)
class _Call:
    http_method: str
    path: str
    """Below /v1.0, with a leading slash."""
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class _Context:
    account: Account
    args: dict[str, str]
    call: _Call


def _graph_time(moment: datetime) -> str:
    """Graph writes dateTimeTimeZone values with seven fractional digits and no offset."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _zone(name: str | None) -> ZoneInfo:
    if not name or name.upper() == "UTC":
        return ZoneInfo("UTC")
    return ZoneInfo(_WINDOWS_ZONES.get(name, name))


def _instant(dtz: Mapping[str, Any]) -> datetime:
    """Where a dateTimeTimeZone lies on the time line (M2)."""
    moment = datetime.fromisoformat(dtz["dateTime"][:26].rstrip("Z"))
    return moment.replace(tzinfo=_zone(dtz.get("timeZone"))) if moment.tzinfo is None else moment


def _parse_query_instant(text: str | None, name: str) -> datetime:
    if not text:
        raise _GraphError(400, "ErrorInvalidParameter", f"This request requires a time window specified by "
                                                        f"the query string parameters {name}.")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _GraphError(400, "ErrorInvalidParameter", f"The value of {name} is invalid.") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _prefer(headers: Mapping[str, str]) -> dict[str, str]:
    """The `Prefer` header's preferences: `outlook.timezone="UTC"`, `odata.maxpagesize=50` (M1)."""
    found: dict[str, str] = {}
    for part in ",".join(value for key, value in headers.items() if key.lower() == "prefer").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            found[name.lower()] = value.strip().strip('"')
    return found


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A key and a certificate for IP:127.0.0.1 and DNS:localhost, valid a day: also the CA bundle."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "croco graph emulator")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class _Series:
    """The occurrences of a seriesMaster's patternedRecurrence, in the master's start zone (M2)."""

    _FREQ = {"daily": rrule.DAILY, "weekly": rrule.WEEKLY, "absoluteMonthly": rrule.MONTHLY,
             "absoluteYearly": rrule.YEARLY}
    _DAYS = {"monday": rrule.MO, "tuesday": rrule.TU, "wednesday": rrule.WE, "thursday": rrule.TH,
             "friday": rrule.FR, "saturday": rrule.SA, "sunday": rrule.SU}

    def __init__(self, master: Mapping[str, Any]) -> None:
        self.first = _instant(master["start"])
        self.duration = _instant(master["end"]) - self.first
        pattern, span = master["recurrence"]["pattern"], master["recurrence"]["range"]
        kind = pattern["type"]
        if kind not in self._FREQ:
            raise _GraphError(400, "ErrorInvalidRequest", f"Recurrence pattern {kind} is not emulated.")
        options: dict[str, Any] = {"interval": int(pattern.get("interval", 1))}
        if kind == "weekly":
            options["byweekday"] = [self._DAYS[day.lower()] for day in pattern.get("daysOfWeek", [])] or None
        if span.get("type") == "numbered":
            options["count"] = int(span["numberOfOccurrences"])
        elif span.get("type") == "endDate":  # Graph: endDate is inclusive, in the master's zone
            last_day = date.fromisoformat(span["endDate"])
            options["until"] = datetime.combine(last_day, time(23, 59, 59), self.first.tzinfo)
        self.rule = rrule.rrule(self._FREQ[kind], dtstart=self.first, **options)

    def between(self, low: datetime, high: datetime) -> list[datetime]:
        found = []
        for start in self.rule:
            if start >= high or start - self.first > _HORIZON:
                break
            if start + self.duration > low:
                found.append(start)
        return found


class GraphEmulator(OAuthEmulator[Account, Failure, Notification]):
    def __init__(self, *, clock: Callable[[], datetime] = real_now) -> None:
        super().__init__(clock=clock)
        self.subscriptions: dict[str, Subscription] = {}
        self.discoveries = 0
        """How often the OpenID configuration was fetched (msal's discovery; not a Graph request, not in `requests`)."""
        self.base_url = ""
        self._calendars: dict[str, _Calendar] = {}
        self._seq = itertools.count(1)
        self._codes: dict[str, _Code] = {}
        self._transactions: dict[tuple[str, str], tuple[str, str]] = {}
        self._delta_links: dict[str, _DeltaState] = {}
        self._listings: dict[str, _Listing] = {}
        self._outboxes: dict[str, asyncio.Queue[tuple[str, str, dict[str, Any]]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._directory = Path(tempfile.mkdtemp(prefix="graph-emulator-"))
        self._key_path, self.ca_bundle_path = _self_signed(self._directory)
        """The PEM to trust: tests set REQUESTS_CA_BUNDLE to it for msal (requests)."""

    # Test controls -------------------------------------------------------------------------------------

    @property
    def authority(self) -> str:
        """The msal authority (the `common` tenant, M6)."""
        return f"{self.base_url}/common"

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context trusting the emulator's certificate, for aiohttp clients."""
        return ssl.create_default_context(cafile=str(self.ca_bundle_path))

    def add_account(self, email_address: str, *, personal: bool = False, name: str = "") -> Account:
        """A mailbox with its default calendar `Calendar` (M3: canEdit, isDefaultCalendar)."""
        account = Account(email_address, PERSONAL_TENANT if personal else WORK_TENANT, str(uuid.uuid4()),
                          name or email_address.partition("@")[0].title(), _emulator=self)
        calendar = self._store(None, "Calendar", owner=account)
        account.entries[calendar.id] = CalendarEntry(calendar.id, can_edit=True, is_default=True)
        self.accounts[email_address] = account
        return account

    def grant(self, email_address: str, scopes: list[str] | None = None) -> dict[str, Any]:
        """The tokens a consent would yield, without the browser step."""
        return self._issue(email_address, tuple(scopes or [CALENDAR_SCOPE]), nonce=None)

    def expire_access_tokens(self) -> None:
        for token in self._access.values():
            token.expires_at = self.clock() - timedelta(seconds=1)

    def expire_delta_tokens(self, calendar_id: str) -> None:
        """M1: every delta and next link handed out for this calendar answers 410 syncStateNotFound."""
        self._calendars[calendar_id].generation += 1

    def event(self, calendar_id: str, event_id: str) -> dict[str, Any] | None:
        stored = self._calendars[calendar_id].events.get(event_id)
        return None if stored is None else self._render(stored, _zone("UTC"), expand=None)

    def events(self, calendar_id: str) -> list[dict[str, Any]]:
        """The calendar's single instances and series masters, as Graph would render them (in UTC)."""
        return [self._render(stored, _zone("UTC"), expand=None)
                for stored in self._calendars[calendar_id].events.values()]

    def put_event(self, calendar_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Another client writes `event`: a new one, or (with an existing id) a patch of it."""
        calendar = self._calendars[calendar_id]
        stored = calendar.events.get(event.get("id", ""))
        if stored is None:
            stored = self._new_event(calendar, {key: value for key, value in event.items() if key != "id"})
        else:
            self._patch(calendar, stored, event)
        return self._render(stored, _zone("UTC"), expand=None)

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        """Another client deletes the event (or one occurrence of a series)."""
        calendar = self._calendars[calendar_id]
        self._delete(calendar, event_id)

    def edit_occurrence(self, calendar_id: str, occurrence_id: str, changes: dict[str, Any]) -> None:
        """Another client moves or edits one occurrence: it becomes an `exception` (M2)."""
        calendar = self._calendars[calendar_id]
        master_id, key = _split_occurrence(occurrence_id)
        master = calendar.events[master_id]
        master["_exceptions"][key] = {**master["_exceptions"].get(key, {}), **changes,
                                      "changeKey": secrets.token_urlsafe(12)}
        self._touch(calendar, master_id)

    def send_lifecycle(self, subscription_id: str, event: str) -> None:
        """M4: post a lifecycleEvent (reauthorizationRequired, subscriptionRemoved, missed) to the
        subscription's lifecycleNotificationUrl; subscriptionRemoved also ends the subscription."""
        assert event in ("reauthorizationRequired", "subscriptionRemoved", "missed")
        subscription = self.subscriptions[subscription_id]
        assert subscription.lifecycle_url is not None, "M4: lifecycle events need a lifecycleNotificationUrl"
        item = self._envelope(subscription) | {"lifecycleEvent": event}
        self._outboxes[subscription_id].put_nowait((event, subscription.lifecycle_url, {"value": [item]}))
        if event == "subscriptionRemoved":
            self.subscriptions.pop(subscription_id)

    # Server ------------------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._openid_configuration)
        app.router.add_get("/{tenant}/oauth2/v2.0/authorize", self._authorize)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_post("/v1.0/$batch", self._batch)
        app.router.add_route("*", "/v1.0/{tail:.*}", self._api)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_bundle_path, self._key_path)
        self.base_url = f"https://127.0.0.1:{await self._serve(app, context)}"
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.client_ssl_context()))
        return self.base_url

    async def close(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await self._stop_serving()
        shutil.rmtree(self._directory, ignore_errors=True)

    # Identity (M6) -----------------------------------------------------------------------------------

    async def _openid_configuration(self, request: web.Request) -> web.Response:
        self.discoveries += 1
        tenant = request.match_info["tenant"]
        issuer_tenant = "{tenantid}" if tenant in _COMMON_TENANTS else tenant
        return web.json_response({
            "authorization_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/token",
            "issuer": f"{self.base_url}/{issuer_tenant}/v2.0",
            "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "tenant_region_scope": None, "cloud_instance_name": "microsoftonline.com"})

    async def _authorize(self, request: web.Request) -> web.Response:
        """The sign-in and consent pages, auto-approved by `consent_as`; a bad client is a page, not a redirect."""
        query = request.query
        self.requests.append(Request("authorize", "GET", request.path, dict(query), None))
        if query.get("client_id") != CLIENT_ID:
            return web.Response(status=400, text="AADSTS700016: Application not found in the directory.")
        redirect_uri = query.get("redirect_uri")
        if not redirect_uri:
            return web.Response(status=400, text="AADSTS900144: The request body must contain redirect_uri.")
        state = {"state": query["state"]} if "state" in query else {}
        if query.get("response_type") != "code":
            raise web.HTTPFound(with_query(redirect_uri, {"error": "unsupported_response_type"} | state))
        if (error := self._denial()) is not None:
            description = "AADSTS65004: User declined to consent to access the app."
            raise web.HTTPFound(with_query(redirect_uri, {"error": error, "error_description": description}
                                            | state))
        if (who := self._consenter()) is None:
            return web.Response(status=400, text="no account signed in (set consent_as)")
        code = "M.C5_emu." + secrets.token_urlsafe(32)
        self._codes[code] = _Code(who, redirect_uri, tuple(query.get("scope", "").split()),
                                  query.get("code_challenge"), query.get("code_challenge_method", "plain"),
                                  self.clock() + _CODE_LIFETIME, nonce=query.get("nonce"))
        # Graph: the redirect also carries session_state and client_info when asked
        raise web.HTTPFound(with_query(redirect_uri, {"code": code} | state | {"session_state": str(uuid.uuid4())}))

    async def _token(self, request: web.Request) -> web.Response:
        form = client_form(dict(parse_qsl(await request.text())), request.headers.get("Authorization", ""))
        self.requests.append(Request("token", "POST", request.path, {"grant_type": form.get("grant_type", "")},
                                     None))
        if (failure := self._next_failure("token")) is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            return _aad_error(failure.status, failure.code, headers=headers)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return _aad_error(401, "invalid_client")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            token = self._refresh.get(form.get("refresh_token", ""))
            if token is None or token.revoked:
                return _aad_error(400, "invalid_grant")
            # M6: the refresh token replaces itself on every use; the old one is not revoked and stays valid
            scopes = tuple(form.get("scope", "").split()) or token.scopes
            return web.json_response(self._issue(token.email, scopes, nonce=None))
        return _aad_error(400, "unsupported_grant_type")

    def _exchange_code(self, form: Mapping[str, str]) -> web.Response:
        code = self._codes.get(form.get("code", ""))
        if code is None or not code.spend(self.clock()):
            return _aad_error(400, "invalid_grant", aadsts="expired_code")
        if form.get("redirect_uri") != code.redirect_uri:
            return _aad_error(400, "invalid_grant", aadsts="expired_code")
        if code.challenge is not None and not pkce_matches(code.challenge, code.challenge_method,
                                                           form.get("code_verifier", "")):  # RFC 7636
            return _aad_error(400, "invalid_grant", aadsts="bad_verifier")
        return web.json_response(self._issue(code.email, code.scopes, nonce=code.nonce))

    def _issue(self, email_address: str, scopes: tuple[str, ...], *, nonce: str | None) -> dict[str, Any]:
        """Access, refresh and id tokens plus client_info, as the v2.0 token endpoint answers (M6)."""
        account = self.accounts[email_address]
        granted = tuple(scope for scope in scopes if scope not in ("offline_access", "openid", "profile"))
        access = "EwB4A8l6BAAU.emu-" + secrets.token_urlsafe(32)
        self._access[access] = Token(email_address, granted, self.clock() + timedelta(seconds=_TOKEN_LIFETIME))
        refresh = "M.C5_BAY.emu-" + secrets.token_urlsafe(48)
        self._refresh[refresh] = Token(email_address, granted)
        now = int(self.clock().timestamp())
        claims = {"aud": CLIENT_ID, "iss": f"{self.base_url}/{account.tenant_id}/v2.0", "iat": now, "nbf": now,
                  "exp": now + 3600, "name": account.name, "oid": account.object_id,
                  "preferred_username": account.email, "sub": b64url(account.object_id.encode())[:43],
                  "tid": account.tenant_id, "ver": "2.0"} | ({"nonce": nonce} if nonce else {})
        id_token = ".".join([b64url(b'{"alg":"none","typ":"JWT"}'), b64url(json.dumps(claims).encode()), ""])
        return {"token_type": "Bearer", "scope": " ".join((*granted, "openid", "profile")),
                "expires_in": _TOKEN_LIFETIME, "ext_expires_in": _TOKEN_LIFETIME, "access_token": access,
                "refresh_token": refresh, "id_token": id_token,
                "client_info": b64url(json.dumps({"uid": account.object_id, "utid": account.tenant_id}).encode())}

    # Dispatch ----------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        raw = await request.read()
        call = _Call(request.method, "/" + request.match_info["tail"], dict(request.query), request.headers,
                     json.loads(raw) if raw else {})
        return (await self._answer(call)).response()

    async def _answer(self, call: _Call) -> Answer:
        try:
            return await self._dispatch(call)
        except _GraphError as error:
            return Answer(error.status, error.body(), error.headers)

    async def _dispatch(self, call: _Call) -> Answer:
        method, args = _route(call.http_method, [part for part in call.path.split("/") if part])
        token = self._bearer(call.headers)
        self.requests.append(Request(method, call.http_method, call.path, dict(call.query),
                                     token.email if token is not None else None))
        if token is None or not token.usable(self.clock()):
            raise _GraphError(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.",
                              headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})
        if (failure := self._next_failure(method)) is not None:  # M5: 429 (and 503) carry Retry-After in seconds
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            raise _GraphError(failure.status, failure.code, "Injected failure.", headers=headers)
        context = _Context(self.accounts[token.email], args, call)
        handler: Callable[[_Context], Any] = getattr(self, "_" + method.replace(".", "_"))
        result = handler(context)
        answer: Answer = await result if asyncio.iscoroutine(result) else result
        return answer

    async def _batch(self, request: web.Request) -> web.Response:
        """M5: JSON batching, at most 20 requests, each answered (and throttled) on its own."""
        body = await request.json()
        inner = body.get("requests", [])
        self.requests.append(Request("batch", "POST", "/$batch", {}, None))
        if not 0 < len(inner) <= _MAX_BATCH:
            error = _GraphError(400, "BadRequest", "Invalid batch payload format.")
            return web.json_response(error.body(), status=400)
        responses = []
        for item in inner:
            url = urlsplit("/" + item["url"].lstrip("/"))
            headers = {"Authorization": request.headers.get("Authorization", "")} | item.get("headers", {})
            # M5: an inner url is relative to the version root and percent-decoded like a request of its own
            call = _Call(item["method"].upper(), unquote(url.path), dict(parse_qsl(url.query)), headers,
                         item.get("body") or {})
            answer = await self._answer(call)
            responses.append({"id": item["id"], "status": answer.status, "headers": dict(answer.headers)}
                             | ({"body": answer.body} if answer.body is not None else {}))
        return web.json_response({"responses": responses})

    # Me and calendars (M3) ---------------------------------------------------------------------------

    def _me_get(self, context: _Context) -> Answer:
        account = context.account
        return Answer(200, {"@odata.context": f"{self.graph_url}/$metadata#users/$entity", "id": account.object_id,
                             "displayName": account.name, "mail": account.email,
                             "userPrincipalName": account.email})

    def _store(self, calendar_id: str | None, name: str, *, owner: Account) -> _Calendar:
        if calendar_id is None:
            calendar_id = "AAMkAG" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y") + "AAA="
            self._calendars[calendar_id] = _Calendar(calendar_id, name, owner)
        return self._calendars[calendar_id]

    def _calendar(self, context: _Context, *, write: bool = False) -> _Calendar:
        calendar_id = context.args.get("calendar") or context.account.default_calendar_id
        entry = context.account.entries.get(calendar_id)
        if entry is None:
            raise _GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        if write and not entry.can_edit:  # M3: canEdit false means read only
            raise _GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return self._calendars[calendar_id]

    def _calendar_resource(self, account: Account, entry: CalendarEntry) -> dict[str, Any]:
        calendar = self._calendars[entry.calendar_id]
        owner = calendar.owner
        return {"id": calendar.id, "name": calendar.name, "color": "auto", "hexColor": "",
                "isDefaultCalendar": entry.is_default, "changeKey": b64url(calendar.id.encode())[:16],
                "canShare": owner is account, "canViewPrivateItems": owner is account, "canEdit": entry.can_edit,
                "allowedOnlineMeetingProviders": ["teamsForBusiness"], "isTallyingResponses": True,
                "isRemovable": not entry.is_default, "owner": {"name": owner.name, "address": owner.email}}

    def _calendars_list(self, context: _Context) -> Answer:
        account = context.account
        return Answer(200, {"@odata.context": f"{self.graph_url}/$metadata#users('{account.email}')/calendars",
                             "value": [self._calendar_resource(account, entry) for entry in account.entries.values()]})

    def _calendars_get(self, context: _Context) -> Answer:
        calendar = self._calendar(context)
        return Answer(200, self._calendar_resource(context.account, context.account.entries[calendar.id]))

    # Events (M2) -------------------------------------------------------------------------------------

    def _zone_of(self, context: _Context) -> ZoneInfo:
        return _zone(_prefer(context.call.headers).get("outlook.timezone"))  # M1/M2: UTC when absent

    def _expand(self, context: _Context) -> str | None:
        """M2: extended properties come back only through `$expand=...($filter=id eq '...')`."""
        match = _EXPAND_FILTER.search(context.call.query.get("$expand", ""))
        return match.group(1) if match else None

    def _events_list(self, context: _Context) -> Answer:
        calendar = self._calendar(context)
        items = list(calendar.events.values())
        filter_text = context.call.query.get("$filter")
        if filter_text:
            match = _ANY_FILTER.search(filter_text)  # M2: the one $filter emulated, on /events only
            if match is None:
                raise _GraphError(400, "ErrorInvalidUrlQueryFilter", "The filter expression is not emulated.")
            items = [stored for stored in items
                     if {"id": match.group(1), "value": match.group(2)} in _ext_props(stored)]
        zone, expand = self._zone_of(context), self._expand(context)
        return Answer(200, {"value": [self._render(stored, zone, expand) for stored in items]})

    def _events_get(self, context: _Context) -> Answer:
        calendar, stored, key = self._find(context)
        rendered = (self._occurrence(stored, key, self._zone_of(context)) if key is not None
                    else self._render(stored, self._zone_of(context), self._expand(context)))
        if rendered is None:
            raise _GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return Answer(200, rendered)

    def _events_create(self, context: _Context) -> Answer:
        calendar = self._calendar(context, write=True)
        body = context.call.body
        for name in ("start", "end"):
            if name not in body:
                raise _GraphError(400, "ErrorInvalidRequest", f"Your request can't be completed. {name} is required.")
        transaction = body.get("transactionId")
        if transaction:  # M2: a retried create with the same transactionId returns the first event
            known = self._transactions.get((context.account.email, transaction))
            if known is not None and known[1] in self._calendars[known[0]].events:
                stored = self._calendars[known[0]].events[known[1]]
                return Answer(201, self._render(stored, self._zone_of(context), self._expand(context)))
        stored = self._new_event(calendar, body)
        if transaction:
            self._transactions[(context.account.email, transaction)] = (calendar.id, stored["id"])
        return Answer(201, self._render(stored, self._zone_of(context), self._expand(context)))

    def _events_update(self, context: _Context) -> Answer:
        calendar, stored, key = self._find(context, write=True)
        self._check_etag(context, stored, key)
        if key is not None:
            self.edit_occurrence(calendar.id, f"{stored['id']}_{key}", _writable(context.call.body))
            occurrence = self._occurrence(stored, key, self._zone_of(context))
            assert occurrence is not None
            return Answer(200, occurrence)
        self._patch(calendar, stored, context.call.body)
        return Answer(200, self._render(stored, self._zone_of(context), self._expand(context)))

    def _events_delete(self, context: _Context) -> Answer:
        calendar, stored, key = self._find(context, write=True)
        self._check_etag(context, stored, key)
        self._delete(calendar, stored["id"] if key is None else f"{stored['id']}_{key}")
        return Answer(204)

    def _find(self, context: _Context, *, write: bool = False) -> tuple[_Calendar, dict[str, Any], str | None]:
        """The event in the path (a single instance, a master, or `{masterId}_{start}` for an occurrence)."""
        event_id = context.args["event"]
        master_id, key = _split_occurrence(event_id)
        entries = ([context.account.entries[self._calendar(context).id]] if "calendar" in context.args
                   else context.account.entries.values())
        for entry in entries:
            calendar = self._calendars[entry.calendar_id]
            stored = calendar.events.get(master_id)
            if stored is not None and (key is None or key not in stored["_deleted"]):
                if write and not entry.can_edit:
                    raise _GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
                return calendar, stored, key
        raise _GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def _check_etag(self, context: _Context, stored: dict[str, Any], key: str | None) -> None:
        """Graph: If-Match with a stale @odata.etag answers 412 ErrorIrresolvableConflict."""
        expected = context.call.headers.get("If-Match")
        if expected is None or expected == "*":
            return
        change_key = stored["_exceptions"].get(key, {}).get("changeKey", stored["changeKey"]) if key else \
            stored["changeKey"]
        if expected not in (f'W/"{change_key}"', f'"{change_key}"', change_key):
            raise _GraphError(412, "ErrorIrresolvableConflict", "The change key passed in the request does not "
                                                                "match the current change key for the item.")

    def _new_event(self, calendar: _Calendar, body: Mapping[str, Any]) -> dict[str, Any]:
        now = _stamp(self.clock())
        event_id = "AAMkAGI2" + secrets.token_urlsafe(30).replace("-", "x").replace("_", "y") + "AAA="
        stored: dict[str, Any] = {
            "subject": "", "body": {"contentType": "text", "content": ""}, "showAs": "busy", "isAllDay": False,
            "isCancelled": False, "sensitivity": "normal", "location": {"displayName": ""}, "attendees": [],
            "isOrganizer": True, "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "organizer": {"emailAddress": {"name": calendar.owner.name, "address": calendar.owner.email}},
            **_writable(body), "id": event_id, "createdDateTime": now, "iCalUId": "040000008200E00074C5B7101A82E008"
            + secrets.token_hex(28).upper(), "_exceptions": {}, "_deleted": set()}
        if body.get("transactionId"):
            stored["transactionId"] = body["transactionId"]  # M2: returned only if the app set it
        stored["type"] = "seriesMaster" if stored.get("recurrence") else "singleInstance"
        if stored["type"] == "seriesMaster":
            _Series(stored)  # Graph: a pattern it cannot expand is refused at write time
        calendar.events[event_id] = stored
        self._saved(calendar, stored)
        return stored

    def _patch(self, calendar: _Calendar, stored: dict[str, Any], body: Mapping[str, Any]) -> None:
        changes = _writable(body)
        props = {prop["id"]: prop for prop in _ext_props(stored)}
        props |= {prop["id"]: prop for prop in changes.pop("singleValueExtendedProperties", [])}
        stored.update(changes)
        if props:
            stored["singleValueExtendedProperties"] = list(props.values())
        if "recurrence" in changes:
            stored["type"] = "seriesMaster" if stored["recurrence"] else "singleInstance"
            stored["_exceptions"], stored["_deleted"] = {}, set()
        self._saved(calendar, stored)

    def _saved(self, calendar: _Calendar, stored: dict[str, Any]) -> None:
        stored["changeKey"] = secrets.token_urlsafe(12)
        stored["lastModifiedDateTime"] = _stamp(self.clock())
        self._touch(calendar, stored["id"])

    def _delete(self, calendar: _Calendar, event_id: str) -> None:
        master_id, key = _split_occurrence(event_id)
        if key is None:
            del calendar.events[master_id]
        else:
            calendar.events[master_id]["_deleted"].add(key)
        self._touch(calendar, master_id, change="deleted" if key is None else "updated")

    def _touch(self, calendar: _Calendar, event_id: str, change: str = "") -> None:
        existed = event_id in calendar.touched
        calendar.touched[event_id] = next(self._seq)
        self._notify(calendar, event_id, change or ("updated" if existed else "created"))

    def _render(self, stored: Mapping[str, Any], zone: ZoneInfo, expand: str | None) -> dict[str, Any]:
        """The public event: times in `zone` (M1/M2), the etag, extended properties only when expanded (M2)."""
        shown = {key: value for key, value in stored.items()
                 if not key.startswith("_") and key != "singleValueExtendedProperties"}
        shown["@odata.etag"] = f'W/"{stored["changeKey"]}"'
        for name in ("start", "end"):
            shown[name] = _shown_time(stored[name], zone, all_day=stored.get("isAllDay", False))
        if expand is not None:
            shown["singleValueExtendedProperties"] = [prop for prop in _ext_props(stored) if prop["id"] == expand]
        return shown

    def _occurrence(self, master: Mapping[str, Any], key: str, zone: ZoneInfo) -> dict[str, Any] | None:
        """One instance of a series: an `occurrence`, or an `exception` once edited on its own (M2)."""
        if key in master["_deleted"]:
            return None
        duration = _instant(master["end"]) - _instant(master["start"])
        original = datetime.strptime(key, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        override = master["_exceptions"].get(key, {})
        start = override.get("start") or {"dateTime": _graph_time(original), "timeZone": "UTC"}
        end = override.get("end") or {"dateTime": _graph_time(original + duration), "timeZone": "UTC"}
        shown = self._render(master, zone, None) | {key_: value for key_, value in override.items()
                                                     if key_ not in ("start", "end", "changeKey")}
        shown |= {"id": f"{master['id']}_{key}", "type": "exception" if override else "occurrence",
                  "seriesMasterId": master["id"], "originalStart": _stamp(original), "recurrence": None,
                  "start": _shown_time(start, zone, all_day=shown["isAllDay"]),
                  "end": _shown_time(end, zone, all_day=shown["isAllDay"]),
                  "iCalUId": master["iCalUId"] + key}  # M2: iCalUId differs per occurrence
        shown.pop("transactionId", None)
        change_key = override.get("changeKey", master["changeKey"])
        return shown | {"changeKey": change_key, "@odata.etag": f'W/"{change_key}"'}

    def _window_items(self, calendar: _Calendar, low: datetime, high: datetime, zone: ZoneInfo) -> list[dict[str, Any]]:
        """M1: calendarView items in [low, high): single instances, occurrences and exceptions, no masters."""
        items: list[dict[str, Any]] = []
        for stored in calendar.events.values():
            if stored["type"] == "singleInstance":
                if _instant(stored["start"]) < high and _instant(stored["end"]) > low:
                    items.append(self._render(stored, zone, None))
                continue
            items += self._series_items(stored, low, high, zone)
        return items

    def _series_items(self, master: Mapping[str, Any], low: datetime, high: datetime,
                      zone: ZoneInfo) -> list[dict[str, Any]]:
        """A series' occurrences and exceptions overlapping [low, high), deleted ones left out."""
        items = []
        margin = timedelta(days=31)  # ours: an exception moved further than a month is missed
        for start in _Series(master).between(low - margin, high + margin):
            occurrence = self._occurrence(master, start.astimezone(UTC).strftime("%Y%m%dT%H%M%S"), zone)
            if occurrence is not None and _instant(occurrence["start"]) < high and _instant(occurrence["end"]) > low:
                items.append(occurrence)
        return items

    def _events_instances(self, context: _Context) -> Answer:
        """Graph: `/events/{seriesMasterId}/instances?startDateTime&endDateTime`, occurrences and exceptions
        in the range (cancelled ones too, deleted ones not); 404 once the master is gone."""
        _, stored, key = self._find(context)
        if key is not None or stored["type"] != "seriesMaster":
            raise _GraphError(400, "ErrorInvalidRequest", "The event is not a series master.")
        low = _parse_query_instant(context.call.query.get("startDateTime"), "startDateTime")
        high = _parse_query_instant(context.call.query.get("endDateTime"), "endDateTime")
        return Answer(200, {"value": self._series_items(stored, low, high, self._zone_of(context))})

    # calendarView delta (M1) ---------------------------------------------------------------------------

    def _delta(self, context: _Context) -> Answer:
        calendar = self._calendar(context)
        query = context.call.query
        prefer = _prefer(context.call.headers)
        page_size = int(prefer.get("odata.maxpagesize", _DEFAULT_PAGE_SIZE))
        if "$skiptoken" in query:  # M1: follow nextLink until a deltaLink
            listing = self._listings.get(query["$skiptoken"])
            if listing is None or listing.next_state.generation != calendar.generation:
                raise self._sync_state_not_found(calendar)
            return self._delta_page(calendar, listing)
        if "$deltatoken" in query:
            state = self._delta_links.get(query["$deltatoken"])
            if state is None or state.generation != calendar.generation or state.calendar_id != calendar.id:
                raise self._sync_state_not_found(calendar)
            low, high = state.window
        else:
            low = _parse_query_instant(query.get("startDateTime"), "startDateTime")
            high = _parse_query_instant(query.get("endDateTime"), "endDateTime")
            if high - low > _HORIZON:  # M1: at most 1825 days
                raise _GraphError(400, "ErrorInvalidRequest", "The time span between startDateTime and "
                                                              "endDateTime can't exceed 1825 days.")
            state = _DeltaState(calendar.id, calendar.generation, 0, (low, high), {})
        zone = _zone(prefer.get("outlook.timezone"))  # M1: UTC when the header is absent
        current = self._window_items(calendar, low, high, zone)
        current_ids = {item["id"]: item["changeKey"] for item in current}
        items = [item for item in current if state.seen.get(item["id"]) != item["changeKey"]]
        # M1: @removed covers items that left the window and events changed or deleted outside it
        gone = [item_id for item_id in state.seen if item_id not in current_ids]
        if state.seq:
            gone += [event_id for event_id, seq in calendar.touched.items() if seq > state.seq
                     and event_id not in current_ids and event_id not in state.seen
                     and not any(item_id.startswith(event_id + "_") for item_id in current_ids)]
        items += [{"id": item_id, "@removed": {"reason": "deleted"}} for item_id in gone]
        seq = max(calendar.touched.values(), default=0)
        listing = _Listing(items, _DeltaState(calendar.id, calendar.generation, seq, (low, high), current_ids),
                           page_size)
        return self._delta_page(calendar, listing)

    def _delta_page(self, calendar: _Calendar, listing: _Listing) -> Answer:
        page = listing.items[listing.offset:listing.offset + listing.page_size]
        listing.offset += len(page)
        link = f"{self.graph_url}/me/calendars/{calendar.id}/calendarView/delta"
        answer: dict[str, Any] = {"@odata.context": f"{self.graph_url}/$metadata#Collection(event)", "value": page}
        if listing.offset < len(listing.items):
            token = secrets.token_urlsafe(16)
            self._listings[token] = listing
            answer["@odata.nextLink"] = f"{link}?{urlencode({'$skiptoken': token})}"
        else:
            token = secrets.token_urlsafe(24)
            self._delta_links[token] = listing.next_state
            answer["@odata.deltaLink"] = f"{link}?{urlencode({'$deltatoken': token})}"
        return Answer(200, answer, {"Preference-Applied": f"odata.maxpagesize={listing.page_size}"})

    def _sync_state_not_found(self, calendar: _Calendar) -> _GraphError:
        """M1: an expired token: 410 syncStateNotFound, Location carrying an empty $deltatoken."""
        location = f"{self.graph_url}/me/calendars/{calendar.id}/calendarView/delta?$deltatoken="
        return _GraphError(410, "syncStateNotFound", "Sync state generation is not found. Please resync.",
                           headers={"Location": location})

    # Subscriptions (M4) ------------------------------------------------------------------------------

    async def _subscriptions_create(self, context: _Context) -> Answer:
        body, account = context.call.body, context.account
        change_types = frozenset(body.get("changeType", "").split(","))
        if not change_types or not change_types <= {"created", "updated", "deleted"}:
            raise _GraphError(400, "ValidationError", "changeType is invalid.")
        calendar_ids = self._subscribed_calendars(account, body.get("resource", ""))
        expiration = self._expiration(body.get("expirationDateTime"))
        client_state = body.get("clientState")
        if client_state is not None and len(client_state) > _MAX_CLIENT_STATE:  # M4: at most 128 characters
            raise _GraphError(400, "ValidationError", "clientState is too long.")
        urls = [body.get("notificationUrl", "")] + ([body["lifecycleNotificationUrl"]]
                                                    if body.get("lifecycleNotificationUrl") else [])
        for url in urls:
            if not await self._validated(url):  # M4: no subscription without the echoed token
                raise _GraphError(400, "ValidationError", "Subscription validation request failed. Notification "
                                                          "endpoint must respond with 200 OK to validation request.")
        subscription = Subscription(str(uuid.uuid4()), account.email, body["resource"], calendar_ids, change_types,
                                    urls[0], body.get("lifecycleNotificationUrl"), expiration, client_state)
        self.subscriptions[subscription.id] = subscription
        self._outboxes[subscription.id] = asyncio.Queue()
        self._workers[subscription.id] = asyncio.create_task(self._deliver(subscription.id))
        return Answer(201, self._subscription_resource(subscription))

    def _subscriptions_update(self, context: _Context) -> Answer:
        """M4: PATCH expirationDateTime renews (and reauthorizes) the subscription."""
        subscription = self._subscription(context)
        subscription.expiration = self._expiration(context.call.body.get("expirationDateTime"))
        return Answer(200, self._subscription_resource(subscription))

    def _subscriptions_reauthorize(self, context: _Context) -> Answer:
        """M4: reauthorizing does not extend the expiry."""
        self._subscription(context)
        return Answer(200)

    def _subscriptions_delete(self, context: _Context) -> Answer:
        subscription = self._subscription(context)
        del self.subscriptions[subscription.id]
        return Answer(204)

    def _subscriptions_get(self, context: _Context) -> Answer:
        return Answer(200, self._subscription_resource(self._subscription(context)))

    def _subscription(self, context: _Context) -> Subscription:
        subscription = self.subscriptions.get(context.args["subscription"])
        if subscription is None or subscription.account != context.account.email \
                or subscription.expiration <= self.clock():
            raise _GraphError(404, "ResourceNotFound", "The object was not found.")
        return subscription

    def _subscribed_calendars(self, account: Account, resource: str) -> frozenset[str]:
        """M4: `me/events` (every calendar of the mailbox) or `me|users/{id}/calendars/{id}/events`."""
        parts = [part for part in resource.strip("/").split("/") if part]
        if parts in (["me", "events"], ["users", account.object_id, "events"], ["users", account.email, "events"]):
            return frozenset(account.entries)
        if len(parts) >= 4 and parts[-3] == "calendars" and parts[-1] == "events" and parts[-2] in account.entries:
            return frozenset([parts[-2]])
        raise _GraphError(400, "ExtensionError", f"Resource '{resource}' is not supported.")

    def _expiration(self, text: str | None) -> datetime:
        if not text:
            raise _GraphError(400, "ValidationError", "expirationDateTime is required.")
        expiration = datetime.fromisoformat(text.replace("Z", "+00:00"))
        now = self.clock()
        if expiration <= now:
            raise _GraphError(400, "ExtensionError", "Subscription expiration can only be in the future.")
        if expiration > now + timedelta(minutes=_MAX_SUBSCRIPTION_MINUTES):  # M4: 10,080 minutes at most
            raise _GraphError(400, "ExtensionError", f"Subscription expiration can only be "
                                                     f"{_MAX_SUBSCRIPTION_MINUTES} minutes in the future.")
        return expiration

    def _subscription_resource(self, subscription: Subscription) -> dict[str, Any]:
        return {"@odata.context": f"{self.graph_url}/$metadata#subscriptions/$entity", "id": subscription.id,
                "resource": subscription.resource, "applicationId": CLIENT_ID,
                "changeType": ",".join(sorted(subscription.change_types)), "clientState": subscription.client_state,
                "notificationUrl": subscription.notification_url,
                "lifecycleNotificationUrl": subscription.lifecycle_url,
                "expirationDateTime": _stamp(subscription.expiration), "creatorId": str(uuid.uuid4())}

    async def _validated(self, url: str) -> bool:
        """M4: POST {url}?validationToken=..; 200, text/plain, the token itself, within 10 seconds."""
        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):  # M4: HTTPS (ours: loopback)
            return False
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        assert self._http is not None
        try:
            async with self._http.post(url, params={"validationToken": token}, data=b"",
                                       headers={"Content-Type": "text/plain; charset=utf-8"},
                                       timeout=aiohttp.ClientTimeout(total=_VALIDATION_TIMEOUT)) as response:
                return (response.status == 200 and response.content_type == "text/plain"
                        and await response.text() == token)
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _envelope(self, subscription: Subscription) -> dict[str, Any]:
        return {"subscriptionId": subscription.id, "subscriptionExpirationDateTime": _stamp(subscription.expiration),
                "tenantId": self.accounts[subscription.account].tenant_id} \
            | ({"clientState": subscription.client_state} if subscription.client_state is not None else {})

    def _notify(self, calendar: _Calendar, event_id: str, change: str) -> None:
        """M4: every change to a subscribed calendar posts a change notification to each live subscription."""
        for subscription in list(self.subscriptions.values()):
            if calendar.id not in subscription.calendar_ids or change not in subscription.change_types \
                    or subscription.expiration <= self.clock():
                continue
            account = self.accounts[subscription.account]
            resource = f"Users/{account.object_id}/Events/{event_id}"
            stored = calendar.events.get(event_id)
            data = {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": resource, "id": event_id} \
                | ({"@odata.etag": f'W/"{stored["changeKey"]}"'} if stored is not None else {})
            item = self._envelope(subscription) | {"changeType": change, "resource": resource, "resourceData": data}
            self._outboxes[subscription.id].put_nowait((change, subscription.notification_url, {"value": [item]}))

    async def _deliver(self, subscription_id: str) -> None:
        """One subscription's notifications, in order, as JSON POSTs (M4: 2xx within 3 s expected)."""
        outbox = self._outboxes[subscription_id]
        assert self._http is not None
        while True:
            kind, url, body = await outbox.get()
            status: int | None
            try:
                async with self._http.post(url, json=body, timeout=aiohttp.ClientTimeout(total=3)) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = None
            await self._delivered_one(Notification(subscription_id, kind, body, status))


def _split_occurrence(event_id: str) -> tuple[str, str | None]:
    """Occurrence ids are `{masterId}_{original start, UTC, YYYYMMDDTHHMMSS}` (Graph: opaque; ours)."""
    master_id, separator, key = event_id.rpartition("_")
    if separator and re.fullmatch(r"\d{8}T\d{6}", key):
        return master_id, key
    return event_id, None


def _writable(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in _READ_ONLY}


def _ext_props(stored: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(stored.get("singleValueExtendedProperties", []))


def _shown_time(dtz: Mapping[str, Any], zone: ZoneInfo, *, all_day: bool) -> dict[str, Any]:
    """M1/M2: times in the Prefer zone; an all-day event keeps its midnights (M2: same zone both ends)."""
    if all_day:
        return {"dateTime": _graph_time(datetime.fromisoformat(dtz["dateTime"][:19])), "timeZone": zone.key}
    return {"dateTime": _graph_time(_instant(dtz).astimezone(zone).replace(tzinfo=None)), "timeZone": zone.key}


def _route(http_method: str, parts: list[str]) -> tuple[str, dict[str, str]]:
    """The emulated Graph paths, named as `Request.method`."""
    if parts[:1] == ["users"] and len(parts) > 1:
        parts = ["me", *parts[2:]]  # Graph: /users/{id|upn}/... is /me/... for the signed-in user
    routes: list[tuple[str, list[str], str]] = [
        ("GET", ["me"], "me.get"),
        ("GET", ["me", "calendars"], "calendars.list"),
        ("GET", ["me", "calendars", "{calendar}"], "calendars.get"),
        ("GET", ["me", "calendar"], "calendars.get"),
        ("GET", ["me", "calendars", "{calendar}", "events"], "events.list"),
        ("GET", ["me", "events"], "events.list"),
        ("POST", ["me", "calendars", "{calendar}", "events"], "events.create"),
        ("POST", ["me", "events"], "events.create"),
        ("GET", ["me", "calendarView", "delta"], "delta"),  # M1: the primary calendar on v1.0
        ("GET", ["me", "calendars", "{calendar}", "calendarView", "delta"], "delta"),
        ("GET", ["me", "events", "{event}"], "events.get"),
        ("GET", ["me", "events", "{event}", "instances"], "events.instances"),
        ("PATCH", ["me", "events", "{event}"], "events.update"),
        ("DELETE", ["me", "events", "{event}"], "events.delete"),
        ("GET", ["me", "calendars", "{calendar}", "events", "{event}"], "events.get"),
        ("PATCH", ["me", "calendars", "{calendar}", "events", "{event}"], "events.update"),
        ("DELETE", ["me", "calendars", "{calendar}", "events", "{event}"], "events.delete"),
        ("POST", ["subscriptions"], "subscriptions.create"),
        ("GET", ["subscriptions", "{subscription}"], "subscriptions.get"),
        ("PATCH", ["subscriptions", "{subscription}"], "subscriptions.update"),
        ("DELETE", ["subscriptions", "{subscription}"], "subscriptions.delete"),
        ("POST", ["subscriptions", "{subscription}", "reauthorize"], "subscriptions.reauthorize"),
    ]
    for method, pattern, name in routes:
        if method == http_method and len(pattern) == len(parts) and all(
                want.startswith("{") or want == got for want, got in zip(pattern, parts, strict=True)):
            return name, {want.strip("{}"): got for want, got in zip(pattern, parts, strict=True)
                          if want.startswith("{")}
    raise _GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[-1] if parts else ''}'.")


def _aad_error(status: int, error: str, *, aadsts: str | None = None,
               headers: Mapping[str, str] | None = None) -> web.Response:
    """The identity platform's error JSON: the code, an AADSTS description, trace and correlation ids."""
    number, text = _AADSTS.get(aadsts or error, (50000, "There was an error issuing a token."))
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {"error": error, "error_description": f"AADSTS{number}: {text} Trace ID: {trace} Correlation ID: "
                                                 f"{correlation} Timestamp: {now}",
            "error_codes": [number], "timestamp": now, "trace_id": trace, "correlation_id": correlation,
            "error_uri": "https://login.microsoftonline.com/error?code=" + str(number)}
    return web.json_response(body, status=status, headers=headers)
