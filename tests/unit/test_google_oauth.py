"""Google's consent URL and the transport rules of the OAuth flow (sync/providers/google/oauth.py), no network."""

from __future__ import annotations

import base64
import hashlib
import os
from urllib.parse import parse_qs, urlsplit

import pytest

from sync.providers.base import GoogleConfig, is_loopback
from sync.providers.google.oauth import INSECURE_TRANSPORT, SCOPES, GoogleOAuth, InsecureEndpoint

GOOGLE = GoogleConfig("client-1.apps.googleusercontent.com", "client-secret")
REDIRECT = "https://croco.example.com/oauth/google/callback"
VERIFIER = "v" * 43 + "-._~" + "0123456789" * 4
EMULATOR = GoogleConfig("client-1", "client-secret", "http://127.0.0.1:9/", "http://127.0.0.1:9/o/oauth2/auth",
                        "http://127.0.0.1:9/token")


def _query(url: str) -> dict[str, str]:
    return {name: value for name, (value,) in parse_qs(urlsplit(url).query, strict_parsing=True).items()}


async def test_the_consent_url_asks_for_offline_access_with_pkce_s256_and_the_narrow_scopes() -> None:
    url = await GoogleOAuth(GOOGLE, REDIRECT).consent_url("the-state.signature", VERIFIER)
    assert url.startswith("https://accounts.google.com/o/oauth2/auth?")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("=")
    assert _query(url) == {
        "response_type": "code", "client_id": GOOGLE.client_id, "redirect_uri": REDIRECT,
        "scope": " ".join(SCOPES), "state": "the-state.signature", "code_challenge": challenge,
        "code_challenge_method": "S256", "access_type": "offline", "prompt": "consent",
        "include_granted_scopes": "true",
    }
    assert VERIFIER not in url and GOOGLE.client_secret not in url


def test_the_scopes_are_the_three_narrow_calendar_ones() -> None:
    assert SCOPES == ("https://www.googleapis.com/auth/calendar.calendarlist.readonly",
                      "https://www.googleapis.com/auth/calendar.events",
                      "https://www.googleapis.com/auth/calendar.events.freebusy")


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:8080/", True), ("http://127.9.8.7/", True), ("http://[::1]:8080/", True),
    ("http://localhost:8080/", True), ("http://10.0.0.1/", False), ("http://croco.example.com/", False),
    ("http://127.example.com/", False), ("https://[::2]/", False),
])
def test_loopback_is_this_machine_only(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


@pytest.mark.parametrize(("config", "redirect", "setting"), [
    (GoogleConfig("c", "s", token_url="http://oauth.example.com/token"), REDIRECT, "CROCO_GOOGLE_TOKEN_URL"),
    (GoogleConfig("c", "s", auth_url="http://accounts.example.com/auth"), REDIRECT, "CROCO_GOOGLE_AUTH_URL"),
    (GOOGLE, "http://croco.example.com/oauth/google/callback", "CROCO_PUBLIC_URL"),
])
def test_a_plain_http_url_off_this_machine_is_refused_naming_its_setting(
    config: GoogleConfig, redirect: str, setting: str
) -> None:
    with pytest.raises(InsecureEndpoint, match=f"^{setting} must be an https URL"):
        GoogleOAuth(config, redirect)


def test_an_http_emulator_needs_a_loopback_redirect_too() -> None:
    with pytest.raises(InsecureEndpoint, match="need a loopback CROCO_PUBLIC_URL"):
        GoogleOAuth(EMULATOR, REDIRECT)


async def test_real_google_with_a_loopback_redirect_is_a_developer_setup() -> None:
    url = await GoogleOAuth(GOOGLE, "http://127.0.0.1:8080/oauth/google/callback").consent_url("s.t", VERIFIER)
    assert _query(url)["redirect_uri"] == "http://127.0.0.1:8080/oauth/google/callback"


async def test_insecure_transport_is_allowed_for_the_call_only_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INSECURE_TRANSPORT, raising=False)
    oauth = GoogleOAuth(EMULATOR, "http://127.0.0.1:8080/oauth/google/callback")
    assert (await oauth.consent_url("s.t", VERIFIER)).startswith("http://127.0.0.1:9/o/oauth2/auth?")
    assert INSECURE_TRANSPORT not in os.environ
    monkeypatch.setenv(INSECURE_TRANSPORT, "set-by-someone-else")
    await oauth.consent_url("s.t", VERIFIER)
    assert os.environ[INSECURE_TRANSPORT] == "set-by-someone-else"
