"""Microsoft's OAuth web flow (provider-apis.md M6) with msal, unmodified: the consent URL and the code exchange
into a `SerializableTokenCache`, which becomes the connection's `TokenCache` credentials.

msal's own `initiate_auth_code_flow` makes its own PKCE verifier, while connect links seal ours: the consent URL
is msal's `get_authorization_request_url` with our S256 challenge added, and the exchange sends our verifier.
msal accepts only https authorities; an http one is refused here, naming the setting, before any request. Every
msal call runs in a thread (requests blocks; building the application fetches the authority's metadata).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import msal
import requests

from sync.providers.base import (
    ConsentFailed,
    InsecureEndpoint,
    MicrosoftConfig,
    OAuthGrant,
    RemoteCalendarInfo,
    TokenCache,
    Unreachable,
    code_refused,
)

log = logging.getLogger(__name__)

SCOPES = ("Calendars.ReadWrite", "User.Read")
"""`Calendars.ReadWrite` (M6: read and write every calendar the account may edit) and `User.Read`, because the
account is `/me`'s `mail` (API.md) and Graph's `GET /me` needs `User.Read` at least (section M is silent
on it). `offline_access` (the refresh token), `openid` and `profile` are reserved: msal adds them itself and
refuses them passed in (M6)."""

MICROSOFT_HOST = "login.microsoftonline.com"

logging.getLogger("msal").setLevel(logging.INFO)  # at DEBUG it logs token requests and answers


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


def graph_ssl_context() -> ssl.SSLContext:
    """Trust as requests does for msal: REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) when set (API.md), so the Graph
    client and msal trust the same servers."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=bundle or None)


class MicrosoftOAuth:
    """The `OAuthClient` for Microsoft (work and personal accounts through the configured authority, `/common`
    by default). `redirect_uri` is `{CROCO_PUBLIC_URL}/oauth/microsoft/callback`, as registered; building one
    refuses an http authority (InsecureEndpoint)."""

    def __init__(self, config: MicrosoftConfig, redirect_uri: str, *, timeout_seconds: float = 20.0) -> None:
        if urlsplit(config.authority).scheme != "https":
            raise InsecureEndpoint("CROCO_MICROSOFT_AUTHORITY must be an https URL (msal accepts no other)")
        self.config, self.redirect_uri, self.timeout_seconds = config, redirect_uri, timeout_seconds

    def application(self, cache: msal.SerializableTokenCache | None = None) -> msal.ConfidentialClientApplication:
        """msal's client; instance discovery (a call to Microsoft's own cloud) only for Microsoft's authority."""
        try:
            return msal.ConfidentialClientApplication(
                self.config.client_id, client_credential=self.config.client_secret, authority=self.config.authority,
                token_cache=cache or msal.SerializableTokenCache(), timeout=self.timeout_seconds,
                instance_discovery=urlsplit(self.config.authority).hostname == MICROSOFT_HOST)
        except (ValueError, requests.RequestException):  # msal's message may carry the server's answer
            raise Unreachable("the Microsoft authority (CROCO_MICROSOFT_AUTHORITY) cannot be reached or did not "
                              "answer like one") from None

    async def consent_url(self, state: str, code_verifier: str) -> str:
        return await asyncio.to_thread(self._consent_url, state, code_verifier)

    def _consent_url(self, state: str, code_verifier: str) -> str:
        url = self.application().get_authorization_request_url(
            list(SCOPES), state=state, redirect_uri=self.redirect_uri, prompt="select_account")
        pkce = urlencode({"code_challenge": _s256(code_verifier), "code_challenge_method": "S256"})
        return f"{url}&{pkce}"

    async def exchange(self, code: str, code_verifier: str) -> TokenCache:
        """The code for tokens, in a thread; the cache holding them is the connection's credentials."""
        return await asyncio.to_thread(self._exchange, code, code_verifier)

    def _exchange(self, code: str, code_verifier: str) -> TokenCache:
        cache = msal.SerializableTokenCache()
        application = self.application(cache)
        try:
            answer = application.acquire_token_by_authorization_code(
                code, list(SCOPES), redirect_uri=self.redirect_uri, data={"code_verifier": code_verifier})
        except Exception:  # requests' and msal's errors alike may quote the server
            raise Unreachable("Microsoft's token endpoint cannot be reached or did not answer like one") from None
        if "error" in answer:
            raise code_refused("Microsoft", str(answer["error"])) from None
        accounts = application.get_accounts()
        if "access_token" not in answer or "refresh_token" not in answer or len(accounts) != 1:
            raise ConsentFailed("no_refresh_token", "Microsoft gave no refresh token: sign in again")
        return TokenCache(cache.serialize(), str(accounts[0]["home_account_id"]))

    async def account(self, grant: OAuthGrant, calendars: list[RemoteCalendarInfo]) -> str:
        """`/me`'s `mail`, else its `userPrincipalName` (API.md), asked with the access token just granted."""
        assert isinstance(grant, TokenCache)
        url = self.config.graph_url.rstrip("/") + "/me"
        headers = {"Authorization": f"Bearer {_access_token(grant)}"}
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http, \
                    http.get(url, headers=headers, ssl=graph_ssl_context()) as answer:
                if answer.status != 200:
                    raise Unreachable(f"Microsoft Graph answered {answer.status} to /me") from None
                me: dict[str, Any] = await answer.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            raise Unreachable("Microsoft Graph (CROCO_MICROSOFT_GRAPH_URL) cannot be reached") from None
        address = me.get("mail") or me.get("userPrincipalName")
        if not isinstance(address, str) or not address:
            raise ConsentFailed("no_account", "Microsoft named no address for this account")
        return address


def _access_token(grant: TokenCache) -> str:
    """The access token the exchange put in the cache (the only one there)."""
    entries = json.loads(grant.serialized).get("AccessToken", {})
    return str(next(iter(entries.values()))["secret"])
