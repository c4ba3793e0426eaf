"""Google's OAuth web flow (provider-apis.md G7) with google-auth-oauthlib, unmodified: the consent URL and
the code exchange. PKCE S256 with our own verifier (sealed with the connect link), `access_type=offline` and
`prompt=consent` so every consent brings a refresh token. The token refresh itself is the provider's job.

oauthlib refuses plain-http endpoints unless `OAUTHLIB_INSECURE_TRANSPORT` is set, a process-wide variable:
it is set only when every URL involved is a loopback one (an emulator), only around one call, under a lock,
and restored after it; an http URL anywhere else is refused before any request. The exchange asks oauthlib
for no particular scopes, so a grant that differs from the request (granular consent lets a person untick a
box, `include_granted_scopes` adds earlier grants) is not oauthlib's error but ours to judge: every scope
we need must be granted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import google.oauth2.credentials
import requests
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2 import OAuth2Error

from sync.providers.base import (
    ConsentFailed,
    GoogleConfig,
    InsecureEndpoint,
    OAuthGrant,
    OAuthTokens,
    RemoteCalendarInfo,
    Unreachable,
    code_refused,
    is_loopback,
)

log = logging.getLogger(__name__)

_AUTH = "https://www.googleapis.com/auth/"
SCOPES = (f"{_AUTH}calendar.calendarlist.readonly", f"{_AUTH}calendar.events", f"{_AUTH}calendar.events.freebusy")
"""The narrowest set that does the job, by G7's method-level scope lists (the discovery document):

- `calendar.calendarlist.readonly`: `calendarList.list` (the calendars and our accessRole on each) accepts
  only it, `calendar.calendarlist`, `calendar.readonly` or `calendar`; `calendar.events` alone cannot list them.
- `calendar.events`: `events.list/get/instances/watch` and `events.insert/patch/delete` on the linked calendar
  (writes accept only `calendar`, `calendar.events`, `calendar.events.owned` and `calendar.app.created`;
  `events.owned` would miss events we must read on shared calendars, `app.created` every event not ours).
- `calendar.events.freebusy`: `freebusy.query` (busy times of calendars shared free/busy only), which
  accepts neither `calendar.events` nor `calendar.calendarlist.readonly`.

Not `calendar` (full access, ACLs and calendar deletion included) nor `calendar.readonly` (it would be needed
only for free/busy, which `calendar.events.freebusy` gives alone)."""

for _library in ("oauthlib", "requests_oauthlib"):
    # at DEBUG they log the token request (client secret, PKCE verifier, code) and the answer (refresh token)
    logging.getLogger(_library).setLevel(logging.INFO)

INSECURE_TRANSPORT = "OAUTHLIB_INSECURE_TRANSPORT"
_ENVIRONMENT = threading.Lock()
"""Guards the variable while oauthlib reads it: two flows at once never see each other's setting, and it is
back as it was when the lock is released. Held across a blocking request, so it is never waited for on the
event loop (both calls run in threads)."""


def _needs_insecure_transport(urls: Mapping[str, str]) -> bool:
    """Whether oauthlib must be let speak http: only when every URL is loopback. Raises InsecureEndpoint
    for an http URL that is not loopback, or an http auth or token URL beside a public redirect URI."""
    for setting, url in urls.items():
        if urlsplit(url).scheme != "https" and not is_loopback(url):
            raise InsecureEndpoint(f"{setting} must be an https URL (http only for a loopback address)")
    if all(urlsplit(url).scheme == "https" for setting, url in urls.items() if setting != "CROCO_PUBLIC_URL"):
        return False
    if not all(is_loopback(url) for url in urls.values()):
        raise InsecureEndpoint("http Google endpoints (an emulator) need a loopback CROCO_PUBLIC_URL too")
    return True


@contextmanager
def _insecure_transport() -> Iterator[None]:
    with _ENVIRONMENT:
        saved = os.environ.get(INSECURE_TRANSPORT)
        os.environ[INSECURE_TRANSPORT] = "1"
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop(INSECURE_TRANSPORT, None)
            else:
                os.environ[INSECURE_TRANSPORT] = saved


class GoogleOAuth:
    """The `OAuthClient` for Google. `redirect_uri` is `{CROCO_PUBLIC_URL}/oauth/google/callback`, exactly
    as registered with Google; building one refuses insecure URLs (InsecureEndpoint)."""

    def __init__(self, config: GoogleConfig, redirect_uri: str, *, timeout_seconds: float = 20.0) -> None:
        self._client = {"client_id": config.client_id, "client_secret": config.client_secret,
                        "auth_uri": config.auth_url, "token_uri": config.token_url, "redirect_uris": [redirect_uri]}
        self.redirect_uri, self.timeout_seconds = redirect_uri, timeout_seconds
        self._insecure = _needs_insecure_transport({"CROCO_GOOGLE_AUTH_URL": config.auth_url,
                                                    "CROCO_GOOGLE_TOKEN_URL": config.token_url,
                                                    "CROCO_PUBLIC_URL": redirect_uri})

    def _flow(self, code_verifier: str, scopes: tuple[str, ...] | None) -> Flow:
        return Flow.from_client_config({"web": self._client}, scopes=scopes and list(scopes),
                                       redirect_uri=self.redirect_uri, code_verifier=code_verifier,
                                       autogenerate_code_verifier=False)

    def _transport(self) -> AbstractContextManager[None]:
        return _insecure_transport() if self._insecure else nullcontext()

    async def consent_url(self, state: str, code_verifier: str) -> str:
        return await asyncio.to_thread(self._consent_url, state, code_verifier)

    def _consent_url(self, state: str, code_verifier: str) -> str:
        with self._transport():
            url, _ = self._flow(code_verifier, SCOPES).authorization_url(
                access_type="offline", prompt="consent", include_granted_scopes="true", state=state)
        return str(url)

    async def exchange(self, code: str, code_verifier: str) -> OAuthTokens:
        """The code for tokens, in a thread (requests blocks)."""
        return await asyncio.to_thread(self._exchange, code, code_verifier)

    def _exchange(self, code: str, code_verifier: str) -> OAuthTokens:
        flow = self._flow(code_verifier, None)  # the scopes granted are judged by `_tokens`, not oauthlib
        try:
            with self._transport():
                flow.fetch_token(code=code, timeout=self.timeout_seconds)
        except OAuth2Error as exc:  # its description is the server's text: only the error code goes on
            raise code_refused("Google", exc.error) from None
        except (requests.RequestException, ValueError):
            raise Unreachable("Google's token endpoint cannot be reached or did not answer like one") from None
        return _tokens(flow.credentials)

    async def account(self, grant: OAuthGrant, calendars: list[RemoteCalendarInfo]) -> str:
        """The primary calendar's id, which is the account's email (API.md)."""
        primary = next((c.remote_id for c in calendars if c.primary), None)
        if primary is None:
            raise ConsentFailed("no_primary_calendar", "Google listed no primary calendar for this account")
        return primary


def _tokens(credentials: google.oauth2.credentials.Credentials) -> OAuthTokens:
    granted = _granted(credentials)
    missing = [s.removeprefix(_AUTH) for s in SCOPES if s not in granted]
    if missing:
        raise ConsentFailed("missing_scopes", "Google granted less than Croco needs (no "
                                              f"{', '.join(missing)}): sign in again and allow every permission")
    if not credentials.refresh_token or not credentials.token or credentials.expiry is None:
        raise ConsentFailed("no_refresh_token", "Google gave no refresh token: sign in again")
    return OAuthTokens(credentials.token, credentials.refresh_token, credentials.expiry.replace(tzinfo=UTC),
                       tuple(sorted(granted)))


def _granted(credentials: Any) -> frozenset[str]:
    """The scopes the token answer lists, as a list or a string; none listed means those asked for (RFC 6749
    section 5.1: the server may leave out a scope identical to the request)."""
    scopes = credentials.granted_scopes or SCOPES
    return frozenset(scopes.split() if isinstance(scopes, str) else scopes)
