"""Google's OAuth web flow (provider-apis.md G7) with google-auth-oauthlib, unmodified: the consent URL and
the code exchange. PKCE S256 with our own verifier (sealed with the connect link), `access_type=offline` and
`prompt=consent` so every consent brings a refresh token. The token refresh itself is the provider's job.

oauthlib refuses plain-http endpoints unless `OAUTHLIB_INSECURE_TRANSPORT` is set, and refuses a token whose
scopes differ from those asked for unless `OAUTHLIB_RELAX_TOKEN_SCOPE` is set (granular consent lets a person
untick a box; we check the granted scopes ourselves). Both are process-wide variables, so they are set only
around one call, under a lock, and restored after it; insecure transport only when every URL involved is a
loopback one (an emulator), and an http URL anywhere else is refused before any request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import google.oauth2.credentials
import requests
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2 import OAuth2Error

from sync.providers.base import ConsentFailed, GoogleConfig, OAuthTokens, RemoteCalendarInfo, Unreachable

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

INSECURE_TRANSPORT, RELAX_TOKEN_SCOPE = "OAUTHLIB_INSECURE_TRANSPORT", "OAUTHLIB_RELAX_TOKEN_SCOPE"
_ENVIRONMENT = threading.Lock()
"""Guards the process environment while oauthlib reads its switches: two flows at once never see each
other's settings, and the variables are back as they were when the lock is released."""


class InsecureEndpoint(ValueError):
    """A configured URL is plain http where only https will do. The message names the setting."""


def is_loopback(url: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: a server on this machine (an emulator, a developer's own Croco)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
def _oauthlib_switches(*, insecure_transport: bool) -> Iterator[None]:
    with _ENVIRONMENT:
        names = (RELAX_TOKEN_SCOPE, INSECURE_TRANSPORT) if insecure_transport else (RELAX_TOKEN_SCOPE,)
        saved = {name: os.environ.get(name) for name in names}
        os.environ.update(dict.fromkeys(names, "1"))
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


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

    def _flow(self, code_verifier: str) -> Flow:
        return Flow.from_client_config({"web": self._client}, scopes=list(SCOPES), redirect_uri=self.redirect_uri,
                                       code_verifier=code_verifier, autogenerate_code_verifier=False)

    def consent_url(self, state: str, code_verifier: str) -> str:
        with _oauthlib_switches(insecure_transport=self._insecure):
            url, _ = self._flow(code_verifier).authorization_url(
                access_type="offline", prompt="consent", include_granted_scopes="true", state=state)
        return str(url)

    async def exchange(self, code: str, code_verifier: str) -> OAuthTokens:
        """The code for tokens, in a thread (requests blocks)."""
        return await asyncio.to_thread(self._exchange, code, code_verifier)

    def _exchange(self, code: str, code_verifier: str) -> OAuthTokens:
        flow = self._flow(code_verifier)
        try:
            with _oauthlib_switches(insecure_transport=self._insecure):
                flow.fetch_token(code=code, timeout=self.timeout_seconds)
        except OAuth2Error as exc:  # its description is the server's text: only the error code goes on
            raise _refused(exc.error) from None
        except (requests.RequestException, ValueError):
            raise Unreachable("Google's token endpoint cannot be reached or did not answer like one") from None
        return _tokens(flow.credentials)

    def account(self, calendars: list[RemoteCalendarInfo]) -> str:
        """The primary calendar's id, which is the account's email (API.md)."""
        primary = next((c.remote_id for c in calendars if c.primary), None)
        if primary is None:
            raise ConsentFailed("no_primary_calendar", "Google listed no primary calendar for this account")
        return primary


def _refused(error: str) -> ConsentFailed:
    code = error if error.replace("_", "").isalnum() and len(error) <= 64 else "error"
    if code == "invalid_grant":
        return ConsentFailed(code, "Google refused the sign-in code (invalid_grant): it was used already or has "
                                   "expired, so sign in again")
    return ConsentFailed(code, f"Google refused to exchange the sign-in code ({code})")


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
    """The scopes the token answer lists (granular consent may grant fewer than asked, and
    `include_granted_scopes` adds earlier grants); google-auth keeps them as a list or a string."""
    scopes = credentials.granted_scopes or credentials.scopes or ()
    return frozenset(scopes.split() if isinstance(scopes, str) else scopes)
