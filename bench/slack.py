"""Benchmark: the Slack app's ack latency while a 10,000-event sync runs, and notice-to-DM latency.

`croco serve` runs as a user starts it (its own process, SQLite, a Radicale calendar of 10,000 events), with the
Slack Web API emulator of the tests in this process. Figures, each with its reference measured in the same run:

- ack: signed `/croco help` requests through HTTP, p50 and p99 while `POST /users/{id}/sync` imports the
  calendar, against the same requests on the idle server (target: p99 under 200 ms);
- notice to DM: notices written to the outbox until their chat.postMessage reaches the emulator, p50 and p95
  (target: p95 under 5 s), against the outbox's own poll interval (the floor of that latency).

Prints the figures; not a test.

    .venv/bin/python -m bench.slack [--events 10000] [--commands 200] [--notices 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from bench.caldav_sync import PASSWORD, USER, seed
from croco.embedded_caldav import EmbeddedRadicale, free_port
from storage.db import Database
from storage.models import Notice
from sync.notices import ItemSkipped
from sync.outbox import TICK_SECONDS
from sync.providers.base import AppPassword, ProviderConfig, TimeWindow
from sync.providers.registry import open_provider
from tests.emulators.slack import BOT_TOKEN, SIGNING_SECRET, Member, SlackEmulator, SlackSender

API_TOKEN = "bench-api-token"
MEMBER = Member("U0BENCH", "Bench Person", "bench@example.com", "Europe/Paris")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Served:
    """`croco serve` in its own process, polled until /healthz answers."""

    def __init__(self, workdir: Path, slack: SlackEmulator) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CROCO_")} | {
            "CROCO_API_TOKEN": API_TOKEN, "CROCO_SLACK_BOT_TOKEN": BOT_TOKEN,
            "CROCO_SLACK_SIGNING_SECRET": SIGNING_SECRET, "CROCO_SLACK_API_URL": slack.api_url,
            "CROCO_SYNC_INTERVAL_SECONDS": "3600", "CROCO_HTTP_TIMEOUT_SECONDS": "600",
            "CROCO_LOG_LEVEL": "WARNING", "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        self.log = (workdir / "serve.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "croco.cli", "serve", "--port", str(self.port)],
                                     cwd=workdir, env=env, stderr=self.log)
        self.database_url = f"sqlite+aiosqlite:///{workdir / '.croco' / 'croco.db'}"

    async def ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                async with http.get(f"{self.base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"croco serve did not start; see {self.log.name}")
            await asyncio.sleep(0.05)  # polling a port for readiness

    async def call(self, http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
        async with http.request(method, f"{self.base}/api/v1{path}", json=body,
                                headers={"Authorization": f"Bearer {API_TOKEN}"}) as response:
            response.raise_for_status()
            return None if response.status == 204 else await response.json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


COMMANDS_PER_SECOND = 10
"""The pace of the commands sent during the sync: a busy team, not a flood that would only measure the flood."""


async def ack_latencies(sender: SlackSender, count: int, *, paced: bool = False) -> list[float]:
    """Signed /croco help requests, one after another (`paced`: COMMANDS_PER_SECOND at most); the HTTP answer
    is Bolt's ack."""
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        status, _ = await sender.command("help", user_id=MEMBER.id)
        seconds.append(time.perf_counter() - started)
        assert status == 200, status
        if paced:
            await asyncio.sleep(max(0.0, 1 / COMMANDS_PER_SECOND - seconds[-1]))  # pacing the load
    return seconds


async def first_import(served: Served, http: aiohttp.ClientSession, user_id: str, url: str) -> tuple[float, Any]:
    """Connect the bench calendar as linked and start its first import; (start time, the running sync)."""
    await served.call(http, "POST", f"/users/{user_id}/connections", {
        "provider": "caldav", "username": USER, "password": PASSWORD, "url": url})
    calendars = (await served.call(http, "GET", f"/users/{user_id}/calendars"))["items"]
    (linked,) = [c for c in calendars if c["name"] == "bench"]
    await served.call(http, "PUT", f"/users/{user_id}/sync-settings", {"linked_calendar_id": linked["id"]})
    return time.perf_counter(), asyncio.create_task(served.call(http, "POST", f"/users/{user_id}/sync"))


async def notice_latencies(served: Served, slack: SlackEmulator, user_id: str, count: int) -> list[float]:
    """Notices written one at a time, as a sync would write them; the time until Slack got the DM."""
    db = Database(served.database_url)
    seconds = []
    try:
        for n in range(count):
            before = len(slack.calls_to("chat.postMessage"))
            async with db.write() as session:
                session.add(Notice(user_id=user_id, kind=ItemSkipped.kind, created_at=datetime.now(UTC),
                                   payload=ItemSkipped(f"cal-{n}", f"item-{n}.ics", "bench").to_payload()))
            started = time.perf_counter()
            await slack.wait_for("chat.postMessage", before + 1, timeout=60)
            seconds.append(time.perf_counter() - started)
    finally:
        await db.dispose()
    return seconds


async def main(events: int, commands: int, notices: int) -> None:
    console = Console(width=110)
    workdir = Path(tempfile.mkdtemp(prefix="croco-bench-slack-"))
    slack = SlackEmulator()
    slack.add_member(MEMBER)
    await slack.start()
    with EmbeddedRadicale(workdir / "radicale", users={USER: PASSWORD}) as radicale:
        calendar_url = radicale.make_calendar(USER, "bench")
        seed(workdir / "radicale" / "collections" / "collection-root" / USER / "bench", events,
             datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
        # Radicale builds its item cache on the first full read: neither import should pay for it.
        warm_up = open_provider("caldav", AppPassword(USER, PASSWORD), radicale.url,
                                config=ProviderConfig(timeout_seconds=600))
        now = datetime.now(UTC)
        await warm_up.changes(calendar_url, None,
                              TimeWindow(now - timedelta(days=1), now + timedelta(days=180)))
        served = Served(workdir, slack)
        try:
            async with aiohttp.ClientSession() as http:
                await served.ready(http)
                sender = SlackSender(f"{served.base}/slack/events", response_base=slack.base_url)
                idle = await ack_latencies(sender, commands)
                found = await served.call(http, "GET", f"/users?slack_user_id={MEMBER.id}")
                user = found["items"][0]
                started, sync = await first_import(served, http, user["id"], radicale.url)  # the reference: no load
                await sync
                quiet_seconds = time.perf_counter() - started
                for connection in (await served.call(http, "GET", f"/users/{user['id']}/connections"))["items"]:
                    await served.call(http, "DELETE", f"/connections/{connection['id']}")
                started, sync = await first_import(served, http, user["id"], radicale.url)
                loaded: list[float] = []
                while not sync.done():
                    loaded += await ack_latencies(sender, 10, paced=True)
                sync_seconds = time.perf_counter() - started
                report = (await sync)["calendars"][0]
                dm = await notice_latencies(served, slack, user["id"], notices)
        finally:
            served.stop()
            await slack.close()

    table = Table(title="Slack app (croco serve, SQLite, Slack emulator on loopback)", title_justify="left")
    for column in ("measure", "n", "p50 ms", "p99|p95 ms", "ref p50 ms", "ratio", "target"):
        table.add_column(column, justify="right")
    table.add_row("ack, idle", str(len(idle)), f"{percentile(idle, .5) * 1e3:.1f}",
                  f"{percentile(idle, .99) * 1e3:.1f}", "", "", "")
    table.add_row(f"ack, {report['fetched']}-item sync", str(len(loaded)),
                  f"{percentile(loaded, .5) * 1e3:.1f}", f"{percentile(loaded, .99) * 1e3:.1f}",
                  f"{percentile(idle, .5) * 1e3:.1f}", f"{percentile(loaded, .5) / percentile(idle, .5):.2f}",
                  "p99 < 200")
    table.add_row("notice to DM", str(len(dm)), f"{percentile(dm, .5) * 1e3:.0f}", f"{percentile(dm, .95) * 1e3:.0f}",
                  f"{TICK_SECONDS * 1e3:.0f} (poll)", f"{percentile(dm, .5) / TICK_SECONDS:.2f}", "p95 < 5000")
    console.print(table)
    console.print(f"first import: {sync_seconds:.1f} s under {COMMANDS_PER_SECOND} commands/s, {quiet_seconds:.1f} s "
                  f"without (ratio {sync_seconds / quiet_seconds:.2f}); acks measured during it: {len(loaded)}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--notices", type=int, default=50)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.commands, arguments.notices))
