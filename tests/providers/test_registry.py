"""`open_provider`: the ProviderFactory the engine and the API are given."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import pytest

from sync.providers.base import AppPassword, BatchCreator, OAuthTokens, ProviderConfig, ProviderFactory, TokenCache
from sync.providers.caldav.provider import CalDAVProvider
from sync.providers.google.provider import GoogleProvider, GoogleShared
from sync.providers.microsoft.provider import MicrosoftProvider, MicrosoftShared
from sync.providers.registry import open_provider

CONFIG = ProviderConfig(icloud_url="http://127.0.0.1:9/icloud/")
CREDENTIALS = AppPassword("john@icloud.example", "abcd-efgh-ijkl-mnop")


def test_icloud_is_caldav_at_the_configured_address() -> None:
    provider = open_provider("icloud", CREDENTIALS, None, config=CONFIG)
    assert isinstance(provider, CalDAVProvider)
    assert "http://127.0.0.1:9/icloud/" in repr(provider) and "iCloud" in repr(provider)
    assert "abcd-efgh" not in repr(provider)


def test_caldav_needs_its_server_url() -> None:
    assert isinstance(open_provider("caldav", CREDENTIALS, "https://dav.example/", config=CONFIG), CalDAVProvider)
    with pytest.raises(ValueError, match="needs the server URL"):
        open_provider("caldav", CREDENTIALS, None, config=CONFIG)


def test_microsoft_takes_msals_cache_and_never_shows_it() -> None:
    cache = TokenCache('{"RefreshToken": {"k": {"secret": "M.C5_BAY.refresh-5e6f"}}}', "oid.tid")
    provider = open_provider("microsoft", cache, None, config=CONFIG, microsoft=MicrosoftShared())
    assert isinstance(provider, MicrosoftProvider) and "oid.tid" in repr(provider) and "5e6f" not in repr(provider)
    assert provider.rotated_credentials() is None  # nothing refreshed yet
    with pytest.raises(ValueError, match="a microsoft connection needs msal's token cache"):
        open_provider("microsoft", CREDENTIALS, None, config=CONFIG)


def test_google_takes_oauth_tokens_and_never_shows_them() -> None:
    tokens = OAuthTokens("ya29.access-1a2b", "1//refresh-3c4d", datetime(2031, 3, 3, 9, tzinfo=UTC))
    shared = GoogleShared()
    try:
        provider = open_provider("google", tokens, None, config=CONFIG, google=shared, account_email="john@example.com")
        assert isinstance(provider, GoogleProvider) and isinstance(provider, BatchCreator)
        assert "john@example.com" in repr(provider) and "1a2b" not in repr(provider) and "3c4d" not in repr(provider)
        assert provider.rotated_credentials() is None  # nothing refreshed yet
    finally:
        shared.close()
    with pytest.raises(ValueError, match="a google connection needs OAuth tokens"):
        open_provider("google", CREDENTIALS, None, config=CONFIG)


def test_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown calendar provider 'exchange'"):
        open_provider("exchange", CREDENTIALS, None, config=CONFIG)


def test_it_is_a_provider_factory_once_configured() -> None:
    factory: ProviderFactory = functools.partial(open_provider, config=CONFIG)
    assert isinstance(factory("icloud", CREDENTIALS, None), CalDAVProvider)
