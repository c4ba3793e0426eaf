"""The aiohttp application: REST API v1, health, metrics and the OpenAPI document on one port."""

from __future__ import annotations

import functools
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, Metric, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from sync import accounts, gauges, telemetry
from web import connect, oauth, webhooks
from web.api import CONTEXT, routes
from web.context import WebContext
from web.errors import ApiError, Handler, errors_middleware, route_template

OPENAPI = Path(__file__).resolve().parents[1] / "manifests" / "openapi.yaml"
"""Read from the checkout (installs are editable), so the document and the code change together."""
PUBLIC = frozenset({"/healthz", "/metrics", "/api/v1/openapi.json"})
PUBLIC_PREFIXES = (connect.PREFIX, oauth.PREFIX, "/slack/", webhooks.PREFIX)
"""Pages a person's browser opens from a link or a provider's consent page sends it back to (the link's token,
or the signed `state`, is their only key), Slack's requests (their signature is checked by the Slack app, bot/)
and providers' notifications (their channel's token)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Metrics:
    """One registry per app, so two apps in one process (tests) never share or clash on series."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        return cls(
            registry,
            Counter("croco_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry),
            Histogram("croco_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry),
        )


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost, so it counts what the client got, errors included; labelled by route template, not path."""
    metrics, route, started = request.app[METRICS], route_template(request), time.perf_counter()
    method = request.method if request.method in METHODS else "OTHER"  # clients invent methods: bound the labels
    response = await handler(request)
    metrics.requests.labels(method, route, str(response.status)).inc()
    metrics.latency.labels(method, route).observe(time.perf_counter() - started)
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC or request.path.startswith(PUBLIC_PREFIXES):
        return await handler(request)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = request.app[CONTEXT].api_token.encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise ApiError(401, "send Authorization: Bearer <CROCO_API_TOKEN>")
    return await handler(request)


@web.middleware
async def text_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """PostgreSQL can neither store nor compare text with NUL characters: refuse them before any query."""
    if any("\x00" in value for value in request.match_info.values()):
        raise ApiError(404, "no such resource")
    if any("\x00" in value for value in request.query.values()):
        raise ApiError(422, "query parameters must not contain NUL characters")
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    """API.md: the database answers, and this process's scheduler ticked within three of its intervals (a process
    run without one says `disabled`). 503 names the failing part."""
    ctx = request.app[CONTEXT]
    parts = {"database": "ok" if await ctx.db.ping() else "unavailable",
             "scheduler": "disabled" if ctx.scheduler is None
             else "ok" if ctx.scheduler.ticked_within(3) else "not_ticking"}
    healthy = all(state in ("ok", "disabled") for state in parts.values())
    return web.json_response({"status": "ok" if healthy else "degraded", **parts}, status=200 if healthy else 503)


async def metrics(request: web.Request) -> web.Response:
    """This app's HTTP metrics, the process's work (`sync.telemetry.TELEMETRY`), and the gauges the database
    holds now."""
    ctx = request.app[CONTEXT]
    figures = await gauges.read_gauges(ctx.db, ctx.clock())
    body = b"".join(generate_latest(registry) for registry in (
        request.app[METRICS].registry, telemetry.TELEMETRY.registry, _gauge_registry(figures)))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class _GaugeSnapshot(Collector):
    def __init__(self, figures: gauges.Gauges) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        g = self.figures
        yield GaugeMetricFamily("croco_calendars_due", "Selected calendars past their due time",
                                value=g.calendars_due)
        yield GaugeMetricFamily("croco_sync_lag_seconds", "How far past its due time the most overdue calendar is",
                                value=g.sync_lag_seconds)
        yield GaugeMetricFamily("croco_outbox_undelivered", "Notices not yet delivered (nor failed for good)",
                                value=g.outbox_undelivered)
        yield GaugeMetricFamily("croco_outbox_oldest_undelivered_seconds", "Age of the oldest undelivered notice",
                                value=g.outbox_oldest_undelivered_seconds)


def _gauge_registry(figures: gauges.Gauges) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_GaugeSnapshot(figures))
    return registry


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(load_openapi())


@functools.cache
def load_openapi() -> dict[str, Any]:
    """The YAML document as JSON types (YAML would turn an unquoted date into a `date`)."""
    document: dict[str, Any] = json.loads(json.dumps(yaml.safe_load(OPENAPI.read_text()), default=str))
    return document


def create_app(ctx: WebContext) -> web.Application:
    app = web.Application(middlewares=[metrics_middleware, errors_middleware, auth_middleware, text_middleware],
                          client_max_size=1024 * 1024)
    app[CONTEXT] = ctx
    app[METRICS] = Metrics.create()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.add_routes(routes)
    app.add_routes(connect.pages)
    app.add_routes(oauth.pages)
    app.add_routes(webhooks.push_routes)

    async def resolve_workspace(app: web.Application) -> None:
        ctx.workspace_id = ctx.workspace_id or await accounts.default_workspace(ctx.db)

    app.on_startup.append(resolve_workspace)

    async def drain(app: web.Application) -> None:
        await app[CONTEXT].drain()

    app.on_cleanup.append(drain)
    return app
