"""Webhooks both ways: providers' push notifications in (`POST /webhooks/google`), and the aiohttp client
behind automation webhooks out (`sync.firing.WebhookSender`)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from sync import channels
from sync.channels import Change, Notified
from web.api import CONTEXT
from web.context import WebContext
from web.errors import ApiError

PREFIX = "/webhooks/"
"""Public: a notification's channel token is its only key (checked by `sync.channels.take_notification`)."""
push_routes = web.RouteTableDef()

GOOGLE_CHANGES = {"exists": Change.CHANGED, "not_exists": Change.CHANGED}
"""Google's resource states that say the calendar changed; `sync` (and anything new) only says it works."""
GRAPH_LIFECYCLE = {"missed": Change.CHANGED, "reauthorizationRequired": Change.REAUTHORIZE,
                   "subscriptionRemoved": Change.REMOVED}
"""Graph's lifecycle events (M4); an unknown one changes nothing. Every changeType is a change."""


@push_routes.post(PREFIX + "google")
async def google_notification(request: web.Request) -> web.Response:
    """Google's watch notification (provider-apis.md G4): headers only, never a body. It only marks the
    calendar due, and this process's sync runs at once (API.md: synced within 5 s)."""
    ctx, headers = request.app[CONTEXT], request.headers
    channel_id, state = headers.get("X-Goog-Channel-ID", ""), headers.get("X-Goog-Resource-State", "")
    if not channel_id or not state:
        raise ApiError(400, "a Google notification carries X-Goog-Channel-ID and X-Goog-Resource-State")
    notified = await channels.take_notification(ctx.db, ctx.secrets, "google", channel_id,
                                                headers.get("X-Goog-Channel-Token", ""),
                                                GOOGLE_CHANGES.get(state, Change.NONE), ctx.clock())
    if notified is Notified.UNKNOWN_CHANNEL:
        raise ApiError(404, "no such channel", code="unknown_channel")
    if notified is Notified.BAD_TOKEN:
        raise ApiError(403, "the channel token does not match", code="bad_token")
    _act_on(ctx, [notified])
    return web.Response(status=200)


@push_routes.post(PREFIX + "microsoft")
async def microsoft_notification(request: web.Request) -> web.Response:
    """Graph's change and lifecycle notifications (provider-apis.md M4), both sent here.

    - A `validationToken` in the query is the subscription handshake: echoed as plain text, at once (Graph
      waits 10 s at most), with no database read.
    - Otherwise the body holds up to a batch of notifications; each is recorded (`take_notification`: one
      indexed read, one update) and answered 202 within Graph's 3 s. A `clientState` that does not match is
      refused 403, and a batch naming no subscription we know is 404 (API.md): Graph's own always match, and
      a subscription we no longer want was deleted, so neither is retried for long."""
    ctx = request.app[CONTEXT]
    validation = request.query.get("validationToken")
    if validation is not None:
        return web.Response(status=200, text=validation, content_type="text/plain")
    try:
        body = await request.json()
        items = body["value"]
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ValueError("value is not a list of objects")
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "a Graph notification is a JSON object with a value list") from None
    outcomes: list[Notified] = []
    for item in items:
        change = (GRAPH_LIFECYCLE.get(str(item["lifecycleEvent"]), Change.NONE) if "lifecycleEvent" in item
                  else Change.CHANGED)
        outcomes.append(await channels.take_notification(
            ctx.db, ctx.secrets, "microsoft", str(item.get("subscriptionId", "")), str(item.get("clientState", "")),
            change, ctx.clock()))
    if Notified.BAD_TOKEN in outcomes:
        raise ApiError(403, "the clientState does not match", code="bad_token")
    if all(outcome is Notified.UNKNOWN_CHANNEL for outcome in outcomes):
        raise ApiError(404, "no such subscription", code="unknown_channel")
    _act_on(ctx, outcomes)
    return web.Response(status=202)


def _act_on(ctx: WebContext, outcomes: list[Notified]) -> None:
    """Run now what the notifications made due: this process's sync tick, the channel job."""
    if Notified.MARKED_DUE in outcomes or Notified.CHANNEL_DUE in outcomes:
        ctx.sync_soon()
    if Notified.CHANNEL_DUE in outcomes:
        ctx.channels_soon()


class AiohttpWebhookSender:
    def __init__(self, session: aiohttp.ClientSession, *, timeout_seconds: float = 10.0) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            async with self._session.post(url, data=body, headers=headers, timeout=self._timeout,
                                          allow_redirects=False) as response:
                return response.status
        except aiohttp.ClientError as exc:  # refused, reset, bad URL: all mean "try again later"
            raise OSError(f"webhook host unreachable: {type(exc).__name__}") from exc
