"""`croco serve` with a Slack bot token: its scheduler delivers notices as DMs by itself (the sink is mounted
before the ticker starts)."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from tests.emulators.slack import BOT_TOKEN, SIGNING_SECRET, SlackEmulator
from tests.integration.test_serve import _clean_env, free_port

TOKEN = "serve-notices-token"
PARIS = ZoneInfo("Europe/Paris")


async def ready(http: aiohttp.ClientSession, base: str, proc: asyncio.subprocess.Process) -> None:
    """Polls /healthz until the process answers (bounded)."""
    for _ in range(600):
        assert proc.returncode is None, "croco serve exited early"
        try:
            async with http.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)  # polling a port for readiness, not standing in for synchronisation
    raise AssertionError("croco serve never answered /healthz")


async def call(http: aiohttp.ClientSession, base: str, method: str, path: str, body: dict[str, Any]) -> Any:
    async with http.request(method, f"{base}/api/v1{path}", json=body,
                            headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


async def test_a_slack_dm_automation_in_serve_reaches_the_member_by_itself(tmp_path: Path, slack_emulator: SlackEmulator) -> None:
    port = free_port()
    env = _clean_env(CROCO_API_TOKEN=TOKEN, CROCO_SCHEDULER_TICK_SECONDS="0.2", CROCO_SLACK_BOT_TOKEN=BOT_TOKEN,
                     CROCO_SLACK_SIGNING_SECRET=SIGNING_SECRET, CROCO_SLACK_API_URL=slack_emulator.api_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "croco.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        cwd=tmp_path, env=env, stderr=asyncio.subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await ready(http, base, proc)
            user = await call(http, base, "POST", "/users", {"name": "Ann", "email": "ann@example.com",
                                                             "timezone": "Europe/Paris", "slack_user_id": "U0ANN"})
            desk = await call(http, base, "POST", "/calendars", {
                "name": "Consultations", "kind": "round_robin", "member_ids": [user["id"]], "duration_minutes": 30,
                "timezone": "Europe/Paris", "open_hours": {d: [["09:00", "17:00"]] for d in
                                                           ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}})
            await call(http, base, "POST", "/automations", {"trigger": "appointment.created", "action": "slack_dm"})
            day = datetime.now(PARIS) + timedelta(days=2)
            start = datetime(day.year, day.month, day.day, 10, tzinfo=PARIS).isoformat()
            await call(http, base, "POST", f"/calendars/{desk['id']}/appointments",
                       {"start": start, "contact": {"name": "Ada Lovelace", "email": "ada@example.com"}})

            (posted,) = await slack_emulator.wait_for("chat.postMessage", timeout=30)
            assert posted.args["channel"] == "D0ANN" and "Consultations with Ada Lovelace" in str(posted.args["blocks"])
            assert posted.token == BOT_TOKEN
            async with http.get(f"{base}/api/v1/users/{user['id']}/notices",
                                headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                (notice,) = (await response.json())["items"]
            assert notice["kind"] == "automation"
            assert posted.args["metadata"]["event_payload"]["notice_id"] == notice["id"]
    finally:
        proc.terminate()
        await proc.wait()
