"""The status, Home and connect builders: pure functions whose views stay within Slack's limits however much
the user has, and whose words say what a user needs to know."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bot.blocks import connect, status
from bot.ids import Action
from storage.enums import Access, Provider, SyncMode
from sync.status import CalendarState, ConnectionState, Problem, ProblemKind, UserStatus, find_problems
from tests.web.conftest import NOW

LONG = "Ünïcödé & <b>" + "x" * 3000


def calendar(i: int, *, name: str | None = None, linked: bool = False, conflict: bool = False,
             synced_minutes_ago: int | None = 5, error: str | None = None, access: Access = Access.FULL,
             held: bool = False) -> CalendarState:
    synced = None if synced_minutes_ago is None else NOW - timedelta(minutes=synced_minutes_ago)
    return CalendarState(f"c{i:031d}", name or f"Calendar {i}", access, linked, conflict, synced, error, held)


def connection(i: int, calendars: list[CalendarState], *, ok: bool = True, error: str | None = None,
               account: str = "ann@example.com", provider: Provider = Provider.CALDAV) -> ConnectionState:
    return ConnectionState(f"k{i:031d}", provider, account, ok, error, tuple(calendars))


def user_status(connections: list[ConnectionState], *, linked: str | None = "linked") -> UserStatus:
    linked_id = next((c.id for k in connections for c in k.calendars if c.linked), None) if linked else None
    return UserStatus(tuple(connections), SyncMode.ONE_WAY, find_problems(tuple(connections), linked_id), NOW)


def texts(view: Any) -> list[str]:
    """Every text object's text in the view, wherever it is."""
    found: list[str] = []
    if isinstance(view, dict):
        if view.get("type") in ("plain_text", "mrkdwn") and isinstance(view.get("text"), str):
            found.append(view["text"])
        for value in view.values():
            found.extend(texts(value))
    elif isinstance(view, list):
        for value in view:
            found.extend(texts(value))
    return found


def elements(view: Any, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(view, dict):
        if view.get("type") == kind:
            found.append(view)
        for value in view.values():
            found.extend(elements(value, kind))
    elif isinstance(view, list):
        for value in view:
            found.extend(elements(value, kind))
    return found


def assert_within_slack_limits(view: dict[str, Any]) -> None:
    assert len(view["blocks"]) <= 100
    assert len(json.dumps(view)) < 250_000
    assert all(len(t) <= 3000 for t in texts(view))
    if view["type"] == "modal":
        assert len(view["title"]["text"]) <= 24 and len(view["close"]["text"]) <= 24
    for block in view["blocks"]:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
    for element in elements(view, "button"):
        assert len(element["text"]["text"]) <= 75 and len(element.get("value", "")) <= 2000
        assert len(element["action_id"]) <= 255
    block_ids = [b["block_id"] for b in view["blocks"] if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))


def words(view: dict[str, Any]) -> str:
    return "\n".join(texts(view))


# Limits ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [status.status_view, status.home_view])
def test_150_calendars_fit_in_one_view_and_every_one_is_listed(build: Any) -> None:
    calendars = [calendar(i, linked=i == 0, conflict=i < 10) for i in range(150)]
    view = build(user_status([connection(0, calendars)]))
    assert_within_slack_limits(view)
    shown = words(view)
    assert all(f"*Calendar {i}*" in shown for i in range(150))
    assert "more not shown" not in shown


@pytest.mark.parametrize("build", [status.status_view, status.home_view])
def test_long_names_and_errors_are_clipped_and_escaped(build: Any) -> None:
    calendars = [calendar(i, name=LONG, conflict=True, linked=i == 0, error=LONG) for i in range(150)]
    connections = [connection(0, calendars, account=LONG), connection(1, [], ok=False, error=LONG, account=LONG)]
    view = build(user_status(connections))
    assert_within_slack_limits(view)
    shown = words(view)
    assert "<b>" not in shown and "&lt;b&gt;" in shown  # a name cannot make Slack act on markup
    assert "x" * 400 not in shown  # names and errors are cut short, with an ellipsis
    assert "…" in shown


def test_problems_come_first_and_many_of_them_still_fit_with_a_count_of_the_rest() -> None:
    broken = [connection(i, [calendar(i, conflict=True)], ok=False, error="refused") for i in range(150)]
    view = status.home_view(user_status(broken, linked=None))
    assert_within_slack_limits(view)
    shown = words(view)
    assert shown.index("stopped working") < shown.index("Calendar 0*")
    assert "more problems not shown" in shown
    reconnects = [b for b in elements(view, "button") if b["action_id"] == Action.RECONNECT]
    assert [b["value"] for b in reconnects] == [k.id for k in broken[: status.MAX_PROBLEMS]]


def test_connect_view_fits_and_titles_are_short() -> None:
    choices = [connect.ProviderChoice(Provider.GOOGLE), connect.ProviderChoice(Provider.MICROSOFT, configured=True),
               connect.ProviderChoice(Provider.ICLOUD, "https://croco.example.com/connect/" + "t" * 43,
                                      NOW + timedelta(minutes=15)),
               connect.ProviderChoice(Provider.CALDAV, "https://croco.example.com/connect/" + "u" * 43,
                                      NOW + timedelta(minutes=15))]
    view = connect.connect_view(choices, now=NOW)
    assert_within_slack_limits(view)
    assert view["title"]["text"] == "Connect a calendar"
    assert len(status.status_view(user_status([]))["title"]["text"]) <= 24


# Words -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("minutes", "said"), [
    (0, "last synced just now"), (5, "last synced 5 min ago"), (59, "last synced 59 min ago"),
    (60, "last synced 1 h ago"), (47 * 60, "last synced 47 h ago"), (3 * 24 * 60, "last synced 3 days ago"),
    (-10, "last synced just now"),  # a server clock slightly ahead never says "-10 min ago"
])
def test_last_synced_is_counted_from_the_given_clock(minutes: int, said: str) -> None:
    assert status.synced_words(NOW - timedelta(minutes=minutes), NOW) == said


def test_each_calendar_says_its_role_access_and_last_sync() -> None:
    calendars = [calendar(0, name="Work", linked=True, conflict=True), calendar(1, name="Family", conflict=True,
                 access=Access.READ, synced_minutes_ago=None), calendar(2, name="Team", access=Access.FREEBUSY),
                 calendar(3, name="Solo", linked=True, synced_minutes_ago=120)]
    shown = words(status.status_view(user_status([connection(0, calendars, provider=Provider.ICLOUD)])))
    assert "*iCloud* · ann@example.com · :white_check_mark: connected" in shown
    assert "*Work* · linked, conflict · full access · last synced 5 min ago" in shown
    assert "*Family* · conflict · read only · not synced yet" in shown
    assert "*Team* · not used · free/busy only" in shown and "Team* · not used · free/busy only ·" not in shown
    assert "*Solo* · linked · full access · last synced 2 h ago" in shown
    assert "One-way sync" in shown


def test_no_connection_says_so_and_home_offers_connect() -> None:
    nothing = user_status([])
    assert nothing.problems == (Problem(ProblemKind.NO_CONNECTION),)
    assert "`/croco connect`" in words(status.status_view(nothing))
    home = status.home_view(nothing)
    fixes = [b for b in home["blocks"] if b.get("accessory", {}).get("action_id") == Action.OPEN_CONNECT]
    assert len(fixes) == 1 and "No calendar is connected" in fixes[0]["text"]["text"]


def test_home_has_connect_and_settings_and_a_fix_beside_each_problem() -> None:
    calendars = [calendar(0, name="Work", conflict=True, error="the calendar server answered 503"),
                 calendar(1, name="Old", error="gone")]  # not used: its old error is nobody's problem
    broken = connection(1, [calendar(2, conflict=True)], ok=False, error="the server refused the credentials",
                        account="ann@icloud.com", provider=Provider.ICLOUD)
    home = status.home_view(user_status([connection(0, calendars), broken], linked=None))
    top = home["blocks"][1]
    assert [e["action_id"] for e in top["elements"]] == [Action.OPEN_CONNECT, Action.OPEN_SETTINGS]
    fixes = [(b["text"]["text"], b.get("accessory") or {}) for b in home["blocks"]
             if b["type"] == "section" and b["text"]["text"].startswith(":warning:")]
    assert [(fix.get("action_id"), fix.get("value")) for _, fix in fixes] == [
        (Action.RECONNECT, broken.id), (Action.OPEN_SETTINGS, None), (Action.OPEN_SETTINGS, None)]
    reconnect, no_linked, failing = (text for text, _ in fixes)
    assert "iCloud account *ann@icloud.com* stopped working (the server refused the credentials)" in reconnect
    assert "No linked calendar" in no_linked
    assert "*Work* did not sync last time (the calendar server answered 503)" in failing


def test_a_problem_free_status_says_everything_is_in_sync() -> None:
    shown = words(status.status_view(user_status([connection(0, [calendar(0, linked=True, conflict=True)])])))
    assert "Everything is in sync" in shown and "Needs your attention" not in shown


def test_held_deletions_get_a_confirm_button_and_unused_calendars_are_no_problem() -> None:
    calendars = [calendar(0, name="Work", linked=True, conflict=True, held=True),
                 calendar(1, name="Old", held=True, error="gone")]  # not used: not synced, nothing to act on
    home = status.home_view(user_status([connection(0, calendars)]))
    problems = [b for b in home["blocks"] if b["type"] == "section" and b["text"]["text"].startswith(":warning:")]
    assert len(problems) == 1 and "holding back deletions from *Work*" in problems[0]["text"]["text"]
    fix = problems[0]["accessory"]
    assert (fix["action_id"], fix["value"]) == (Action.CONFIRM_REMOVALS, calendars[0].id)
