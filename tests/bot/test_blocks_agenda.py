"""The agenda DM's blocks: the day in the user's zone, in time order, conflicts marked, within Slack's limits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.blocks.agenda import MAX_MESSAGE_BLOCKS, agenda_message
from bot.blocks.common import MAX_TEXT
from bot.ids import Action
from sync.notices import Agenda, AgendaAppointment, AgendaBlock


def tokyo(hour: int, minute: int = 0, *, day: int = 2) -> datetime:
    return datetime(2021, 3, day, hour, minute, tzinfo=UTC) - timedelta(hours=9)


def agenda(appointments: Sequence[AgendaAppointment] = (), blocks: Sequence[AgendaBlock] = (), **counts: int
           ) -> dict[str, Any]:
    return Agenda(date="2021-03-02", timezone="Asia/Tokyo", until=tokyo(0, day=3), appointments=tuple(appointments),
                  blocks=tuple(blocks), **counts).to_payload()


def strings(blocks: list[dict[str, Any]]) -> list[str]:
    """Every text the user reads, in order."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(strings(blocks))


def assert_within_limits(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    assert all(len(text) <= MAX_TEXT for text in strings(blocks))
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150


def test_the_day_in_the_users_zone_in_time_order_with_the_conflict_marked() -> None:
    text, blocks = agenda_message(agenda(
        [AgendaAppointment("a1", "Dentist", tokyo(10), tokyo(11), "system", ("Gym",), 1),
         AgendaAppointment("a2", "Review", tokyo(14), tokyo(15), "imported")],
        [AgendaBlock("Standup", "Work", tokyo(9), tokyo(9, 30), False),
         AgendaBlock("Gym", "Personal", tokyo(10, 30), tokyo(11, 30), False)],
        conflicts=1,
    ))
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Today, Tuesday 2 March",
                                                     "emoji": True}}
    shown = texts(blocks)
    assert "2 appointments, 2 busy blocks, :warning: 1 conflict" in shown and "Asia/Tokyo" in shown
    order = [shown.index(s) for s in ("*09:00–09:30*  :no_entry: Standup", "*10:00–11:00*  :calendar: Dentist",
                                      "*10:30–11:30*  :no_entry: Gym", "*14:00–15:00*  :calendar: Review")]
    assert order == sorted(order)
    assert "Dentist\n:warning: conflicts with *Gym*" in shown
    assert "Review  _(from your calendar)_" in shown and "Review  _(from your calendar)_\n:warning:" not in shown
    assert text == "Today, Tuesday 2 March: 2 appointments, 2 busy blocks, :warning: 1 conflict"
    (button,) = blocks[-1]["elements"]
    assert (button["action_id"], button["text"]["text"]) == (Action.OPEN_SETTINGS, "Open settings")
    assert_within_limits(blocks)


def test_a_free_day_says_so() -> None:
    text, blocks = agenda_message(agenda())
    assert "your day is free" in texts(blocks) and text == "Today, Tuesday 2 March: your day is free"
    assert blocks[-1]["elements"][0]["action_id"] == Action.OPEN_SETTINGS


def test_calendar_text_is_escaped_and_untitled_events_are_named() -> None:
    _, blocks = agenda_message(agenda(
        [AgendaAppointment("a1", "<!channel> & co", tokyo(10), tokyo(11), "system", (None, "<@U1>"), 4)],
        [AgendaBlock(None, "<https://evil|Work>", tokyo(10), tokyo(11), False)],
        conflicts=1,
    ))
    shown = texts(blocks)
    assert "<!channel>" not in shown and "&lt;!channel&gt; &amp; co" in shown
    assert ":warning: conflicts with a busy event, *&lt;@U1&gt;* and 2 more" in shown
    assert ":no_entry: Busy  _(&lt;https://evil|Work&gt;)_" in shown


def test_times_outside_the_day_and_all_day_blocks() -> None:
    _, blocks = agenda_message(agenda(
        [AgendaAppointment("a1", "Night shift", tokyo(23, day=1), tokyo(2), "system"),
         AgendaAppointment("a2", "Late", tokyo(23), tokyo(0, day=3), "system")],
        [AgendaBlock("Holiday", "Personal", tokyo(0), tokyo(0, day=3), True)],
    ))
    shown = texts(blocks)
    assert "*Mon 23:00–02:00*  :calendar: Night shift" in shown
    assert "*23:00–24:00*  :calendar: Late" in shown and "*All day*  :no_entry: Holiday" in shown


def test_a_full_day_of_long_titles_stays_within_slacks_limits_and_counts_what_is_cut() -> None:
    long = "x" * 500
    appointments = [AgendaAppointment(f"a{i}", long, tokyo(8) + timedelta(minutes=i), tokyo(9), "system",
                                      (long, long, long), 9) for i in range(25)]
    blocks_ = [AgendaBlock(long, long, tokyo(8) + timedelta(minutes=i), tokyo(9), False) for i in range(25)]
    text, blocks = agenda_message(agenda(appointments, blocks_, more_appointments=15, more_blocks=5, conflicts=25))
    assert_within_limits(blocks)
    assert "40 appointments, 30 busy blocks, :warning: 25 conflicts" in text
    shown = texts(blocks)
    assert shown.count(":calendar:") + shown.count(":no_entry:") == 50  # every stored item fits
    assert "and 20 more not shown" in shown
    assert len(json.dumps(blocks)) < 40_000


def test_more_items_than_fifty_blocks_hold_are_counted_not_dropped_silently() -> None:
    long = "y" * 500  # a payload beyond sync's bound: about three lines per section
    appointments = [AgendaAppointment(f"a{i}", long, tokyo(8) + timedelta(minutes=i), tokyo(9), "system",
                                      (long, long, long), 3) for i in range(200)]
    _, blocks = agenda_message(agenda(appointments))
    assert_within_limits(blocks)
    shown = texts(blocks)
    listed = shown.count(":calendar:")
    assert 0 < listed < 200 and f"and {200 - listed} more not shown" in shown
