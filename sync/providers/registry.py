"""Which provider serves which connection: the `ProviderFactory` the engine is given."""

from __future__ import annotations

from typing import Any

from sync.providers.base import CalendarProvider, ProviderConfig
from sync.providers.caldav.provider import CALDAV, ICLOUD, open_caldav

NOT_YET = ("google", "microsoft")


def open_provider(
    provider: str, credentials: dict[str, Any], server_url: str | None, *, config: ProviderConfig,
    account_email: str | None = None,
) -> CalendarProvider:
    """A provider for one connection. iCloud is CalDAV at `config.icloud_url` unless the connection says
    otherwise, so tests and the demo point it at a local server. `account_email` is the address the account
    is invited under (declined invitations are free); without it, a username that is an email is used."""
    if provider == "icloud":
        return open_caldav(credentials, server_url or config.icloud_url, config, profile=ICLOUD,
                           account_email=account_email)
    if provider == "caldav":
        if not server_url:
            raise ValueError("a CalDAV connection needs the server URL")
        return open_caldav(credentials, server_url, config, profile=CALDAV, account_email=account_email)
    if provider in NOT_YET:
        raise ValueError(f"the {provider} provider is not available yet")
    raise ValueError(f"unknown calendar provider {provider!r}")
