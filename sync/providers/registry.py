"""Which provider serves which connection: the `ProviderFactory` the engine is given."""

from __future__ import annotations

from sync.providers.base import AppPassword, CalendarProvider, Credentials, OAuthTokens, ProviderConfig, TokenCache
from sync.providers.caldav.provider import CALDAV, ICLOUD, open_caldav
from sync.providers.google.provider import GoogleShared, open_google
from sync.providers.microsoft.provider import MicrosoftShared, open_microsoft


def open_provider(
    provider: str, credentials: Credentials, server_url: str | None, *, config: ProviderConfig,
    account_email: str | None = None, google: GoogleShared | None = None, microsoft: MicrosoftShared | None = None,
) -> CalendarProvider:
    """A provider for one connection. iCloud is CalDAV at `config.icloud_url` unless the connection says
    otherwise, so tests and the demo point it at a local server. `account_email` is the address the account
    is invited under (declined invitations are free); without it, a username that is an email is used.
    Google providers share `google` (the process's thread pool and request budgets; by default one made
    for the process), and so do Microsoft providers `microsoft` (the HTTP session and each mailbox's slots)."""
    if provider == "google":
        if not isinstance(credentials, OAuthTokens):
            raise ValueError("a google connection needs OAuth tokens, not a username and password")
        return open_google(credentials, config, google, account=account_email)
    if provider in ("icloud", "caldav"):
        if not isinstance(credentials, AppPassword):
            raise ValueError(f"a {provider} connection needs a username and password, not OAuth tokens")
        if provider == "icloud":
            return open_caldav(credentials, server_url or config.icloud_url, config, profile=ICLOUD,
                               account_email=account_email)
        if not server_url:
            raise ValueError("a CalDAV connection needs the server URL")
        return open_caldav(credentials, server_url, config, profile=CALDAV, account_email=account_email)
    if provider == "microsoft":
        if not isinstance(credentials, TokenCache):
            raise ValueError("a microsoft connection needs msal's token cache")
        return open_microsoft(credentials, config, microsoft)
    raise ValueError(f"unknown calendar provider {provider!r}")
