"""Which provider serves which connection."""

from __future__ import annotations

from typing import Any

from sync.providers.base import CalendarProvider, ProviderConfig
from sync.providers.caldav import open_caldav


def open_provider(
    provider: str, credentials: dict[str, Any], server_url: str | None, *, config: ProviderConfig
) -> CalendarProvider:
    """iCloud is CalDAV at Apple's address (or `config.icloud_url`, so tests point it at a local server)."""
    if provider == "icloud":
        return open_caldav(credentials, server_url or config.icloud_url, config)
    if provider == "caldav":
        if not server_url:
            raise ValueError("a CalDAV connection needs the server URL")
        return open_caldav(credentials, server_url, config)
    raise ValueError(f"the {provider} provider is not available yet")
