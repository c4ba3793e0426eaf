"""Slack's 3 s: with a Web API that takes 5 s per call, every command, button, submission, options load and
event the app registers is still answered in time, because each listener acks before it calls Slack."""

from __future__ import annotations

import time

import pytest

from bot.commands import SCREENS
from bot.ids import OPTIONS_ACTIONS, Action, ViewCallback
from tests.bot.conftest import ANN, SlackWorld

SLACK_DEADLINE = 3.0
SLOW_SLACK = 5.0


@pytest.fixture
def slow(world: SlackWorld) -> SlackWorld:
    world.slack.delay_seconds = SLOW_SLACK
    return world


async def _answered_in(send: object) -> tuple[int, float]:
    started = time.monotonic()
    status, _ = await send  # type: ignore[misc]
    return status, time.monotonic() - started


@pytest.mark.parametrize("subcommand", sorted(SCREENS) + ["unknown-word"])
async def test_every_subcommand_acks_in_time_with_a_slow_slack(slow: SlackWorld, subcommand: str) -> None:
    status, seconds = await _answered_in(slow.sender.command(subcommand, user_id=ANN.id))
    assert status == 200 and seconds < SLACK_DEADLINE


@pytest.mark.parametrize("action", [a for a in Action if a not in OPTIONS_ACTIONS])
async def test_every_button_acks_in_time_with_a_slow_slack(slow: SlackWorld, action: Action) -> None:
    container = {"type": "message", "channel_id": "D0ANN", "message_ts": "1700000001.000100"}
    status, seconds = await _answered_in(slow.sender.action(action, "nothing-here", user_id=ANN.id,
                                                            container=container))
    assert status == 200 and seconds < SLACK_DEADLINE


@pytest.mark.parametrize("callback", list(ViewCallback))
async def test_every_view_submission_acks_in_time_with_a_slow_slack(slow: SlackWorld, callback: ViewCallback) -> None:
    view = {"id": "V1", "type": "modal", "callback_id": callback, "private_metadata": "", "blocks": []}
    status, seconds = await _answered_in(slow.sender.submit(view, {}, user_id=ANN.id))
    assert status == 200 and seconds < SLACK_DEADLINE


@pytest.mark.parametrize("action", OPTIONS_ACTIONS)
async def test_every_options_load_acks_in_time_with_a_slow_slack(slow: SlackWorld, action: Action) -> None:
    view = {"id": "V1", "type": "modal", "callback_id": ViewCallback.SETTINGS, "private_metadata": "", "blocks": []}
    status, seconds = await _answered_in(slow.sender.options(action, "wor", user_id=ANN.id, view=view))
    assert status == 200 and seconds < SLACK_DEADLINE


async def test_app_home_opened_is_answered_in_time_with_a_slow_slack(slow: SlackWorld) -> None:
    status, seconds = await _answered_in(slow.sender.event({"type": "app_home_opened", "user": ANN.id,
                                                            "channel": "D0ANN", "tab": "home"}))
    assert status == 200 and seconds < SLACK_DEADLINE
