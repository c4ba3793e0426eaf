"""The `/croco why` modal, built from troubleshooter items: grouped, worded, and within Slack's limits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.blocks.common import MAX_BLOCKS, MAX_TEXT, MAX_TITLE
from bot.blocks.why import MAX_LINE, CalendarDay, ago, bad_day_view, stretches, why_view

UTC_ZONE = ZoneInfo("UTC")
DAY = date(2021, 3, 2)
NOW = datetime(2021, 3, 1, 8, tzinfo=UTC)
ME, COLLEAGUE = "u-me", "u-colleague"
NAMES = {ME: "Me", COLLEAGUE: "Colleague"}


def at(minutes: int) -> datetime:
    return datetime(2021, 3, 2, tzinfo=UTC) + timedelta(minutes=minutes)


def item(minutes: int, *reasons: dict[str, Any], length: int = 30) -> dict[str, Any]:
    start = at(minutes)
    return {"start": start.isoformat(), "end": (start + timedelta(minutes=length)).isoformat(),
            "available": not reasons, "member_ids": [ME], "reasons": list(reasons)}


def conflict(user_id: str, title: str | None, *, start: int = 0, calendar: str = "Work") -> dict[str, Any]:
    return {"code": "CONFLICT", "user_id": user_id, "detail": f"busy in {calendar}", "event": {
        "calendar_id": "c1", "calendar_name": calendar, "title": title, "start": at(start).isoformat(),
        "end": at(start + 60).isoformat(), "fetched_at": (NOW - timedelta(minutes=5)).isoformat()}}


OUTSIDE = {"code": "OUTSIDE_HOURS"}


def texts(view: dict[str, Any]) -> list[str]:
    found = []
    for block in view["blocks"]:
        found.extend([block["text"]["text"]] if "text" in block else [e["text"] for e in block["elements"]])
    return found


def lines(view: dict[str, Any]) -> list[str]:
    return "\n".join(texts(view)).split("\n")


def within_limits(view: dict[str, Any]) -> None:
    assert len(view["blocks"]) <= MAX_BLOCKS
    assert len(view["title"]["text"]) <= MAX_TITLE
    assert all(len(text) <= MAX_TEXT for text in texts(view))


def test_consecutive_slots_with_the_same_reasons_are_one_stretch() -> None:
    items = [item(0, OUTSIDE), item(30, OUTSIDE), item(60), item(90, conflict(ME, "Gym", start=90)),
             item(120, conflict(ME, "Gym", start=90)), item(150, conflict(COLLEAGUE, None, start=150)),
             item(180, OUTSIDE)]
    found = [(s.start, s.end, [r["code"] for r in s.reasons]) for s in stretches(items)]
    assert found == [(at(0), at(60), ["OUTSIDE_HOURS"]), (at(90), at(150), ["CONFLICT"]),
                     (at(150), at(180), ["CONFLICT"]), (at(180), at(210), ["OUTSIDE_HOURS"])]


def test_a_gap_in_the_grid_splits_a_stretch() -> None:
    """Hourly slots of 30 minutes: 00:00-00:30 and 01:00-01:30 are not one blocked hour and a half."""
    assert len(stretches([item(0, OUTSIDE), item(60, OUTSIDE)])) == 2
    assert len(stretches([item(0, OUTSIDE, length=60), item(30, OUTSIDE, length=60)])) == 1  # overlapping slots


def test_lines_name_the_event_to_its_owner_only_and_say_when_it_was_fetched() -> None:
    stale = {"code": "STALE", "user_id": COLLEAGUE, "detail": "the connection ... is broken (invalid_grant)"}
    colleague = conflict(COLLEAGUE, None, start=120, calendar="Home")
    view = why_view(DAY, UTC_ZONE, NOW, ME, [CalendarDay("Desk", NAMES, [
        item(0, conflict(ME, "Gym")), item(30, conflict(ME, "Gym")),
        item(120, colleague, stale | {"event": colleague["event"]}), item(150, {"code": "PAST"}, OUTSIDE),
        item(1410, OUTSIDE)])])
    within_limits(view)
    assert "*00:00–01:00*  You are busy with *Gym* in _Work_, fetched 5 min ago" in lines(view)
    (colleagues,) = [line for line in lines(view) if line.startswith("*02:00–02:30*")]
    assert colleagues.startswith("*02:00–02:30*  Colleague is busy with an event in _Home_, fetched 5 min ago")
    assert "*STALE*" in colleagues and "invalid_grant" not in colleagues  # the error stays in the API
    assert "*02:30–03:00*  Already past; outside the calendar's open hours" in lines(view)
    assert "*23:30–24:00*  Outside the calendar's open hours" in lines(view)


def test_appointments_buffers_and_unknown_members_are_worded() -> None:
    appointment = {"code": "BOOKED", "user_id": ME, "event": {
        "appointment_id": "a1", "calendar_id": "t1", "calendar_name": "Desk", "title": "Consultation",
        "start": at(0).isoformat(), "end": at(30).isoformat(), "fetched_at": None}}
    buffer = conflict("u-gone", None, start=60) | {"code": "BUFFER"}
    view = why_view(DAY, UTC_ZONE, NOW, ME, [CalendarDay("Desk", NAMES, [
        item(0, appointment), item(30, buffer), item(60, {"code": "MIN_NOTICE", "detail": "bookable from x"})])])
    assert "*00:00–00:30*  You are booked for the appointment *Consultation* of _Desk_" in lines(view)
    (buffered,) = [line for line in lines(view) if line.startswith("*00:30–01:00*")]
    assert buffered.startswith("*00:30–01:00*  A member is busy too close to it: the buffer around an event in")
    assert "*01:00–01:30*  Too soon to book (bookable from x)" in lines(view)


def test_times_are_in_the_readers_zone_with_the_weekday_when_it_is_another_day() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")  # 2021-03-02 00:00 UTC is 09:00 there
    view = why_view(date(2021, 3, 2), tokyo, NOW, ME, [CalendarDay("Desk", NAMES, [item(-30, OUTSIDE),
                                                                                   item(870, OUTSIDE)])])
    assert "*08:30–09:00*  Outside the calendar's open hours" in lines(view)
    assert "*23:30–Wed 00:00*  Outside the calendar's open hours" not in lines(view)  # 24:00 is the day's end
    assert "*23:30–24:00*  Outside the calendar's open hours" in lines(view)


def test_a_busy_day_of_many_calendars_stays_within_slack_limits_and_counts_the_rest() -> None:
    """Every slot blocked for a reason of its own (no two alike), in 30 calendars: far over 100 blocks."""
    days = [CalendarDay(f"Desk {n} <!here>", NAMES,
                        [item(m * 5, conflict(ME, f"Event {m} " + "x" * 200, start=m * 5), length=5)
                         for m in range(288)]) for n in range(30)]
    view = why_view(DAY, UTC_ZONE, NOW, ME, days, calendars_left_out=4)
    within_limits(view)
    shown = [line for line in lines(view) if line.startswith("*") and "–" in line]
    (summary,) = [t for t in texts(view) if "not shown" in t]
    left_out = int(summary.split()[0])
    assert len(shown) + left_out == 30 * 288  # every stretch is shown or counted
    assert "team calendars not shown" in summary
    assert "Desk 0 &lt;!here&gt;" in " ".join(texts(view)) and "<!here>" not in str(view)


def test_a_line_is_clipped_when_many_members_are_busy() -> None:
    many = {f"u{n}": f"Member {n}" for n in range(500)}
    reasons = [conflict(f"u{n}", None, calendar="C" * 100) for n in range(500)]
    view = why_view(DAY, UTC_ZONE, NOW, ME, [CalendarDay("Desk", many, [item(0, *reasons)])])
    within_limits(view)
    assert max(len(line) for line in lines(view)) <= MAX_LINE


def test_no_calendars_and_nothing_blocked_say_so() -> None:
    assert any("not a member of any team calendar" in t for t in texts(why_view(DAY, UTC_ZONE, NOW, ME, [])))
    open_day = why_view(DAY, UTC_ZONE, NOW, ME, [CalendarDay("Desk", NAMES, [item(0), item(30)])])
    assert any("Nothing is blocked that day" in t for t in texts(open_day))


def test_every_title_of_a_year_fits_a_modal_title() -> None:
    for offset in range(366):
        within_limits(why_view(date(2024, 1, 1) + timedelta(days=offset), UTC_ZONE, NOW, ME, []))


def test_a_day_it_cannot_read_shows_the_format_escaped_and_clipped() -> None:
    view = bad_day_view("<!channel> " + "z" * 5000, DAY)
    within_limits(view)
    assert "<!channel>" not in str(view) and "&lt;!channel&gt;" in str(view)
    assert "YYYY-MM-DD" in str(view) and "`/croco why 2021-03-03`" in str(view)


def test_fetched_ago_uses_the_coarsest_unit_that_says_something() -> None:
    assert [ago(NOW - d, NOW) for d in (timedelta(seconds=30), timedelta(minutes=12), timedelta(hours=3),
                                        timedelta(days=5), -timedelta(minutes=1))] == \
        ["just now", "12 min ago", "3 h ago", "5 days ago", "just now"]
