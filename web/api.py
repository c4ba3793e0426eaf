"""REST API v1 handlers (API.md). Thin: parse and validate, call a `sync/` service, serialize."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from storage.enums import Provider
from storage.models import AutomationRun, BlockedSlot, Connection, Notice, User
from sync import accounts, automations, availability, contacts, outbox, people, teams, troubleshoot
from sync.booking import BookingRequest
from sync.payloads import contact_payload, rfc3339
from sync.providers.base import AppPassword
from web.context import WebContext
from web.errors import ApiError
from web.schemas import (
    INSTANT,
    YEARS,
    AppointmentChange,
    NewAppointment,
    NewAutomation,
    NewConnection,
    NewConnectLink,
    NewTeamCalendar,
    NewUser,
    SyncSettingsBody,
)

routes = web.RouteTableDef()
CONTEXT: web.AppKey[WebContext] = web.AppKey("context", WebContext)
B = TypeVar("B", bound=BaseModel)


def _ctx(request: web.Request) -> WebContext:
    return request.app[CONTEXT]


async def _body(request: web.Request, model: type[B]) -> B:
    """The body validated as `model`: 400 when it is not JSON at all, 422 when the JSON is wrong."""
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            detail = first["msg"].removeprefix("Invalid JSON: ")
            raise ApiError(400, f"the body is not valid JSON ({detail})") from exc
        raise


def _items(items: list[dict[str, Any]]) -> web.Response:
    return web.json_response({"items": items})


def _query_time(request: web.Request, name: str) -> datetime | None:
    """A query parameter read as a body's time is (`Instant`), in UTC."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return INSTANT.validate_strings(raw, strict=True)
    except ValidationError as exc:
        raise ApiError(422, f"{name}: {exc.errors()[0]['msg']}") from None


def _time_range(
    request: web.Request, default_days: int = 30, *, default_start: datetime | None = None
) -> tuple[datetime, datetime]:
    """`start`/`end` query parameters; by default from `default_start` (yesterday) for `default_days`."""
    start = _query_time(request, "start") or default_start or _ctx(request).clock() - timedelta(days=1)
    end = _query_time(request, "end") or start + timedelta(days=default_days)
    if end <= start:
        raise ApiError(422, "end must be after start")
    return start, end


def _user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "email": user.email, "timezone": user.timezone,
            "slack_user_id": user.slack_user_id}


def _connection_json(connection: Connection) -> dict[str, Any]:
    """Never the credentials: only what a person needs to recognise the account."""
    return {"id": connection.id, "provider": connection.provider, "account": connection.account,
            "status": connection.status, "last_error": connection.last_error}


def _calendar_json(found: accounts.UserCalendar) -> dict[str, Any]:
    c = found.calendar
    return {"id": c.id, "connection_id": c.connection_id, "name": c.name, "access": c.access,
            "is_linked": found.is_linked, "is_conflict": found.is_conflict,
            "last_synced_at": rfc3339(c.last_synced_at) if c.last_synced_at else None, "last_error": c.last_error}


def _slot_json(slot: BlockedSlot) -> dict[str, Any]:
    return {"id": slot.id, "calendar_id": slot.remote_calendar_id, "start": rfc3339(slot.start),
            "end": rfc3339(slot.end), "all_day": slot.all_day, "busy": slot.busy, "title": slot.title,
            "remote_id": slot.remote_id}


def _notice_json(notice: Notice) -> dict[str, Any]:
    return {"id": notice.id, "kind": notice.kind, "payload": notice.payload, "created_at": rfc3339(notice.created_at),
            "delivered_at": rfc3339(notice.delivered_at) if notice.delivered_at else None}


def _run_json(run: AutomationRun) -> dict[str, Any]:
    return {"appointment_id": run.appointment_id, "contact_id": run.contact_id, "status": run.status,
            "attempts": run.attempts, "last_error": run.last_error, "at": rfc3339(run.at)}


# Users -----------------------------------------------------------------------------------------------


@routes.post("/api/v1/users")
async def create_user(request: web.Request) -> web.Response:
    body = await _body(request, NewUser)
    ctx = _ctx(request)
    user = await accounts.create_user(ctx.db, ctx.workspace_id, body.name, body.email, body.timezone,
                                      body.slack_user_id)
    return web.json_response(_user_json(user), status=201)


@routes.get("/api/v1/users")
async def find_users(request: web.Request) -> web.Response:
    """By Slack id, in the default workspace or in the workspace of `slack_team_id` (API.md "Users")."""
    ctx, slack_user_id = _ctx(request), request.query.get("slack_user_id")
    if not slack_user_id:
        raise ApiError(422, "give slack_user_id")
    team = request.query.get("slack_team_id")
    workspace_id = await people.team_workspace_id(ctx.db, team) if team else ctx.workspace_id
    user = await people.find_by_slack_id(ctx.db, workspace_id, slack_user_id) if workspace_id else None
    return web.json_response({"items": [_user_json(user)] if user is not None else []})


@routes.get("/api/v1/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    user = await accounts.load_user(_ctx(request).db, request.match_info["user_id"])
    return web.json_response(_user_json(user))


# Connections -----------------------------------------------------------------------------------------


@routes.post("/api/v1/users/{user_id}/connections")
async def create_connection(request: web.Request) -> web.Response:
    body = await _body(request, NewConnection)
    if body.provider == "caldav" and body.url is None:
        raise ApiError(422, "url: required for a CalDAV connection")
    ctx = _ctx(request)
    connection, _ = await accounts.connect(
        ctx.db, ctx.secrets, ctx.providers, request.match_info["user_id"], Provider(body.provider),
        AppPassword(body.username, body.password), str(body.url) if body.url else None, now=ctx.clock(),
    )
    return web.json_response(_connection_json(connection), status=201)


@routes.post("/api/v1/users/{user_id}/connect-links")
async def create_connect_link(request: web.Request) -> web.Response:
    body = await _body(request, NewConnectLink)
    link = await _ctx(request).connect_links.issue(request.match_info["user_id"], Provider(body.provider),
                                                   body.connection_id)
    return web.json_response({"url": link.url, "expires_at": rfc3339(link.expires_at)}, status=201)


@routes.get("/api/v1/users/{user_id}/connections")
async def list_connections(request: web.Request) -> web.Response:
    connections = await accounts.list_connections(_ctx(request).db, request.match_info["user_id"])
    return _items([_connection_json(c) for c in connections])


@routes.delete("/api/v1/connections/{connection_id}")
async def delete_connection(request: web.Request) -> web.Response:
    ctx, connection_id = _ctx(request), request.match_info["connection_id"]
    await ctx.channels.stop_connection(connection_id)  # best effort: never keeps the disconnect from happening
    await accounts.disconnect(ctx.db, connection_id)
    return web.Response(status=204)


# Calendars, settings, sync ---------------------------------------------------------------------------


@routes.get("/api/v1/users/{user_id}/calendars")
async def list_calendars(request: web.Request) -> web.Response:
    found = await accounts.user_calendars(_ctx(request).db, request.match_info["user_id"])
    return _items([_calendar_json(c) for c in found])


@routes.get("/api/v1/users/{user_id}/sync-settings")
async def get_sync_settings(request: web.Request) -> web.Response:
    settings = await accounts.get_settings(_ctx(request).db, request.match_info["user_id"])
    return web.json_response(settings.as_json())


@routes.put("/api/v1/users/{user_id}/sync-settings")
async def put_sync_settings(request: web.Request) -> web.Response:
    body = await _body(request, SyncSettingsBody)
    ctx = _ctx(request)
    settings = await accounts.put_settings(
        ctx.db, request.match_info["user_id"], body.linked_calendar_id, body.conflict_calendar_ids,
        body.mode, body.window_days_back, body.window_days_ahead, now=ctx.clock(), daily_agenda=body.daily_agenda,
    )
    ctx.settings_saved()
    return web.json_response(settings.as_json())


@routes.post("/api/v1/users/{user_id}/sync")
async def sync_now(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    user = await accounts.load_user(ctx.db, request.match_info["user_id"])
    assert ctx.engine is not None  # WebContext.__post_init__
    reports = await ctx.engine.sync_user(user.id)
    return web.json_response({"calendars": [r.as_json() for r in reports]})


@routes.post("/api/v1/users/{user_id}/held-removals/confirm")
async def confirm_held_removals(request: web.Request) -> web.Response:
    removed = await _ctx(request).actions.confirm_held_removals(request.match_info["user_id"])
    return web.json_response({"removed": removed})


@routes.get("/api/v1/users/{user_id}/blocked-slots")
async def blocked_slots(request: web.Request) -> web.Response:
    start, end = _time_range(request)
    slots = await accounts.blocked_slots(_ctx(request).db, request.match_info["user_id"], start, end)
    return _items([_slot_json(s) for s in slots])


@routes.get("/api/v1/users/{user_id}/appointments")
async def user_appointments(request: web.Request) -> web.Response:
    start, end = _time_range(request)
    return _items(await accounts.appointments(_ctx(request).db, request.match_info["user_id"], start, end))


@routes.get("/api/v1/users/{user_id}/notices")
async def user_notices(request: web.Request) -> web.Response:
    undelivered = request.query.get("undelivered", "false")
    if undelivered not in ("true", "false"):
        raise ApiError(422, "undelivered: true or false")
    user_id = request.match_info["user_id"]
    found = await outbox.list_notices(_ctx(request).db, user_id, undelivered=undelivered == "true")
    return _items([_notice_json(n) for n in found])


# Team calendars, contacts, automations ---------------------------------------------------------------


@routes.post("/api/v1/calendars")
async def create_team_calendar(request: web.Request) -> web.Response:
    body = await _body(request, NewTeamCalendar)
    ctx = _ctx(request)
    created = await teams.create_team_calendar(ctx.db, ctx.workspace_id, teams.TeamCalendarSpec(**body.model_dump()))
    return web.json_response(created.as_json(), status=201)


@routes.get("/api/v1/calendars/{calendar_id}")
async def get_team_calendar(request: web.Request) -> web.Response:
    found = await teams.get_team_calendar(_ctx(request).db, request.match_info["calendar_id"])
    return web.json_response(found.as_json())


MAX_FREE_SLOTS_RANGE = timedelta(days=62)


@routes.get("/api/v1/calendars/{calendar_id}/free-slots")
async def free_slots(request: web.Request) -> web.Response:
    now = _ctx(request).clock()
    start, end = _time_range(request, 7, default_start=now)
    if end - start > MAX_FREE_SLOTS_RANGE:
        raise ApiError(422, f"start/end: at most {MAX_FREE_SLOTS_RANGE.days} days at a time")
    slots = await availability.free_slots_of(
        _ctx(request).db, request.match_info["calendar_id"], start, end, now,
        member_id=request.query.get("member_id"),
    )
    return _items([_free_slot_json(slot) for slot in slots])


def _free_slot_json(slot: availability.SlotCheck) -> dict[str, Any]:
    item: dict[str, Any] = {"start": rfc3339(slot.start), "end": rfc3339(slot.end), "member_ids": list(slot.member_ids)}
    if slot.seats_left is not None:
        item["seats_left"] = slot.seats_left
    return item


@routes.post("/api/v1/calendars/{calendar_id}/appointments")
async def book_appointment(request: web.Request) -> web.Response:
    body = await _body(request, NewAppointment)
    ctx = _ctx(request)
    appointment = await ctx.booking.book(request.match_info["calendar_id"], BookingRequest(
        body.start, body.contact.name, str(body.contact.email), body.title, body.member_id,
    ))
    ctx.push_soon()
    return web.json_response(await accounts.appointment_json(ctx.db, appointment.id), status=201)


@routes.get("/api/v1/appointments/{appointment_id}")
async def get_appointment(request: web.Request) -> web.Response:
    return web.json_response(await accounts.appointment_json(_ctx(request).db, request.match_info["appointment_id"]))


@routes.patch("/api/v1/appointments/{appointment_id}")
async def update_appointment(request: web.Request) -> web.Response:
    body = await _body(request, AppointmentChange)
    ctx = _ctx(request)
    appointment = await ctx.booking.reschedule(
        request.match_info["appointment_id"], start=body.start, end=body.end, title=body.title,
    )
    ctx.push_soon()
    return web.json_response(await accounts.appointment_json(ctx.db, appointment.id))


@routes.post("/api/v1/appointments/{appointment_id}/cancel")
async def cancel_appointment(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    appointment = await ctx.booking.cancel(request.match_info["appointment_id"])
    ctx.push_soon()
    return web.json_response(await accounts.appointment_json(ctx.db, appointment.id))


@routes.post("/api/v1/appointments/{appointment_id}/restore")
async def restore_appointment(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    await ctx.actions.restore(request.match_info["appointment_id"])
    return web.json_response(await accounts.appointment_json(ctx.db, request.match_info["appointment_id"]))


@routes.get("/api/v1/calendars/{calendar_id}/troubleshoot")
async def troubleshoot_day(request: web.Request) -> web.Response:
    raw = request.query.get("date")
    if raw is None:
        raise ApiError(422, "date: required, as YYYY-MM-DD")
    try:
        day = date.fromisoformat(raw)
    except ValueError as exc:
        raise ApiError(422, "date: not a date (YYYY-MM-DD)") from exc
    if day.year not in YEARS:
        raise ApiError(422, f"date: out of the supported years, {YEARS[0]} to {YEARS[-1]}")
    ctx = _ctx(request)
    items = await troubleshoot.troubleshoot(
        ctx.db, request.match_info["calendar_id"], day, ctx.clock(), viewer_id=request.query.get("viewer_id")
    )
    return _items(items)


@routes.get("/api/v1/contacts")
async def list_contacts(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    found = await contacts.list_contacts(ctx.db, ctx.workspace_id, request.query.get("email"))
    return _items([contact_payload(c) for c in found])


@routes.post("/api/v1/automations")
async def create_automation(request: web.Request) -> web.Response:
    body = await _body(request, NewAutomation)
    ctx = _ctx(request)
    automation = await automations.create_automation(
        ctx.db, ctx.workspace_id, body.trigger, body.action, body.calendar_id, str(body.url) if body.url else None
    )
    return web.json_response({
        "id": automation.id, "trigger": automation.trigger, "action": automation.action,
        "calendar_id": automation.calendar_id, "url": automation.config.get("url"),
    }, status=201)


@routes.get("/api/v1/automations/{automation_id}/runs")
async def automation_runs(request: web.Request) -> web.Response:
    runs = await automations.automation_runs(_ctx(request).db, request.match_info["automation_id"])
    return _items([_run_json(r) for r in runs])
