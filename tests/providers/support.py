"""What the provider tests share: .ics fixtures, a draft, a CalDAV provider on a test server, and settings and
tokens for a Google provider and a Microsoft provider on their emulators."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msal

from sync.providers.base import (
    CalendarProvider,
    EventDraft,
    GoogleConfig,
    MicrosoftConfig,
    OAuthTokens,
    ProviderConfig,
    ReadContext,
    TokenCache,
)
from sync.providers.caldav.provider import CalDAVProvider
from tests.caldav_servers import CalDAVServer
from tests.emulators import graph
from tests.emulators.google import CLIENT_ID, CLIENT_SECRET, GoogleEmulator
from tests.emulators.graph import GraphEmulator
from tests.providers.fixtures import SeedEvent, graph_event, graph_occurrence_edits

ICS = Path(__file__).parent / "ics"
CONFIG = ProviderConfig(timeout_seconds=5)
START = datetime(2026, 3, 4, 9, tzinfo=UTC)
DRAFT = EventDraft("a1b2c3d4", START, START + timedelta(hours=1), "Consultation")
CONTEXT = ReadContext(ZoneInfo("Europe/Paris"), "john@example.com", datetime(2026, 3, 1, tzinfo=UTC),
                      datetime(2026, 5, 1, tzinfo=UTC))


def ics(name: str) -> str:
    return (ICS / name).read_text()


def michel_copy(n: int) -> str:
    """Dr. Michel's event under a UID of its own, to fill a calendar with distinct events."""
    return ics("michel.ics").replace("5F1C2D0A", f"e{n}")


def names(ids: Iterable[str]) -> list[str]:
    """Object names without the collection path, which differs between servers."""
    return sorted(i.rsplit("/", 1)[-1] for i in ids)


def caldav(server: CalDAVServer, *, url: str | None = None, password: str | None = None) -> CalDAVProvider:
    return CalDAVProvider(url or server.url, server.username, password or server.password, CONFIG)


@dataclass
class Remote:
    """A provider, one empty calendar of it, and hands to change that calendar behind the provider's back."""

    name: str
    provider: CalendarProvider
    calendar_id: str
    seed: Callable[[SeedEvent], str]  # writes the event (again: same name) as another client would -> remote id
    drop_calendar: Callable[[], None]
    stale_cursor: Callable[[str], str]  # a cursor the backend handed out -> one it no longer accepts
    stores_malformed: bool = True  # False: the backend refuses malformed events on write (Google checks times)


def google_config(emulator: GoogleEmulator, *, retries: int = 1) -> ProviderConfig:
    """The provider settings that send every Google call to the emulator."""
    google = GoogleConfig(CLIENT_ID, CLIENT_SECRET, emulator.root_url, emulator.auth_url, emulator.token_url, retries)
    return replace(CONFIG, google=google)


def oauth_tokens(answer: dict[str, Any]) -> OAuthTokens:
    """What the OAuth callback stores from a token endpoint's answer."""
    expires_at = datetime.now(UTC) + timedelta(seconds=answer["expires_in"])  # google-auth reads the wall clock
    return OAuthTokens(answer["access_token"], answer["refresh_token"], expires_at, tuple(answer["scope"].split()))


def graph_config(emulator: GraphEmulator) -> ProviderConfig:
    """The provider settings that send every Microsoft call (msal's and Graph's) to the emulator."""
    microsoft = MicrosoftConfig(graph.CLIENT_ID, graph.CLIENT_SECRET, emulator.authority, emulator.graph_url)
    return replace(CONFIG, microsoft=microsoft)


def token_cache(emulator: GraphEmulator, email: str) -> TokenCache:
    """What connecting stores: msal's cache after the consent's tokens, and the account they are for. Blocking
    (msal): call it in a thread, with REQUESTS_CA_BUNDLE trusting the emulator."""
    refresh_token = emulator.grant(email)["refresh_token"]
    cache = msal.SerializableTokenCache()
    app = msal.ConfidentialClientApplication(graph.CLIENT_ID, client_credential=graph.CLIENT_SECRET,
                                             authority=emulator.authority, instance_discovery=False, token_cache=cache)
    assert "access_token" in app.acquire_token_by_refresh_token(refresh_token, [graph.CALENDAR_SCOPE])
    (account,) = app.get_accounts()
    return TokenCache(cache.serialize(), account["home_account_id"])


def seed_graph(emulator: GraphEmulator, calendar_id: str, owner: str, event: SeedEvent,
               existing_id: str | None = None) -> str:
    """`event` written by an Outlook client (again, over `existing_id`): the event, then its series' exceptions."""
    master = emulator.put_event(calendar_id, graph_event(event, owner) | ({"id": existing_id} if existing_id else {}))
    for key, changes in graph_occurrence_edits(event).items():
        occurrence = f"{master['id']}_{key}"
        if changes is None:
            emulator.delete_event(calendar_id, occurrence)
        else:
            emulator.edit_occurrence(calendar_id, occurrence, changes)
    return str(master["id"])
