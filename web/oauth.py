"""The OAuth callback (API.md "Connecting in a browser"): the provider's consent page sends the person's browser
back to `{CROCO_PUBLIC_URL}/oauth/{provider}/callback?code=...&state=...`. Public like the connect form (the
signed, single-use `state` is the key) and served the same way: HTML pages in its style, never cached, never
framed, no referrer (the address carries the code), readable by a screen reader without script.

Every failure is a 400 page that says what happened and that nothing was connected: a missing, forged,
expired or spent state; the provider's `?error=` (the person declined: `access_denied`); a code the token
endpoint refuses; a provider this Croco cannot connect.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from storage.enums import Provider
from sync.errors import Gone, Invalid
from web.api import CONTEXT
from web.connect import done, page, sentence

pages = web.RouteTableDef()
PREFIX = "/oauth/"
SERVICES = {Provider.GOOGLE: "Google Calendar", Provider.MICROSOFT: "Outlook / Microsoft 365"}
DECLINED = "access_denied"
AGAIN = "<p>Nothing was connected. In Slack, type <kbd>/croco connect</kbd> to try again.</p>\n"


def _error_code(value: str) -> str:
    """An OAuth error code as a page may show it: the RFC 6749 error set is lowercase words and underscores;
    anything else a URL carries is not repeated back."""
    return value if value and len(value) <= 64 and value.replace("_", "").isalnum() and value.isascii() else "error"


def _failed(service: str, reason: str) -> web.Response:
    return page(f"{service} was not connected", f'<p role="alert">{escape(sentence(reason))}</p>\n{AGAIN}', 400,
                error=True)


@pages.get(PREFIX + "{provider}/callback")
async def oauth_callback(request: web.Request) -> web.Response:
    try:
        provider = Provider(request.match_info["provider"])
        service = SERVICES[provider]
    except (ValueError, KeyError):
        raise web.HTTPNotFound(text="no such page") from None
    query = request.query
    if "error" in query:
        code = _error_code(query["error"])
        if code == DECLINED:
            return _failed(service, f"you did not allow Croco to use your calendars ({DECLINED})")
        return _failed(service, f"the sign-in page answered with an error ({code})")
    state, code = query.get("state", ""), query.get("code", "")
    if not state:
        return _failed(service, "this address carries no sign-in state: start again from Slack")
    if not code:
        return _failed(service, "this address carries no sign-in code: start again from Slack")
    try:
        connected = await request.app[CONTEXT].connect_links.complete_oauth(provider, state, code)
    except Gone as exc:
        return _failed(service, f"{exc.message} (links work once and for 10 minutes)")
    except Invalid as exc:
        return _failed(service, exc.message)
    return done(connected.connection.account, connected.calendars, connected.renewed, service=service)
