"""Webhooks both ways: providers' push notifications in (`POST /webhooks/google`), and the aiohttp client
behind automation webhooks out (`sync.firing.WebhookSender`)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from sync import channels
from sync.channels import Notified
from web.api import CONTEXT
from web.errors import ApiError

PREFIX = "/webhooks/"
"""Public: a notification's channel token is its only key (checked by `sync.channels.mark_due`)."""
push_routes = web.RouteTableDef()


@push_routes.post(PREFIX + "google")
async def google_notification(request: web.Request) -> web.Response:
    """Google's watch notification (provider-apis.md G4): headers only, never a body. It only marks the
    calendar due, and this process's sync runs at once (API.md: synced within 5 s)."""
    ctx, headers = request.app[CONTEXT], request.headers
    channel_id, state = headers.get("X-Goog-Channel-ID", ""), headers.get("X-Goog-Resource-State", "")
    if not channel_id or not state:
        raise ApiError(400, "a Google notification carries X-Goog-Channel-ID and X-Goog-Resource-State")
    notified = await channels.mark_due(ctx.db, ctx.secrets, "google", channel_id,
                                       headers.get("X-Goog-Channel-Token", ""), state, ctx.clock())
    if notified is Notified.UNKNOWN_CHANNEL:
        raise ApiError(404, "no such channel", code="unknown_channel")
    if notified is Notified.BAD_TOKEN:
        raise ApiError(403, "the channel token does not match", code="bad_token")
    if notified is Notified.MARKED_DUE:
        ctx.sync_soon()
    return web.Response(status=200)


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
