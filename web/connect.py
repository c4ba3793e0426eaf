"""The connect form (API.md "Connecting in a browser"): HTML pages outside /api/v1, opened by a person's
browser from a one-time link, so they take no bearer token and set no cookie. The link is the only key: pages
are never cached, never framed and send no referrer, and the password is never written back into a page.

Accessible without script (the CSP allows none): every field has a `<label for>`, its hint and its error are
tied to it with `aria-describedby`, and after a failed attempt the field at fault is `aria-invalid` and gets the
focus (`autofocus`), so a screen reader reads the label, the hint and the error at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from storage.enums import Provider
from storage.models import RemoteCalendar
from sync.connect_links import OpenLink
from sync.errors import Gone, Invalid
from sync.providers.base import AppPassword
from web.api import CONTEXT
from web.schemas import NewConnection

pages = web.RouteTableDef()
PREFIX = "/connect/"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
APPLE_HELP = "https://support.apple.com/en-us/102654"
APPLE_HELP_TITLE = "Sign in to apps with your Apple Account using app-specific passwords"
SHOWN_CALENDARS = 20


@dataclass(frozen=True)
class Field:
    """One input; `hint` is trusted HTML (written here, never from a request)."""

    name: str
    label: str
    type: str
    autocomplete: str
    maxlength: int
    hint: str = ""
    keeps_value: bool = True
    """False for the password: never written back into a page."""
    inputmode: str = ""


_NEW_TAB = ' target="_blank" rel="noopener noreferrer"'
ICLOUD = (
    Field("username", "Apple Account", "text", "username", 320,
          "The email address you sign in to iCloud with (your Apple ID).", inputmode="email"),
    Field("password", "App-specific password", "password", "current-password", 1000,
          "Not your Apple Account password: create an app-specific password for Croco at account.apple.com, "
          f'under Sign-In and Security. <a href="{APPLE_HELP}"{_NEW_TAB}>{APPLE_HELP_TITLE} (Apple Support, '
          "opens in a new tab)</a>", keeps_value=False),
)
CALDAV = (
    Field("url", "Server URL", "url", "url", 2000,
          "The CalDAV address your provider gives you, starting with https://, for example "
          "https://dav.example.com/ or https://cloud.example.com/remote.php/dav/."),
    Field("username", "Username", "text", "username", 320, "The name you sign in to that server with."),
    Field("password", "Password", "password", "current-password", 1000,
          "Your password for that server, or an app password if your provider gives those out.", keeps_value=False),
)
REFUSED = {
    Provider.ICLOUD: "Apple refused this Apple Account and password: check both and type the password again. "
                     "Use an app-specific password, not your Apple Account password.",
    Provider.CALDAV: "The server refused this username and password: check both and type the password again.",
}
FORMS = {Provider.ICLOUD: ("iCloud", ICLOUD), Provider.CALDAV: ("your CalDAV server", CALDAV)}


@dataclass(frozen=True)
class Problem:
    """Why an attempt failed, and the field at fault (None: the attempt as a whole)."""

    message: str
    field: str | None = None


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;line-height:1.5;max-width:30rem;margin:2rem auto;padding:0 1rem;
color:#1b1b1b}}
label{{display:block;font-weight:600;margin-top:1.25rem}}
input{{display:block;width:100%;box-sizing:border-box;margin:.25rem 0;padding:.5rem;font:inherit;
border:2px solid #555;border-radius:4px}}
input[aria-invalid=true]{{border-color:#b00020}}
button{{margin-top:1.5rem;padding:.6rem 1.2rem;font:inherit;font-weight:600;color:#fff;background:#1a5fb4;
border:0;border-radius:4px;cursor:pointer}}
.hint{{margin:.25rem 0;color:#454545;font-size:.95rem}}
.error{{margin:.25rem 0;color:#b00020;font-weight:600}}
a{{color:#1a5fb4}}
:focus-visible{{outline:3px solid #f5a300;outline-offset:2px}}</style></head>
<body><main>
<h1>{heading}</h1>
{body}</main></body></html>
"""


def page(heading: str, body: str, status: int, *, error: bool = False) -> web.Response:
    """`error`: the title says so first, which a screen reader reads as the page loads."""
    title = f"Error: {heading}" if error else heading
    return web.Response(text=_PAGE.format(title=escape(title), heading=escape(heading), body=body), status=status,
                        content_type="text/html", charset="utf-8", headers=HEADERS)


def _input(field: Field, value: str, problem: Problem | None) -> str:
    described = [f"{field.name}-hint"] if field.hint else []
    invalid = problem is not None and problem.field == field.name
    attributes = (f'id="{field.name}" name="{field.name}" type="{field.type}" autocomplete="{field.autocomplete}"'
                  f' required maxlength="{field.maxlength}"')
    if field.type != "password":
        attributes += ' autocapitalize="none" spellcheck="false"'
    if field.inputmode:
        attributes += f' inputmode="{field.inputmode}"'
    error = ""
    if invalid:
        assert problem is not None
        described.append(f"{field.name}-error")
        attributes += ' aria-invalid="true" autofocus'
        error = f'<p class="error" id="{field.name}-error" role="alert">{escape(problem.message)}</p>\n'
    if described:
        attributes += f' aria-describedby="{" ".join(described)}"'
    if field.keeps_value and value:
        attributes += f' value="{escape(value)}"'
    hint = f'<p class="hint" id="{field.name}-hint">{field.hint}</p>\n' if field.hint else ""
    return f'<label for="{field.name}">{escape(field.label)}</label>\n{hint}{error}<input {attributes}>\n'


def _form(link: OpenLink, typed: dict[str, str], problem: Problem | None, status: int) -> web.Response:
    """The form, filled with what was typed except the password, and why the last attempt failed."""
    server, fields = FORMS[link.provider]
    verb = "Reconnect" if link.connection_id else "Connect"
    overall = ""
    if problem is not None and problem.field is None:
        overall = (f'<p class="error" id="form-error" role="alert" tabindex="-1" autofocus>'
                   f"{escape(problem.message)}</p>\n")
    inputs = "".join(_input(f, typed.get(f.name, ""), problem) for f in fields)
    body = (f"<p>Croco checks these details with {escape(server)}, then stores them encrypted; "
            "the password is never shown again.</p>\n"
            f'{overall}<form method="post">\n<input type="hidden" name="provider" value="{escape(link.provider)}">\n'
            f'{inputs}<button type="submit">{verb}</button>\n</form>\n')
    return page(f"{verb} {server}", body, status, error=problem is not None)


def _gone(error: Gone) -> web.Response:
    return page("This link no longer works",
                f"<p>{escape(sentence(error.message))}</p>\n"
                "<p>Links work once and for 15 minutes. In Slack, type <kbd>/croco connect</kbd> for a new one.</p>\n",
                410, error=True)


def done(account: str, calendars: Sequence[RemoteCalendar], renewed: bool, *, service: str = "") -> web.Response:
    """The page after connecting, listing the calendars found; headed "<service> connected" when given (the
    consent pages: the account is known only now), else "Connected <account>"."""
    verb, count = ("Reconnected" if renewed else "Connected"), len(calendars)
    names = "".join(f"<li>{escape(c.name)}</li>" for c in calendars[:SHOWN_CALENDARS])
    more = f"<li>and {count - SHOWN_CALENDARS} more</li>" if count > SHOWN_CALENDARS else ""
    listed = f"<ul>{names}{more}</ul>\n" if count else ""
    after = ("Croco syncs its calendars again, with your settings as they were."
             if renewed else "Croco has sent you a message there to choose which calendars to sync.")
    body = (f"<p>{escape(verb)} {escape(account)}: {count} calendar{'s' * (count != 1)} found.</p>\n{listed}"
            f"<p><strong>Go back to Slack.</strong> {after} You can close this tab.</p>\n")
    return page(f"{service} {verb.lower()}" if service else f"{verb} {account}", body, 200)


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _labelled(fields: Sequence[Field], name: str, message: str) -> Problem:
    label = next(f.label for f in fields if f.name == name)
    return Problem(f"{label}: {message}", name)


def _validation_problem(link: OpenLink, error: ValidationError) -> Problem:
    """The first problem, at its field when it is one of the form's (never the value sent)."""
    fields = FORMS[link.provider][1]
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    if any(f.name == name for f in fields):
        return _labelled(fields, name, first["msg"])
    return Problem(sentence(first["msg"]))


def _refusal(link: OpenLink, error: Invalid) -> Problem:
    fields = FORMS[link.provider][1]
    if error.code == "invalid_credentials":
        return Problem(REFUSED[link.provider], "password")
    if error.code == "unreachable" and link.provider == Provider.CALDAV:
        return Problem(sentence(error.message) + " Check the server URL.", "url")
    name, _, rest = error.message.partition(": ")
    if rest and any(f.name == name for f in fields):
        return _labelled(fields, name, rest)
    return Problem(sentence(error.message))


@pages.get(PREFIX + "{token}")
async def connect_form(request: web.Request) -> web.Response:
    try:
        link = await request.app[CONTEXT].connect_links.open(request.match_info["token"])
    except Gone as exc:
        return _gone(exc)
    return _form(link, {"username": link.account or "", "url": link.server_url or ""}, None, 200)


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
        return page("This form could not be read", "<p>Go back to the form and send it again.</p>\n", 400,
                     error=True)
    typed = {name: value for name in ("username", "password", "url") if isinstance(value := form.get(name), str)}
    url = typed.get("url", "")
    try:
        body = NewConnection.model_validate_json(json.dumps({
            "provider": link.provider, "username": typed.get("username", ""), "password": typed.get("password", ""),
            "url": url or None}))
        connected = await links.submit(token, AppPassword(body.username, body.password),
                                       str(body.url) if body.url else None)
    except ValidationError as exc:
        return _form(link, typed, _validation_problem(link, exc), 422)
    except Invalid as exc:
        return _form(link, typed, _refusal(link, exc), 422)
    except Gone as exc:
        return _gone(exc)
    return done(connected.connection.account, connected.calendars, connected.renewed)
