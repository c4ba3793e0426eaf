"""Open hours, the slot grid and the slot check (`sync/availability.py`), without a database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from storage.enums import CalendarKind
from sync.availability import (
    Busy,
    ClassSession,
    Reason,
    Rules,
    Timeline,
    View,
    check,
    day_grid,
    free_slots,
    open_slots,
)
from sync.teams import ALL_DAY_WEEK, WEEKDAYS

PARIS = ZoneInfo("Europe/Paris")
WEEKDAY_NINE_TO_FIVE = {day: [["09:00", "17:00"]] if day not in ("sat", "sun") else [] for day in WEEKDAYS}


def rules(kind: CalendarKind = CalendarKind.ROUND_ROBIN, members: tuple[str, ...] = ("ann",), **changes: object) -> Rules:
    base = Rules(
        "cal", kind, members, PARIS, WEEKDAY_NINE_TO_FIVE, timedelta(minutes=30), timedelta(minutes=30), 1,
        timedelta(0), timedelta(0), timedelta(0), timedelta(days=60),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS).astimezone(UTC)


def local(slots: list[datetime]) -> list[str]:
    return [s.astimezone(PARIS).strftime("%H:%M") for s in slots]


MONDAY = date(2027, 3, 1)
NOW = at(MONDAY, 6)


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def blocked(user: str, start: datetime, end: datetime, slot_id: str = "b1") -> Busy:
    return Busy(seconds(start), seconds(end), seconds(start), seconds(end), user, blocked_slot_id=slot_id)


def booked(user: str, start: datetime, end: datetime, before: int = 0, after: int = 0) -> Busy:
    return Busy(seconds(start) - before * 60, seconds(end) + after * 60, seconds(start), seconds(end), user,
                appointment_id="ap1", calendar_id="other")


def view(r: Rules, *busy: Busy, sessions: dict[datetime, ClassSession] | None = None, now: datetime = NOW) -> View:
    return View(r, now, {m: Timeline([b for b in busy if b.user_id == m]) for m in r.member_ids}, sessions or {})


# The grid ------------------------------------------------------------------------------------------


def test_open_hours_are_in_the_calendars_zone_and_closed_days_offer_nothing() -> None:
    r = rules()
    monday = list(open_slots(r, at(MONDAY, 0), at(MONDAY, 23)))
    assert local(monday)[:2] == ["09:00", "09:30"] and local(monday)[-1] == "16:30" and len(monday) == 16
    saturday = MONDAY + timedelta(days=5)
    assert list(open_slots(r, at(saturday, 0), at(saturday, 23))) == []


def test_interval_shorter_than_the_duration_and_every_slot_ends_by_closing_time() -> None:
    r = rules(duration=timedelta(minutes=60), interval=timedelta(minutes=15))
    slots = list(open_slots(r, at(MONDAY, 0), at(MONDAY, 23)))
    assert local(slots)[:3] == ["09:00", "09:15", "09:30"] and local(slots)[-1] == "16:00"


def test_spring_forward_keeps_the_local_grid_of_the_day() -> None:
    """Paris skips 02:00-03:00 on 28 March 2027: a 9-17 day still starts at 09:00 local time."""
    change = date(2027, 3, 28)
    r = rules(open_hours=ALL_DAY_WEEK | {"sun": [["09:00", "17:00"]]}, duration=timedelta(hours=1),
              interval=timedelta(hours=1))
    slots = list(open_slots(r, at(change, 0), at(change, 23)))
    assert local(slots) == [f"{h:02d}:00" for h in range(9, 17)]
    assert slots[0] == datetime(2027, 3, 28, 7, tzinfo=UTC)  # 09:00 summer time (UTC+2)
    saturday = list(open_slots(r, at(change - timedelta(days=1), 9), at(change - timedelta(days=1), 10)))
    assert saturday == [datetime(2027, 3, 27, 8, tzinfo=UTC)]  # 09:00 winter time (UTC+1)


def test_a_night_range_across_the_clock_change_is_stepped_in_real_time() -> None:
    """Open all night on 31 October 2027 (clocks go back at 03:00): 25 real hours, 25 one-hour slots."""
    change = date(2027, 10, 31)
    r = rules(open_hours={d: [["00:00", "24:00"]] for d in WEEKDAYS}, duration=timedelta(hours=1),
              interval=timedelta(hours=1))
    slots = list(open_slots(r, at(change, 0), at(change + timedelta(days=1), 0)))
    assert len(slots) == 25 and local(slots).count("02:00") == 2


def test_troubleshooter_grid_adds_closed_hours_on_the_interval() -> None:
    grid = day_grid(rules(), MONDAY)
    assert local(grid)[:2] == ["00:00", "00:30"] and "09:00" in local(grid) and len(grid) == 48


# The check -----------------------------------------------------------------------------------------


def test_past_notice_and_horizon() -> None:
    r = rules(min_notice=timedelta(hours=4), max_ahead=timedelta(days=10))
    v = view(r, now=at(MONDAY, 8))
    assert [f.code for f in check(v, at(MONDAY - timedelta(days=1), 9)).findings] == [Reason.PAST]
    assert [f.code for f in check(v, at(MONDAY, 11, 30)).findings] == [Reason.MIN_NOTICE]
    assert check(v, at(MONDAY, 12)).available
    assert [f.code for f in check(v, at(MONDAY + timedelta(days=11), 9)).findings] == [Reason.TOO_FAR]


def test_busy_event_blocks_and_its_buffer_blocks_the_neighbours() -> None:
    r = rules(buffer_before=timedelta(minutes=15), buffer_after=timedelta(minutes=15))
    v = view(r, blocked("ann", at(MONDAY, 13), at(MONDAY, 14)))
    assert [f.code for f in check(v, at(MONDAY, 13), detailed=True).findings] == [Reason.CONFLICT]
    assert [f.code for f in check(v, at(MONDAY, 12, 30), detailed=True).findings] == [Reason.BUFFER]
    assert [f.code for f in check(v, at(MONDAY, 14), detailed=True).findings] == [Reason.BUFFER]
    assert check(v, at(MONDAY, 12)).available and check(v, at(MONDAY, 14, 30)).available


def test_an_appointment_on_another_calendar_keeps_its_own_buffer() -> None:
    v = view(rules(), booked("ann", at(MONDAY, 10), at(MONDAY, 11), after=30))
    assert [f.code for f in check(v, at(MONDAY, 10, 30), detailed=True).findings] == [Reason.BOOKED]
    assert [f.code for f in check(v, at(MONDAY, 11), detailed=True).findings] == [Reason.BUFFER]
    assert check(v, at(MONDAY, 11, 30)).available


def test_round_robin_needs_one_free_member_and_names_who_is_free() -> None:
    r = rules(members=("ann", "bob"))
    v = view(r, blocked("ann", at(MONDAY, 9), at(MONDAY, 10)), blocked("bob", at(MONDAY, 9, 30), at(MONDAY, 10)))
    assert check(v, at(MONDAY, 9)).member_ids == ("bob",)
    both = check(v, at(MONDAY, 9, 30), detailed=True)
    assert not both.available
    assert [(f.code, f.user_id) for f in both.findings] == [
        (Reason.CONFLICT, "ann"), (Reason.CONFLICT, "bob"), (Reason.MEMBERS_BUSY, None)]
    assert both.findings[-1].detail == "2 of 2 busy"


def test_collective_needs_every_member() -> None:
    r = rules(CalendarKind.COLLECTIVE, members=("ann", "bob", "cy"))
    v = view(r, blocked("bob", at(MONDAY, 9), at(MONDAY, 10)))
    one_busy = check(v, at(MONDAY, 9))
    assert not one_busy.available and one_busy.findings[-1].detail == "1 of 3 busy"
    assert check(v, at(MONDAY, 10)).member_ids == ("ann", "bob", "cy")


def test_class_session_fills_its_seats_then_says_no_seats() -> None:
    r = rules(CalendarKind.CLASS, capacity=3)
    nine = at(MONDAY, 9)
    own_session = booked("ann", nine, nine + timedelta(minutes=30))
    partly = view(r, own_session, sessions={nine: ClassSession("ap1", ("ann",), 2)})
    assert check(partly, nine).available and check(partly, nine).seats_left == 1
    full = view(r, own_session, sessions={nine: ClassSession("ap1", ("ann",), 3)})
    assert [f.code for f in check(full, nine).findings] == [Reason.NO_SEATS]
    assert check(full, nine + timedelta(minutes=30)).seats_left == 3  # a new session, the host being free


def test_free_slots_skip_what_cannot_be_booked() -> None:
    r = rules(min_notice=timedelta(hours=4))
    v = view(r, blocked("ann", at(MONDAY, 13), at(MONDAY, 14)), now=at(MONDAY, 8))
    offered = local([s.start for s in free_slots(v, at(MONDAY, 0), at(MONDAY, 23))])
    assert offered[0] == "12:00" and "13:00" not in offered and "13:30" not in offered and "14:00" in offered
