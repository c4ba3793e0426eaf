"""What the Google (google.py) and Microsoft Graph (graph.py) emulators share: the test controls (calls recorded,
failures injected per method, tokens issued and revoked, notifications awaited, consent given as `consent_as`),
serving on a loopback port, and the OAuth mechanics both providers follow from the RFCs (client credentials in
a Basic header, PKCE). Each emulator keeps its own protocol in its file: its pages, its token and error JSON,
its ids and formats, and its push notifications.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote_plus, urlencode

import aiohttp
from aiohttp import web


class Injected(Protocol):
    """A failure `fail()` queues: it answers the next `times` calls."""

    @property
    def times(self) -> int: ...


AccountT = TypeVar("AccountT")
FailureT = TypeVar("FailureT", bound=Injected)
NotificationT = TypeVar("NotificationT")


@dataclass(frozen=True)
class Request:
    """One call as the emulator saw it (a batch's inner calls each count under their own method; token calls
    are `token`); `account` is whose access token it carried."""

    method: str
    http_method: str
    path: str
    params: dict[str, str]
    account: str | None


@dataclass(frozen=True)
class Answer:
    """What an API call answers: a JSON body (None: no body) with its status and headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        if self.body is None:
            return web.Response(status=self.status, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


@dataclass
class Code:
    """An authorization code as the authorize page issued it (RFC 6749 4.1, RFC 7636)."""

    email: str
    redirect_uri: str
    scopes: tuple[str, ...]
    challenge: str | None
    challenge_method: str
    expires_at: datetime
    used: bool = False

    def spend(self, now: datetime) -> bool:
        """A code works once, briefly: False if it is spent or expired, else it is spent now."""
        if self.used or self.expires_at <= now:
            return False
        self.used = True
        return True


@dataclass
class Token:
    email: str
    scopes: tuple[str, ...]
    expires_at: datetime | None = None
    revoked: bool = False

    def usable(self, now: datetime) -> bool:
        return not self.revoked and self.expires_at is not None and self.expires_at > now


def real_now() -> datetime:
    return datetime.now(UTC)


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7636 challenges, JWT parts)."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def with_query(url: str, params: Mapping[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def client_form(form: dict[str, str], authorization: str) -> dict[str, str]:
    """The token request's form with the client's id and secret, also when sent in a Basic header (RFC 6749
    2.3.1: form-encoded, then base64)."""
    if not authorization.startswith("Basic "):
        return form
    user, _, password = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
    return form | {"client_id": unquote_plus(user), "client_secret": unquote_plus(password)}


def pkce_matches(challenge: str, method: str, verifier: str) -> bool:
    """RFC 7636 4.6: the verifier, hashed when the challenge was S256, is the challenge."""
    if method == "S256":
        verifier = b64url(hashlib.sha256(verifier.encode()).digest())
    return secrets.compare_digest(verifier, challenge)


class OAuthEmulator(Generic[AccountT, FailureT, NotificationT]):
    """The state and controls every provider emulator has; subclasses add the protocol."""

    def __init__(self, *, clock: Callable[[], datetime] = real_now) -> None:
        self.clock = clock
        self.accounts: dict[str, AccountT] = {}
        self.consent_as: str | None = None
        """Who approves at the authorize page; None means the one account there is."""
        self.deny_next_consent: str | None = None
        """An OAuth error code (`access_denied`) the next authorize answers on the redirect instead of a code."""
        self.requests: list[Request] = []
        self.notifications: list[NotificationT] = []
        self._access: dict[str, Token] = {}
        self._refresh: dict[str, Token] = {}
        self._failures: dict[str, list[FailureT]] = {}
        self._delivered = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    # Test controls -------------------------------------------------------------------------------------

    def revoke(self, email_address: str) -> None:
        """The user removed the app's access: refreshes answer invalid_grant, API calls 401."""
        for token in [*self._access.values(), *self._refresh.values()]:
            if token.email == email_address:
                token.revoked = True

    def issued_secrets(self) -> list[str]:
        """Every access and refresh token handed out so far: a test checks none of them leaked anywhere."""
        return [*self._access, *self._refresh]

    def fail(self, failure: FailureT, *, method: str) -> None:
        """The next `failure.times` calls of `method` (see `Request.method`; `token` for the token endpoint)
        answer this error."""
        self._failures.setdefault(method, []).extend([failure] * failure.times)

    def count(self, method: str | None = None) -> int:
        return sum(1 for request in self.requests if method is None or request.method == method)

    async def wait_for_notifications(self, count: int, timeout: float = 10) -> list[NotificationT]:
        """Wait until `count` notifications have been delivered (and answered) in all."""
        async with self._delivered:
            await asyncio.wait_for(self._delivered.wait_for(lambda: len(self.notifications) >= count), timeout)
        return list(self.notifications)

    # For the protocol ----------------------------------------------------------------------------------

    async def _serve(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> int:
        """`app` on a free loopback port, which is returned."""
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def _stop_serving(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _consenter(self) -> str | None:
        """Who approves this consent, None when nobody is signed in."""
        who = self.consent_as or (next(iter(self.accounts)) if len(self.accounts) == 1 else None)
        return who if who in self.accounts else None

    def _denial(self) -> str | None:
        """The error the person answers this consent with, once."""
        error, self.deny_next_consent = self.deny_next_consent, None
        return error

    def _next_failure(self, method: str) -> FailureT | None:
        pending = self._failures.get(method)
        return pending.pop(0) if pending else None

    def _bearer(self, headers: Mapping[str, str]) -> Token | None:
        """The access token an API call carries, usable or not (None: unknown or absent)."""
        return self._access.get(headers.get("Authorization", "").removeprefix("Bearer ").strip())

    async def _delivered_one(self, notification: NotificationT) -> None:
        async with self._delivered:
            self.notifications.append(notification)
            self._delivered.notify_all()
