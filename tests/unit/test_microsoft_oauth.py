"""Microsoft's consent URL and the authority rules of its OAuth flow (sync/providers/microsoft/oauth.py), msal
unmodified against the Graph emulator's identity platform (loopback https)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msal
import pytest

from sync.providers.base import ConsentFailed, InsecureEndpoint, MicrosoftConfig, TokenCache, Unreachable
from sync.providers.microsoft.oauth import SCOPES, MicrosoftOAuth
from tests.emulators.graph import CLIENT_ID, CLIENT_SECRET, GraphEmulator

REDIRECT = "https://croco.example.com/oauth/microsoft/callback"
VERIFIER = "v" * 43 + "-._~" + "0123456789" * 4


@pytest.fixture
def emulated(graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch) -> MicrosoftOAuth:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_bundle_path))
    return MicrosoftOAuth(MicrosoftConfig(CLIENT_ID, CLIENT_SECRET, graph.authority, graph.graph_url), REDIRECT)


def _query(url: str) -> dict[str, str]:
    return {name: value for name, (value,) in parse_qs(urlsplit(url).query, strict_parsing=True).items()}


async def test_the_consent_url_carries_pkce_s256_the_scopes_with_offline_access_our_state_and_redirect(
    emulated: MicrosoftOAuth, graph: GraphEmulator
) -> None:
    url = await emulated.consent_url("the-state.signature", VERIFIER)
    assert url.startswith(f"{graph.authority}/oauth2/v2.0/authorize?")
    query = _query(url)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("=")
    assert (query["code_challenge"], query["code_challenge_method"]) == (challenge, "S256")
    assert set(query["scope"].split()) == {"Calendars.ReadWrite", "User.Read", "offline_access", "openid", "profile"}
    assert (query["state"], query["redirect_uri"], query["client_id"]) == ("the-state.signature", REDIRECT, CLIENT_ID)
    assert query["response_type"] == "code"
    assert VERIFIER not in url and CLIENT_SECRET not in url


def test_the_scopes_are_calendar_read_write_and_the_profile_me_needs() -> None:
    assert SCOPES == ("Calendars.ReadWrite", "User.Read")  # offline_access: msal adds it, refusing it passed in


@pytest.mark.parametrize("authority", ["http://login.microsoftonline.com/common", "http://127.0.0.1:9/common"])
def test_an_http_authority_is_refused_naming_the_setting(authority: str) -> None:
    with pytest.raises(InsecureEndpoint, match="CROCO_MICROSOFT_AUTHORITY must be an https URL"):
        MicrosoftOAuth(MicrosoftConfig(CLIENT_ID, CLIENT_SECRET, authority), REDIRECT)


@pytest.mark.parametrize(("authority", "discovery"), [("https://login.microsoftonline.com/common", True),
                                                      ("https://login.microsoftonline.com/contoso.com", True),
                                                      ("https://127.0.0.1:8443/common", False),
                                                      ("https://login.example.com/common", False)])
def test_instance_discovery_only_for_microsofts_own_authority(
    authority: str, discovery: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[dict[str, Any]] = []
    monkeypatch.setattr(msal, "ConfidentialClientApplication", lambda *args, **kwargs: built.append(kwargs))
    MicrosoftOAuth(MicrosoftConfig(CLIENT_ID, CLIENT_SECRET, authority), REDIRECT).application()
    (kwargs,) = built
    assert kwargs["instance_discovery"] is discovery and kwargs["authority"] == authority
    assert isinstance(kwargs["token_cache"], msal.SerializableTokenCache)


async def test_an_unreachable_authority_is_unreachable_without_the_libraries_words(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    oauth = MicrosoftOAuth(MicrosoftConfig(CLIENT_ID, CLIENT_SECRET, "https://127.0.0.1:9/common"), REDIRECT)
    with pytest.raises(Unreachable, match="CROCO_MICROSOFT_AUTHORITY") as raised:
        await oauth.consent_url("state", VERIFIER)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


async def test_a_refused_code_is_consent_failed_invalid_grant_without_the_servers_words(
    emulated: MicrosoftOAuth
) -> None:
    with pytest.raises(ConsentFailed) as raised:
        await emulated.exchange("M.C5_emu.not-a-code", VERIFIER)
    assert raised.value.error == "invalid_grant" and "AADSTS" not in str(raised.value)
    assert raised.value.__suppress_context__


async def test_the_exchange_gives_the_serialized_cache_of_the_consenting_home_account(
    emulated: MicrosoftOAuth, graph: GraphEmulator
) -> None:
    account = graph.add_account("ann@contoso.com")
    url = await emulated.consent_url("state", VERIFIER)
    code = await _code_for(graph, url)
    cache = await emulated.exchange(code, VERIFIER)
    assert isinstance(cache, TokenCache)
    assert cache.home_account_id == f"{account.object_id}.{account.tenant_id}"
    assert "TokenCache(" in repr(cache) and cache.serialized not in repr(cache)
    assert await emulated.account(cache, []) == "ann@contoso.com"


async def _code_for(graph: GraphEmulator, url: str) -> str:
    async with aiohttp.ClientSession() as browser, \
            browser.get(url, allow_redirects=False, ssl=graph.client_ssl_context()) as answer:
        return _query(answer.headers["Location"])["code"]
