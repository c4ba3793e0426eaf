"""`/croco why [YYYY-MM-DD|today|tomorrow]`: the troubleshooter of each team calendar the user is a member of,
for a day of the user's own time zone (today by default), midnight to midnight there whatever the calendar's zone."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.blocks import why as blocks
from bot.blocks.common import View
from bot.context import BotContext
from bot.people import FALLBACK_TIMEZONE, Person
from sync.troubleshoot import calendars_of_member, troubleshoot_between

log = logging.getLogger(__name__)

ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
YEARS = range(1900, 2201)  # the API's supported years (web.schemas.YEARS)
MAX_CALENDARS = 20
"""Team calendars troubleshot per command; the modal counts the others."""


def parse_day(text: str, today: date) -> date | None:
    """"" or "today", "tomorrow", or YYYY-MM-DD; None for anything else (the screen says how to write it)."""
    word = text.strip().lower()
    if word in ("", "today"):
        return today
    if word == "tomorrow":
        return today + timedelta(days=1)
    if not ISO_DAY.match(word):
        return None
    try:
        day = date.fromisoformat(word)
    except ValueError:
        return None
    return day if day.year in YEARS else None


def zone_of(person: Person) -> ZoneInfo:
    try:
        return ZoneInfo(person.user.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(FALLBACK_TIMEZONE)


async def screen(ctx: BotContext, person: Person, args: str) -> View:
    now = ctx.clock()
    zone = zone_of(person)
    today = now.astimezone(zone).date()
    day = parse_day(args, today)
    if day is None:
        return blocks.bad_day_view(args, today)
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    calendars = await calendars_of_member(ctx.db, person.user_id)
    days = [
        blocks.CalendarDay(calendar.name, dict(calendar.member_names), await troubleshoot_between(
            ctx.db, calendar.id, start, end, now, viewer_id=person.user_id))
        for calendar in calendars[:MAX_CALENDARS]
    ]
    log.info("why", extra={"user_id": person.user_id, "day": day.isoformat(), "calendars": len(calendars)})
    return blocks.why_view(day, zone, now, person.user_id, days,
                           calendars_left_out=max(len(calendars) - MAX_CALENDARS, 0))
