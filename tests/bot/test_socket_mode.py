"""`croco serve --socket-mode`: Slack's requests over a websocket opened with the app-level token, the REST API
still on its port, the socket closed on shutdown; without an app token, a one-line error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp
import pytest
from pydantic import SecretStr

from croco import cli
from croco.embedded_caldav import free_port
from croco.runtime import build_runtime
from croco.serve import serve
from croco.settings import Settings
from tests.bot.conftest import ANN
from tests.emulators.slack import APP_TOKEN, BOT_TOKEN, SlackEmulator, SlackSender

API_TOKEN = "socket-mode-test-api-token"


def _settings(database_url: str, tmp_path: Path, slack: SlackEmulator) -> Settings:
    """A bot token and an app token, no signing secret, Slack at the emulator."""
    return Settings(
        _env_file=None, data_dir=tmp_path, database_url=database_url, api_token=SecretStr(API_TOKEN),
        slack_bot_token=SecretStr(BOT_TOKEN), slack_app_token=SecretStr(APP_TOKEN), slack_api_url=slack.api_url,
        scheduler_enabled=False,
    )


async def _start(settings: Settings, port: int) -> tuple[asyncio.Task[None], asyncio.Event]:
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(build_runtime(settings), "127.0.0.1", port, ready=ready, stop=stop,
                                     socket_mode=True))
    await asyncio.wait_for(ready.wait(), 30)
    return task, stop


@pytest.fixture
async def served(database_url: str, tmp_path: Path, slack_emulator: SlackEmulator) -> AsyncIterator[str]:
    """`croco serve --socket-mode`; yields the API's URL."""
    port = free_port()
    task, stop = await _start(_settings(database_url, tmp_path, slack_emulator), port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_help_over_socket_mode_is_acked_and_opens_the_modal(served: str, slack_emulator: SlackEmulator) -> None:
    sender = SlackSender(url="", response_base=slack_emulator.base_url)
    command = dict(parse_qsl(sender.command_body("help", user_id=ANN.id)))
    ack = await slack_emulator.send_envelope("slash_commands", command)
    assert set(ack) <= {"envelope_id", "payload"}
    (opened,) = await slack_emulator.wait_for("views.open")
    assert "Loading" in str(opened.args["view"])
    (updated,) = await slack_emulator.wait_for("views.update")
    assert "/croco settings" in str(updated.args["view"]["blocks"])
    (connection,) = slack_emulator.calls_to("apps.connections.open")
    assert connection.token == APP_TOKEN


async def test_the_api_still_serves_and_slack_events_is_not_mounted_without_a_signing_secret(served: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        async with http.get(f"{served}/api/v1/users", params={"slack_user_id": ANN.id}) as users:
            assert (users.status, await users.json()) == (200, {"items": []})
        async with http.post(f"{served}/slack/events", data="payload={}") as events:
            assert events.status == 404  # with an empty signing secret anyone could sign: not served at all


async def test_shutdown_closes_the_socket(database_url: str, tmp_path: Path, slack_emulator: SlackEmulator) -> None:
    task, stop = await _start(_settings(database_url, tmp_path, slack_emulator), free_port())
    command = dict(parse_qsl(SlackSender(url="").command_body("help", user_id=ANN.id)))
    await slack_emulator.send_envelope("slash_commands", command)
    await slack_emulator.wait_for("views.update")
    stop.set()
    await asyncio.wait_for(task, 30)
    assert [socket.closed for socket in slack_emulator.sockets] == [True]


def test_socket_mode_without_an_app_token_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    monkeypatch.setenv("CROCO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CROCO_SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.delenv("CROCO_SLACK_APP_TOKEN", raising=False)
    root = logging.getLogger()  # the CLI configures logging onto this test's captured stderr: put it back after
    handlers, level = list(root.handlers), root.level
    try:
        assert cli.main(["serve", "--socket-mode", "--port", str(free_port())]) == 2
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "CROCO_SLACK_APP_TOKEN" in line
