"""REST API v1: each endpoint's success path and its answers to bad input (API.md)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from storage.db import Database
from storage.enums import (
    Access,
    Action,
    AppointmentStatus,
    CalendarKind,
    ConnectionStatus,
    ContactSource,
    Origin,
    SyncMode,
    Trigger,
)
from storage.models import Appointment, AppointmentAssignee, Notice, Workspace
from storage.secrets import SecretBox
from sync import people
from sync.notices import ContactCreated
from sync.outbox import DeliveryFailed, Outbox
from sync.providers.base import Unreachable
from tests.ics import michel, vevent
from tests.sinks import RecordingSink
from tests.web.conftest import GOOD_PASSWORD, NOW, TOKEN, Accounts, Client, context
from web.api import CONTEXT
from web.app import create_app, load_openapi

JOHN = {"name": "John", "email": "john@example.com", "timezone": "Europe/Paris"}
UNKNOWN = "0" * 32
TOMORROW = (NOW.astimezone(ZoneInfo("Europe/Paris")) + timedelta(days=1)).strftime("%Y%m%d")
CALDAV = {"provider": "caldav", "username": "john", "password": GOOD_PASSWORD, "url": "https://dav.example.com/"}

ENDPOINTS = [
    ("POST", "/api/v1/users"), ("GET", "/api/v1/users/{u}"), ("POST", "/api/v1/users/{u}/connections"),
    ("POST", "/api/v1/users/{u}/connect-links"),
    ("GET", "/api/v1/users/{u}/connections"), ("DELETE", "/api/v1/connections/{u}"),
    ("GET", "/api/v1/users/{u}/calendars"), ("GET", "/api/v1/users/{u}/sync-settings"),
    ("PUT", "/api/v1/users/{u}/sync-settings"), ("POST", "/api/v1/users/{u}/sync"),
    ("GET", "/api/v1/users/{u}/blocked-slots"), ("GET", "/api/v1/users/{u}/appointments"),
    ("POST", "/api/v1/calendars"), ("GET", "/api/v1/calendars/{u}"), ("GET", "/api/v1/contacts"),
    ("POST", "/api/v1/automations"), ("GET", "/api/v1/automations/{u}/runs"),
    ("GET", "/api/v1/calendars/{u}/free-slots"), ("POST", "/api/v1/calendars/{u}/appointments"),
    ("GET", "/api/v1/calendars/{u}/troubleshoot"), ("GET", "/api/v1/appointments/{u}"),
    ("PATCH", "/api/v1/appointments/{u}"), ("POST", "/api/v1/appointments/{u}/cancel"),
    ("GET", "/api/v1/users/{u}/notices"),
    ("POST", "/api/v1/appointments/{u}/restore"), ("POST", "/api/v1/users/{u}/held-removals/confirm"),
]
WITH_BODY = [(m, p) for m, p in ENDPOINTS
             if m in ("POST", "PUT", "PATCH") and not p.endswith(("/sync", "/cancel", "/restore", "/confirm"))]
VALID_BODIES = {
    "/api/v1/calendars/{u}/appointments": {"start": "2030-01-07T09:00:00Z",
                                           "contact": {"name": "Ada", "email": "ada@example.com"}},
    "/api/v1/appointments/{u}": {"title": "Renamed"},
    "/api/v1/users/{u}/connect-links": {"provider": "icloud"},
}


async def error_of(response: Any, status: int) -> str:
    """Asserts the status and the one error shape; returns the code."""
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"} and body["error"]["message"]
    return str(body["error"]["code"])


async def created(response: Any) -> dict[str, Any]:
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def new_user(api: Client, **fields: str) -> dict[str, Any]:
    return await created(await api.post("/api/v1/users", json=JOHN | fields))


async def listed(api: Client, path: str, **params: str) -> list[dict[str, Any]]:
    response = await api.get(path, params=params)
    assert response.status == 200, await response.text()
    return list((await response.json())["items"])


async def connected(api: Client) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """John with his CalDAV account connected: (user, connection, his calendars by name)."""
    user = await new_user(api)
    connection = await created(await api.post(f"/api/v1/users/{user['id']}/connections", json=CALDAV))
    calendars = await listed(api, f"/api/v1/users/{user['id']}/calendars")
    return user, connection, {c["name"]: c for c in calendars}


async def synced(
    api: Client, accounts: Accounts, mode: str, *, events: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """John's Work calendar linked in `mode`, holding "Appointment with Dr. Michel" tomorrow (and `events` - 1
    more already put there), synced once."""
    accounts.provider.put("/john/work/", "michel.ics", michel(TOMORROW))
    user, connection, calendars = await connected(api)
    settings = {"linked_calendar_id": calendars["Work"]["id"], "mode": mode}
    assert (await api.put(f"/api/v1/users/{user['id']}/sync-settings", json=settings)).status == 200
    response = await api.post(f"/api/v1/users/{user['id']}/sync")
    assert response.status == 200, await response.text()
    (report,) = (await response.json())["calendars"]
    assert report["id"] == calendars["Work"]["id"] and report["fetched"] == events
    return user, connection


# Bad input, for every endpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [*ENDPOINTS, ("GET", "/api/v1/no-such-route")])
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"])
async def test_missing_or_wrong_token_is_401(api: Client, method: str, path: str, header: str | None) -> None:
    headers = {"Authorization": header or ""}
    response = await api.request(method, path.format(u=UNKNOWN), headers=headers, json={})
    assert await error_of(response, 401) == "unauthorized"


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
@pytest.mark.parametrize("body", [
    b"{", b"not json", b"\xff\xfe", b"", b'{"name": "\\ud800"}', b"[" * 100_000, b'{"x": 1' + b"0" * 5000 + b"}",
], ids=["truncated", "text", "not-utf8", "empty", "lone-surrogate", "deep", "huge-number"])
async def test_malformed_json_is_400(api: Client, method: str, path: str, body: bytes) -> None:
    user = await new_user(api)
    response = await api.request(method, path.format(u=user["id"]), data=body)
    assert await error_of(response, 400) == "malformed_json"


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
@pytest.mark.parametrize("body", [
    [], "a string", None, 7, {"unexpected": 1}, {"name": 7, "provider": 7, "trigger": 7, "linked_calendar_id": 7},
])
async def test_wrong_shapes_types_and_unknown_fields_are_422(api: Client, method: str, path: str, body: object) -> None:
    user = await new_user(api)
    response = await api.request(method, path.format(u=user["id"]), data=json.dumps(body))
    assert await error_of(response, 422) == "validation_error"


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/users", JOHN | {"nickname": "J"}, "nickname"),
    ("/api/v1/users", JOHN | {"name": 7}, "name"),
    ("/api/v1/calendars", {"name": "C", "kind": "service", "member_ids": [], "duration_minutes": "30",
                           "timezone": "UTC"}, "duration_minutes"),
    ("/api/v1/calendars", {"name": "C", "kind": "service", "member_ids": [], "duration_minutes": 30.0,
                           "timezone": "UTC"}, "duration_minutes"),
    ("/api/v1/automations", {"trigger": "appointment.created", "action": "slack_dm", "calendar_id": 5}, "calendar_id"),
])
async def test_422_names_the_field(api: Client, path: str, body: dict[str, Any], field: str) -> None:
    response = await api.post(path, json=body)
    assert await error_of(response, 422) == "validation_error"
    assert field in (await response.json())["error"]["message"]


async def test_nul_characters_are_refused_before_reaching_the_database(api: Client) -> None:
    """PostgreSQL cannot store or compare them; every backend answers the same 4xx."""
    assert await error_of(await api.post("/api/v1/users", json=JOHN | {"name": "Jo\x00hn"}), 422) == "validation_error"
    assert await error_of(await api.get("/api/v1/users/ab%00cd"), 404) == "not_found"
    assert await error_of(await api.get("/api/v1/contacts", params={"email": "a\x00@b.c"}), 422) == "validation_error"
    user = await new_user(api)
    body = {"linked_calendar_id": None, "conflict_calendar_ids": ["a\x00"]}
    assert await error_of(await api.put(f"/api/v1/users/{user['id']}/sync-settings", json=body), 422) == \
        "validation_error"


@pytest.mark.parametrize(("method", "path"), [e for e in ENDPOINTS if "{u}" in e[1]])
@pytest.mark.parametrize("unknown", [UNKNOWN, "x" * 300])
async def test_unknown_ids_are_404(api: Client, method: str, path: str, unknown: str) -> None:
    body = {"POST": {"provider": "icloud", "username": "a", "password": "b"}, "PUT": {"linked_calendar_id": None}}
    params = {"date": "2030-01-07"} if path.endswith("/troubleshoot") else None
    response = await api.request(method, path.format(u=unknown), json=VALID_BODIES.get(path, body.get(method)),
                                 params=params)
    assert await error_of(response, 404) == "not_found"


async def test_unknown_route_and_wrong_method_keep_the_error_shape(api: Client) -> None:
    assert await error_of(await api.get("/api/v1/nothing-here"), 404) == "not_found"
    assert await error_of(await api.get("/"), 404) == "not_found"
    response = await api.delete("/api/v1/users")
    assert await error_of(response, 405) == "method_not_allowed"
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}


@pytest.mark.parametrize("query", [{"start": "yesterday"}, {"start": "2026-03-02T13:00:00"},
                                   {"start": "2026-03-02T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
                                   {"start": "9999-12-31T23:00:00-05:00"}, {"start": "9999-12-31T00:00:00Z"}])
@pytest.mark.parametrize("what", ["blocked-slots", "appointments"])
async def test_bad_time_ranges_are_422(api: Client, query: dict[str, str], what: str) -> None:
    user = await new_user(api)
    response = await api.get(f"/api/v1/users/{user['id']}/{what}", params=query)
    assert await error_of(response, 422) == "validation_error"


# Users -------------------------------------------------------------------------------------------------


async def test_create_and_read_a_user(api: Client) -> None:
    user = await new_user(api, slack_user_id="U123", email="John@Example.com")
    assert user == {"id": user["id"], "name": "John", "email": "john@example.com", "timezone": "Europe/Paris",
                    "slack_user_id": "U123"}
    assert await (await api.get(f"/api/v1/users/{user['id']}")).json() == user


async def test_a_user_is_found_by_slack_id_in_the_default_workspace_or_a_named_team(api: Client, db: Database) -> None:
    made = await new_user(api, slack_user_id="U123")
    assert await (await api.get("/api/v1/users", params={"slack_user_id": "U123"})).json() == {"items": [made]}
    assert await (await api.get("/api/v1/users", params={"slack_user_id": "U999"})).json() == {"items": []}
    other = await people.workspace_for_team(db, "T2", "Other team", home=False)
    met = await people.meet(db, other, people.Profile("U123", "Ann", "ann@example.com", "Asia/Tokyo"))
    found = await (await api.get("/api/v1/users", params={"slack_user_id": "U123", "slack_team_id": "T2"})).json()
    assert [(u["id"], u["email"], u["timezone"]) for u in found["items"]] == [(met.id, "ann@example.com", "Asia/Tokyo")]
    assert await (await api.get("/api/v1/users", params={"slack_user_id": "U1", "slack_team_id": "T9"})).json() == \
        {"items": []}
    assert await error_of(await api.get("/api/v1/users"), 422) == "validation_error"


@pytest.mark.parametrize(("field", "value"), [
    ("timezone", "Mars/Olympus"), ("timezone", "localtime"), ("timezone", "../etc/passwd"), ("timezone", "America"),
    ("email", "not-an-email"), ("name", ""), ("name", "   "), ("name", "n" * 201), ("slack_user_id", "U" * 33),
])
async def test_invalid_user_values_are_422_naming_the_field(api: Client, field: str, value: str) -> None:
    response = await api.post("/api/v1/users", json=JOHN | {field: value})
    assert await error_of(response, 422) == "validation_error"
    assert field in (await response.json())["error"]["message"]


@pytest.mark.parametrize("missing", ["name", "email", "timezone"])
async def test_missing_user_fields_are_422(api: Client, missing: str) -> None:
    body = {k: v for k, v in JOHN.items() if k != missing}
    response = await api.post("/api/v1/users", json=body)
    assert await error_of(response, 422) == "validation_error"
    assert missing in (await response.json())["error"]["message"]


async def test_same_email_is_409_even_when_two_requests_race(api: Client) -> None:
    await new_user(api)
    assert await error_of(await api.post("/api/v1/users", json=JOHN | {"email": "JOHN@example.com"}), 409) == \
        "email_taken"
    responses = await asyncio.gather(*(api.post("/api/v1/users", json=JOHN | {"email": "ann@example.com"})
                                       for _ in range(4)))
    assert sorted(r.status for r in responses) == [201, 409, 409, 409]


async def test_notices_are_listed_newest_first_and_filtered_to_the_undelivered(api: Client, db: Database) -> None:
    user = await new_user(api, slack_user_id="U123")
    written = datetime(2026, 3, 2, 9, tzinfo=UTC)
    async with db.write() as session:
        for minutes, name in enumerate(["Ada", "Bob", "Cy"]):
            session.add(Notice(user_id=user["id"], kind="contact_created", created_at=written + timedelta(minutes=minutes),
                               payload=ContactCreated(f"c-{name}", name, f"{name}@example.com", "a1").to_payload()))
    delivered_at = written + timedelta(minutes=10)
    sink = RecordingSink(failures=[DeliveryFailed("HTTP 503")])  # Ada's DM fails once; Bob's and Cy's go out
    assert await Outbox(db, sink, owner="test", clock=lambda: delivered_at).deliver_due() == 2

    path = f"/api/v1/users/{user['id']}/notices"
    items = await listed(api, path)
    assert [n["payload"]["name"] for n in items] == ["Cy", "Bob", "Ada"]
    assert items[0] == {"id": items[0]["id"], "kind": "contact_created", "payload": items[0]["payload"],
                        "created_at": "2026-03-02T09:02:00Z", "delivered_at": "2026-03-02T09:10:00Z"}
    assert items[2]["delivered_at"] is None
    assert [n["payload"]["name"] for n in await listed(api, path, undelivered="true")] == ["Ada"]
    assert len(await listed(api, path, undelivered="false")) == 3
    assert await error_of(await api.get(path, params={"undelivered": "yes"}), 422) == "validation_error"
    other = await new_user(api, email="ann@example.com")
    assert await listed(api, f"/api/v1/users/{other['id']}/notices") == []  # only the user's own


# Connections -------------------------------------------------------------------------------------------


async def test_connection_is_checked_with_the_provider_then_saved(api: Client, accounts: Accounts) -> None:
    user, connection, calendars = await connected(api)
    assert connection == {"id": connection["id"], "provider": "caldav", "account": "john", "status": "ok",
                          "last_error": None}
    assert accounts.calls == [("caldav", "john", "https://dav.example.com/")]
    assert {n: (c["access"], c["connection_id"]) for n, c in calendars.items()} == {
        "Work": ("full", connection["id"]), "Holidays (shared)": ("read", connection["id"])}
    assert await listed(api, f"/api/v1/users/{user['id']}/connections") == [connection]


async def test_icloud_needs_no_url_and_the_provider_picks_its_server(api: Client, accounts: Accounts) -> None:
    user = await new_user(api)
    body = {"provider": "icloud", "username": "john@icloud.com", "password": GOOD_PASSWORD}
    connection = await created(await api.post(f"/api/v1/users/{user['id']}/connections", json=body))
    assert connection["provider"] == "icloud" and connection["account"] == "john@icloud.com"
    assert accounts.calls == [("icloud", "john@icloud.com", None)]  # None: ProviderConfig.icloud_url


async def test_wrong_credentials_and_unreachable_server_are_422_and_nothing_is_saved(
    api: Client, accounts: Accounts
) -> None:
    user = await new_user(api)
    path = f"/api/v1/users/{user['id']}/connections"
    wrong = {"provider": "icloud", "username": "john@icloud.com", "password": "wrong-one"}
    assert await error_of(await api.post(path, json=wrong), 422) == "invalid_credentials"
    accounts.unreachable_urls.add("https://down.example.com/")
    down = CALDAV | {"url": "https://down.example.com/"}
    assert await error_of(await api.post(path, json=down), 422) == "unreachable"
    assert await listed(api, path) == []
    assert await listed(api, f"/api/v1/users/{user['id']}/calendars") == []


@pytest.mark.parametrize(("change", "field"), [
    ({"url": None}, "url"), ({"url": "ftp://dav.example.com/"}, "url"), ({"url": "dav.example.com"}, "url"),
    ({"url": "https://john:secret@dav.example.com/"}, "url"), ({"url": "https://x.example.com/" + "a" * 2000}, "url"),
    ({"provider": "google"}, "provider"), ({"password": ""}, "password"), ({"username": 5}, "username"),
])
async def test_invalid_connection_requests_are_422_without_calling_the_server(
    api: Client, accounts: Accounts, change: dict[str, Any], field: str
) -> None:
    user = await new_user(api)
    body = {k: v for k, v in (CALDAV | change).items() if v is not None}
    response = await api.post(f"/api/v1/users/{user['id']}/connections", json=body)
    assert await error_of(response, 422) == "validation_error"
    assert field in (await response.json())["error"]["message"] and accounts.calls == []


async def test_deleting_a_connection_removes_what_it_brought_and_clears_settings(
    api: Client, accounts: Accounts, db: Database
) -> None:
    user, connection = await synced(api, accounts, "two_way")
    assert len(await listed(api, f"/api/v1/users/{user['id']}/appointments")) == 1
    async with db.write() as session:  # a booking of John's, made by the system: it is not the connection's
        booked = Appointment(start=NOW, end=NOW + timedelta(hours=1))
        session.add(booked)
        await session.flush()
        session.add(AppointmentAssignee(appointment_id=booked.id, user_id=user["id"]))
    assert (await api.delete(f"/api/v1/connections/{connection['id']}")).status == 204

    assert await listed(api, f"/api/v1/users/{user['id']}/calendars") == []
    assert await listed(api, f"/api/v1/users/{user['id']}/connections") == []
    assert await listed(api, f"/api/v1/users/{user['id']}/blocked-slots") == []
    left = await listed(api, f"/api/v1/users/{user['id']}/appointments")
    assert [(a["id"], a["origin"]) for a in left] == [(booked.id, "system")]
    settings = await (await api.get(f"/api/v1/users/{user['id']}/sync-settings")).json()
    assert settings["linked_calendar_id"] is None and settings["conflict_calendar_ids"] == []
    assert await error_of(await api.delete(f"/api/v1/connections/{connection['id']}"), 404) == "not_found"


# Calendars and sync settings ---------------------------------------------------------------------------


async def test_defaults_then_linked_calendar_becomes_a_conflict_calendar(api: Client) -> None:
    user, _, calendars = await connected(api)
    path = f"/api/v1/users/{user['id']}/sync-settings"
    assert await (await api.get(path)).json() == {"linked_calendar_id": None, "conflict_calendar_ids": [],
                                                  "mode": "one_way", "window_days_back": 1, "window_days_ahead": 180,
                                                  "daily_agenda": False}
    work = calendars["Work"]["id"]
    saved = await (await api.put(path, json={"linked_calendar_id": work, "mode": "two_way"})).json()
    assert saved == {"linked_calendar_id": work, "conflict_calendar_ids": [work], "mode": "two_way",
                     "window_days_back": 1, "window_days_ahead": 180, "daily_agenda": False}
    assert await (await api.get(path)).json() == saved
    opted_in = await (await api.put(path, json={"linked_calendar_id": work, "daily_agenda": True})).json()
    assert opted_in == saved | {"daily_agenda": True}
    assert (await (await api.put(path, json={"linked_calendar_id": work})).json())["daily_agenda"] is True
    shown = {c["name"]: c for c in await listed(api, f"/api/v1/users/{user['id']}/calendars")}
    assert (shown["Work"]["is_linked"], shown["Work"]["is_conflict"]) == (True, True)
    assert (shown["Holidays (shared)"]["is_linked"], shown["Holidays (shared)"]["is_conflict"]) == (False, False)


async def test_explicit_conflict_list_is_taken_as_given_and_omitted_fields_are_kept(api: Client) -> None:
    user, _, calendars = await connected(api)
    path = f"/api/v1/users/{user['id']}/sync-settings"
    work, holidays = calendars["Work"]["id"], calendars["Holidays (shared)"]["id"]
    first = {"linked_calendar_id": work, "conflict_calendar_ids": [holidays], "mode": "two_way",
             "window_days_back": 0, "window_days_ahead": 30, "daily_agenda": True}
    assert await (await api.put(path, json=first)).json() == first
    unlinked = await (await api.put(path, json={"linked_calendar_id": None, "conflict_calendar_ids": []})).json()
    assert unlinked == first | {"linked_calendar_id": None, "conflict_calendar_ids": []}
    shown = {c["name"]: c for c in await listed(api, f"/api/v1/users/{user['id']}/calendars")}
    assert not shown["Work"]["is_linked"] and not shown["Holidays (shared)"]["is_conflict"]


async def test_linked_calendar_needs_full_access_and_must_be_the_users(api: Client) -> None:
    user, _, calendars = await connected(api)
    other = await new_user(api, email="ann@example.com")
    path = f"/api/v1/users/{user['id']}/sync-settings"
    read_only = {"linked_calendar_id": calendars["Holidays (shared)"]["id"]}
    assert await error_of(await api.put(path, json=read_only), 422) == "linked_calendar_needs_full_access"
    johns = {"linked_calendar_id": calendars["Work"]["id"]}
    assert await error_of(await api.put(f"/api/v1/users/{other['id']}/sync-settings", json=johns), 422) == \
        "validation_error"
    assert await error_of(await api.put(path, json={"linked_calendar_id": UNKNOWN}), 422) == "validation_error"
    unknown_conflict = {"linked_calendar_id": None, "conflict_calendar_ids": [UNKNOWN]}
    assert await error_of(await api.put(path, json=unknown_conflict), 422) == "validation_error"


@pytest.mark.parametrize("body", [
    {}, {"linked_calendar_id": None, "mode": "sideways"}, {"linked_calendar_id": None, "window_days_back": -1},
    {"linked_calendar_id": None, "window_days_back": 366}, {"linked_calendar_id": None, "window_days_ahead": 0},
    {"linked_calendar_id": None, "window_days_ahead": 731}, {"linked_calendar_id": None, "conflict_calendar_ids": "x"},
])
async def test_invalid_sync_settings_are_422(api: Client, body: dict[str, Any]) -> None:
    user = await new_user(api)
    response = await api.put(f"/api/v1/users/{user['id']}/sync-settings", json=body)
    assert await error_of(response, 422) == "validation_error"


async def test_one_way_sync_brings_blocked_slots(api: Client, accounts: Accounts) -> None:
    user, _ = await synced(api, accounts, "one_way")
    (slot,) = await listed(api, f"/api/v1/users/{user['id']}/blocked-slots")
    assert slot["busy"] and not slot["all_day"] and slot["title"] == "Appointment with Dr. Michel"
    assert slot["start"].endswith("Z") and slot["remote_id"] == "michel.ics"
    assert await listed(api, f"/api/v1/users/{user['id']}/appointments") == []
    assert await listed(api, f"/api/v1/users/{user['id']}/blocked-slots", start="2020-01-01T00:00:00Z",
                        end="2020-01-02T00:00:00+02:00") == []


async def test_the_next_tick_on_the_api_clock_syncs_a_calendar_just_chosen(api: Client, accounts: Accounts) -> None:
    """Connecting and choosing a calendar make it due at the API's clock (years before today), not the wall
    clock's: the scheduler's next tick, on the same clock, syncs it without waiting."""
    accounts.provider.put("/john/work/", "michel.ics", michel(TOMORROW))
    user, _, calendars = await connected(api)
    settings = {"linked_calendar_id": calendars["Work"]["id"], "mode": "one_way"}
    assert (await api.put(f"/api/v1/users/{user['id']}/sync-settings", json=settings)).status == 200
    engine = api.server.app[CONTEXT].engine
    assert engine is not None
    assert [(r.calendar_id, r.tally.fetched) for r in await engine.run_due()] == [(calendars["Work"]["id"], 1)]
    assert len(await listed(api, f"/api/v1/users/{user['id']}/blocked-slots")) == 1


async def test_two_way_sync_brings_an_appointment_a_contact_and_automation_runs(
    api: Client, accounts: Accounts
) -> None:
    hook = await created(await api.post("/api/v1/automations", json={
        "trigger": "appointment.created", "action": "webhook", "url": "https://hooks.example.com/croco"}))
    user, _ = await synced(api, accounts, "two_way")
    (appointment,) = await listed(api, f"/api/v1/users/{user['id']}/appointments")
    assert appointment["origin"] == "imported" and appointment["calendar_id"] is None
    assert appointment["status"] == "booked" and appointment["assigned_user_ids"] == [user["id"]]
    (contact,) = await listed(api, "/api/v1/contacts")
    assert contact == {"id": appointment["contact_ids"][0], "name": "Dr. Michel", "email": "michel@example.com",
                       "source": "two_way_import"}
    assert await listed(api, "/api/v1/contacts", email=" Michel@Example.com ") == [contact]
    assert await listed(api, "/api/v1/contacts", email="nobody@example.com") == []
    (run,) = await listed(api, f"/api/v1/automations/{hook['id']}/runs")
    assert (run["appointment_id"], run["contact_id"], run["status"]) == (appointment["id"], contact["id"], "pending")
    assert run["at"].endswith("Z")


# Team calendars and automations ------------------------------------------------------------------------


async def test_team_calendar_with_defaults(api: Client) -> None:
    ann, john = await new_user(api, email="ann@example.com"), await new_user(api)
    created_calendar = await created(await api.post("/api/v1/calendars", json={
        "name": "Consultations", "kind": "round_robin", "member_ids": [john["id"], ann["id"], john["id"]],
        "duration_minutes": 30, "timezone": "Europe/Paris"}))
    assert created_calendar == {
        "id": created_calendar["id"], "name": "Consultations", "kind": "round_robin",
        "member_ids": [john["id"], ann["id"]], "duration_minutes": 30, "slot_interval_minutes": 30,
        "timezone": "Europe/Paris", "open_hours": {d: [["00:00", "24:00"]] for d in
                                                   ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        "capacity": None, "buffer_before_minutes": 0, "buffer_after_minutes": 0, "min_notice_minutes": 0,
        "max_days_ahead": 60}
    assert await (await api.get(f"/api/v1/calendars/{created_calendar['id']}")).json() == created_calendar


async def test_class_calendar_keeps_its_capacity_and_open_hours(api: Client) -> None:
    user = await new_user(api)
    body = {"name": "Yoga", "kind": "class", "member_ids": [user["id"]], "duration_minutes": 60, "timezone": "UTC",
            "open_hours": {"mon": [["18:00", "24:00"], ["07:00", "08:00"]], "sat": []}}
    yoga = await created(await api.post("/api/v1/calendars", json=body | {"capacity": 12}))
    assert yoga["capacity"] == 12 and yoga["open_hours"]["mon"] == [["07:00", "08:00"], ["18:00", "24:00"]]
    assert yoga["open_hours"]["sat"] == [] and yoga["open_hours"]["tue"] == []
    assert (await created(await api.post("/api/v1/calendars", json=body)))["capacity"] == 1


@pytest.mark.parametrize("change", [
    {"member_ids": ["nobody"]}, {"member_ids": []}, {"member_ids": "x"}, {"kind": "solo"},
    {"timezone": "Nowhere/City"}, {"timezone": ""}, {"duration_minutes": 0}, {"duration_minutes": 24 * 60 + 1},
    {"slot_interval_minutes": 4}, {"capacity": 5}, {"buffer_before_minutes": -1}, {"max_days_ahead": 0},
    {"open_hours": {"mon": [["17:00", "09:00"]]}}, {"open_hours": {"mon": [["09:00", "09:00"]]}},
    {"open_hours": {"xyz": [["09:00", "17:00"]]}}, {"open_hours": {"mon": [["9am", "5pm"]]}},
    {"open_hours": {"mon": [["24:00", "24:00"]]}}, {"open_hours": {"mon": [["09:00", "24:01"]]}},
    {"open_hours": {"mon": [["09:00"]]}}, {"open_hours": {"mon": [["09:00", "12:00", "13:00"]]}},
    {"open_hours": {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}}, {"open_hours": {"mon": "09:00-17:00"}},
    {"open_hours": {"mon": [[9, 17]]}},
])
async def test_invalid_team_calendars_are_422(api: Client, change: dict[str, Any]) -> None:
    user = await new_user(api)
    body = {"name": "C", "kind": "collective", "member_ids": [user["id"]], "duration_minutes": 30,
            "timezone": "UTC"} | change
    assert await error_of(await api.post("/api/v1/calendars", json=body), 422) == "validation_error"


PARIS = ZoneInfo("Europe/Paris")
NINE_TO_FIVE = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def tomorrow_at(hour: int, minute: int = 0) -> str:
    day = datetime.strptime(TOMORROW, "%Y%m%d")
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS).isoformat()


def paris_times(items: list[dict[str, Any]]) -> list[str]:
    return [datetime.fromisoformat(i["start"]).astimezone(PARIS).strftime("%H:%M") for i in items]


async def johns_desk(api: Client, user: dict[str, Any], **rules: Any) -> dict[str, Any]:
    return await created(await api.post("/api/v1/calendars", json={
        "name": "Consultations", "kind": "round_robin", "member_ids": [user["id"]], "duration_minutes": 30,
        "timezone": "Europe/Paris", "open_hours": NINE_TO_FIVE} | rules))


def ada(start: str) -> dict[str, Any]:
    return {"start": start, "contact": {"name": "Ada Lovelace", "email": "Ada@Example.com"}}


async def test_dr_michel_blocks_johns_slots_and_the_troubleshooter_names_it(api: Client, accounts: Accounts) -> None:
    """The help article's example: after a one-way sync of "Appointment with Dr. Michel" 13:00-14:00, no slot
    overlapping it is offered, booking one is 409 slot_unavailable, and the troubleshooter names the event."""
    free_event = "DTSTART;TZID=Europe/Paris:{d}T150000", "DTEND;TZID=Europe/Paris:{d}T153000", "TRANSP:TRANSPARENT"
    cancelled = "DTSTART;TZID=Europe/Paris:{d}T160000", "DTEND;TZID=Europe/Paris:{d}T163000", "STATUS:CANCELLED"
    accounts.provider.put("/john/work/", "free.ics", vevent("free", *(x.format(d=TOMORROW) for x in free_event)))
    accounts.provider.put("/john/work/", "off.ics", vevent("off", *(x.format(d=TOMORROW) for x in cancelled)))
    user, _ = await synced(api, accounts, "one_way", events=3)
    desk = await johns_desk(api, user)
    window = {"start": tomorrow_at(0), "end": tomorrow_at(23)}

    calls = len(accounts.calls)
    offered = paris_times(await listed(api, f"/api/v1/calendars/{desk['id']}/free-slots", **window))
    assert len(accounts.calls) == calls  # browsing never opens a provider
    assert "12:30" in offered and "13:00" not in offered and "13:30" not in offered and "14:00" in offered
    assert "15:00" in offered and "16:00" in offered  # a Free event and a cancelled one leave the slot open

    response = await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(tomorrow_at(13)))
    assert await error_of(response, 409) == "slot_unavailable"

    for viewer, title in ((user["id"], "Appointment with Dr. Michel"), (None, None)):
        query = {"date": datetime.strptime(TOMORROW, "%Y%m%d").date().isoformat()} | (
            {"viewer_id": viewer} if viewer else {})
        items = await listed(api, f"/api/v1/calendars/{desk['id']}/troubleshoot", **query)
        one = next(i for i in items if paris_times([i]) == ["13:00"])
        assert not one["available"]
        (conflict,) = one["reasons"]
        calendars = await listed(api, f"/api/v1/users/{user['id']}/calendars")
        assert conflict["code"] == "CONFLICT" and conflict["user_id"] == user["id"]
        assert conflict["event"]["title"] == title  # the title only to its owner
        assert conflict["event"]["calendar_id"] == next(c["id"] for c in calendars if c["name"] == "Work")
        assert conflict["event"]["calendar_name"] == "Work"
        assert conflict["event"]["fetched_at"] and conflict["event"]["start"].endswith("Z")
        early = next(i for i in items if paris_times([i]) == ["08:00"])
        assert [r["code"] for r in early["reasons"]][0] == "OUTSIDE_HOURS" and not early["available"]


async def test_book_read_reschedule_and_cancel_over_the_api(api: Client) -> None:
    john = await new_user(api)
    desk = await johns_desk(api, john)
    window = {"start": tomorrow_at(0), "end": tomorrow_at(23)}
    booked = await created(await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(tomorrow_at(9))))
    assert booked == booked | {"calendar_id": desk["id"], "assigned_user_ids": [john["id"]], "status": "booked",
                               "origin": "system", "title": "Consultations with Ada Lovelace"}
    assert booked["start"] == datetime.fromisoformat(tomorrow_at(9)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    (contact,) = await listed(api, "/api/v1/contacts")
    assert booked["contact_ids"] == [contact["id"]] and contact["email"] == "ada@example.com"
    assert contact["source"] == "booking"
    assert "09:00" not in paris_times(await listed(api, f"/api/v1/calendars/{desk['id']}/free-slots", **window))

    again = await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(tomorrow_at(9)))
    assert await error_of(again, 409) == "slot_unavailable"
    assert await (await api.get(f"/api/v1/appointments/{booked['id']}")).json() == booked

    moved = await api.patch(f"/api/v1/appointments/{booked['id']}", json={"start": tomorrow_at(10)})
    assert moved.status == 200, await moved.text()
    assert paris_times([await moved.json()]) == ["10:00"]
    offered = paris_times(await listed(api, f"/api/v1/calendars/{desk['id']}/free-slots", **window))
    assert "09:00" in offered and "10:00" not in offered

    cancelled = await api.post(f"/api/v1/appointments/{booked['id']}/cancel")
    assert (await cancelled.json())["status"] == "cancelled"
    assert "10:00" in paris_times(await listed(api, f"/api/v1/calendars/{desk['id']}/free-slots", **window))
    patch = await api.patch(f"/api/v1/appointments/{booked['id']}", json={"start": tomorrow_at(11)})
    assert await error_of(patch, 409) == "appointment_cancelled"


@pytest.mark.parametrize(("body", "field"), [
    ({"start": "2030-01-07T09:00:00"}, "start"),
    ({"start": "2030-01-07T09:00:00Z", "contact": {"name": "Ada"}}, "email"),
    ({"start": "2030-01-07T09:00:00Z", "contact": {"name": "Ada", "email": "not-an-email"}}, "email"),
    ({"start": "2030-01-07T09:00:00Z", "contact": {"name": "", "email": "a@example.com"}}, "name"),
])
async def test_invalid_bookings_are_422_naming_the_field(api: Client, body: dict[str, Any], field: str) -> None:
    desk = await johns_desk(api, await new_user(api))
    response = await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=body | {
        "contact": body.get("contact", {"name": "Ada", "email": "a@example.com"})})
    assert await error_of(response, 422) == "validation_error"
    assert field in (await response.json())["error"]["message"]


async def test_booking_a_time_outside_the_grid_or_the_past_is_409(api: Client) -> None:
    desk = await johns_desk(api, await new_user(api))
    for start in (tomorrow_at(9, 10), tomorrow_at(20), "2020-01-06T09:00:00+01:00"):
        response = await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(start))
        assert await error_of(response, 409) == "slot_unavailable"


@pytest.mark.parametrize("query", [
    {"start": "2030-01-01T00:00:00Z", "end": "2030-06-01T00:00:00Z"}, {"start": "soon"},
    {"member_id": "someone-else"},
])
async def test_bad_free_slot_queries_are_422(api: Client, query: dict[str, str]) -> None:
    desk = await johns_desk(api, await new_user(api))
    response = await api.get(f"/api/v1/calendars/{desk['id']}/free-slots", params=query)
    assert await error_of(response, 422) == "validation_error"


@pytest.mark.parametrize("query", [{}, {"date": "tomorrow"}, {"date": "0001-01-01"}])
async def test_bad_troubleshoot_dates_are_422(api: Client, query: dict[str, str]) -> None:
    desk = await johns_desk(api, await new_user(api))
    response = await api.get(f"/api/v1/calendars/{desk['id']}/troubleshoot", params=query)
    assert await error_of(response, 422) == "validation_error"


@pytest.mark.parametrize(("instant", "day"), [
    ("0001-01-01T00:00:00+00:01", "0001-01-01"),  # before the first instant UTC can hold
    ("9999-12-31T23:59:59-00:01", "9999-12-31"),  # after the last one
    ("1899-12-31T23:59:59Z", "1899-12-31"), ("2200-12-31T23:30:00-01:00", "2201-01-01"),  # outside 1900-2200 UTC
])
async def test_times_out_of_the_supported_years_are_422_on_every_endpoint(api: Client, instant: str, day: str) -> None:
    user = await new_user(api)
    desk = await johns_desk(api, user)
    booked = await created(await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(tomorrow_at(9))))
    requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
        ("POST", f"/api/v1/calendars/{desk['id']}/appointments", ada(instant), None),
        ("PATCH", f"/api/v1/appointments/{booked['id']}", {"start": instant}, None),
        ("PATCH", f"/api/v1/appointments/{booked['id']}", {"start": tomorrow_at(10), "end": instant}, None),
        ("GET", f"/api/v1/calendars/{desk['id']}/troubleshoot", None, {"date": day}),
    ] + [
        ("GET", path, None, query) for path in (f"/api/v1/calendars/{desk['id']}/free-slots",
                                                f"/api/v1/users/{user['id']}/blocked-slots",
                                                f"/api/v1/users/{user['id']}/appointments")
        for query in ({"start": instant}, {"start": tomorrow_at(9), "end": instant})
    ]
    for method, path, body, query in requests:
        response = await api.request(method, path, json=body, params=query)
        assert await error_of(response, 422) == "validation_error", (method, path, body, query)
        message = (await response.json())["error"]["message"]
        assert "1900 to 2200" in message and message.startswith(("start", "end", "date")), message
    assert (await api.get(f"/api/v1/appointments/{booked['id']}")).status == 200  # unchanged, still there


@pytest.mark.parametrize("start", ["1900-01-01T00:00:00Z", "2200-12-31T00:00:00+00:00"])
async def test_times_at_the_edges_of_the_supported_years_are_answered(api: Client, start: str) -> None:
    user = await new_user(api)
    assert await listed(api, f"/api/v1/users/{user['id']}/blocked-slots", start=start) == []


async def johns_linked_desk(api: Client, accounts: Accounts) -> tuple[dict[str, Any], dict[str, Any]]:
    """John's Work calendar linked one-way, and his desk: (user, desk)."""
    user, _, calendars = await connected(api)
    settings = {"linked_calendar_id": calendars["Work"]["id"], "mode": "one_way"}
    assert (await api.put(f"/api/v1/users/{user['id']}/sync-settings", json=settings)).status == 200
    return user, await johns_desk(api, user)


async def background_done(api: Client) -> None:
    """The engine cycles a change started in the background (`push_soon`) have finished."""
    await api.app[CONTEXT].drain()


async def test_a_double_click_on_cancel_is_one_cancellation(api: Client, accounts: Accounts) -> None:
    hook = await created(await api.post("/api/v1/automations", json={
        "trigger": "appointment.cancelled", "action": "webhook", "url": "https://hooks.example.com/croco"}))
    _, desk = await johns_linked_desk(api, accounts)
    booked = await created(await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(tomorrow_at(9))))
    await background_done(api)
    assert f"{booked['id']}.ics" in accounts.provider.calendars["/john/work/"].items

    clicks = await asyncio.gather(*(api.post(f"/api/v1/appointments/{booked['id']}/cancel") for _ in range(2)))
    assert [c.status for c in clicks] == [200, 200]
    await background_done(api)
    assert len(await listed(api, f"/api/v1/automations/{hook['id']}/runs")) == 1
    assert accounts.provider.calls.count("delete") == 1
    assert f"{booked['id']}.ics" not in accounts.provider.calendars["/john/work/"].items


async def test_a_burst_of_changes_runs_one_background_cycle_at_a_time(
    db: Database, secret_box: SecretBox, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cycles started by the API must not pile up and queue for the database: one runs, one more follows."""
    ctx = context(db, secret_box, accounts)
    assert ctx.engine is not None
    entered, release, running, started = asyncio.Event(), asyncio.Event(), [0], []

    async def slow_cycle(*, limit: int = 50) -> list[object]:
        running[0] += 1
        started.append(running[0])
        entered.set()
        await release.wait()
        running[0] -= 1
        return []

    monkeypatch.setattr(ctx.engine, "run_due", slow_cycle)
    ctx.push_soon()
    await asyncio.wait_for(entered.wait(), 5)
    for _ in range(20):  # bookings while the first cycle runs
        ctx.push_soon()
    release.set()
    await ctx.drain()
    assert started == [1, 1]  # one at a time: the first, then one for the changes made while it ran


async def test_restore_writes_the_deleted_copy_back_once(api: Client, accounts: Accounts) -> None:
    """R7 one-way: John deleted our copy; "Restore to calendar" writes it back, a second click finds nothing."""
    user, desk = await johns_linked_desk(api, accounts)
    booked = await created(await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(tomorrow_at(9))))
    await background_done(api)
    assert await error_of(await api.post(f"/api/v1/appointments/{booked['id']}/restore"), 409) == "nothing_to_restore"
    accounts.provider.remove("/john/work/", f"{booked['id']}.ics")
    assert (await api.post(f"/api/v1/users/{user['id']}/sync")).status == 200  # R7: kept booked, not re-pushed

    calls = len(accounts.provider.calls)
    clicks = await asyncio.gather(*(api.post(f"/api/v1/appointments/{booked['id']}/restore") for _ in range(2)))
    assert sorted(c.status for c in clicks) == [200, 409]
    (restored,) = [await c.json() for c in clicks if c.status == 200]
    assert restored["id"] == booked["id"] and restored["status"] == "booked"
    assert accounts.provider.calls[calls:] == ["create"]  # written at once, no pull first
    assert f"{booked['id']}.ics" in accounts.provider.calendars["/john/work/"].items

    synced = await (await api.post(f"/api/v1/users/{user['id']}/sync")).json()
    assert synced["calendars"][0]["pushed"] == 0  # its link is recorded: nothing written twice
    assert f"{booked['id']}.ics" in accounts.provider.calendars["/john/work/"].items


async def test_restore_on_a_failing_server_is_422_and_the_button_still_works(api: Client, accounts: Accounts) -> None:
    user, desk = await johns_linked_desk(api, accounts)
    booked = await created(await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(tomorrow_at(9))))
    await background_done(api)
    accounts.provider.remove("/john/work/", f"{booked['id']}.ics")
    assert (await api.post(f"/api/v1/users/{user['id']}/sync")).status == 200
    accounts.provider.fail_next(Unreachable("connection refused"), on="create")
    assert await error_of(await api.post(f"/api/v1/appointments/{booked['id']}/restore"), 422) == "unreachable"
    assert (await api.post(f"/api/v1/appointments/{booked['id']}/restore")).status == 200
    assert f"{booked['id']}.ics" in accounts.provider.calendars["/john/work/"].items


async def test_restore_answers_409_when_nothing_is_missing(api: Client) -> None:
    john = await new_user(api)
    desk = await johns_desk(api, john)
    booked = await created(await api.post(f"/api/v1/calendars/{desk['id']}/appointments", json=ada(tomorrow_at(9))))
    assert await error_of(await api.post(f"/api/v1/appointments/{booked['id']}/restore"), 409) == "nothing_to_restore"
    assert (await api.post(f"/api/v1/appointments/{booked['id']}/cancel")).status == 200
    assert await error_of(await api.post(f"/api/v1/appointments/{booked['id']}/restore"), 409) == "nothing_to_restore"


async def test_confirming_with_nothing_held_removes_nothing(api: Client) -> None:
    john = await new_user(api)
    response = await api.post(f"/api/v1/users/{john['id']}/held-removals/confirm")
    assert response.status == 200 and await response.json() == {"removed": 0}


async def test_imported_appointments_cannot_be_changed_over_the_api(api: Client, accounts: Accounts) -> None:
    user, _ = await synced(api, accounts, "two_way")
    (imported,) = await listed(api, f"/api/v1/users/{user['id']}/appointments")
    for response in (await api.patch(f"/api/v1/appointments/{imported['id']}", json={"title": "x"}),
                     await api.post(f"/api/v1/appointments/{imported['id']}/cancel")):
        assert await error_of(response, 409) == "imported_appointment"


async def test_automations_check_their_url_and_calendar(api: Client) -> None:
    hook = {"trigger": "appointment.created", "action": "webhook"}
    for bad in [hook, hook | {"url": "ftp://hooks.example.com/"}, hook | {"url": "not a url"},
                {"trigger": "appointment.cancelled", "action": "slack_dm", "url": "https://hooks.example.com/"},
                hook | {"url": "https://hooks.example.com/", "calendar_id": UNKNOWN},
                hook | {"trigger": "appointment.booked", "url": "https://hooks.example.com/"}]:
        assert await error_of(await api.post("/api/v1/automations", json=bad), 422) == "validation_error", bad
    user = await new_user(api)
    team = await created(await api.post("/api/v1/calendars", json={
        "name": "C", "kind": "service", "member_ids": [user["id"]], "duration_minutes": 30, "timezone": "UTC"}))
    automation = await created(await api.post("/api/v1/automations", json=hook | {
        "url": "https://hooks.example.com/croco", "calendar_id": team["id"]}))
    assert automation == {"id": automation["id"], "trigger": "appointment.created", "action": "webhook",
                          "calendar_id": team["id"], "url": "https://hooks.example.com/croco"}
    assert await listed(api, f"/api/v1/automations/{automation['id']}/runs") == []
    dm = await created(await api.post("/api/v1/automations", json={
        "trigger": "appointment.cancelled", "action": "slack_dm"}))
    assert dm["url"] is None and dm["calendar_id"] is None


# Operations --------------------------------------------------------------------------------------------


async def test_health_metrics_and_openapi_need_no_token(api: Client) -> None:
    no_token = {"Authorization": ""}
    assert await (await api.get("/healthz", headers=no_token)).json() == {"status": "ok", "database": "ok",
                                                                           "scheduler": "disabled"}
    await api.get("/api/v1/contacts")
    await api.get(f"/api/v1/users/{UNKNOWN}")
    metrics = await (await api.get("/metrics", headers=no_token)).text()
    assert 'croco_http_requests_total{method="GET",route="/api/v1/contacts",status="200"} 1.0' in metrics
    assert 'croco_http_requests_total{method="GET",route="/api/v1/users/{user_id}",status="404"} 1.0' in metrics
    document = await (await api.get("/api/v1/openapi.json", headers=no_token)).json()
    assert document["openapi"].startswith("3.") and "bearerAuth" in document["components"]["securitySchemes"]


async def test_an_unexpected_error_is_a_logged_500_without_details(
    db: Database, secret_box: SecretBox, accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = create_app(context(db, secret_box, accounts))
    app.router.add_get("/api/v1/broken/{thing_id}", broken)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/api/v1/broken/42", headers={"Authorization": f"Bearer {TOKEN}"})
        assert await error_of(response, 500) == "internal_error"
        assert "a bug" not in await response.text()
    (record,) = [r for r in caplog.records if r.name == "web.errors"]
    assert record.exc_info and (record.method, record.route, record.error_type) == (  # type: ignore[attr-defined]
        "GET", "/api/v1/broken/{thing_id}", "RuntimeError")


async def test_the_document_describes_every_route_the_app_serves(api: Client) -> None:
    document = await (await api.get("/api/v1/openapi.json")).json()
    served = {(route.method.lower(), route.resource.canonical) for route in api.app.router.routes()
              if route.method != "HEAD" and route.resource is not None}
    described = {(method, path) for path, item in document["paths"].items() for method in item
                 if method in ("get", "post", "put", "patch", "delete")}
    assert described == served


async def test_two_apps_on_one_database_share_one_default_workspace(
    db: Database, secret_box: SecretBox, accounts: Accounts, database_url: str
) -> None:
    """Two processes starting at once (one Database each) must not each make a default workspace."""
    others = [Database(database_url) for _ in range(3)]
    try:
        servers = [TestServer(create_app(context(d, secret_box, accounts))) for d in [db, *others]]
        await asyncio.gather(*(s.start_server() for s in servers))
        async with TestClient(servers[0]) as first, TestClient(servers[1]) as second:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            assert (await first.post("/api/v1/users", json=JOHN, headers=headers)).status == 201
            assert await error_of(await second.post("/api/v1/users", json=JOHN, headers=headers), 409) == "email_taken"
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Workspace)) == 1
        await asyncio.gather(*(s.close() for s in servers[2:]))
    finally:
        await asyncio.gather(*(d.dispose() for d in others))


@pytest.mark.parametrize(("schema", "field", "values"), [
    ("Appointment", "origin", Origin), ("Appointment", "status", AppointmentStatus), ("Connection", "status", ConnectionStatus),
    ("Calendar", "access", Access), ("SyncSettings", "mode", SyncMode), ("TeamCalendar", "kind", CalendarKind),
    ("Contact", "source", ContactSource), ("Automation", "trigger", Trigger), ("Automation", "action", Action),
])
def test_the_documents_enumerations_are_the_models(schema: str, field: str, values: type[StrEnum]) -> None:
    """A value added to a model must be documented, or schema conformance breaks for clients."""
    assert load_openapi()["components"]["schemas"][schema]["properties"][field]["enum"] == [v.value for v in values]
