"""`croco demo`: the product example end to end on this machine, through the REST API like an integrator.

A local Radicale holds John's calendar ("Appointment with Dr. Michel" 13:00-14:00 tomorrow, plus a
recurring, an all-day, a free and a cancelled event). Croco connects it, syncs one-way (blocked slots only),
then two-way (appointments, a contact for Dr. Michel, automations), prints what happened in each mode,
and keeps serving the API until Ctrl-C. SQLite, no Slack, no Google or Microsoft, no internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.blocks.notices import build
from croco.embedded_caldav import EmbeddedRadicale, free_port
from croco.runtime import build_runtime
from croco.serve import serve
from croco.settings import Settings

JOHN_TZ = ZoneInfo("Europe/Paris")
SLACK_HOW_TO = (
    "To try the Slack app: create an app from manifests/slack-dev.yaml (Socket Mode, no public URL needed), "
    "install it, then run\n  CROCO_SLACK_BOT_TOKEN=xoxb-... CROCO_SLACK_APP_TOKEN=xapp-... "
    ".venv/bin/croco serve --socket-mode\nand type /croco connect in Slack (README: \"Installing the Slack app\")."
)
PASSWORD = "demo-app-password"


def seed_events(day: date) -> dict[str, str]:
    """John's calendar, in his time zone; `day` is the day of the Dr. Michel appointment."""

    def at(hour: int, minute: int = 0, days: int = 0) -> str:
        return (datetime.combine(day, datetime.min.time()) + timedelta(days=days, hours=hour, minutes=minute)).strftime(
            "%Y%m%dT%H%M%S"
        )

    def event(uid: str, body: str) -> str:
        return (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Croco demo//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{body}END:VEVENT\r\nEND:VCALENDAR\r\n"
        )

    tz = "TZID=Europe/Paris"
    return {
        "michel.ics": event("michel@demo", (
            f"DTSTART;{tz}:{at(13)}\r\nDTEND;{tz}:{at(14)}\r\nSUMMARY:Appointment with Dr. Michel\r\n"
            "ORGANIZER;CN=John:mailto:john@example.com\r\n"
            "ATTENDEE;CN=Dr. Michel;PARTSTAT=ACCEPTED:mailto:michel@example.com\r\n"
        )),
        "standup.ics": event("standup@demo", (
            f"DTSTART;{tz}:{at(9, 30)}\r\nDTEND;{tz}:{at(9, 45)}\r\nSUMMARY:Team stand-up\r\n"
            f"RRULE:FREQ=DAILY;COUNT=5\r\nEXDATE;{tz}:{at(9, 30, days=2)}\r\n"
        )),
        "offsite.ics": event("offsite@demo", (
            f"DTSTART;VALUE=DATE:{(day + timedelta(days=3)).strftime('%Y%m%d')}\r\n"
            f"DTEND;VALUE=DATE:{(day + timedelta(days=4)).strftime('%Y%m%d')}\r\nSUMMARY:Company offsite\r\n"
        )),
        "focus.ics": event("focus@demo", (
            f"DTSTART;{tz}:{at(15)}\r\nDTEND;{tz}:{at(17)}\r\nSUMMARY:Focus time (shown as free)\r\n"
            "TRANSP:TRANSPARENT\r\n"
        )),
        "lunch.ics": event("lunch@demo", (
            f"DTSTART;{tz}:{at(12)}\r\nDTEND;{tz}:{at(13)}\r\nSUMMARY:Lunch with Anna (cancelled)\r\n"
            "STATUS:CANCELLED\r\n"
        )),
    }


class Api:
    """A thin REST client: what any integrator would write against API.md."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base, self.headers = http, f"{base}/api/v1", {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.request(method, self.base + path, json=body, headers=self.headers) as response:
            document = await response.json() if response.content_type == "application/json" else None
            if response.status >= 400:
                raise RuntimeError(f"{method} {path} -> {response.status} {json.dumps(document)}")
            return document


@contextlib.asynccontextmanager
async def webhook_receiver(received: list[dict[str, Any]]) -> AsyncIterator[str]:
    """Stands in for the integrator's automation endpoint."""

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


def _local(value: str) -> str:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(JOHN_TZ).strftime("%a %d %b %H:%M")


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


async def run_demo(*, port: int, keep_serving: bool, console: Console) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="croco-demo-"))
    settings = Settings(
        _env_file=None, data_dir=workdir / "data", api_token=SecretStr("demo-token"),
        scheduler_enabled=False, log_level="WARNING",
    )
    runtime = build_runtime(settings)
    tomorrow = runtime.clock().astimezone(JOHN_TZ).date() + timedelta(days=1)
    with EmbeddedRadicale(workdir / "radicale", users={"john": PASSWORD}) as radicale:
        calendar_url = radicale.make_calendar("john", "work")
        for name, ics in seed_events(tomorrow).items():
            radicale.put_event("john", calendar_url, name, ics)
        console.print(f"Radicale CalDAV server at {radicale.url} with John's calendar seeded for {tomorrow}")

        ready, stop = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(serve(runtime, "127.0.0.1", port, ready=ready, stop=stop))
        await ready.wait()
        base = f"http://127.0.0.1:{port}"
        received: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as http, webhook_receiver(received) as hook_url:
            api = Api(http, base, "demo-token")
            await _walk_through(api, console, radicale.url, hook_url, received, runtime)
            if keep_serving:
                console.print(f"\nThe API keeps serving at {base} (token: demo-token). Ctrl-C to stop.")
                with contextlib.suppress(asyncio.CancelledError):
                    await server
                return
        stop.set()
        await server


async def _walk_through(
    api: Api, console: Console, caldav_url: str, hook_url: str, received: list[dict[str, Any]], runtime: Any
) -> None:
    from sync import firing
    from web.webhooks import AiohttpWebhookSender

    john = await api.call("POST", "/users", {"name": "John", "email": "john@example.com", "timezone": "Europe/Paris"})
    connection = await api.call("POST", f"/users/{john['id']}/connections", {
        "provider": "caldav", "username": "john", "password": PASSWORD, "url": caldav_url,
    })
    calendars = (await api.call("GET", f"/users/{john['id']}/calendars"))["items"]
    console.print(escape(f"Connected {connection['account']} ({connection['provider']}): "
                         + ", ".join(f"{c['name']} [{c['access']} access]" for c in calendars)))
    linked = calendars[0]["id"]
    await api.call("POST", "/automations", {"trigger": "appointment.created", "action": "webhook", "url": hook_url})

    await api.call("PUT", f"/users/{john['id']}/sync-settings", {"linked_calendar_id": linked, "mode": "one_way"})
    summary = (await api.call("POST", f"/users/{john['id']}/sync"))["calendars"][0]
    slots = (await api.call("GET", f"/users/{john['id']}/blocked-slots"))["items"]
    console.rule("One-way sync (default)")
    console.print(f"fetched {summary['fetched']} events, {summary['blocked_slots']} blocked slots, "
                  f"{summary['appointments_created']} appointments, {summary['contacts_created']} contacts")
    console.print(_table("Blocked slots (John's time)", ["start", "end", "title", "blocks?"], [
        [_local(s["start"]), _local(s["end"]), s["title"] or "", "busy" if s["busy"] else "free"]
        for s in sorted(slots, key=lambda s: s["start"])
    ]))

    await api.call("PUT", f"/users/{john['id']}/sync-settings", {"linked_calendar_id": linked, "mode": "two_way"})
    summary = (await api.call("POST", f"/users/{john['id']}/sync"))["calendars"][0]
    appointments = (await api.call("GET", f"/users/{john['id']}/appointments"))["items"]
    contacts = (await api.call("GET", "/contacts"))["items"]
    async with aiohttp.ClientSession() as http:
        await firing.deliver_due(
            runtime.db, AiohttpWebhookSender(http), runtime.settings.webhook_secret.get_secret_value(),
            runtime.clock(),
        )
    console.rule("Two-way sync")
    console.print(f"{summary['appointments_created']} appointments created, {summary['contacts_created']} contacts")
    console.print(_table("Appointments", ["start", "end", "title", "origin", "status"], [
        [_local(a["start"]), _local(a["end"]), a.get("title") or "", a["origin"], a["status"]]
        for a in sorted(appointments, key=lambda a: a["start"])
    ]))
    contact_rows = [[c["name"], c["email"], c["source"]] for c in contacts]
    console.print(_table("Contacts", ["name", "email", "source"], contact_rows))
    console.print(_table("Automation webhooks received", ["event", "appointment", "contact"], [
        [r["event"], r["appointment"]["title"], (r["contact"] or {}).get("name", "-")] for r in received
    ]))
    await _slack_part(api, console, john)


async def _slack_part(api: Api, console: Console, john: dict[str, Any]) -> None:
    """What Slack would have said: John has no Slack id here, so his notices wait in the outbox, and each is
    shown as the DM the Slack app would post. Then how to try the Slack app itself."""
    notices = (await api.call("GET", f"/users/{john['id']}/notices"))["items"]
    console.rule("Slack")
    console.print(_table("Notices waiting for Slack (the DM the app would send)", ["kind", "DM"], [
        [n["kind"], build(n["kind"], n["payload"], john["timezone"])[0]] for n in reversed(notices)
    ]))
    console.print(SLACK_HOW_TO)
