"""Every notice kind's DM: built from its stored payload, within Slack's limits, with the buttons its kind offers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.blocks import common
from bot.blocks.notices import ACTIONS_BLOCK, ALERTS, BUILDERS, build
from bot.ids import Action
from sync.notices import (
    AccountConnected,
    Agenda,
    AgendaAppointment,
    AgendaBlock,
    AutomationFired,
    BothChanged,
    ConnectionBroken,
    ContactCreated,
    ItemSkipped,
    MassDeletionHeld,
    NoticeKind,
    NoticePayload,
    PushedEventDeleted,
    RemoteEditApplied,
    RemoteEditReverted,
    Side,
    Winner,
)
from sync.notices import Conflict as ConflictNotice

START, END = datetime(2021, 3, 2, 12, tzinfo=UTC), datetime(2021, 3, 2, 13, tzinfo=UTC)
EVIL = "<!channel> & <https://evil.example|click>"
ID = "a" * 32
SAMPLES: dict[NoticeKind, NoticePayload] = {
    NoticeKind.CONTACT_CREATED: ContactCreated(ID, EVIL, "ada@example.com", ID),
    NoticeKind.CONFLICT: ConflictNotice(ID, "Consultation with Ada", "Appointment with Dr. Michel", ID, START, END),
    NoticeKind.REMOTE_EDIT_REVERTED: RemoteEditReverted(ID, ID, Side(START, END, EVIL)),
    NoticeKind.REMOTE_EDIT_APPLIED: RemoteEditApplied(ID, ID, START, END),
    NoticeKind.BOTH_CHANGED: BothChanged(ID, ID, Winner.CALENDAR, Side(START, END, "mine"), START, END),
    NoticeKind.PUSHED_EVENT_DELETED: PushedEventDeleted(ID, ID, cancelled=False),
    NoticeKind.CONNECTION_BROKEN: ConnectionBroken(ID, "caldav", "john", EVIL),
    NoticeKind.MASS_DELETION_HELD: MassDeletionHeld(ID, EVIL, 40, 50),
    NoticeKind.ITEM_SKIPPED: ItemSkipped(ID, "x" * 2000, EVIL),
    NoticeKind.AUTOMATION: AutomationFired("appointment.booked", ID, EVIL, START, None),
    NoticeKind.CONNECTED: AccountConnected(ID, "icloud", "john@icloud.com", tuple(f"Cal {n}" for n in range(300))),
    NoticeKind.AGENDA: Agenda("2021-03-02", "Europe/Paris", END, (AgendaAppointment(ID, EVIL, START, END, "system",
                                                                                      (EVIL,), 1),),
                              (AgendaBlock(EVIL, "Work", START, END, False),), conflicts=1),
}


def stored(notice: NoticePayload) -> dict[str, Any]:
    """The payload as the outbox hands it over: through JSON, as the database keeps it."""
    return dict(json.loads(json.dumps(notice.to_payload())))


def elements(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    found = [b["text"]["text"] for b in blocks if "text" in b]
    return found + [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]


def test_every_kind_has_a_builder_and_a_sample() -> None:
    assert set(BUILDERS) == set(NoticeKind) == set(SAMPLES)


@pytest.mark.parametrize("kind", list(NoticeKind))
def test_every_kind_builds_within_slacks_limits(kind: NoticeKind) -> None:
    text, blocks = build(kind, stored(SAMPLES[kind]), "Europe/Paris")
    assert text and len(text) <= 3000 and "*" not in text
    assert 0 < len(blocks) <= common.MAX_BLOCKS
    assert all(len(t) <= common.MAX_TEXT for t in texts(blocks))
    for element in elements(blocks):
        assert len(element["text"]["text"]) <= common.MAX_BUTTON_TEXT
        assert len(element.get("value", "")) <= 64  # short DB ids, never provider ids


@pytest.mark.parametrize("kind", sorted(ALERTS))
def test_every_alert_offers_open_settings(kind: NoticeKind) -> None:
    _, blocks = build(kind, stored(SAMPLES[kind]), None)
    assert Action.OPEN_SETTINGS in [e["action_id"] for e in elements(blocks)]


@pytest.mark.parametrize(("kind", "buttons"), [
    (NoticeKind.PUSHED_EVENT_DELETED, [Action.RESTORE_TO_CALENDAR, Action.CANCEL_APPOINTMENT, Action.OPEN_SETTINGS]),
    (NoticeKind.CONNECTION_BROKEN, [Action.RECONNECT, Action.OPEN_SETTINGS]),
    (NoticeKind.MASS_DELETION_HELD, [Action.CONFIRM_REMOVALS, Action.OPEN_SETTINGS]),
    (NoticeKind.CONNECTED, [Action.OPEN_SETTINGS]),
    (NoticeKind.CONTACT_CREATED, []),
])
def test_the_buttons_are_those_of_the_kind_and_carry_our_short_ids(kind: NoticeKind, buttons: list[Action]) -> None:
    _, blocks = build(kind, stored(SAMPLES[kind]), None)
    found = elements(blocks)
    assert [e["action_id"] for e in found] == buttons
    assert all(e.get("value", ID) == ID for e in found)
    assert all(b["block_id"] == ACTIONS_BLOCK for b in blocks if b["type"] == "actions")


def test_a_cancelled_pushed_event_offers_no_restore_or_cancel() -> None:
    _, blocks = build(NoticeKind.PUSHED_EVENT_DELETED, stored(PushedEventDeleted(ID, ID, cancelled=True)), None)
    assert [e["action_id"] for e in elements(blocks)] == [Action.OPEN_SETTINGS]
    assert "cancelled" in texts(blocks)[0]


def test_a_conflict_names_the_event_and_the_appointment_in_the_users_time_zone() -> None:
    text, blocks = build(NoticeKind.CONFLICT, stored(SAMPLES[NoticeKind.CONFLICT]), "Europe/Paris")
    shown = "\n".join(texts(blocks))
    assert "Appointment with Dr. Michel" in text and "Consultation with Ada" in text
    assert "Tue 2 Mar 2021, 13:00 Europe/Paris" in shown and "14:00 Europe/Paris" in shown


@pytest.mark.parametrize("zone", [None, "Not/AZone"])
def test_without_a_known_time_zone_times_say_utc(zone: str | None) -> None:
    _, blocks = build(NoticeKind.REMOTE_EDIT_APPLIED, stored(SAMPLES[NoticeKind.REMOTE_EDIT_APPLIED]), zone)
    assert "Tue 2 Mar 2021, 12:00 UTC" in texts(blocks)[0]


@pytest.mark.parametrize("kind", [NoticeKind.CONTACT_CREATED, NoticeKind.REMOTE_EDIT_REVERTED,
                                  NoticeKind.CONNECTION_BROKEN, NoticeKind.MASS_DELETION_HELD,
                                  NoticeKind.ITEM_SKIPPED, NoticeKind.AUTOMATION])
def test_calendar_text_is_escaped_so_it_is_shown_not_acted_on(kind: NoticeKind) -> None:
    _, blocks = build(kind, stored(SAMPLES[kind]), None)
    shown = "\n".join(texts(blocks))
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in shown
    assert "<!channel>" not in shown and "<https://" not in shown


def test_the_connected_dm_lists_the_calendars_and_says_how_many_more() -> None:
    text, blocks = build(NoticeKind.CONNECTED, stored(SAMPLES[NoticeKind.CONNECTED]), None)
    shown = texts(blocks)[0]
    assert "john@icloud.com" in text and "300 calendars" in shown
    assert "• Cal 0" in shown and "• Cal 39" in shown and "Cal 40\n" not in shown and "260 more" in shown


def test_a_kind_without_a_builder_still_gets_a_dm() -> None:
    text, blocks = build("agenda_of_the_future", {}, None)
    assert text and blocks
