"""The settings modal (`/croco settings`): linked calendar, conflict calendars, mode, sync window, daily agenda.

Pure: calendars and settings in, Block Kit out; a submission's `state.values` in, choices and inline errors out.
Option values are our short calendar ids, never a provider's (research/slack.md section 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.blocks.common import (
    MAX_OPTIONS,
    Block,
    View,
    clip,
    context,
    modal,
    option,
    plain,
    section,
)
from bot.ids import Action, ViewCallback
from storage.enums import SyncMode
from sync.accounts import Settings

TITLE = "Croco settings"

LINKED = "settings_linked"
CONFLICTS = "settings_conflicts"
MODE = "settings_mode"
DAYS_BACK = "settings_days_back"
DAYS_AHEAD = "settings_days_ahead"
AGENDA = "settings_agenda"
"""Block ids: the keys of `state.values` and of inline errors."""

PICK_MODE, PICK_DAYS_BACK = "pick_mode", "pick_days_back"
PICK_DAYS_AHEAD, PICK_AGENDA = "pick_days_ahead", "pick_agenda"
"""Action ids of inputs no listener answers (they only carry values to the submission)."""
AGENDA_ON = "on"

DAYS_BACK_RANGE = (0, 365)
DAYS_AHEAD_RANGE = (1, 730)
"""The API's limits on the sync window (PUT /sync-settings)."""

MODES = (
    (SyncMode.ONE_WAY, "*One-way*: Croco → linked calendar",
     "Its events come back only as blocked slots: no contacts, no automations."),
    (SyncMode.TWO_WAY, "*Two-way*: Croco ↔ linked calendar",
     "Its events become appointments: guests become contacts, automations fire."),
)
"""Each mode with its one line, in the words of the help article."""


@dataclass(frozen=True)
class Calendar:
    """A calendar as the modal offers it: our id, its name, whether Croco may write to it."""

    id: str
    name: str
    full_access: bool


@dataclass(frozen=True)
class Choices:
    """What a submission asks for, read from its values (not yet checked against the user's calendars)."""

    linked_calendar_id: str | None
    conflict_calendar_ids: list[str]
    mode: SyncMode
    window_days_back: int
    window_days_ahead: int
    daily_agenda: bool


# The modal ------------------------------------------------------------------------------------------


def no_connection_view() -> View:
    return modal(TITLE, [section(":calendar: You have no calendar connected yet. Run `/croco connect` first, "
                                 "then come back to choose your linked and conflict calendars.")])


def settings_view(calendars: list[Calendar], settings: Settings) -> View:
    """Linked calendar among the full-access ones (the current one preselected); conflict calendars among all,
    the linked one preselected while the user never chose (the help article's default). Over 100 calendars a
    select loads its options from us as the user types (external select)."""
    full = [c for c in calendars if c.full_access]
    by_id = {c.id: c for c in calendars}
    never_chose = settings.linked_calendar_id is None and not settings.conflict_calendar_ids
    linked = by_id.get(settings.linked_calendar_id or "")
    if linked is not None and not linked.full_access:
        linked = None
    if linked is None and never_chose and full:
        linked = full[0]
    conflicts = [by_id[i] for i in settings.conflict_calendar_ids if i in by_id]
    if never_chose and linked is not None:
        conflicts = [linked]

    blocks: list[Block] = []
    if full:
        blocks.append(_linked_input(full, linked))
    else:
        blocks.append(section(":lock: None of your calendars lets Croco write to it, so none can be your linked "
                              "calendar (it needs full access). Your conflict calendars still block your time.",
                              block_id=LINKED))
    blocks.append(_conflicts_input(calendars, conflicts))
    blocks.append(_mode_input(settings.mode))
    blocks.append(_days_input(DAYS_BACK, PICK_DAYS_BACK, "Days back", settings.window_days_back, DAYS_BACK_RANGE))
    blocks.append(_days_input(DAYS_AHEAD, PICK_DAYS_AHEAD, "Days ahead", settings.window_days_ahead,
                              DAYS_AHEAD_RANGE))
    blocks.append(_agenda_input(settings.daily_agenda))
    blocks.append(context("Busy events of your conflict calendars block your availability; free ones don't. "
                          "No appointment is created from a conflict calendar."))
    return modal(TITLE, blocks, callback_id=ViewCallback.SETTINGS, submit="Save", close="Cancel")


def calendar_option(calendar: Calendar) -> dict[str, Any]:
    return option(calendar.name, calendar.id)


def options_for(calendars: list[Calendar], typed: str, *, full_only: bool) -> list[dict[str, Any]]:
    """An external select's options: the calendars whose name holds the typed text (any case), at most 100."""
    wanted = typed.strip().casefold()
    found = [c for c in calendars if (c.full_access or not full_only) and wanted in c.name.casefold()]
    return [calendar_option(c) for c in found[:MAX_OPTIONS]]


def _input(block_id: str, label: str, element: Block, *, hint: str | None = None, optional: bool = False) -> Block:
    block: Block = {"type": "input", "block_id": block_id, "label": plain(label, 2000), "element": element,
                    "optional": optional}
    if hint is not None:
        block["hint"] = plain(hint, 2000)
    return block


def _linked_input(full: list[Calendar], linked: Calendar | None) -> Block:
    element: Block = {"action_id": Action.PICK_LINKED_CALENDAR, "placeholder": plain("Choose a calendar", 150)}
    if len(full) > MAX_OPTIONS:
        element |= {"type": "external_select", "min_query_length": 0}
    else:
        element |= {"type": "static_select", "options": [calendar_option(c) for c in full]}
    if linked is not None:
        element["initial_option"] = calendar_option(linked)
    return _input(LINKED, "Linked calendar", element, optional=True,
                  hint="Appointments made in Croco go to it, and its events come back. Only calendars with full "
                       "access are offered.")


def _conflicts_input(calendars: list[Calendar], conflicts: list[Calendar]) -> Block:
    element: Block = {"action_id": Action.PICK_CONFLICT_CALENDARS,
                      "placeholder": plain("Calendars that block your time", 150)}
    if len(calendars) > MAX_OPTIONS:
        element |= {"type": "multi_external_select", "min_query_length": 0}
    else:
        element |= {"type": "multi_static_select", "options": [calendar_option(c) for c in calendars]}
    if conflicts:
        element["initial_options"] = [calendar_option(c) for c in conflicts[:MAX_OPTIONS]]
    return _input(CONFLICTS, "Conflict calendars", element, optional=True,
                  hint="Busy events of these calendars block your availability.")


def _mode_input(mode: SyncMode) -> Block:
    options = [{"text": {"type": "mrkdwn", "text": clip(text, 75)}, "value": value,
                "description": plain(line, 75)} for value, text, line in MODES]
    initial = next(o for o in options if o["value"] == mode)
    return _input(MODE, "Synchronization", {"type": "radio_buttons", "action_id": PICK_MODE, "options": options,
                                            "initial_option": initial})


def _days_input(block_id: str, action_id: str, label: str, days: int, limits: tuple[int, int]) -> Block:
    low, high = limits
    element = {"type": "number_input", "action_id": action_id, "is_decimal_allowed": False,
               "initial_value": str(min(max(days, low), high)), "min_value": str(low), "max_value": str(high)}
    return _input(block_id, label, element, hint=f"{low} to {high} days. Events outside the window are not synced.")


def _agenda_input(on: bool) -> Block:
    choice = {"text": plain("Send me my agenda every morning at 08:00", 75), "value": AGENDA_ON,
              "description": plain("Today's appointments and blocks, conflicts marked, in your time zone.", 75)}
    element: Block = {"type": "checkboxes", "action_id": PICK_AGENDA, "options": [choice]}
    if on:
        element["initial_options"] = [choice]
    return _input(AGENDA, "Daily agenda", element, optional=True)


# The submission ---------------------------------------------------------------------------------------


def read_submission(values: dict[str, dict[str, Any]]) -> tuple[Choices | None, dict[str, str]]:
    """The choices in a submission's `state.values`, or the inline errors (block id -> message) of what cannot
    be read: a missing mode, a window day count that is no whole number or outside the API's limits."""
    errors: dict[str, str] = {}
    linked = _selected(values, LINKED, Action.PICK_LINKED_CALENDAR)
    conflicts = [o.get("value", "") for o in
                 (values.get(CONFLICTS, {}).get(Action.PICK_CONFLICT_CALENDARS, {}).get("selected_options") or [])]
    mode_value = _selected(values, MODE, PICK_MODE)
    mode = SyncMode(mode_value) if mode_value in set(SyncMode) else None
    if mode is None:
        errors[MODE] = "Choose one-way or two-way."
    back = _days(values, DAYS_BACK, PICK_DAYS_BACK, DAYS_BACK_RANGE, errors)
    ahead = _days(values, DAYS_AHEAD, PICK_DAYS_AHEAD, DAYS_AHEAD_RANGE, errors)
    agenda = any(o.get("value") == AGENDA_ON for o in
                 (values.get(AGENDA, {}).get(PICK_AGENDA, {}).get("selected_options") or []))
    if errors or mode is None or back is None or ahead is None:
        return None, errors
    return Choices(linked, list(dict.fromkeys(conflicts)), mode, back, ahead, agenda), {}


def check(choices: Choices, calendars: list[Calendar], *, linked_shown: bool) -> dict[str, str]:
    """Inline errors for choices the user's calendars cannot honour (a calendar gone since the modal opened, or
    none connected). Full access is the domain's rule and put_settings' answer (see `error_for`)."""
    linked_block = LINKED if linked_shown else CONFLICTS
    if not calendars:
        return {linked_block: "No calendar is connected any more. Run /croco connect first."}
    owned = {c.id for c in calendars}
    errors: dict[str, str] = {}
    if choices.linked_calendar_id is not None and choices.linked_calendar_id not in owned:
        errors[linked_block] = "That calendar is no longer connected. Choose another one."
    if any(c not in owned for c in choices.conflict_calendar_ids):
        errors[CONFLICTS] = "One of these calendars is no longer connected. Remove it."
    return errors


def error_for(code: str, message: str, *, linked_shown: bool) -> dict[str, str]:
    """put_settings' refusal as an inline error under the linked calendar (or the first input there is)."""
    block = LINKED if linked_shown else CONFLICTS
    if code == "linked_calendar_needs_full_access":
        return {block: "Croco can only read this calendar. The linked calendar needs full access: choose another."}
    return {block: clip(message, 300)}


def has_input(view: View, block_id: str) -> bool:
    """Whether the submitted view asked for this block (the linked calendar is a note when none has full access)."""
    return any(b.get("type") == "input" and b.get("block_id") == block_id for b in view.get("blocks", []))


def _selected(values: dict[str, dict[str, Any]], block_id: str, action_id: str) -> str | None:
    chosen = values.get(block_id, {}).get(action_id, {}).get("selected_option") or {}
    value = chosen.get("value")
    return str(value) if value else None


def _days(values: dict[str, dict[str, Any]], block_id: str, action_id: str, limits: tuple[int, int],
          errors: dict[str, str]) -> int | None:
    low, high = limits
    text = str(values.get(block_id, {}).get(action_id, {}).get("value") or "").strip()
    try:
        days = int(text)
    except ValueError:
        days = None
    if days is None or not low <= days <= high:
        errors[block_id] = f"A whole number of days from {low} to {high}."
        return None
    return days
