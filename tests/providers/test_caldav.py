"""The CalDAV provider against real servers: discovery, access, credentials, request counts, server quirks.

A recording proxy (`dav_proxy`) sits in front of the server where a test counts requests or plays a server
that rate-limits, lacks sync-collection, refuses or leaves out events' data in it, or is eventually consistent.
"""

from __future__ import annotations

import base64
import logging
import uuid

import pytest
from aiohttp import web

from croco.embedded_caldav import free_port
from storage.enums import Access
from sync.providers.base import InvalidCredentials, ProviderConfig, ProviderError, RateLimited, Unreachable
from sync.providers.caldav.provider import ETAGS, SYNC, SYNC_HREFS, CalDAVProvider
from sync.providers.registry import open_provider
from tests.caldav_servers import CalDAVServer
from tests.factories import ANY_TIME
from tests.providers.dav_proxy import (
    DAVProxy,
    dav_proxy,
    hrefs_in,
    multistatus,
    refuse_data_in_listings,
    without_data_in_listings,
)
from tests.providers.support import CONFIG, DRAFT, caldav, ics, michel_copy, names


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
    """Writing into a read-only calendar, or listing one shared free/busy only, must not mark the password bad."""
    provider = caldav(radicale)
    with pytest.raises(ProviderError) as write:
        await provider.create(f"{radicale.home}shared-read/", DRAFT)
    with pytest.raises(ProviderError) as listing:
        await provider.changes(f"{radicale.home}shared-freebusy/", None, ANY_TIME)
    for caught in (write, listing):
        assert type(caught.value) is ProviderError and "refused access (403)" in str(caught.value)


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


