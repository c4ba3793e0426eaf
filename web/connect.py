"""The connect form (API.md "Connecting in a browser"): HTML pages outside /api/v1, opened by a person's
browser from a one-time link, so they take no bearer token. The link is the only key: pages are never
cached, never framed and send no referrer, and the password is never written back into a page.
"""

from __future__ import annotations

import json
from html import escape

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from storage.enums import Provider
from sync.connect_links import OpenLink
from sync.errors import Gone, Invalid
from sync.providers.base import AppPassword
from web.api import CONTEXT
from web.errors import describe
from web.schemas import NewConnection

pages = web.RouteTableDef()
PREFIX = "/connect/"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
}
NAMES = {Provider.ICLOUD: ("iCloud", "Apple ID"), Provider.CALDAV: ("your CalDAV server", "Username")}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}}
label,input,button{{display:block;width:100%;box-sizing:border-box}}input{{margin:.25rem 0 1rem;padding:.5rem}}
button{{padding:.6rem}}.error{{color:#a00}}</style></head>
<body><h1>{title}</h1>
{body}</body></html>
"""


def _page(title: str, body: str, status: int) -> web.Response:
    return web.Response(text=_PAGE.format(title=escape(title), body=body), status=status,
                        content_type="text/html", charset="utf-8", headers=HEADERS)


def _form(link: OpenLink, *, username: str, url: str, reason: str | None, status: int) -> web.Response:
    """The form, filled with what was typed except the password, and the reason the last attempt failed."""
    server, username_label = NAMES[link.provider]
    fields = [
        f'<input type="hidden" name="provider" value="{escape(link.provider)}">',
        f'<label for="username">{username_label}</label>'
        f'<input id="username" name="username" type="text" autocomplete="username" required maxlength="320"'
        f' value="{escape(username)}">',
        '<label for="password">App-specific password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required'
        ' maxlength="1000">',
    ]
    if link.provider == Provider.CALDAV:
        fields.append('<label for="url">Server URL</label>'
                      f'<input id="url" name="url" type="url" required maxlength="2000" value="{escape(url)}">')
    error = f'<p class="error" role="alert">{escape(reason)}</p>\n' if reason else ""
    verb = "Reconnect" if link.connection_id else "Connect"
    body = (f"{error}<p>{verb} {escape(server)}. The password is checked with the server, then stored encrypted."
            "</p>\n<form method=\"post\">\n" + "\n".join(fields)
            + f'\n<button type="submit">{verb}</button>\n</form>\n')
    return _page(f"{verb} {server}", body, status)


def _gone(error: Gone) -> web.Response:
    return _page("This link no longer works", f"<p>{escape(error.message)}</p>\n", 410)


@pages.get(PREFIX + "{token}")
async def connect_form(request: web.Request) -> web.Response:
    try:
        link = await request.app[CONTEXT].connect_links.open(request.match_info["token"])
    except Gone as exc:
        return _gone(exc)
    return _form(link, username=link.account or "", url=link.server_url or "", reason=None, status=200)


@pages.post(PREFIX + "{token}")
async def connect_submit(request: web.Request) -> web.Response:
    """Fields as in POST /users/{id}/connections; the link, not the form, says which provider it is."""
    links, token = request.app[CONTEXT].connect_links, request.match_info["token"]
    try:
        link = await links.open(token)
    except Gone as exc:
        return _gone(exc)
    try:
        form = await request.post()
    except (ValueError, LookupError, HttpProcessingError):  # not UTF-8, an unknown charset, broken multipart
        return _page("This form could not be read", "<p>Send it again from the page.</p>\n", 400)
    typed = {name: value for name in ("username", "password", "url") if isinstance(value := form.get(name), str)}
    username, url = typed.get("username", ""), typed.get("url", "")
    try:
        body = NewConnection.model_validate_json(json.dumps(
            {"provider": link.provider, "username": username, "password": typed.get("password", ""), "url": url or None}
        ))
        connected = await links.submit(token, AppPassword(body.username, body.password),
                                       str(body.url) if body.url else None)
    except ValidationError as exc:
        return _form(link, username=username, url=url, reason=describe(exc), status=422)
    except Invalid as exc:
        return _form(link, username=username, url=url, reason=exc.message, status=422)
    except Gone as exc:
        return _gone(exc)
    connection, count = connected.connection, len(connected.calendars)
    done = "Reconnected" if connected.renewed else "Connected"
    return _page(f"{done} {connection.account}",
                 f"<p>{escape(done)} {escape(connection.account)}: {count} calendar{'s' * (count != 1)} found. "
                 "You can close this window.</p>\n", 200)
