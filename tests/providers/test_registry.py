"""`open_provider`: the ProviderFactory the engine and the API are given."""

from __future__ import annotations

import functools

import pytest

from sync.providers.base import ProviderConfig, ProviderFactory
from sync.providers.caldav.provider import CalDAVProvider
from sync.providers.registry import open_provider

CONFIG = ProviderConfig(icloud_url="http://127.0.0.1:9/icloud/")
CREDENTIALS = {"username": "john@icloud.example", "password": "abcd-efgh-ijkl-mnop"}


def test_icloud_is_caldav_at_the_configured_address() -> None:
    provider = open_provider("icloud", CREDENTIALS, None, config=CONFIG)
    assert isinstance(provider, CalDAVProvider)
    assert "http://127.0.0.1:9/icloud/" in repr(provider) and "iCloud" in repr(provider)
    assert "abcd-efgh" not in repr(provider)


def test_caldav_needs_its_server_url() -> None:
    assert isinstance(open_provider("caldav", CREDENTIALS, "https://dav.example/", config=CONFIG), CalDAVProvider)
    with pytest.raises(ValueError, match="needs the server URL"):
        open_provider("caldav", CREDENTIALS, None, config=CONFIG)


@pytest.mark.parametrize("name", ["google", "microsoft"])
def test_google_and_microsoft_are_not_available_yet(name: str) -> None:
    with pytest.raises(ValueError, match=f"the {name} provider is not available yet"):
        open_provider(name, CREDENTIALS, None, config=CONFIG)


def test_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown calendar provider 'exchange'"):
        open_provider("exchange", CREDENTIALS, None, config=CONFIG)


def test_it_is_a_provider_factory_once_configured() -> None:
    factory: ProviderFactory = functools.partial(open_provider, config=CONFIG)
    assert isinstance(factory("icloud", CREDENTIALS, None), CalDAVProvider)
