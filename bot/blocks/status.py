"""The status of a user's sync, in plain words: as the `/croco status` modal, and as the App Home tab with a
button to fix each problem. Problems come first, so a long calendar list never pushes them out of the view."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from bot.blocks.common import (
    MAX_TEXT,
    Block,
    View,
    actions,
    button,
    clip,
    context,
    escape,
    header,
    modal,
    section,
    within_blocks,
)
from bot.ids import Action
from storage.enums import Access, Provider, SyncMode
from sync.status import CalendarState, ConnectionState, Problem, ProblemKind, Role, UserStatus

TITLE = "Croco status"
MAX_NAME = 80  # a calendar's or account's name in a line
MAX_DETAIL = 300  # a recorded error, quoted
MAX_PROBLEMS = 20
PROVIDER_NAMES = {Provider.GOOGLE: "Google", Provider.MICROSOFT: "Microsoft 365", Provider.ICLOUD: "iCloud",
                  Provider.CALDAV: "CalDAV"}
ACCESS_WORDS = {Access.FULL: "full access", Access.READ: "read only", Access.FREEBUSY: "free/busy only"}
ROLE_WORDS = {Role.LINKED: "linked", Role.CONFLICT: "conflict", Role.UNUSED: "not used"}
MODE_WORDS = {
    SyncMode.ONE_WAY: "*One-way sync*: events of your linked calendar come into Croco as blocked time.",
    SyncMode.TWO_WAY: "*Two-way sync*: events of your linked calendar come into Croco as appointments, "
                      "with contacts for their guests.",
}
LEGEND = ("Linked: Croco puts your appointments there. Conflict: its busy events block your availability. "
          "Not used: Croco does not read it.")


def status_view(status: UserStatus) -> View:
    """`/croco status`: a modal, so each fix is said as the command or tab that does it."""
    return modal(TITLE, status_blocks(status, home=False))


def home_view(status: UserStatus) -> View:
    """The App Home tab: Connect and Settings at the top, a fix button beside each problem."""
    top = [header("Croco"), actions(button("Connect a calendar", Action.OPEN_CONNECT, style="primary"),
                                    button("Settings", Action.OPEN_SETTINGS), block_id="home-actions")]
    return home([*top, *status_blocks(status, home=True)])


def home_failure(message: str) -> View:
    return home([header("Croco"), section(f":warning: {escape(message)}")])


def home(blocks: list[Block]) -> View:
    return {"type": "home", "blocks": within_blocks(blocks)}


def status_blocks(status: UserStatus, *, home: bool) -> list[Block]:
    blocks = problem_blocks(status.problems, home=home)
    if not status.problems:
        blocks.append(section(":white_check_mark: Everything is in sync."))
    if not status.connections:
        return blocks
    blocks.append(context(MODE_WORDS[status.mode]))
    blocks.extend(section(text) for text in packed(connection_lines(status)))
    blocks.append(context(LEGEND))
    return blocks


# Problems ----------------------------------------------------------------------------------------------


def problem_blocks(problems: Iterable[Problem], *, home: bool) -> list[Block]:
    problems = list(problems)
    if not problems:
        return []
    shown = problems[:MAX_PROBLEMS]
    blocks = [section("*Needs your attention*")]
    for problem in shown:
        words = problem_words(problem) if home else f"{problem_words(problem)} {fix_words(problem)}".rstrip()
        fix = fix_button(problem) if home else None
        blocks.append(section(f":warning: {words}", accessory=fix))
    if len(problems) > len(shown):
        blocks.append(context(f"{len(problems) - len(shown)} more problems not shown."))
    return blocks


def problem_words(problem: Problem) -> str:
    subject = escape(clip(problem.subject, MAX_NAME))
    detail = f" ({escape(clip(problem.detail, MAX_DETAIL))})" if problem.detail else ""
    provider = PROVIDER_NAMES[problem.provider] if problem.provider else "calendar"
    match problem.kind:
        case ProblemKind.NO_CONNECTION:
            return "No calendar is connected yet, so Croco cannot see when you are busy."
        case ProblemKind.CONNECTION_BROKEN:
            return (f"Your {provider} account *{subject}* stopped working{detail}. "
                    "Nothing from it syncs until you reconnect it.")
        case ProblemKind.NO_LINKED_CALENDAR:
            return "No linked calendar is chosen, so appointments booked in Croco go to none of your calendars."
        case ProblemKind.CALENDAR_FAILING:
            return f"*{subject}* did not sync last time{detail}. Croco tries again at the next sync."
        case ProblemKind.REMOVALS_HELD:
            return (f"Croco is holding back deletions from *{subject}*: many of its events disappeared at once. "
                    "Confirm them, or put the events back in that calendar.")


def fix_words(problem: Problem) -> str:
    """The fix said in words (the modal has no buttons that open other views)."""
    match problem.kind:
        case ProblemKind.NO_CONNECTION:
            return "Connect one with `/croco connect`."
        case ProblemKind.CONNECTION_BROKEN:
            return "Use *Reconnect* on Croco's Home tab or in the message Croco sent you."
        case ProblemKind.NO_LINKED_CALENDAR | ProblemKind.CALENDAR_FAILING:
            return "Choose your calendars with `/croco settings`."
        case ProblemKind.REMOVALS_HELD:
            return ""


def fix_button(problem: Problem) -> Block | None:
    match problem.kind:
        case ProblemKind.NO_CONNECTION:
            return button("Connect", Action.OPEN_CONNECT, style="primary")
        case ProblemKind.CONNECTION_BROKEN:
            return button("Reconnect", Action.RECONNECT, problem.connection_id or "", style="primary")
        case ProblemKind.NO_LINKED_CALENDAR | ProblemKind.CALENDAR_FAILING:
            return button("Open settings", Action.OPEN_SETTINGS)
        case ProblemKind.REMOVALS_HELD:
            return button("Confirm removals", Action.CONFIRM_REMOVALS, problem.calendar_id or "", style="danger")


# Connections and calendars ---------------------------------------------------------------------------


def connection_lines(status: UserStatus) -> list[str]:
    lines: list[str] = []
    for connection in status.connections:
        lines.append(connection_line(connection))
        lines.extend(calendar_line(c, status.now) for c in connection.calendars)
        if not connection.calendars:
            lines.append("   no calendars found in this account")
    return lines


def connection_line(connection: ConnectionState) -> str:
    state = ":white_check_mark: connected" if connection.ok else ":x: not working, reconnect it"
    account = escape(clip(connection.account, MAX_NAME))
    return f"*{PROVIDER_NAMES[connection.provider]}* · {account} · {state}"


def calendar_line(calendar: CalendarState, now: datetime) -> str:
    role = ROLE_WORDS[calendar.role]
    if calendar.linked and calendar.conflict:
        role = "linked, conflict"
    parts = [f"*{escape(clip(calendar.name, MAX_NAME))}*", role, ACCESS_WORDS[calendar.access]]
    if calendar.role is not Role.UNUSED:
        parts.append(synced_words(calendar.last_synced_at, now))
        if calendar.last_error:
            parts.append(":warning: last sync failed")
    return "   • " + " · ".join(parts)


def synced_words(last_synced_at: datetime | None, now: datetime) -> str:
    """"last synced 5 min ago", counted from the clock's `now`."""
    if last_synced_at is None:
        return "not synced yet"
    seconds = (now - last_synced_at).total_seconds()
    if seconds < 60:
        return "last synced just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"last synced {minutes} min ago"
    hours = minutes // 60
    if hours < 48:
        return f"last synced {hours} h ago"
    return f"last synced {hours // 24} days ago"


def packed(lines: Iterable[str], limit: int = MAX_TEXT) -> list[str]:
    """Lines joined into as few texts of at most `limit` characters as they fit in (one section each)."""
    texts: list[str] = []
    current = ""
    for line in lines:
        line = clip(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            texts.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        texts.append(current)
    return texts
