"""The settings modal's builder against Slack's limits, and the reading of a submission."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.models.views import View

from bot.blocks import settings as blocks
from bot.blocks.common import MAX_BLOCKS, MAX_OPTION_TEXT, MAX_OPTION_VALUE, MAX_OPTIONS, MAX_TITLE
from bot.ids import Action
from storage.enums import SyncMode
from sync.accounts import Settings

NEVER_CHOSE = Settings(None, [], SyncMode.ONE_WAY, 1, 180)


def calendars(n: int, *, name: str = "Calendar", full_every: int = 1) -> list[blocks.Calendar]:
    return [blocks.Calendar(f"{i:032x}", f"{name} {i}", i % full_every == 0) for i in range(n)]


def element(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    (block,) = [b for b in view["blocks"] if b.get("block_id") == block_id]
    return dict(block["element"])


def every_option(view: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for block in view["blocks"]:
        shown = block.get("element", {})
        found += shown.get("options", []) + shown.get("initial_options", [])
        found += [shown["initial_option"]] if "initial_option" in shown else []
    return found


def test_titles_fit_and_every_option_text_and_value_fits() -> None:
    long = [blocks.Calendar("c" * 32, "A calendar with a very long name " * 10, True)]
    view = blocks.settings_view(long, NEVER_CHOSE)
    assert len(view["title"]["text"]) <= MAX_TITLE and len(view["submit"]["text"]) <= MAX_TITLE
    assert len(view["close"]["text"]) <= MAX_TITLE and len(view["blocks"]) <= MAX_BLOCKS
    options = every_option(view)
    assert options and all(len(o["text"]["text"]) <= MAX_OPTION_TEXT for o in options)
    assert all(len(o["value"]) <= MAX_OPTION_VALUE for o in options)
    assert all(len(o["description"]["text"]) <= MAX_OPTION_TEXT for o in options if "description" in o)
    assert element(view, blocks.LINKED)["options"][0]["text"]["text"].endswith("…")


def test_a_hundred_calendars_are_static_selects_one_more_makes_them_external() -> None:
    hundred = blocks.settings_view(calendars(100), NEVER_CHOSE)
    assert element(hundred, blocks.LINKED)["type"] == "static_select"
    assert len(element(hundred, blocks.CONFLICTS)["options"]) == MAX_OPTIONS
    more = blocks.settings_view(calendars(101), NEVER_CHOSE)
    assert element(more, blocks.LINKED)["type"] == "external_select"
    assert element(more, blocks.CONFLICTS)["type"] == "multi_external_select"
    assert all("options" not in element(more, b) for b in (blocks.LINKED, blocks.CONFLICTS))


def test_only_full_calendars_count_towards_the_linked_selects_limit() -> None:
    view = blocks.settings_view(calendars(150, full_every=3), NEVER_CHOSE)  # 50 full of 150
    linked = element(view, blocks.LINKED)
    assert linked["type"] == "static_select" and len(linked["options"]) == 50
    assert element(view, blocks.CONFLICTS)["type"] == "multi_external_select"


def test_the_current_choices_are_preselected_even_on_external_selects() -> None:
    owned = calendars(120, full_every=2)
    chosen = Settings(owned[4].id, [owned[1].id, owned[7].id], SyncMode.TWO_WAY, 0, 730, daily_agenda=True)
    view = blocks.settings_view(owned, chosen)
    assert element(view, blocks.LINKED)["initial_option"]["value"] == owned[4].id
    assert [o["value"] for o in element(view, blocks.CONFLICTS)["initial_options"]] == [owned[1].id, owned[7].id]
    assert element(view, blocks.MODE)["initial_option"]["value"] == "two_way"
    assert element(view, blocks.AGENDA)["initial_options"][0]["value"] == blocks.AGENDA_ON


def test_with_no_full_access_calendar_the_linked_calendar_is_explained_not_offered() -> None:
    view = blocks.settings_view(calendars(3, full_every=99)[1:], NEVER_CHOSE)
    assert all(b["type"] != "input" for b in view["blocks"] if b.get("block_id") == blocks.LINKED)
    assert "full access" in str(view["blocks"]) and "initial_options" not in element(view, blocks.CONFLICTS)
    assert not blocks.has_input(view, blocks.LINKED) and blocks.has_input(view, blocks.CONFLICTS)


@pytest.mark.parametrize("owned", [calendars(2, full_every=2), calendars(150, full_every=2), calendars(1, full_every=9)[1:]
                                   + [blocks.Calendar("r" * 32, "Read only", False)]])
def test_slack_sdks_models_take_the_view_whole(owned: list[blocks.Calendar]) -> None:
    """slack_sdk's Block Kit models check each element's limits and drop no field they don't know."""
    view = blocks.settings_view(owned, Settings(None, [owned[-1].id], SyncMode.TWO_WAY, 0, 730, daily_agenda=True))
    model = View(**view)
    model.validate_json()
    assert model.to_dict() == view


def test_no_connection_has_nothing_to_submit() -> None:
    view = blocks.no_connection_view()
    View(**view).validate_json()
    assert "submit" not in view and "/croco connect" in str(view["blocks"])


def test_options_filter_by_the_typed_text_and_stop_at_100() -> None:
    owned = calendars(300, full_every=2)
    assert len(blocks.options_for(owned, "", full_only=False)) == MAX_OPTIONS
    assert [o["text"]["text"] for o in blocks.options_for(owned, "CALENDAR 29", full_only=True)] == \
        [f"Calendar {n}" for n in (290, 292, 294, 296, 298)]
    assert blocks.options_for(owned, "nope", full_only=False) == []


def state(**changed: Any) -> dict[str, dict[str, Any]]:
    given: dict[str, Any] = {"linked": "a" * 32, "conflicts": ["b" * 32], "mode": "one_way", "back": "3", "ahead": "30",
             "agenda": True} | changed
    def one(value: str | None) -> dict[str, Any]:
        return {"selected_option": {"value": value} if value else None}
    return {
        blocks.LINKED: {Action.PICK_LINKED_CALENDAR: one(given["linked"])},
        blocks.CONFLICTS: {Action.PICK_CONFLICT_CALENDARS: {"selected_options": [{"value": c}
                                                                                 for c in given["conflicts"]]}},
        blocks.MODE: {blocks.PICK_MODE: one(given["mode"])},
        blocks.DAYS_BACK: {blocks.PICK_DAYS_BACK: {"value": given["back"]}},
        blocks.DAYS_AHEAD: {blocks.PICK_DAYS_AHEAD: {"value": given["ahead"]}},
        blocks.AGENDA: {blocks.PICK_AGENDA: {"selected_options": [{"value": "on"}] if given["agenda"] else []}},
    }


def test_a_submission_reads_as_choices() -> None:
    choices, errors = blocks.read_submission(state())
    assert errors == {}
    assert choices == blocks.Choices("a" * 32, ["b" * 32], SyncMode.ONE_WAY, 3, 30, True)
    empty, _ = blocks.read_submission(state(linked=None, conflicts=[], agenda=False))
    assert empty is not None and (empty.linked_calendar_id, empty.conflict_calendar_ids, empty.daily_agenda) == \
        (None, [], False)


@pytest.mark.parametrize(("field", "value", "block_id"), [
    ("back", "-1", blocks.DAYS_BACK), ("back", "366", blocks.DAYS_BACK), ("back", "2.5", blocks.DAYS_BACK),
    ("ahead", "0", blocks.DAYS_AHEAD), ("ahead", "731", blocks.DAYS_AHEAD), ("ahead", "", blocks.DAYS_AHEAD),
    ("mode", "both_ways", blocks.MODE),
])
def test_values_out_of_the_apis_limits_are_inline_errors(field: str, value: str, block_id: str) -> None:
    choices, errors = blocks.read_submission(state(**{field: value}))
    assert choices is None and list(errors) == [block_id]


def test_calendars_gone_since_the_modal_opened_are_inline_errors() -> None:
    owned = [blocks.Calendar("a" * 32, "Work", True)]
    choices = blocks.Choices("a" * 32, ["a" * 32, "z" * 32], SyncMode.ONE_WAY, 1, 180, False)
    assert list(blocks.check(choices, owned, linked_shown=True)) == [blocks.CONFLICTS]
    assert list(blocks.check(choices, [], linked_shown=True)) == [blocks.LINKED]
    assert list(blocks.check(choices, [], linked_shown=False)) == [blocks.CONFLICTS]
