"""The aiohttp application: REST API v1, health, metrics and the OpenAPI document on one port."""

from __future__ import annotations

import hmac
import json
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sync import accounts
from web.api import CONTEXT, routes
from web.context import WebContext
from web.errors import Handler, error_response, errors_middleware

OPENAPI = Path(__file__).resolve().parents[1] / "manifests" / "openapi.yaml"
PUBLIC = {"/healthz", "/metrics", "/api/v1/openapi.json"}
METRICS: web.AppKey[tuple[CollectorRegistry, Counter, Histogram]] = web.AppKey("metrics", tuple)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC:
        return await handler(request)
    token = request.app[CONTEXT].api_token
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return error_response(401, "unauthorized", "send Authorization: Bearer <CROCO_API_TOKEN>")
    return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    _, requests, latency = request.app[METRICS]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    started = time.perf_counter()
    response = await handler(request)
    requests.labels(request.method, route, str(response.status)).inc()
    latency.labels(request.method, route).observe(time.perf_counter() - started)
    return response


async def healthz(request: web.Request) -> web.Response:
    database = await request.app[CONTEXT].db.ping()
    return web.json_response({"status": "ok" if database else "degraded",
                              "database": "ok" if database else "unavailable"}, status=200 if database else 503)


async def metrics(request: web.Request) -> web.Response:
    registry, _, _ = request.app[METRICS]
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(load_openapi())


def load_openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(yaml.safe_load(OPENAPI.read_text()), default=str))
    return document


def create_app(ctx: WebContext) -> web.Application:
    app = web.Application(middlewares=[metrics_middleware, errors_middleware, auth_middleware],
                          client_max_size=1024 * 1024)
    app[CONTEXT] = ctx
    registry = CollectorRegistry()
    app[METRICS] = (
        registry,
        Counter("croco_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry),
        Histogram("croco_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry),
    )
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.add_routes(routes)

    async def resolve_workspace(app: web.Application) -> None:
        ctx.workspace_id = ctx.workspace_id or await accounts.default_workspace(ctx.db)

    app.on_startup.append(resolve_workspace)
    return app
