"""REST API v1 handlers (API.md). Thin: parse and validate, call a `sync/` service, serialize."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import select
from sqlmodel import col

from storage.models import (
    Appointment,
    AppointmentAssignee,
    BlockedSlot,
    Connection,
    Provider,
)
from storage.types import utcnow
from sync import accounts, automations, teams
from sync.payloads import appointment_payload, contact_payload, rfc3339
from web.context import WebContext
from web.errors import ApiError, read_json
from web.schemas import NewAutomation, NewConnection, NewTeamCalendar, NewUser, SyncSettingsBody

routes = web.RouteTableDef()
CONTEXT: web.AppKey[WebContext] = web.AppKey("context", WebContext)
B = TypeVar("B", bound=BaseModel)


def _ctx(request: web.Request) -> WebContext:
    return request.app[CONTEXT]


async def _body(request: web.Request, model: type[B]) -> B:
    document = await read_json(request)
    if not isinstance(document, dict):
        raise ApiError(422, "the body must be a JSON object", "validation_error")
    return model.model_validate(document)


def _items(items: list[dict[str, Any]]) -> web.Response:
    return web.json_response({"items": items})


def _time_range(request: web.Request, default_days: int = 30) -> tuple[datetime, datetime]:
    """`start`/`end` query parameters (RFC 3339 with an offset); defaults to the coming `default_days`."""
    def parse(name: str, default: datetime) -> datetime:
        raw = request.query.get(name)
        if raw is None:
            return default
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ApiError(422, f"{name}: not an RFC 3339 time", "validation_error") from exc
        if value.tzinfo is None:
            raise ApiError(422, f"{name}: the time needs an offset, e.g. 2026-03-02T13:00:00Z", "validation_error")
        return value

    start = parse("start", utcnow() - timedelta(days=1))
    end = parse("end", start + timedelta(days=default_days))
    if end <= start:
        raise ApiError(422, "end must be after start", "validation_error")
    return start, end


def _user_json(user: Any) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "email": user.email, "timezone": user.timezone,
            "slack_user_id": user.slack_user_id}


def _connection_json(connection: Connection) -> dict[str, Any]:
    """Never the credentials: only what a person needs to recognise the account."""
    return {"id": connection.id, "provider": connection.provider, "account": connection.account,
            "status": connection.status, "last_error": connection.last_error}


# Users -----------------------------------------------------------------------------------------------


@routes.post("/api/v1/users")
async def create_user(request: web.Request) -> web.Response:
    body = await _body(request, NewUser)
    ctx = _ctx(request)
    user = await accounts.create_user(ctx.db, ctx.workspace_id, body.name, str(body.email), body.timezone,
                                      body.slack_user_id)
    return web.json_response(_user_json(user), status=201)


@routes.get("/api/v1/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    async with _ctx(request).db.session() as session:
        user = await accounts.get_user(session, request.match_info["user_id"])
    return web.json_response(_user_json(user))


# Connections -----------------------------------------------------------------------------------------


@routes.post("/api/v1/users/{user_id}/connections")
async def create_connection(request: web.Request) -> web.Response:
    body = await _body(request, NewConnection)
    if body.provider == "caldav" and body.url is None:
        raise ApiError(422, "url: required for a CalDAV connection", "validation_error")
    ctx = _ctx(request)
    connection, _ = await accounts.connect(
        ctx.db, ctx.secrets, ctx.providers, request.match_info["user_id"], Provider(body.provider),
        body.username, body.password, str(body.url) if body.url else None,
    )
    return web.json_response(_connection_json(connection), status=201)


@routes.get("/api/v1/users/{user_id}/connections")
async def list_connections(request: web.Request) -> web.Response:
    connections = await accounts.list_connections(_ctx(request).db, request.match_info["user_id"])
    return _items([_connection_json(c) for c in connections])


@routes.delete("/api/v1/connections/{connection_id}")
async def delete_connection(request: web.Request) -> web.Response:
    await accounts.disconnect(_ctx(request).db, request.match_info["connection_id"])
    return web.Response(status=204)


# Calendars, settings, sync ---------------------------------------------------------------------------


@routes.get("/api/v1/users/{user_id}/calendars")
async def list_calendars(request: web.Request) -> web.Response:
    found = await accounts.user_calendars(_ctx(request).db, request.match_info["user_id"])
    return _items([{
        "id": c.calendar.id, "connection_id": c.calendar.connection_id, "name": c.calendar.name,
        "access": c.calendar.access, "is_linked": c.is_linked, "is_conflict": c.is_conflict,
        "last_synced_at": rfc3339(c.calendar.last_synced_at) if c.calendar.last_synced_at else None,
        "last_error": c.calendar.last_error,
    } for c in found])


@routes.get("/api/v1/users/{user_id}/sync-settings")
async def get_sync_settings(request: web.Request) -> web.Response:
    settings = await accounts.get_settings(_ctx(request).db, request.match_info["user_id"])
    return web.json_response(settings.as_json())


@routes.put("/api/v1/users/{user_id}/sync-settings")
async def put_sync_settings(request: web.Request) -> web.Response:
    body = await _body(request, SyncSettingsBody)
    settings = await accounts.put_settings(
        _ctx(request).db, request.match_info["user_id"], body.linked_calendar_id, body.conflict_calendar_ids,
        body.mode, body.window_days_back, body.window_days_ahead,
    )
    return web.json_response(settings.as_json())


@routes.post("/api/v1/users/{user_id}/sync")
async def sync_now(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    async with ctx.db.session() as session:
        await accounts.get_user(session, request.match_info["user_id"])
    reports = await ctx.engine.sync_user(request.match_info["user_id"])
    return web.json_response({"calendars": [r.as_json() for r in reports]})


@routes.get("/api/v1/users/{user_id}/blocked-slots")
async def blocked_slots(request: web.Request) -> web.Response:
    start, end = _time_range(request)
    async with _ctx(request).db.session() as session:
        user = await accounts.get_user(session, request.match_info["user_id"])
        slots = await session.scalars(
            select(BlockedSlot).where(col(BlockedSlot.user_id) == user.id, col(BlockedSlot.start) < end,
                                      col(BlockedSlot.end) > start).order_by(col(BlockedSlot.start)))
        return _items([{
            "id": s.id, "calendar_id": s.remote_calendar_id, "start": rfc3339(s.start), "end": rfc3339(s.end),
            "all_day": s.all_day, "busy": s.busy, "title": s.title, "remote_id": s.remote_id,
        } for s in slots])


@routes.get("/api/v1/users/{user_id}/appointments")
async def user_appointments(request: web.Request) -> web.Response:
    start, end = _time_range(request)
    async with _ctx(request).db.session() as session:
        user = await accounts.get_user(session, request.match_info["user_id"])
        found = await session.scalars(
            select(Appointment)
            .join(AppointmentAssignee, col(AppointmentAssignee.appointment_id) == col(Appointment.id))
            .where(col(AppointmentAssignee.user_id) == user.id, col(Appointment.start) < end,
                   col(Appointment.end) > start).order_by(col(Appointment.start)))
        return _items([await appointment_payload(session, a) for a in found])


# Team calendars, contacts, automations ---------------------------------------------------------------


@routes.post("/api/v1/calendars")
async def create_team_calendar(request: web.Request) -> web.Response:
    body = await _body(request, NewTeamCalendar)
    ctx = _ctx(request)
    created = await teams.create_team_calendar(ctx.db, ctx.workspace_id, body.model_dump())
    return web.json_response(created.as_json(), status=201)


@routes.get("/api/v1/calendars/{calendar_id}")
async def get_team_calendar(request: web.Request) -> web.Response:
    found = await teams.get_team_calendar(_ctx(request).db, request.match_info["calendar_id"])
    return web.json_response(found.as_json())


@routes.get("/api/v1/contacts")
async def list_contacts(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    found = await automations.list_contacts(ctx.db, ctx.workspace_id, request.query.get("email"))
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
    return _items([automations.run_json(r) for r in runs])

