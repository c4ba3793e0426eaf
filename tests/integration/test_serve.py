"""`croco serve` as a user starts it: a real process, no configuration, then PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from storage import migrate
from tests.caldav_servers import CalDAVAccount
from tests.ics import michel
from tests.providers.dav_proxy import dav_proxy

CROCO = [sys.executable, "-m", "croco.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROCO_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env | extra


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@contextmanager
def running_server(
    cwd: Path, env: dict[str, str], *, log: IO[str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start `croco serve` and wait until it answers /healthz (polling readiness, bounded).

    Its stderr is a pipe read after it exits, or `log` for a long run: a pipe nobody reads fills up, and the
    server then stalls on its next log line."""
    port = free_port()
    proc = subprocess.Popen(
        [*CROCO, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd, env=env, stderr=log or subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"croco serve exited early: {proc.stderr.read() if proc.stderr else ''}")
            try:
                _get(f"{base}/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling a port for readiness, not standing in for synchronisation
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_starts_with_no_configuration_and_answers_healthz(tmp_path: Path) -> None:
    with running_server(tmp_path, _clean_env()) as (base, proc):
        assert _get(f"{base}/healthz") == (200, {"status": "ok", "database": "ok", "scheduler": "ok"})
        status, body = _get(f"{base}/api/v1/users/nope")
        assert status == 401 and body["error"]["code"] == "unauthorized"
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "generated development secrets" in stderr
    assert (tmp_path / ".croco" / "croco.db").exists()
    secrets = json.loads((tmp_path / ".croco" / "dev-secrets.json").read_text())
    assert (tmp_path / ".croco" / "dev-secrets.json").stat().st_mode & 0o077 == 0
    for value in secrets.values():
        assert value not in stderr


def test_serve_keeps_generated_secrets_across_restarts(tmp_path: Path) -> None:
    with running_server(tmp_path, _clean_env()):
        pass
    first = (tmp_path / ".croco" / "dev-secrets.json").read_text()
    with running_server(tmp_path, _clean_env()):
        pass
    assert (tmp_path / ".croco" / "dev-secrets.json").read_text() == first


def test_serve_and_migrate_on_the_configured_database(tmp_path: Path, database_url: str) -> None:
    env = _clean_env(CROCO_DATABASE_URL=database_url)
    migrated = subprocess.run([*CROCO, "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr
    assert f"database schema at {migrate.head_revision()}" in migrated.stderr
    with running_server(tmp_path, env) as (base, _):
        assert _get(f"{base}/healthz") == (200, {"status": "ok", "database": "ok", "scheduler": "ok"})


def _call(base: str, method: str, path: str, token: str, body: dict[str, object] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/api/v1{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def _connect_john(base: str, token: str, radicale: CalDAVAccount, calendar_url: str) -> dict[str, Any]:
    """Through the API, as an integrator would: John, his CalDAV account, `calendar_url` as linked calendar."""
    user = _call(base, "POST", "/users", token, {"name": "John", "email": "john@example.com", "timezone": "Europe/Paris"})
    _call(base, "POST", f"/users/{user['id']}/connections", token, {
        "provider": "caldav", "username": radicale.username, "password": radicale.password, "url": radicale.url})
    calendars = _call(base, "GET", f"/users/{user['id']}/calendars", token)["items"]
    (linked,) = [c for c in calendars if calendar_url.endswith(c["name"] + "/")]
    _call(base, "PUT", f"/users/{user['id']}/sync-settings", token, {"linked_calendar_id": linked["id"]})
    return user


def test_the_scheduler_in_serve_syncs_a_connected_calendar_by_itself(tmp_path: Path, radicale: CalDAVAccount) -> None:
    calendar_url = radicale.new_calendar()
    day = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%d")
    radicale.put(calendar_url, "michel.ics", michel(day))
    env = _clean_env(CROCO_API_TOKEN="serve-test-token", CROCO_SCHEDULER_TICK_SECONDS="0.2")
    with running_server(tmp_path, env) as (base, _):
        user = _connect_john(base, "serve-test-token", radicale, calendar_url)
        deadline = time.monotonic() + 30
        while not (slots := _call(base, "GET", f"/users/{user['id']}/blocked-slots", "serve-test-token")["items"]):
            assert time.monotonic() < deadline, "the scheduler never synced the calendar"
            time.sleep(0.1)  # waiting for an outcome of the background loop, bounded by the deadline
    assert [s["title"] for s in slots] == ["Appointment with Dr. Michel"]


def test_croco_sync_runs_a_cycle_from_the_command_line(tmp_path: Path, radicale: CalDAVAccount) -> None:
    calendar_url = radicale.new_calendar()
    day = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%d")
    radicale.put(calendar_url, "michel.ics", michel(day))
    env = _clean_env(CROCO_API_TOKEN="cli-token", CROCO_SCHEDULER_ENABLED="false")
    with running_server(tmp_path, env) as (base, _):
        user = _connect_john(base, "cli-token", radicale, calendar_url)
        assert _call(base, "GET", f"/users/{user['id']}/blocked-slots", "cli-token")["items"] == []
        synced = subprocess.run([*CROCO, "sync", "--user", user["id"]], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert synced.returncode == 0, synced.stderr
        assert "1 calendar(s) synced, 0 with errors" in synced.stderr
        slots = _call(base, "GET", f"/users/{user['id']}/blocked-slots", "cli-token")["items"]
    assert [s["title"] for s in slots] == ["Appointment with Dr. Michel"]


async def test_a_kill_9_mid_sync_leaves_the_calendar_syncable_after_a_restart(
    tmp_path: Path, radicale: CalDAVAccount, database_url: str
) -> None:
    """The calendar server stalls the first listing; the process syncing it is killed; a manual sync after the
    restart syncs the calendar (within one short lease), where it used to answer `{"calendars": []}`."""
    calendar_url = radicale.new_calendar()
    radicale.put(calendar_url, "michel.ics", michel((datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%d")))
    loop, listing_asked, go = asyncio.get_running_loop(), threading.Event(), asyncio.Event()

    async def stall_listings(_request: web.Request, body: str) -> None:
        if "sync-collection" in body and not go.is_set():
            listing_asked.set()
            await go.wait()

    env = _clean_env(CROCO_API_TOKEN="kill-token", CROCO_DATABASE_URL=database_url, CROCO_SYNC_LEASE_SECONDS="3",
                     CROCO_SCHEDULER_TICK_SECONDS="0.2", CROCO_HTTP_TIMEOUT_SECONDS="8")

    def crash_and_restart(via_proxy: CalDAVAccount) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Blocking, in a thread: the proxy answers in the test's event loop meanwhile."""
        with running_server(tmp_path, env) as (base, proc):
            user = _connect_john(base, "kill-token", via_proxy, calendar_url)
            assert listing_asked.wait(30), "the scheduler never started syncing"
            # held by a live sync (its heartbeat renews the 3 s lease): the manual sync waits, then says so
            busy = _call(base, "POST", f"/users/{user['id']}/sync", "kill-token")["calendars"]
            assert [c["error"] for c in busy] == ["sync_in_progress"]
            proc.kill()
            proc.wait(timeout=20)
        loop.call_soon_threadsafe(go.set)
        with running_server(tmp_path, env | {"CROCO_SCHEDULER_ENABLED": "false"}) as (base, _):
            synced = _call(base, "POST", f"/users/{user['id']}/sync", "kill-token")["calendars"]
            return synced, _call(base, "GET", f"/users/{user['id']}/blocked-slots", "kill-token")["items"]

    async with dav_proxy(radicale.url) as proxy:
        proxy.waits.append(stall_listings)
        synced, slots = await asyncio.to_thread(crash_and_restart, dataclasses.replace(radicale, url=proxy.url))
    assert [(c["error"], c["blocked_slots"]) for c in synced] == [(None, 1)]
    assert [s["title"] for s in slots] == ["Appointment with Dr. Michel"]


def test_the_demo_walks_through_both_modes(tmp_path: Path) -> None:
    """What `make demo` shows: one-way blocked slots, then two-way appointments, Dr. Michel as a contact."""
    demo = subprocess.run([*CROCO, "demo", "--once", "--port", str(free_port())], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=180)
    assert demo.returncode == 0, demo.stderr
    one_way, two_way = demo.stdout.split("Two-way sync")
    assert "Appointment with Dr. Michel" in one_way and "0 appointments, 0 contacts" in one_way
    assert "Lunch" not in demo.stdout  # cancelled: never imported
    assert "7 appointments created, 1 contacts" in two_way
    assert "michel@example.com" in two_way and "two_way_import" in two_way
    assert "appointment.created" in two_way


def test_schemathesis_from_outside_finds_no_server_error_and_no_timeout(tmp_path: Path) -> None:
    """Issue 14: every phase (stateful included, along the document's links), two workers, against `croco
    serve` on its default SQLite: no 5xx (`database is locked` was one) and no request over 10 s."""
    env = _clean_env(CROCO_API_TOKEN="schemathesis-token")
    with (tmp_path / "serve.log").open("w+") as log, running_server(tmp_path, env, log=log) as (base, _):
        run = subprocess.run([
            sys.executable, "-m", "schemathesis.cli", "run", f"{base}/api/v1/openapi.json",
            "--header", "Authorization: Bearer schemathesis-token", "--workers", "2",
            "--phases", "examples,coverage,fuzzing,stateful", "--checks", "not_a_server_error",
            "--max-examples", "50", "--request-timeout", "10", "--seed", "14", "--generation-database", "none",
            "--no-color",
        ], cwd=tmp_path, env=env | {"SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks"},
            capture_output=True, text=True, timeout=300)
    errors = [line for line in (tmp_path / "serve.log").read_text().splitlines() if '"level": "error"' in line]
    assert run.returncode == 0, "\n".join([run.stdout[-6000:], run.stderr[-2000:], *errors[-20:]])
    assert "Stateful" in run.stdout and not re.search(r"\b0 generated", run.stdout)  # "2840 generated" is fine
