"""REST API v1: each endpoint's success path and its answers to bad input (API.md)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from storage.db import Database
from tests.web.conftest import GOOD_PASSWORD, TOKEN, Accounts

Client = TestClient[Any, Any]
JOHN = {"name": "John", "email": "john@example.com", "timezone": "Europe/Paris"}
UNKNOWN = "0" * 32

ENDPOINTS = [
    ("POST", "/api/v1/users"), ("GET", "/api/v1/users/{u}"), ("POST", "/api/v1/users/{u}/connections"),
    ("GET", "/api/v1/users/{u}/connections"), ("DELETE", "/api/v1/connections/{u}"),
    ("GET", "/api/v1/users/{u}/calendars"), ("GET", "/api/v1/users/{u}/sync-settings"),
    ("PUT", "/api/v1/users/{u}/sync-settings"), ("POST", "/api/v1/users/{u}/sync"),
    ("GET", "/api/v1/users/{u}/blocked-slots"), ("GET", "/api/v1/users/{u}/appointments"),
    ("POST", "/api/v1/calendars"), ("GET", "/api/v1/calendars/{u}"), ("GET", "/api/v1/contacts"),
    ("POST", "/api/v1/automations"), ("GET", "/api/v1/automations/{u}/runs"),
]
BODIES = [path for method, path in ENDPOINTS if method in ("POST", "PUT") and not path.endswith("/sync")]


async def error_of(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"} and body["error"]["message"]
    return str(body["error"]["code"])


async def new_user(api: Client, **fields: str) -> dict[str, Any]:
    response = await api.post("/api/v1/users", json=JOHN | fields)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def connected(api: Client) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    user = await new_user(api)
    response = await api.post(f"/api/v1/users/{user['id']}/connections", json={
        "provider": "caldav", "username": "john", "password": GOOD_PASSWORD, "url": "https://dav.example.com/"})
    assert response.status == 201, await response.text()
    calendars = (await (await api.get(f"/api/v1/users/{user['id']}/calendars")).json())["items"]
    return user, await response.json(), {c["name"]: c for c in calendars}


# Bad input, for every endpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer"])
async def test_missing_or_wrong_token_is_401(api: Client, method: str, path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {"Authorization": ""}
    response = await api.request(method, path.format(u=UNKNOWN), headers=headers, json={})
    assert await error_of(response, 401) == "unauthorized"


@pytest.mark.parametrize("path", BODIES)
@pytest.mark.parametrize("body", [b"{", b"not json", b"\xff\xfe"])
async def test_malformed_json_is_400(api: Client, path: str, body: bytes) -> None:
    user = await new_user(api)
    method = "PUT" if path.endswith("sync-settings") else "POST"
    response = await api.request(method, path.format(u=user["id"]), data=body)
    assert await error_of(response, 400) == "malformed_json"


@pytest.mark.parametrize("path", BODIES)
@pytest.mark.parametrize("body", [[], "a string", {"unexpected": 1}, {"name": 7, "provider": 7, "trigger": 7}])
async def test_wrong_shapes_types_and_unknown_fields_are_422(api: Client, path: str, body: object) -> None:
    user = await new_user(api)
    method = "PUT" if path.endswith("sync-settings") else "POST"
    response = await api.request(method, path.format(u=user["id"]), json=body)
    assert await error_of(response, 422) == "validation_error"


@pytest.mark.parametrize(("method", "path"), [e for e in ENDPOINTS if "{u}" in e[1]])
async def test_unknown_ids_are_404(api: Client, method: str, path: str) -> None:
    body = {"POST": {"provider": "icloud", "username": "a", "password": "b"}, "PUT": {"linked_calendar_id": None}}
    response = await api.request(method, path.format(u=UNKNOWN), json=body.get(method))
    assert await error_of(response, 404) == "not_found"


async def test_unknown_route_and_wrong_method_keep_the_error_shape(api: Client) -> None:
    assert await error_of(await api.get("/api/v1/nothing-here"), 404) == "not_found"
    assert await error_of(await api.delete("/api/v1/users"), 405) == "method_not_allowed"


# Users -------------------------------------------------------------------------------------------------


async def test_create_and_read_a_user(api: Client) -> None:
    user = await new_user(api, slack_user_id="U123")
    assert {k: user[k] for k in ("name", "email", "timezone")} == JOHN and user["id"]
    assert await (await api.get(f"/api/v1/users/{user['id']}")).json() == user


@pytest.mark.parametrize(("field", "value"), [("timezone", "Mars/Olympus"), ("email", "not-an-email"), ("name", "")])
async def test_invalid_user_values_are_422_naming_the_field(api: Client, field: str, value: str) -> None:
    response = await api.post("/api/v1/users", json=JOHN | {field: value})
    assert await error_of(response, 422) == "validation_error"
    assert field in (await response.json())["error"]["message"]


async def test_same_email_twice_is_409(api: Client) -> None:
    await new_user(api)
    assert await error_of(await api.post("/api/v1/users", json=JOHN | {"email": "JOHN@example.com"}), 409) == "email_taken"


# Connections -------------------------------------------------------------------------------------------


async def test_connection_is_checked_saved_encrypted_and_never_returned(api: Client, db: Database) -> None:
    user, connection, calendars = await connected(api)
    assert {k: connection[k] for k in ("provider", "account", "status")} == {
        "provider": "caldav", "account": "john", "status": "ok"}
    assert calendars["Work"]["access"] == "full" and calendars["Holidays (shared)"]["access"] == "read"
    listed = await (await api.get(f"/api/v1/users/{user['id']}/connections")).json()
    assert [c["id"] for c in listed["items"]] == [connection["id"]]
    for response_body in (connection, listed, calendars):
        assert GOOD_PASSWORD not in str(response_body)
    async with db.session() as session:
        raw = (await session.execute(text("SELECT credentials FROM connection"))).scalar_one()
        dump = " ".join(str(row) for row in (await session.execute(text("SELECT * FROM connection"))).all())
    assert GOOD_PASSWORD.encode() not in bytes(raw) and GOOD_PASSWORD not in dump


async def test_wrong_credentials_and_unreachable_server_are_422_and_nothing_is_saved(
    api: Client, accounts: Accounts
) -> None:
    user = await new_user(api)
    path = f"/api/v1/users/{user['id']}/connections"
    wrong = {"provider": "icloud", "username": "john@icloud.com", "password": "wrong-one"}
    assert await error_of(await api.post(path, json=wrong), 422) == "invalid_credentials"
    accounts.unreachable_urls.add("https://down.example.com/")
    down = {"provider": "caldav", "username": "j", "password": GOOD_PASSWORD, "url": "https://down.example.com/"}
    assert await error_of(await api.post(path, json=down), 422) == "unreachable"
    no_url = {"provider": "caldav", "username": "j", "password": GOOD_PASSWORD}
    assert await error_of(await api.post(path, json=no_url), 422) == "validation_error"
    assert (await (await api.get(path)).json())["items"] == []


async def test_deleting_a_connection_removes_its_calendars_and_settings(api: Client) -> None:
    user, connection, calendars = await connected(api)
    settings = f"/api/v1/users/{user['id']}/sync-settings"
    await api.put(settings, json={"linked_calendar_id": calendars["Work"]["id"]})
    assert (await api.delete(f"/api/v1/connections/{connection['id']}")).status == 204
    assert (await (await api.get(f"/api/v1/users/{user['id']}/calendars")).json())["items"] == []
    assert (await (await api.get(settings)).json())["linked_calendar_id"] is None
    assert await error_of(await api.delete(f"/api/v1/connections/{connection['id']}"), 404) == "not_found"


# Sync settings -----------------------------------------------------------------------------------------


async def test_defaults_then_linked_calendar_becomes_a_conflict_calendar(api: Client) -> None:
    user, _, calendars = await connected(api)
    path = f"/api/v1/users/{user['id']}/sync-settings"
    assert await (await api.get(path)).json() == {"linked_calendar_id": None, "conflict_calendar_ids": [],
                                                  "mode": "one_way", "window_days_back": 1, "window_days_ahead": 180}
    work = calendars["Work"]["id"]
    saved = await (await api.put(path, json={"linked_calendar_id": work, "mode": "two_way"})).json()
    assert saved["conflict_calendar_ids"] == [work] and saved["mode"] == "two_way"
    listed = {c["name"]: c for c in (await (await api.get(f"/api/v1/users/{user['id']}/calendars")).json())["items"]}
    assert listed["Work"]["is_linked"] and listed["Work"]["is_conflict"]


async def test_explicit_conflict_list_is_taken_as_given(api: Client) -> None:
    user, _, calendars = await connected(api)
    holidays = calendars["Holidays (shared)"]["id"]
    response = await api.put(f"/api/v1/users/{user['id']}/sync-settings", json={
        "linked_calendar_id": calendars["Work"]["id"], "conflict_calendar_ids": [holidays], "window_days_ahead": 30})
    saved = await response.json()
    assert saved["conflict_calendar_ids"] == [holidays] and saved["window_days_ahead"] == 30


async def test_linked_calendar_needs_full_access_and_must_be_the_users(api: Client) -> None:
    user, _, calendars = await connected(api)
    path = f"/api/v1/users/{user['id']}/sync-settings"
    read_only = {"linked_calendar_id": calendars["Holidays (shared)"]["id"]}
    assert await error_of(await api.put(path, json=read_only), 422) == "linked_calendar_needs_full_access"
    assert await error_of(await api.put(path, json={"linked_calendar_id": UNKNOWN}), 422) == "validation_error"
    bad_mode = {"linked_calendar_id": None, "mode": "sideways"}
    assert await error_of(await api.put(path, json=bad_mode), 422) == "validation_error"
    bad_window = {"linked_calendar_id": None, "window_days_back": -1}
    assert await error_of(await api.put(path, json=bad_window), 422) == "validation_error"


# Team calendars, contacts, automations -----------------------------------------------------------------


async def test_team_calendar_with_defaults(api: Client) -> None:
    user = await new_user(api)
    response = await api.post("/api/v1/calendars", json={
        "name": "Consultations", "kind": "round_robin", "member_ids": [user["id"]], "duration_minutes": 30,
        "timezone": "Europe/Paris"})
    created = await response.json()
    assert response.status == 201
    assert created["slot_interval_minutes"] == 30 and created["open_hours"]["sun"] == [["00:00", "24:00"]]
    assert await (await api.get(f"/api/v1/calendars/{created['id']}")).json() == created


@pytest.mark.parametrize("change", [
    {"member_ids": ["nobody"]}, {"kind": "solo"}, {"timezone": "Nowhere/City"}, {"duration_minutes": 0},
    {"open_hours": {"mon": [["17:00", "09:00"]]}}, {"open_hours": {"xyz": [["09:00", "17:00"]]}},
    {"open_hours": {"mon": [["9am", "5pm"]]}}, {"capacity": 5},
])
async def test_invalid_team_calendars_are_422(api: Client, change: dict[str, Any]) -> None:
    user = await new_user(api)
    body = {"name": "C", "kind": "collective", "member_ids": [user["id"]], "duration_minutes": 30,
            "timezone": "UTC"} | change
    assert await error_of(await api.post("/api/v1/calendars", json=body), 422) == "validation_error"


async def test_class_calendar_keeps_its_capacity(api: Client) -> None:
    user = await new_user(api)
    response = await api.post("/api/v1/calendars", json={
        "name": "Yoga", "kind": "class", "member_ids": [user["id"]], "duration_minutes": 60, "timezone": "UTC",
        "capacity": 12, "open_hours": {"mon": [["18:00", "19:00"], ["07:00", "08:00"]]}})
    created = await response.json()
    assert created["capacity"] == 12 and created["open_hours"] == {"mon": [["07:00", "08:00"], ["18:00", "19:00"]]}


async def test_automations_need_a_url_for_webhooks_and_list_runs(api: Client) -> None:
    bad = {"trigger": "appointment.created", "action": "webhook"}
    assert await error_of(await api.post("/api/v1/automations", json=bad), 422) == "validation_error"
    response = await api.post("/api/v1/automations", json=bad | {"url": "https://hooks.example.com/croco"})
    automation = await response.json()
    assert response.status == 201 and automation["url"] == "https://hooks.example.com/croco"
    assert await (await api.get(f"/api/v1/automations/{automation['id']}/runs")).json() == {"items": []}
    dm = await api.post("/api/v1/automations", json={"trigger": "appointment.cancelled", "action": "slack_dm"})
    assert dm.status == 201


async def test_contacts_list_and_filter(api: Client) -> None:
    assert await (await api.get("/api/v1/contacts")).json() == {"items": []}
    assert await (await api.get("/api/v1/contacts", params={"email": "x@example.com"})).json() == {"items": []}


# Operations --------------------------------------------------------------------------------------------


async def test_health_metrics_and_openapi_need_no_token(api: Client) -> None:
    headers = {"Authorization": ""}
    assert await (await api.get("/healthz", headers=headers)).json() == {"status": "ok", "database": "ok"}
    await api.get("/api/v1/contacts")
    metrics = await (await api.get("/metrics", headers=headers)).text()
    assert 'croco_http_requests_total{method="GET",route="/api/v1/contacts",status="200"}' in metrics
    document = await (await api.get("/api/v1/openapi.json", headers=headers)).json()
    assert document["openapi"].startswith("3.") and "/api/v1/users/{user_id}/sync-settings" in document["paths"]
