"""The connect modal: one line per provider, its button opening the browser page that connects the account
(Slack modals have no password field, and OAuth needs a browser)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.blocks.common import View, button, context, modal, section
from bot.ids import Action
from storage.enums import Provider

TITLE = "Connect a calendar"
PROVIDER_NAMES = {
    Provider.GOOGLE: "Google Calendar",
    Provider.MICROSOFT: "Outlook / Microsoft 365",
    Provider.ICLOUD: "iCloud",
    Provider.CALDAV: "Other CalDAV server",
}
HINTS = {
    Provider.GOOGLE: "Sign in with your Google account.",
    Provider.MICROSOFT: "Sign in with your Outlook.com or Microsoft 365 account.",
    Provider.ICLOUD: "Your Apple ID and an app-specific password (appleid.apple.com, Sign-In and Security).",
    Provider.CALDAV: "Fastmail, Nextcloud, Radicale…: the server's address, your username and password.",
}


@dataclass(frozen=True)
class ProviderChoice:
    """A provider's line: `url` is its connect link; None when this Croco cannot connect it (`configured`
    then says whether an admin set its OAuth client, whose sign-in is unusable: an http authority, or one
    that cannot be reached)."""

    provider: Provider
    url: str | None = None
    expires_at: datetime | None = None
    configured: bool = False


def unavailable_words(choice: ProviderChoice) -> str:
    return "not available on this Croco right now" if choice.configured else "not configured on this Croco"


def connect_view(choices: Sequence[ProviderChoice], *, now: datetime) -> View:
    blocks = [section("Connect a calendar so Croco knows when you are busy and can put your appointments in it. "
                      "Each button opens a page in your browser.")]
    for choice in choices:
        name = PROVIDER_NAMES[choice.provider]
        if choice.url is not None:
            blocks.append(section(f"*{name}*\n{HINTS[choice.provider]}", block_id=f"connect-{choice.provider}",
                                  accessory=button("Connect", Action.CONNECT_PROVIDER, choice.provider,
                                                   style="primary", url=choice.url)))
        else:
            words = unavailable_words(choice)
            blocks.append(section(f"*{name}* — {words}\nAsk whoever runs Croco to set it up.",
                                  block_id=f"connect-{choice.provider}",
                                  accessory=button(f"{name} — {words}", Action.CONNECT_PROVIDER,
                                                   choice.provider)))
    expiry = [c.expires_at for c in choices if c.expires_at is not None]
    if expiry:
        blocks.append(context(expires_words(min(expiry), now)))
    return modal(TITLE, blocks)


def expires_words(expires_at: datetime, now: datetime) -> str:
    """"…expire in 15 minutes (at 08:15)": the time in the reader's own zone (Slack's date token), UTC as the
    fallback text."""
    minutes = max(0, round((expires_at - now).total_seconds() / 60))
    stamp = int(expires_at.timestamp())
    fallback = expires_at.astimezone(UTC).strftime("%H:%M UTC")
    return (f"Each link works once and expires in {minutes} minutes (at <!date^{stamp}^{{time}}|{fallback}>). "
            "Run `/croco connect` again for new ones.")
