"""The help modal: every subcommand in one line each, in the words of the help article."""

from __future__ import annotations

from bot.blocks.common import View, context, escape, modal, section

SUBCOMMANDS = (
    ("connect", "Connect Google, Outlook / Microsoft 365, iCloud or any CalDAV calendar."),
    ("settings", "Choose your linked calendar, your conflict calendars and one-way or two-way sync."),
    ("status", "Your connections, each calendar's role, when it last synced, and any problem."),
    ("why [date]", "Why slots of your team calendars are blocked on a day (today, tomorrow or YYYY-MM-DD)."),
    ("help", "This list."),
)


def help_view(*, unknown: str | None = None) -> View:
    blocks = []
    if unknown:
        blocks.append(section(f"I don't know `{escape(unknown[:100])}`. Here is what `/croco` does:"))
    blocks.extend(section(f"*/croco {name}*  {text}") for name, text in SUBCOMMANDS)
    blocks.append(context("Appointments go to your linked calendar; busy events of your conflict calendars block "
                          "your availability, free ones don't."))
    return modal("Croco help", blocks)
