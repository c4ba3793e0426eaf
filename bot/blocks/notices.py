"""The DM of each notice kind: pure builders, payload in, (fallback text, blocks) out.

`BUILDERS` maps a kind to its builder; a new kind adds one line there. A kind without a builder still gets a
plain DM (`generic`), so a notice is never stuck for want of a layout. Text from calendars (titles, account
names, reasons) goes through `escape`; times are shown in the user's time zone, named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.blocks.agenda import agenda_message
from bot.blocks.common import Block, actions, button, clip, context, escape, section, within_blocks
from bot.ids import Action
from sync.notices import NoticeKind

Built = tuple[str, list[Block]]
Builder = Callable[[dict[str, Any], ZoneInfo], Built]
ACTIONS_BLOCK = "notice_actions"
"""The block holding a notice's buttons: a click's outcome replaces it (bot/buttons.py)."""
MAX_FALLBACK = 3000
MAX_LISTED = 40


def zone(name: str | None) -> ZoneInfo:
    """The user's zone; an unknown or missing one is UTC (and shown as such)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def when(value: str | None, tz: ZoneInfo) -> str:
    """`Mon 2 Mar 2026, 14:00 Europe/Paris` from a stored ISO time (UTC says "UTC")."""
    if not value:
        return "an unknown time"
    moment = datetime.fromisoformat(value).astimezone(tz)
    return f"{moment:%a} {moment.day} {moment:%b %Y, %H:%M} {tz.key}"


def title(value: str | None, fallback: str = "an untitled event") -> str:
    return f"*{escape(clip(value, 200))}*" if value else fallback


def settings_button() -> Block:
    return button("Open settings", Action.OPEN_SETTINGS)


def with_buttons(text: str, *buttons: Block, note: str | None = None) -> Built:
    blocks = [section(text)]
    if note:
        blocks.append(context(note))
    if buttons:
        blocks.append(actions(*buttons, block_id=ACTIONS_BLOCK))
    return _plain(text), within_blocks(blocks)


def _plain(text: str) -> str:
    """The notification's fallback text: the first line, mrkdwn stars dropped."""
    return clip(text.split("\n", 1)[0].replace("*", ""), MAX_FALLBACK)


def _lost(payload: dict[str, Any], tz: ZoneInfo) -> str | None:
    lost = payload.get("lost")
    if not lost:
        return None
    return f"The overridden version: {title(lost.get('title'))}, {when(lost.get('start'), tz)} to " \
           f"{when(lost.get('end'), tz)}."


def contact_created(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    return with_buttons(f":bust_in_silhouette: New contact {title(payload.get('name'), 'without a name')} "
                        f"({escape(payload.get('email', ''))}): a guest of an event of your linked calendar "
                        "(two-way sync).")


def conflict(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    text = (f":warning: {title(payload.get('event_title'))} in your calendar overlaps your appointment "
            f"{title(payload.get('appointment_title'), 'an untitled appointment')}.\n"
            f"The event runs {when(payload.get('start'), tz)} to {when(payload.get('end'), tz)}.")
    return with_buttons(text, settings_button())


def remote_edit_reverted(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    text = ":leftwards_arrow_with_hook: An appointment was edited in your calendar; Croco keeps its own " \
           "version there (one-way sync), so the edit was reverted."
    return with_buttons(text, settings_button(), note=_lost(payload, tz))


def remote_edit_applied(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    text = (f":pencil2: An appointment was moved in your calendar, and Croco took the change: it now runs "
            f"{when(payload.get('start'), tz)} to {when(payload.get('end'), tz)}.")
    return with_buttons(text, settings_button())


def both_changed(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    if payload.get("winner") == "calendar":
        text = (f":twisted_rightwards_arrows: An appointment changed in Croco and in your calendar; the later "
                f"change, your calendar's, won: it runs {when(payload.get('start'), tz)} to "
                f"{when(payload.get('end'), tz)}.")
    else:
        text = ":twisted_rightwards_arrows: An appointment changed in Croco and in your calendar; the later " \
               "change, Croco's, won and was written to your calendar."
    return with_buttons(text, settings_button(), note=_lost(payload, tz))


def pushed_event_deleted(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    appointment_id = str(payload["appointment_id"])
    if payload.get("cancelled"):
        text = ":wastebasket: An appointment was deleted from your calendar, which syncs both ways, so it was " \
               "cancelled in Croco."
        return with_buttons(text, settings_button())
    text = ":wastebasket: An appointment was deleted from your calendar, but it is still booked in Croco. " \
           "Put it back, or cancel it?"
    return with_buttons(
        text,
        button("Restore to calendar", Action.RESTORE_TO_CALENDAR, appointment_id, style="primary"),
        button("Cancel appointment", Action.CANCEL_APPOINTMENT, appointment_id, style="danger"),
        settings_button(),
    )


def connection_broken(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    text = (f":electric_plug: Croco can no longer reach your {escape(str(payload.get('provider', '')))} account "
            f"{title(payload.get('account'), '')}: {escape(clip(str(payload.get('reason', '')), 500))}\n"
            "Nothing syncs with it until you reconnect.")
    return with_buttons(text, button("Reconnect", Action.RECONNECT, str(payload["connection_id"]), style="primary"),
                        settings_button())


def mass_deletion_held(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    text = (f":raised_hand: {payload.get('removing')} of the {payload.get('known')} events Croco knows in "
            f"{title(payload.get('calendar_name'), 'a calendar')} disappeared at once. Croco is holding the "
            "removals in case this is a mistake. Confirm them if you meant it.")
    return with_buttons(text, button("Confirm removals", Action.CONFIRM_REMOVALS, str(payload["calendar_id"]),
                                     style="danger"), settings_button())


def item_skipped(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    text = (f":fast_forward: An event in one of your calendars could not be read and was skipped: "
            f"{escape(clip(str(payload.get('reason', '')), 500))}")
    return with_buttons(text, settings_button())


def automation(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    trigger = str(payload.get("trigger", "")).replace("appointment.", "").replace("_", " ")
    text = f":bell: Appointment {trigger}: {title(payload.get('title'), 'an untitled appointment')}, " \
           f"{when(payload.get('start'), tz)}."
    return with_buttons(text)


def connected(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    names = [str(n) for n in payload.get("calendars", [])]
    listed = "\n".join(f"• {escape(clip(n, 200))}" for n in names[:MAX_LISTED])
    if len(names) > MAX_LISTED:
        listed += f"\n…and {len(names) - MAX_LISTED} more"
    verb = "reconnected" if payload.get("renewed") else "connected"
    text = (f":white_check_mark: Your {escape(str(payload.get('provider', '')))} account "
            f"{title(payload.get('account'), '')} is {verb}, with {len(names)} "
            f"calendar{'' if len(names) == 1 else 's'}:\n{listed or '(none)'}")
    return with_buttons(text, button("Choose settings", Action.OPEN_SETTINGS, style="primary"),
                        note="Choose which calendar Croco syncs with, and how.")


def generic(payload: dict[str, Any], tz: ZoneInfo) -> Built:
    return with_buttons(":information_source: Croco has news for you: see `/croco status`.")


BUILDERS: dict[str, Builder] = {
    NoticeKind.CONTACT_CREATED: contact_created,
    NoticeKind.CONFLICT: conflict,
    NoticeKind.REMOTE_EDIT_REVERTED: remote_edit_reverted,
    NoticeKind.REMOTE_EDIT_APPLIED: remote_edit_applied,
    NoticeKind.BOTH_CHANGED: both_changed,
    NoticeKind.PUSHED_EVENT_DELETED: pushed_event_deleted,
    NoticeKind.CONNECTION_BROKEN: connection_broken,
    NoticeKind.MASS_DELETION_HELD: mass_deletion_held,
    NoticeKind.ITEM_SKIPPED: item_skipped,
    NoticeKind.AUTOMATION: automation,
    NoticeKind.CONNECTED: connected,
    NoticeKind.AGENDA: lambda payload, tz: agenda_message(payload),  # its payload names its own time zone
}
"""Kind -> builder. A new kind: one line here."""

ALERTS = frozenset({
    NoticeKind.CONFLICT, NoticeKind.REMOTE_EDIT_REVERTED, NoticeKind.REMOTE_EDIT_APPLIED, NoticeKind.BOTH_CHANGED,
    NoticeKind.PUSHED_EVENT_DELETED, NoticeKind.CONNECTION_BROKEN, NoticeKind.MASS_DELETION_HELD,
    NoticeKind.ITEM_SKIPPED,
})
"""The kinds that tell of something gone wrong in sync: each offers Open settings."""


def build(kind: str, payload: dict[str, Any], timezone: str | None = None) -> Built:
    """The DM of a notice: its kind's builder, or `generic` for a kind without one."""
    return BUILDERS.get(kind, generic)(payload, zone(timezone))
