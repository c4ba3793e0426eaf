"""The daily agenda DM: a pure function of the stored `agenda` notice (sync/agenda.py), times in the user's zone.

One line per appointment or busy block in time order, packed into as few sections as Slack's 3000-character texts
allow, so the message stays within a message's 50 blocks whatever the day holds.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.blocks.common import MAX_TEXT, Block, actions, button, clip, context, escape, header, section
from bot.ids import Action

MAX_MESSAGE_BLOCKS = 50  # chat.postMessage (modals and Home take 100)
MAX_TITLE = 200  # a title in one line of the agenda
MAX_CALENDAR_NAME = 100
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def agenda_message(payload: dict[str, Any]) -> tuple[str, list[Block]]:
    """The notification text and the blocks of one agenda: header, summary, the day's items, Open settings."""
    day = date.fromisoformat(payload["date"])
    zone = _zone(payload.get("timezone", "UTC"))
    appointments, blocks = payload.get("appointments", []), payload.get("blocks", [])
    more = int(payload.get("more_appointments", 0)) + int(payload.get("more_blocks", 0))
    conflicts = int(payload.get("conflicts", 0))
    title = f"Today, {_day_name(day)}"
    summary = _summary(len(appointments) + int(payload.get("more_appointments", 0)),
                       len(blocks) + int(payload.get("more_blocks", 0)), conflicts)

    lines = [line for _, line in sorted(
        [((_at(a["start"]), 0, i), _appointment_line(a, day, zone)) for i, a in enumerate(appointments)]
        + [((_at(b["start"]), 1, i), _block_line(b, day, zone)) for i, b in enumerate(blocks)]
    )]
    head = [header(title), context(f"{summary} · times in {escape(zone.key)}")]
    tail = [actions(button("Open settings", Action.OPEN_SETTINGS))]
    if not lines:
        body = [section("Nothing booked or blocked today: your day is free.")]
    else:
        sections, counts = _packed(lines)
        room = MAX_MESSAGE_BLOCKS - len(head) - len(tail) - 1  # one left for the "more" line
        shown = sum(counts[:room])
        body = [section(text) for text in sections[:room]]
        more += len(lines) - shown
        if more:
            body.append(context(f"and {more} more not shown"))
    text = f"{title}: {summary}" if lines else f"{title}: your day is free"
    return text, [*head, *body, *tail]


def _summary(appointments: int, blocks: int, conflicts: int) -> str:
    parts = [_count(appointments, "appointment"), _count(blocks, "busy block")]
    if conflicts:
        parts.append(f":warning: {_count(conflicts, 'conflict')}")
    return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _appointment_line(item: dict[str, Any], day: date, zone: ZoneInfo) -> str:
    name = escape(clip(item.get("title") or "(no title)", MAX_TITLE))
    line = f"*{_span(item, day, zone)}*  :calendar: {name}"
    if item.get("origin") == "imported":
        line += "  _(from your calendar)_"
    count = int(item.get("conflict_count", 0))
    if count:
        names = [f"*{escape(clip(t, MAX_TITLE))}*" if t else "a busy event" for t in item.get("conflicts_with", [])]
        if count > len(names):
            names.append(f"{count - len(names)} more")
        line += f"\n:warning: conflicts with {_joined(names)}"
    return line


def _block_line(item: dict[str, Any], day: date, zone: ZoneInfo) -> str:
    name = escape(clip(item.get("title") or "Busy", MAX_TITLE))
    calendar = item.get("calendar_name")
    where = f"  _({escape(clip(calendar, MAX_CALENDAR_NAME))})_" if calendar else ""
    span = "All day" if item.get("all_day") else _span(item, day, zone)
    return f"*{span}*  :no_entry: {name}{where}"


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _span(item: dict[str, Any], day: date, zone: ZoneInfo) -> str:
    return f"{_clock(_at(item['start']), day, zone)}–{_clock(_at(item['end']), day, zone)}"


def _clock(moment: datetime, day: date, zone: ZoneInfo) -> str:
    """HH:MM on the agenda's day; 24:00 for its midnight end; the weekday added for another day."""
    local = moment.astimezone(zone)
    if local.date() == day:
        return f"{local:%H:%M}"
    if local.date() == day + timedelta(days=1) and (local.hour, local.minute) == (0, 0):
        return "24:00"
    return f"{WEEKDAYS[local.weekday()][:3]} {local:%H:%M}"


def _packed(lines: list[str]) -> tuple[list[str], list[int]]:
    """Lines joined into texts of at most MAX_TEXT characters, and how many lines each holds."""
    texts: list[str] = []
    counts: list[int] = []
    for line in lines:
        line = clip(line, MAX_TEXT)
        if texts and len(texts[-1]) + 1 + len(line) <= MAX_TEXT:
            texts[-1] += "\n" + line
            counts[-1] += 1
        else:
            texts.append(line)
            counts.append(1)
    return texts, counts


def _day_name(day: date) -> str:
    return f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]}"


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
