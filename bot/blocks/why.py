"""`/croco why`: the troubleshooter's answer for a day, one line per stretch of blocked slots with its reasons.

Pure: the troubleshooter's items (sync.troubleshoot, the same as GET /calendars/{id}/troubleshoot) in, a modal out.
Consecutive slots blocked for the same reasons make one line, so a busy afternoon is one line, not sixteen."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.blocks.common import MAX_BLOCKS, MAX_TEXT, Block, View, clip, context, escape, modal, section

MAX_LINE = 1000
"""One stretch's line at most (many busy members make a long one); a section holds several lines."""

Item = Mapping[str, Any]


@dataclass(frozen=True)
class CalendarDay:
    """One team calendar's troubleshooter items for the day, and the names of its members."""

    name: str
    member_names: Mapping[str, str]
    items: Sequence[Item]


@dataclass(frozen=True)
class Stretch:
    """Consecutive blocked slots with the same reasons."""

    start: datetime
    end: datetime
    reasons: tuple[Item, ...]


def stretches(items: Sequence[Item]) -> list[Stretch]:
    """The blocked (unavailable) items, consecutive ones with equal reasons joined; an open slot between two
    blocked ones, or a gap in the grid, starts a new stretch."""
    found: list[Stretch] = []
    key: tuple[str, ...] | None = None
    for item in items:
        if item["available"]:
            key = None
            continue
        start, end = _instant(item["start"]), _instant(item["end"])
        reasons = tuple(item["reasons"])
        same = tuple(json.dumps(r, sort_keys=True) for r in reasons)
        if found and key == same and start <= found[-1].end:
            found[-1] = Stretch(found[-1].start, max(end, found[-1].end), reasons)
        else:
            found.append(Stretch(start, end, reasons))
        key = same
    return found


def ago(then: datetime, now: datetime) -> str:
    """"12 min ago", in the coarsest unit that still says something."""
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def why_view(day: date, zone: ZoneInfo, now: datetime, viewer_id: str, calendars: Sequence[CalendarDay], *,
             calendars_left_out: int = 0) -> View:
    """The modal: each calendar of the user with its blocked stretches, within Slack's 100 blocks (the lines
    that do not fit are counted at the end)."""
    title = f"Why, {day:%a} {day.day} {day:%b}"
    blocks: list[Block] = [
        section(f"*Blocked times on {day:%A} {day.day} {day:%B} {day.year}*"),
        context(f"Times in {escape(str(zone))}. Each line is a stretch of slots that cannot be booked, and why."),
    ]
    if not calendars:
        blocks.append(section("You are not a member of any team calendar, so none of your slots can be blocked."))
        return modal(title, blocks)
    found = [(c, [_line(s, day, zone, now, viewer_id, c.member_names) for s in stretches(c.items)])
             for c in calendars]
    if not any(lines for _, lines in found):
        blocks.append(section("Nothing is blocked that day: every slot of your team calendars is open."))
    budget = MAX_BLOCKS - len(blocks) - 1  # one left for the summary
    left_out = 0
    for calendar, lines in found:
        chunks = _chunks(lines) or [["Nothing blocked: every slot is open."]]
        if budget < 2:
            left_out += len(lines)
            calendars_left_out += 1
            continue
        blocks.append(section(f"*{escape(calendar.name)}*"))
        budget -= 1
        for chunk in chunks:
            if budget < 1:
                left_out += len(chunk) if lines else 0
                continue
            blocks.append(section("\n".join(chunk)))
            budget -= 1
    notes = []
    if left_out:
        notes.append(f"{left_out} more blocked {'time' if left_out == 1 else 'times'} not shown.")
    if calendars_left_out:
        notes.append(f"{calendars_left_out} more team {'calendar' if calendars_left_out == 1 else 'calendars'} "
                     "not shown.")
    if notes:
        blocks.append(context(" ".join(notes)))
    return modal(title, blocks)


def bad_day_view(text: str, today: date) -> View:
    """What `/croco why banana` answers: how to write a day."""
    return modal("Croco why", [
        section(f":calendar: I can't read `{escape(clip(text, 100))}` as a day."),
        section("Write `/croco why` for today, `/croco why tomorrow`, or a date as YYYY-MM-DD, "
                f"for example `/croco why {today + timedelta(days=1):%Y-%m-%d}`."),
    ])


def _chunks(lines: list[str]) -> list[list[str]]:
    """Lines packed into sections of at most MAX_TEXT characters."""
    chunks: list[list[str]] = []
    size = 0
    for line in lines:
        if chunks and size + 1 + len(line) <= MAX_TEXT:
            chunks[-1].append(line)
            size += 1 + len(line)
        else:
            chunks.append([line])
            size = len(line)
    return chunks


def _line(stretch: Stretch, day: date, zone: ZoneInfo, now: datetime, viewer_id: str,
          names: Mapping[str, str]) -> str:
    times = f"{_clock(stretch.start, day, zone)}–{_clock(stretch.end, day, zone, end=True)}"
    stale = [r["event"] for r in stretch.reasons if r["code"] == "STALE" and r.get("event")]
    words = [_words(r, now, viewer_id, names, stale) for r in stretch.reasons
             if r["code"] != "STALE" or not r.get("event")]
    text = "; ".join(w for w in words if w) or "not bookable"
    return clip(f"*{times}*  {text[0].upper()}{text[1:]}", MAX_LINE)


def _words(reason: Item, now: datetime, viewer_id: str, names: Mapping[str, str],
           stale: list[Any]) -> str:
    code, detail = reason["code"], reason.get("detail")
    aside = f" ({escape(detail)})" if detail else ""
    user_id = reason.get("user_id")
    you = user_id == viewer_id
    who = "you are" if you else f"{_name(user_id, names)} is"
    event = reason.get("event")
    if code == "STALE":  # without an event to attach it to
        return f":warning: *STALE*: {_name(user_id, names) if not you else 'your'} connection is broken"
    if code in ("CONFLICT", "BOOKED", "BUFFER") and event:
        phrase = _event(event, now) + (
            " — :warning: *STALE*: its connection is broken, so this may be out of date" if event in stale else "")
        if code == "CONFLICT":
            return f"{who} busy with {phrase}"
        if code == "BOOKED":
            return f"{who} booked for {phrase}"
        return f"{who} busy too close to it: the buffer around {phrase}"
    plain = {
        "OUTSIDE_HOURS": "outside the calendar's open hours", "PAST": "already past",
        "MIN_NOTICE": f"too soon to book{aside}", "TOO_FAR": f"too far ahead{aside}",
        "NO_SEATS": f"no seats left{aside}", "MEMBERS_BUSY": f"not enough members free{aside}",
        "CONFLICT": f"{who} busy", "BOOKED": f"{who} booked", "BUFFER": f"{who} busy too close to it",
    }
    return plain.get(code, f"{escape(str(code))}{aside}")


def _event(event: Item, now: datetime) -> str:
    """The event named for the reader: its title only when the troubleshooter gave it (to its owner)."""
    title, calendar = event.get("title"), event.get("calendar_name")
    if event.get("appointment_id"):
        text = f"the appointment *{escape(title)}*" if title else "an appointment"
        return text + (f" of _{escape(calendar)}_" if calendar else "")
    text = f"*{escape(title)}*" if title else "an event"
    if calendar:
        text += f" in _{escape(calendar)}_"
    if event.get("fetched_at"):
        text += f", fetched {ago(_instant(event['fetched_at']), now)}"
    return text


def _name(user_id: str | None, names: Mapping[str, str]) -> str:
    return escape(names[user_id]) if user_id is not None and user_id in names else "a member"


def _clock(instant: datetime, day: date, zone: ZoneInfo, *, end: bool = False) -> str:
    """"13:00" on the day asked for, "24:00" for its midnight end, the weekday before the time otherwise
    (a calendar in another zone has its day elsewhere in the reader's)."""
    local = instant.astimezone(zone)
    if local.date() == day:
        return f"{local:%H:%M}"
    if end and local.date() == day + timedelta(days=1) and (local.hour, local.minute) == (0, 0):
        return "24:00"
    return f"{local:%a %H:%M}"


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)
