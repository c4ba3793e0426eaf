"""A recording HTTP proxy in front of a real CalDAV server, in the test's event loop.

It counts what the provider really sends (method and path of every request, challenges included) and lets a
test answer some requests itself, stall them, or rewrite what it forwards, to play a server that rate-limits, lacks
sync-collection, leaves events' data out of it, is eventually consistent, or is iCloud's front door that sends
the client on to a partition host. It can also be the reverse proxy that signs users in for a server behind it
(`signs_in`: Xandikos trusts its X-Remote-User).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

Rule = Callable[[web.Request, str], web.Response | None]
"""Given a request and its body, a canned answer, or None to forward it upstream."""
Rewrite = Callable[[str], str]
"""A request body as forwarded upstream."""
Wait = Callable[[web.Request, str], Awaitable[None]]
"""Awaited before a request is answered: a server that stalls, e.g. in the middle of a sync."""

_DROPPED = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass
class DAVProxy:
    upstream: str
    upstream_authorization: str | None = None  # replaces the client's, e.g. to play a Digest server
    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    schemes: list[str] = field(default_factory=list)  # of each request's Authorization ("" without one)
    rules: list[Rule] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    signs_in: Callable[[web.Request], str | None] | None = None
    """Who a forwarded request is from (sent upstream as X-Remote-User), or None to forward it anonymously."""

    def count(self) -> int:
        return len(self.requests)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode("utf-8")
        self.requests.append((request.method, request.path))
        self.bodies.append(body)
        self.schemes.append(request.headers.get("Authorization", "").split(" ", 1)[0])
        for wait in self.waits:
            await wait(request, body)
        for rule in self.rules:
            answer = rule(request, body)
            if answer is not None:
                return answer
        for rewrite in self.rewrites:
            body = rewrite(body)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
        if self.upstream_authorization is not None:
            headers["Authorization"] = self.upstream_authorization
        user = self.signs_in(request) if self.signs_in is not None else None
        if user is not None:
            headers["X-Remote-User"] = user
        async with aiohttp.ClientSession(auto_decompress=True) as session, session.request(
            request.method, self.upstream.rstrip("/") + request.path_qs, headers=headers, data=body.encode("utf-8"),
        ) as upstream:
            content = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROPPED}
            return web.Response(status=upstream.status, body=content, headers=kept)


@asynccontextmanager
async def dav_proxy(upstream: str, upstream_authorization: str | None = None) -> AsyncIterator[DAVProxy]:
    proxy = DAVProxy(upstream, upstream_authorization)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy._handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy.url = f"http://127.0.0.1:{port}/"
    try:
        yield proxy
    finally:
        await runner.cleanup()


def multistatus(*responses: str) -> web.Response:
    return web.Response(
        status=207, content_type="application/xml",
        text=f'<?xml version="1.0"?><D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        f'{"".join(responses)}</D:multistatus>',
    )


def without_data_in_listings(body: str) -> str:
    """A server that lists hrefs and etags only: what it does not know among asked properties stays out."""
    return body.replace("<C:calendar-data/>", "") if "sync-collection" in body else body


def refuse_data_in_listings(_request: web.Request, body: str) -> web.Response | None:
    """A server that answers 400 to a sync-collection asking for calendar-data (RFC 6578 does not promise it)."""
    return web.Response(status=400) if "sync-collection" in body and "calendar-data" in body else None


def hrefs_in(body: str) -> list[str]:
    return re.findall(r"<D:href>([^<]*)</D:href>", body)
