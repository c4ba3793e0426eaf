"""The CalDAV provider against real servers: discovery, access, credentials, request counts, server quirks.

A recording proxy (`dav_proxy`) sits in front of the server where a test counts requests or plays a server
that rate-limits, lacks sync-collection, refuses or leaves out events' data in it, or is eventually consistent.
"""

from __future__ import annotations

import base64
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlmodel import col

from croco.embedded_caldav import free_port
from storage.db import Database
from storage.enums import Access, Provider, SyncMode
from storage.models import BlockedSlot, Connection
from storage.secrets import SecretBox
from sync import accounts
from sync.engine import SyncEngine
from sync.providers.base import (
    InvalidCredentials,
    ProviderConfig,
    ProviderError,
    RateLimited,
    RemoteItem,
    TimeWindow,
    Unreachable,
)
from sync.providers.caldav.provider import ETAGS, FREEBUSY, SYNC, SYNC_HREFS, CalDAVProvider
from sync.providers.registry import open_provider
from tests.caldav_servers import CalDAVServer
from tests.factories import ANY_TIME
from tests.ics import vevent
from tests.providers.dav_proxy import (
    DAVProxy,
    dav_proxy,
    hrefs_in,
    multistatus,
    refuse_data_in_listings,
    without_data_in_listings,
)
from tests.providers.support import CONFIG, CONTEXT, DRAFT, caldav, ics, michel_copy, names
from tests.web.conftest import TOKEN
from web.app import create_app
from web.context import WebContext


async def test_discovery_lists_calendars_with_their_access(caldav_server: CalDAVServer) -> None:
    name = f"work-{uuid.uuid4().hex[:6]}"
    url = caldav_server.new_calendar(name)
    calendars = {c.remote_id: c for c in await caldav(caldav_server).list_calendars()}
    assert calendars[url].access == Access.FULL and calendars[url].name == name
    assert all(c.remote_id.startswith(caldav_server.url) for c in calendars.values())
    if caldav_server.name == "radicale":  # Xandikos has no per-calendar rights to test with
        assert calendars[f"{caldav_server.home}shared-read/"].access == Access.READ
        assert calendars[f"{caldav_server.home}shared-freebusy/"].access == Access.FREEBUSY


async def test_wrong_password_is_invalid_credentials_and_never_shown(
    radicale: CalDAVServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wrong-secret-5f3a9"
    token = base64.b64encode(f"{radicale.username}:{secret}".encode()).decode()
    caplog.set_level(logging.DEBUG)
    for name in ("caldav", "niquests", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    provider = caldav(radicale, password=secret)
    for call in (provider.list_calendars(), provider.changes(radicale.new_calendar(), None, ANY_TIME)):
        with pytest.raises(InvalidCredentials) as caught:
            await call
        assert str(caught.value) == "The calendar server refused the username or password"
    shown = [str(caught.value), repr(caught.value), repr(provider), caplog.text]
    assert not any(secret in text or token in text for text in shown)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def signed_in_by_basic(server: CalDAVServer) -> tuple[Callable[[web.Request, str], web.Response | None],
                                                     Callable[[web.Request], str | None]]:
    """The reverse proxy's sign-in in front of `open_xandikos`: the right Basic credentials are the user, wrong
    ones a 401, none at all pass through anonymously (the server answers discovery without an account)."""
    expected = "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()

    def refuse_wrong(request: web.Request, _body: str) -> web.Response | None:
        given = request.headers.get("Authorization")
        if given is None or given == expected:
            return None
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="dav"'})

    return refuse_wrong, lambda request: server.username if request.headers.get("Authorization") == expected else None


def no_principal_for_anonymous(request: web.Request, body: str) -> web.Response | None:
    """A server that knows no current-user-principal and answers discovery without credentials."""
    if request.headers.get("Authorization") or "current-user-principal" not in body:
        return None
    return multistatus(f"<D:response><D:href>{request.path}</D:href><D:propstat><D:prop><D:current-user-principal/>"
                       "</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>")


@asynccontextmanager
async def open_server(server: CalDAVServer, *, knows_principals: bool) -> AsyncIterator[DAVProxy]:
    """`open_xandikos` behind the reverse proxy that signs users in; without `knows_principals` the server
    names no principal to a request without credentials instead of RFC 5397's `<unauthenticated/>`."""
    async with dav_proxy(server.url) as proxy:
        refuse_wrong, proxy.signs_in = signed_in_by_basic(server)
        proxy.rules += [refuse_wrong] if knows_principals else [refuse_wrong, no_principal_for_anonymous]
        yield proxy


@pytest.mark.parametrize("knows_principals", [True, False], ids=["unauthenticated-principal", "no-principal"])
async def test_a_server_answering_without_credentials_does_not_take_a_wrong_password(
    open_xandikos: CalDAVServer, knows_principals: bool
) -> None:
    """After the 401, the retry is answered anonymously: that is no account with zero calendars."""
    async with open_server(open_xandikos, knows_principals=knows_principals) as proxy:
        assert [c.name for c in await caldav(open_xandikos, url=proxy.url).list_calendars()] == ["calendar"]
        with pytest.raises(InvalidCredentials, match="refused the username or password"):
            await caldav(open_xandikos, url=proxy.url, password="wrong-password").list_calendars()
        assert "" in proxy.schemes  # the retry did go without credentials, and was answered


async def test_an_unauthenticated_principal_is_refused_even_without_a_401(open_xandikos: CalDAVServer) -> None:
    """Credentials the server ignores (here: forwarded, never checked) leave us nobody: not a connection."""
    async with dav_proxy(open_xandikos.url) as proxy:
        with pytest.raises(InvalidCredentials):
            await caldav(open_xandikos, url=proxy.url).list_calendars()


async def test_connecting_with_a_wrong_password_is_422_and_saves_nothing(
    db: Database, secret_box: SecretBox, open_xandikos: CalDAVServer
) -> None:
    """Through `POST /users/{id}/connections`, with the real provider in front of the open server."""
    providers = functools.partial(open_provider, config=CONFIG)
    web_context = WebContext(db=db, secrets=secret_box, api_token=TOKEN, webhook_secret="w", providers=providers)
    async with open_server(open_xandikos, knows_principals=True) as proxy, \
            TestClient(TestServer(create_app(web_context))) as api:
        api.session.headers["Authorization"] = f"Bearer {TOKEN}"
        user = await (await api.post("/api/v1/users", json={"name": "John", "email": "john@example.com",
                                                            "timezone": "Europe/Paris"})).json()
        body = {"provider": "caldav", "username": open_xandikos.username, "password": "wrong", "url": proxy.url}
        response = await api.post(f"/api/v1/users/{user['id']}/connections", json=body)
        assert response.status == 422 and (await response.json())["error"]["code"] == "invalid_credentials"
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Connection)) == 0
        right = body | {"password": open_xandikos.password}
        assert (await api.post(f"/api/v1/users/{user['id']}/connections", json=right)).status == 201


def test_a_password_in_the_url_stays_out_of_the_repr() -> None:
    provider = CalDAVProvider("https://john:hunter2@cal.example.com:8443/dav/", "john", "hunter2", CONFIG)
    assert "hunter2" not in repr(provider) and "cal.example.com:8443/dav/" in repr(provider)


async def test_an_unreachable_server_is_unreachable() -> None:
    provider = CalDAVProvider(f"http://127.0.0.1:{free_port()}/", "john", "pw", CONFIG)
    with pytest.raises(Unreachable):
        await provider.list_calendars()
    with pytest.raises(Unreachable):
        await provider.changes(f"http://127.0.0.1:{free_port()}/john/work/", None, ANY_TIME)


def calendar_of_copies(server: CalDAVServer, count: int) -> str:
    """A new calendar holding `count` distinct events, e0.ics and on."""
    calendar = server.new_calendar()
    for n in range(count):
        server.put(calendar, f"e{n}.ics", michel_copy(n))
    return calendar


async def test_an_idle_cycle_is_one_request_and_nothing_is_fetched_one_by_one(caldav_server: CalDAVServer) -> None:
    calendar = calendar_of_copies(caldav_server, 3)
    async with dav_proxy(caldav_server.url) as proxy:
        provider, via_proxy = caldav(caldav_server, url=proxy.url), calendar.replace(caldav_server.url, proxy.url)
        first = await provider.changes(via_proxy, None, ANY_TIME)
        # Radicale sends the events' data with the listing; Xandikos answers 404 for it, so one multiget follows
        assert len(first.changed) == 3 and proxy.count() == {"radicale": 1, "xandikos": 2}[caldav_server.name]
        before = proxy.count()
        idle = await provider.changes(via_proxy, first.cursor, ANY_TIME)
        assert idle.changed == () and proxy.count() - before == 1
        assert {method for method, _ in proxy.requests} == {"REPORT"}  # never a GET per object


async def test_each_multiget_chunk_is_handed_over_before_the_next_is_asked_for(
    caldav_server: CalDAVServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sync.providers.caldav.provider.MULTIGET_CHUNK", 2)
    calendar = calendar_of_copies(caldav_server, 5)
    async with dav_proxy(caldav_server.url) as proxy:
        proxy.rewrites.append(without_data_in_listings)
        provider, via_proxy = caldav(caldav_server, url=proxy.url), calendar.replace(caldav_server.url, proxy.url)
        seen: list[tuple[int, int]] = []  # (batch size, requests sent when it was handed over)
        listing = await provider.changes(via_proxy, None, ANY_TIME, on_items=lambda items: seen.append((len(items), proxy.count())))
    assert seen == [(2, 2), (2, 3), (1, 4)] and proxy.count() == 4  # sync-collection, then one multiget per batch
    assert len(listing.changed) == 5


async def test_a_401_after_items_were_handed_over_is_not_retried_into_duplicates(
    radicale: CalDAVServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sync.providers.caldav.provider.MULTIGET_CHUNK", 2)
    calendar = calendar_of_copies(radicale, 5)
    multigets = 0

    def refuse_the_second_multiget(_request: web.Request, body: str) -> web.Response | None:
        nonlocal multigets
        multigets += "calendar-multiget" in body
        return web.Response(status=401) if "calendar-multiget" in body and multigets == 2 else None

    async with dav_proxy(radicale.url) as proxy:
        proxy.rewrites.append(without_data_in_listings)
        proxy.rules.append(refuse_the_second_multiget)
        provider, via_proxy = caldav(radicale, url=proxy.url), calendar.replace(radicale.url, proxy.url)
        batches: list[int] = []
        with pytest.raises(InvalidCredentials):
            await provider.changes(via_proxy, None, ANY_TIME, on_items=lambda items: batches.append(len(items)))
    assert batches == [2]  # handed over once; starting over would hand it over again


async def test_rate_limiting_is_reported_with_retry_after(radicale: CalDAVServer) -> None:
    calendar = radicale.new_calendar()
    async with dav_proxy(radicale.url) as proxy:
        provider, via_proxy = caldav(radicale, url=proxy.url), calendar.replace(radicale.url, proxy.url)
        for status in (429, 503):

            def slow_down(_request: web.Request, _body: str, status: int = status) -> web.Response:
                return web.Response(status=status, headers={"Retry-After": "7"})

            proxy.rules[:] = [slow_down]
            with pytest.raises(RateLimited) as caught:
                await provider.changes(via_proxy, None, ANY_TIME)
            assert caught.value.retry_after == 7


def not_yet(_request: web.Request, body: str) -> web.Response | None:
    """A multiget that cannot give any of the listed objects yet."""
    return multistatus(*(
        f"<D:response><D:href>{href}</D:href><D:status>HTTP/1.1 404 Not Found</D:status></D:response>"
        for href in hrefs_in(body)
    )) if "calendar-multiget" in body else None


async def test_an_href_the_server_cannot_give_yet_comes_back_next_cycle(radicale: CalDAVServer) -> None:
    """iCloud's eventual consistency: listed by sync-collection, 404 in the multiget a moment later."""
    calendar = radicale.new_calendar()
    async with dav_proxy(radicale.url) as proxy:
        proxy.rewrites.append(without_data_in_listings)
        provider, via_proxy = caldav(radicale, url=proxy.url), calendar.replace(radicale.url, proxy.url)
        radicale.put(calendar, "ours.ics", ics("michel.ics"))
        proxy.rules.append(not_yet)
        first = await provider.changes(via_proxy, None, ANY_TIME)
        assert (first.changed, first.full, first.cursor) == ((), False, None)  # not a listing: deletes nothing
        proxy.rules.clear()
        listed = await provider.changes(via_proxy, first.cursor, ANY_TIME)
        assert listed.full and names(i.remote_id for i in listed.changed) == ["ours.ics"]

        radicale.put(calendar, "late.ics", ics("free.ics"))
        proxy.rules.append(not_yet)
        lagging = await provider.changes(via_proxy, listed.cursor, ANY_TIME)
        assert (lagging.changed, lagging.full, lagging.cursor) == ((), False, listed.cursor)
        proxy.rules.clear()
        caught_up = await provider.changes(via_proxy, lagging.cursor, ANY_TIME)
        assert names(i.remote_id for i in caught_up.changed) == ["late.ics"] and caught_up.cursor != listed.cursor


async def test_a_server_refusing_data_in_listings_is_asked_without_and_that_is_remembered(
    caldav_server: CalDAVServer,
) -> None:
    """Without the fallback such a server would never sync; without the memory every cycle would cost two."""
    calendar = caldav_server.new_calendar()
    caldav_server.put(calendar, "michel.ics", ics("michel.ics"))
    async with dav_proxy(caldav_server.url) as proxy:
        proxy.rules.append(refuse_data_in_listings)
        provider, via_proxy = caldav(caldav_server, url=proxy.url), calendar.replace(caldav_server.url, proxy.url)
        first = await provider.changes(via_proxy, None, ANY_TIME)
        assert first.full and names(i.remote_id for i in first.changed) == ["michel.ics"]
        assert first.cursor is not None and first.cursor.startswith(SYNC_HREFS)
        assert proxy.count() == 3  # refused, asked without data, one multiget

        before = proxy.count()
        idle = await provider.changes(via_proxy, first.cursor, ANY_TIME)
        assert idle.changed == () and proxy.count() - before == 1

        caldav_server.put(calendar, "free.ics", ics("free.ics"))
        before = proxy.count()
        later = await provider.changes(via_proxy, idle.cursor, ANY_TIME)
        assert names(i.remote_id for i in later.changed) == ["free.ics"] and proxy.count() - before == 2
        assert not any("calendar-data" in body for body in proxy.bodies[before:] if "sync-collection" in body)


async def test_a_digest_only_server_gets_a_negotiated_retry(radicale: CalDAVServer) -> None:
    """Preemptive Basic is refused; the operation is retried once with the library's negotiation."""
    basic = "Basic " + base64.b64encode(f"{radicale.username}:{radicale.password}".encode()).decode()

    def digest_only(request: web.Request, _body: str) -> web.Response | None:
        if request.headers.get("Authorization", "").startswith("Digest "):
            return None  # the proxy plays the Digest check and forwards with what Radicale wants
        return web.Response(status=401, headers={"WWW-Authenticate": 'Digest realm="dav", nonce="abc", qop="auth"'})

    async with dav_proxy(radicale.url, upstream_authorization=basic) as proxy:
        proxy.rules.append(digest_only)
        calendar = radicale.new_calendar()
        listing = await caldav(radicale, url=proxy.url).changes(calendar.replace(radicale.url, proxy.url), None, ANY_TIME)
        assert listing.full and listing.cursor
        assert proxy.schemes[0] == "Basic" and proxy.schemes[-1] == "Digest" and "Basic" not in proxy.schemes[1:]


async def test_without_sync_collection_the_etag_listing_is_incremental(caldav_server: CalDAVServer) -> None:
    calendar = caldav_server.new_calendar()
    caldav_server.put(calendar, "michel.ics", ics("michel.ics"))
    caldav_server.put(calendar, "free.ics", ics("free.ics"))
    async with dav_proxy(caldav_server.url) as proxy:
        proxy.rules.append(lambda _r, body: web.Response(
            status=403, content_type="application/xml",
            text='<?xml version="1.0"?><D:error xmlns:D="DAV:"><D:supported-report/></D:error>',
        ) if "sync-collection" in body else None)
        provider, via_proxy = caldav(caldav_server, url=proxy.url), calendar.replace(caldav_server.url, proxy.url)
        first = await provider.changes(via_proxy, None, ANY_TIME)
        assert first.full and first.cursor and first.cursor.startswith(ETAGS)
        assert names(i.remote_id for i in first.changed) == ["free.ics", "michel.ics"]

        before = proxy.count()
        idle = await provider.changes(via_proxy, first.cursor, ANY_TIME)
        assert (idle.changed, idle.removed, idle.full) == ((), (), False) and proxy.count() - before == 1  # getctag

        caldav_server.put(calendar, "michel.ics", ics("michel.ics").replace("Dr. Michel", "Dr. M."))
        caldav_server.delete(f"{calendar}free.ics")
        before = proxy.count()
        later = await provider.changes(via_proxy, idle.cursor, ANY_TIME)
        assert not later.full and names(i.remote_id for i in later.changed) == ["michel.ics"]
        assert names(later.removed) == ["free.ics"]
        assert [m for m, _ in proxy.requests[before:]] == ["PROPFIND", "PROPFIND", "REPORT"]  # ctag, etags, multiget

        caldav_server.put(calendar, "late.ics", ics("free.ics"))
        proxy.rules.append(not_yet)
        lagging = await provider.changes(via_proxy, later.cursor, ANY_TIME)
        assert (lagging.changed, lagging.removed, lagging.full) == ((), (), False)
        proxy.rules.pop()
        caught_up = await provider.changes(via_proxy, lagging.cursor, ANY_TIME)
        assert names(i.remote_id for i in caught_up.changed) == ["late.ics"] and caught_up.removed == ()


async def test_create_finds_our_event_when_another_client_moved_it_to_another_href(
    caldav_server: CalDAVServer,
) -> None:
    calendar = caldav_server.new_calendar()
    provider = caldav(caldav_server)
    ours = await provider.create(calendar, DRAFT)
    theirs = await provider.changes(calendar, None, ANY_TIME)
    caldav_server.delete(f"{caldav_server.url.rstrip('/')}{ours.remote_id}")
    elsewhere = caldav_server.put(calendar, "renamed-by-a-client.ics", theirs.changed[0].data)
    again = await provider.create(calendar, DRAFT)
    assert again.remote_id == elsewhere and again.etag
    assert [i.remote_id for i in (await provider.changes(calendar, None, ANY_TIME)).changed] == [elsewhere]


async def test_cursors_are_prefixed_by_kind(caldav_server: CalDAVServer) -> None:
    first = await caldav(caldav_server).changes(caldav_server.new_calendar(), None, ANY_TIME)
    assert first.cursor is not None and first.cursor.startswith(SYNC)


async def test_no_access_is_a_calendar_error_not_a_broken_connection(radicale: CalDAVServer) -> None:
    """Writing into a read-only calendar, or listing one we may not even see the free/busy time of, must not
    mark the password bad."""
    provider = caldav(radicale)
    with pytest.raises(ProviderError) as write:
        await provider.create(f"{radicale.home}shared-read/", DRAFT)
    with pytest.raises(ProviderError) as listing:
        await provider.changes(f"{radicale.url}someone-else/work/", None, ANY_TIME)
    for caught in (write, listing):
        assert type(caught.value) is ProviderError and "refused access (403)" in str(caught.value)


# Free/busy only: a calendar we may read the busy time of, not its events ---------------------------------

WINDOW = CONTEXT.window  # March and April 2026
NEXT_DAY = TimeWindow(WINDOW.start + timedelta(days=1), WINDOW.end + timedelta(days=1))


def timed(uid: str, start: str, end: str, *lines: str) -> str:
    return vevent(uid, f"DTSTART:{start}", f"DTEND:{end}", "SUMMARY:Board meeting (private)", *lines)


def refuse_listings(_request: web.Request, body: str) -> web.Response | None:
    """What a server answers a listing of a calendar shared free/busy only: a bare 403."""
    return web.Response(status=403) if "sync-collection" in body else None


@asynccontextmanager
async def freebusy_only(server: CalDAVServer) -> AsyncIterator[tuple[str, CalDAVServer, DAVProxy]]:
    """A calendar the account may read the free/busy time of only (its URL behind a recording proxy), and the
    server as whoever may fill it. On Radicale by its rights; Xandikos has no per-calendar rights, so there the
    proxy refuses the listing as Radicale does and Xandikos answers the free-busy-query itself."""
    if server.name == "radicale":
        calendar, owner = server.freebusy_calendar()
    else:
        calendar, owner = server.new_calendar(), server
    async with dav_proxy(server.url) as proxy:
        if server.name != "radicale":
            proxy.rules.append(refuse_listings)
        yield calendar.replace(server.url, proxy.url), owner, proxy


def seed_week(calendar: str, owner: CalDAVServer) -> None:
    """Busy on the 10th from 9:00 to 11:00 (two events, one tentative) and on the 11th at noon; free events
    (transparent, cancelled) and one after the window do not count."""
    owner.put(calendar, "board.ics", timed("board", "20260310T090000Z", "20260310T100000Z"))
    owner.put(calendar, "overlap.ics", timed("overlap", "20260310T093000Z", "20260310T110000Z", "STATUS:TENTATIVE"))
    owner.put(calendar, "lunch.ics", timed("lunch", "20260311T120000Z", "20260311T130000Z"))
    owner.put(calendar, "free.ics", timed("free", "20260312T090000Z", "20260312T100000Z", "TRANSP:TRANSPARENT"))
    owner.put(calendar, "off.ics", timed("off", "20260313T090000Z", "20260313T100000Z", "STATUS:CANCELLED"))
    owner.put(calendar, "june.ics", timed("june", "20260610T090000Z", "20260610T100000Z"))


Slot = tuple[datetime, datetime, bool, str | None]
"""Start, end, busy, title."""


def busy_times(provider: CalDAVProvider, items: tuple[RemoteItem, ...]) -> list[Slot]:
    return [(o.start, o.end, o.busy, o.title) for item in items for o in provider.read(item, CONTEXT).occurrences]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


SEEDED_BUSY = [(at(10, 9), at(10, 11), True, None), (at(11, 12), at(11, 13), True, None)]
"""What `seed_week` blocks: untitled, the overlapping events as one period."""


async def test_a_calendar_shared_free_busy_only_is_read_as_its_busy_periods(caldav_server: CalDAVServer) -> None:
    async with freebusy_only(caldav_server) as (calendar, owner, proxy):
        seed_week(calendar.replace(proxy.url, caldav_server.url), owner)
        provider = caldav(caldav_server, url=proxy.url)
        if caldav_server.name == "radicale":
            assert {c.remote_id: c.access for c in await provider.list_calendars()}[calendar] == Access.FREEBUSY
        first = await provider.changes(calendar, None, WINDOW)
        assert first.full and first.removed == () and first.cursor == f"{FREEBUSY}2026-03-01"
        assert busy_times(provider, first.changed) == SEEDED_BUSY
        assert first.changed[0].remote_id.endswith("#freebusy/20260310T090000Z-20260310T110000Z")

        before = proxy.count()
        again = await provider.changes(calendar, first.cursor, WINDOW)
        assert again.changed == first.changed and again.full  # same ids: nothing churns
        assert proxy.count() - before == 1 and "free-busy-query" in proxy.bodies[-1]  # straight to the query

        owner.delete(f"{calendar.replace(proxy.url, caldav_server.url)}lunch.ics")
        later = await provider.changes(calendar, again.cursor, WINDOW)
        assert later.full and [i.remote_id for i in later.changed] == [first.changed[0].remote_id]

        before = proxy.count()
        next_day = await provider.changes(calendar, later.cursor, NEXT_DAY)  # the listing is tried again first
        assert next_day.changed == later.changed and next_day.cursor == f"{FREEBUSY}2026-03-02"
        assert proxy.count() - before == 3  # refused with events' data, refused without, the query


async def test_a_calendar_that_became_readable_is_listed_again_the_next_day(xandikos: CalDAVServer) -> None:
    async with freebusy_only(xandikos) as (calendar, owner, proxy):
        seed_week(calendar.replace(proxy.url, xandikos.url), owner)
        provider = caldav(xandikos, url=proxy.url)
        first = await provider.changes(calendar, None, WINDOW)
        proxy.rules.remove(refuse_listings)  # the colleague shares the calendar itself now
        assert (await provider.changes(calendar, first.cursor, WINDOW)).changed == first.changed  # still that day
        listed = await provider.changes(calendar, first.cursor, NEXT_DAY)
    assert listed.full and listed.cursor is not None and listed.cursor.startswith(SYNC)
    assert "Board meeting (private)" in {o.title for item in listed.changed for o in provider.read(item, CONTEXT).occurrences}


async def test_every_busy_type_blocks_and_free_does_not(radicale: CalDAVServer) -> None:
    """Radicale only says BUSY and BUSY-TENTATIVE; other servers also say BUSY-UNAVAILABLE, their own types,
    and periods as a start and a duration (RFC 5545 3.2.9, 3.8.2.6)."""
    periods = ["FREEBUSY;FBTYPE=FREE:20260302T080000Z/20260302T180000Z",
               "FREEBUSY;FBTYPE=BUSY-UNAVAILABLE:20260303T080000Z/20260303T090000Z,20260304T080000Z/PT1H",
               "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20260305T080000Z/PT30M",
               "FREEBUSY;FBTYPE=X-OUT-OF-OFFICE:20260306T080000Z/PT1H", "FREEBUSY:20260307T080000Z/20260307T090000Z"]
    answer = vevent("fb", *periods, component="VFREEBUSY")
    async with freebusy_only(radicale) as (calendar, _, proxy):
        proxy.rules.append(lambda _r, body: web.Response(status=200, content_type="text/calendar", text=answer)
                           if "free-busy-query" in body else None)
        provider = caldav(radicale, url=proxy.url)
        listing = await provider.changes(calendar, None, WINDOW)
    assert busy_times(provider, listing.changed) == [
        (at(3, 8), at(3, 9), True, None), (at(4, 8), at(4, 9), True, None), (at(5, 8), at(5, 8, 30), True, None),
        (at(6, 8), at(6, 9), True, None), (at(7, 8), at(7, 9), True, None)]


async def test_a_refused_listing_without_a_free_busy_answer_stays_refused(xandikos: CalDAVServer) -> None:
    """A 403 that is not a free/busy share (the query is not answered either) is the refusal it was."""
    async with freebusy_only(xandikos) as (calendar, _, proxy):
        proxy.rules.append(lambda _r, body: web.Response(status=501) if "free-busy-query" in body else None)
        with pytest.raises(ProviderError, match=r"refused access \(403\)"):
            await caldav(xandikos, url=proxy.url).changes(calendar, None, WINDOW)


async def test_a_free_busy_calendar_blocks_its_busy_time_through_the_engine(
    db: Database, secret_box: SecretBox, radicale: CalDAVServer
) -> None:
    """Connected, chosen as a conflict calendar, synced: blocked slots without titles, gone when the time is."""
    calendar, colleague = radicale.freebusy_calendar()
    seed_week(calendar, colleague)
    factory = functools.partial(open_provider, config=CONFIG)
    workspace = await accounts.default_workspace(db)
    user = await accounts.create_user(db, workspace, "John", "john@example.com", "Europe/Paris", None)
    own = radicale.new_calendar()
    _, found = await accounts.connect(db, secret_box, factory, user.id, Provider.CALDAV, radicale.username,
                                      radicale.password, radicale.url, now=at(9, 8))
    rows = {c.remote_id: c for c in found}
    assert rows[calendar].access == Access.FREEBUSY
    await accounts.put_settings(db, user.id, rows[own].id, [rows[own].id, rows[calendar].id], SyncMode.ONE_WAY, 0, 30,
                                now=at(9, 8))
    engine = SyncEngine(db, secret_box, factory, clock=lambda: at(9, 8))  # the window: March 9th to April 8th

    async def slots() -> list[Slot]:
        async with db.session() as session:
            found = await session.scalars(select(BlockedSlot).order_by(col(BlockedSlot.start))
                                          .where(col(BlockedSlot.remote_calendar_id) == rows[calendar].id))
            return [(s.start, s.end, s.busy, s.title) for s in found]

    reports = {r.calendar_id: r for r in await engine.sync_user(user.id)}
    assert reports[rows[calendar].id].error is None
    assert await slots() == SEEDED_BUSY
    colleague.delete(f"{calendar}lunch.ics")
    await engine.sync_user(user.id)
    assert await slots() == SEEDED_BUSY[:1]


# iCloud: a front door that sends the client on to a partition host ---------------------------------------


def icloud_front_door(proxy: DAVProxy, partition: CalDAVServer) -> None:
    """caldav.icloud.com answers discovery only: the principal, then a calendar home on a pNN host."""
    expected = "Basic " + base64.b64encode(f"{partition.username}:{partition.password}".encode()).decode()

    def answer(request: web.Request, _body: str) -> web.Response:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="iCloud"'})
        if request.method == "PROPFIND" and request.path == "/":
            return multistatus("<D:response><D:href>/</D:href><D:propstat><D:prop><D:current-user-principal>"
                               "<D:href>/1234567/principal/</D:href></D:current-user-principal></D:prop>"
                               "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>")
        if request.method == "PROPFIND" and request.path == "/1234567/principal/":
            return multistatus("<D:response><D:href>/1234567/principal/</D:href><D:propstat><D:prop>"
                               f"<C:calendar-home-set><D:href>{partition.home.replace('127.0.0.1', 'localhost')}"
                               "</D:href></C:calendar-home-set></D:prop><D:status>HTTP/1.1 200 OK</D:status>"
                               "</D:propstat></D:response>")
        return web.Response(status=404)

    proxy.rules.append(answer)


async def test_icloud_profile_follows_the_partition_host_and_resyncs_on_a_rejected_token(
    radicale: CalDAVServer,
) -> None:
    calendar = radicale.new_calendar("icloud-home")
    radicale.put(calendar, "michel.ics", ics("michel.ics"))
    async with dav_proxy(radicale.url) as front_door:
        icloud_front_door(front_door, radicale)
        config = ProviderConfig(icloud_url=front_door.url, timeout_seconds=5)
        credentials = {"username": radicale.username, "password": radicale.password}
        provider = open_provider("icloud", credentials, None, config=config)
        calendars = {c.name: c for c in await provider.list_calendars()}
        on_partition = calendar.replace("127.0.0.1", "localhost")
        assert calendars["icloud-home"].remote_id == on_partition and calendars["icloud-home"].access == Access.FULL
        assert [m for m, _ in front_door.requests] == ["PROPFIND", "PROPFIND"]  # the rest went to the partition

        first = await provider.changes(on_partition, None, ANY_TIME)
        assert names(i.remote_id for i in first.changed) == ["michel.ics"]
        restarted = await provider.changes(on_partition, f"{SYNC}HwoQEgwAAAh-expired-icloud-token", ANY_TIME)  # 403 here
        assert restarted.full and len(restarted.changed) == 1
        assert restarted.cursor is not None and restarted.cursor.startswith(SYNC)  # the token was refused, not data

        wrong = open_provider("icloud", credentials | {"password": "revoked"}, None, config=config)
        with pytest.raises(InvalidCredentials, match="iCloud refused the Apple ID or app-specific password"):
            await wrong.list_calendars()


