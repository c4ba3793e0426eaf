"""The Graph emulator answers the real msal and a plain aiohttp Graph client as Microsoft would (provider-apis.md M).

msal runs unmodified in a thread (it is blocking, over requests) and trusts the emulator's test-time certificate
through REQUESTS_CA_BUNDLE; Graph calls go over aiohttp with the emulator's SSL context.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import msal
import pytest
from aiohttp import web

from tests.emulators.graph import CALENDAR_SCOPE, CLIENT_ID, CLIENT_SECRET, Failure, GraphEmulator

ANNA = "anna@contoso.example"
REDIRECT = "https://127.0.0.1:9/oauth/microsoft/callback"  # never reached: the test reads the redirect itself
MARKER = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name croco"
WINDOW = {"startDateTime": "2027-01-01T00:00:00Z", "endDateTime": "2027-02-01T00:00:00Z"}
UTC_PREFER = 'outlook.timezone="UTC"'
# msal warns whenever response_mode is not form_post; API.md's callback is a GET, so query mode it is
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended:UserWarning")


@pytest.fixture
def trusted(graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch) -> GraphEmulator:
    """The emulator with Anna's mailbox, its certificate trusted by requests (so by msal)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_bundle_path))
    graph.add_account(ANNA)
    return graph


@pytest.fixture
async def client(trusted: GraphEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    """Anna's Graph session: her bearer token, the emulator's certificate trusted."""
    token = trusted.grant(ANNA)["access_token"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted.client_ssl_context()),
                                     headers={"Authorization": f"Bearer {token}"}) as session:
        yield session


def msal_app(graph: GraphEmulator, cache: msal.SerializableTokenCache) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(CLIENT_ID, client_credential=CLIENT_SECRET, authority=graph.authority,
                                              instance_discovery=False, token_cache=cache)


async def consent(graph: GraphEmulator, auth_uri: str) -> dict[str, str]:
    """The browser step: follow the authorize URL once and read the redirect's query."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=graph.client_ssl_context())) as session:
        async with session.get(auth_uri, allow_redirects=False) as response:
            assert response.status == 302
            return dict(parse_qsl(urlsplit(response.headers["Location"]).query))


async def call(session: aiohttp.ClientSession, method: str, url: str, *, json_body: Any = None,
               headers: dict[str, str] | None = None, params: dict[str, str] | None = None
               ) -> tuple[int, dict[str, Any], Any]:
    async with session.request(method, url, json=json_body, headers=headers, params=params) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, dict(response.headers), body


async def signed_in(graph: GraphEmulator) -> tuple[msal.ConfidentialClientApplication, msal.SerializableTokenCache,
                                                    dict[str, Any]]:
    cache = msal.SerializableTokenCache()
    app = await asyncio.to_thread(msal_app, graph, cache)
    flow = await asyncio.to_thread(app.initiate_auth_code_flow, [CALENDAR_SCOPE], redirect_uri=REDIRECT)
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, await consent(graph, flow["auth_uri"]))
    return app, cache, result


def refresh_tokens(cache: msal.SerializableTokenCache) -> list[str]:
    return [item["secret"] for item in json.loads(cache.serialize()).get("RefreshToken", {}).values()]


async def test_msal_auth_code_flow_signs_in_with_pkce_and_builds_an_account(trusted: GraphEmulator) -> None:
    app, _, result = await signed_in(trusted)

    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == ANNA
    (account,) = await asyncio.to_thread(app.get_accounts)
    assert account["username"] == ANNA
    authorize = next(r for r in trusted.requests if r.method == "authorize")
    assert authorize.params["code_challenge_method"] == "S256"


async def test_every_refresh_rotates_the_refresh_token_and_the_old_one_still_works(trusted: GraphEmulator) -> None:
    app, cache, first = await signed_in(trusted)
    (account,) = await asyncio.to_thread(app.get_accounts)
    seen = refresh_tokens(cache)

    for _ in range(3):
        result = await asyncio.to_thread(app.acquire_token_silent, [CALENDAR_SCOPE], account, force_refresh=True)
        assert result is not None and "access_token" in result
        (current,) = refresh_tokens(cache)
        assert current not in seen  # M6: replaced on every use, and msal saved the new one
        seen.append(current)

    old = await asyncio.to_thread(app.acquire_token_by_refresh_token, seen[0], [CALENDAR_SCOPE])
    assert "access_token" in old  # M6: the old token is not revoked
    assert trusted.count("token") == 5


async def test_a_revoked_consent_makes_refresh_answer_invalid_grant(trusted: GraphEmulator) -> None:
    app, _, _ = await signed_in(trusted)
    (account,) = await asyncio.to_thread(app.get_accounts)
    trusted.revoke(ANNA)

    result = await asyncio.to_thread(app.acquire_token_silent_with_error, [CALENDAR_SCOPE], account,
                                     force_refresh=True)

    assert result is not None and result["error"] == "invalid_grant"
    assert result["error_description"].startswith("AADSTS50173:")


async def test_a_declined_consent_redirects_with_the_error_and_the_state(trusted: GraphEmulator) -> None:
    trusted.deny_next_consent = "access_denied"
    app = await asyncio.to_thread(msal_app, trusted, msal.SerializableTokenCache())
    flow = await asyncio.to_thread(app.initiate_auth_code_flow, [CALENDAR_SCOPE], redirect_uri=REDIRECT)

    answer = await consent(trusted, flow["auth_uri"])

    assert answer["error"] == "access_denied" and answer["state"] == flow["state"] and "code" not in answer


async def test_me_and_calendars_say_who_owns_what_and_who_may_write(trusted: GraphEmulator,
                                                                    client: aiohttp.ClientSession) -> None:
    bob = trusted.add_account("bob@contoso.example")
    shared = bob.add_calendar("Team")
    trusted.accounts[ANNA].add_calendar("Team", can_edit=False, calendar_id=shared)

    _, _, me = await call(client, "GET", f"{trusted.graph_url}/me")
    _, _, calendars = await call(client, "GET", f"{trusted.graph_url}/me/calendars")

    assert me["mail"] == me["userPrincipalName"] == ANNA
    by_name = {item["name"]: item for item in calendars["value"]}
    assert by_name["Calendar"]["isDefaultCalendar"] and by_name["Calendar"]["canEdit"]
    assert not by_name["Team"]["canEdit"] and by_name["Team"]["owner"]["address"] == "bob@contoso.example"
    status, _, _ = await call(client, "POST", f"{trusted.graph_url}/me/calendars/{shared}/events",
                              json_body=event_body("Lunch", 12))
    assert status == 403


def event_body(subject: str, hour: int, day: int = 4, **extra: Any) -> dict[str, Any]:
    return {"subject": subject, "start": {"dateTime": f"2027-01-{day:02d}T{hour:02d}:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"2027-01-{day:02d}T{hour + 1:02d}:00:00", "timeZone": "UTC"}, **extra}


async def test_a_retried_create_with_the_same_transaction_id_makes_one_event(trusted: GraphEmulator,
                                                                             client: aiohttp.ClientSession) -> None:
    calendar = trusted.accounts[ANNA].default_calendar_id
    body = event_body("Booking", 9, transactionId="croco-booking-1",
                      singleValueExtendedProperties=[{"id": MARKER, "value": "booking-1"}])
    url = f"{trusted.graph_url}/me/calendars/{calendar}/events"

    first = await call(client, "POST", url, json_body=body)
    again = await call(client, "POST", url, json_body=body)

    assert first[0] == again[0] == 201 and first[2]["id"] == again[2]["id"]
    assert len(trusted.events(calendar)) == 1
    assert "singleValueExtendedProperties" not in first[2]  # M2: only with $expand
    _, _, expanded = await call(client, "GET", f"{trusted.graph_url}/me/events/{first[2]['id']}",
                                params={"$expand": f"singleValueExtendedProperties($filter=id eq '{MARKER}')"})
    assert expanded["singleValueExtendedProperties"] == [{"id": MARKER, "value": "booking-1"}]


async def test_if_match_with_a_stale_etag_answers_412(trusted: GraphEmulator, client: aiohttp.ClientSession) -> None:
    _, _, created = await call(client, "POST", f"{trusted.graph_url}/me/events", json_body=event_body("A", 9))
    url = f"{trusted.graph_url}/me/events/{created['id']}"
    stale = {"If-Match": created["@odata.etag"]}
    status, _, updated = await call(client, "PATCH", url, json_body={"subject": "B"}, headers=stale)
    assert status == 200 and updated["@odata.etag"] != created["@odata.etag"]

    patch_status, _, error = await call(client, "PATCH", url, json_body={"subject": "C"}, headers=stale)
    delete_status, _, _ = await call(client, "DELETE", url, headers=stale)

    assert (patch_status, delete_status) == (412, 412) and error["error"]["code"] == "ErrorIrresolvableConflict"
    assert trusted.events(trusted.accounts[ANNA].default_calendar_id)[0]["subject"] == "B"


async def test_times_come_back_in_the_preferred_zone(trusted: GraphEmulator, client: aiohttp.ClientSession) -> None:
    body = event_body("Zoned", 9) | {"start": {"dateTime": "2027-01-04T09:00:00", "timeZone": "Europe/Berlin"},
                                     "end": {"dateTime": "2027-01-04T10:00:00", "timeZone": "Europe/Berlin"}}
    _, _, created = await call(client, "POST", f"{trusted.graph_url}/me/events", json_body=body,
                               headers={"Prefer": UTC_PREFER})
    assert created["start"] == {"dateTime": "2027-01-04T08:00:00.0000000", "timeZone": "UTC"}


async def delta_round(client: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None,
                      page_size: int = 2) -> tuple[list[dict[str, Any]], str, int]:
    """Follow nextLinks to the deltaLink: the items, the deltaLink and how many pages it took."""
    headers = {"Prefer": f"{UTC_PREFER}, odata.maxpagesize={page_size}"}
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        status, _, page = await call(client, "GET", url, params=params, headers=headers)
        assert status == 200, page
        items += page["value"]
        pages += 1
        params = None
        if "@odata.deltaLink" in page:
            return items, page["@odata.deltaLink"], pages
        url = page["@odata.nextLink"]


async def test_delta_pages_then_returns_only_changes_with_removed_items(trusted: GraphEmulator,
                                                                        client: aiohttp.ClientSession) -> None:
    calendar = trusted.accounts[ANNA].default_calendar_id
    kept = trusted.put_event(calendar, event_body("Kept", 9))
    doomed = trusted.put_event(calendar, event_body("Doomed", 11))
    trusted.put_event(calendar, event_body("Outside", 9, day=1) | {
        "start": {"dateTime": "2027-03-01T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2027-03-01T10:00:00", "timeZone": "UTC"}})
    series = trusted.put_event(calendar, event_body("Standup", 8, day=4) | {"recurrence": {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
        "range": {"type": "numbered", "startDate": "2027-01-04", "numberOfOccurrences": 3}}})
    url = f"{trusted.graph_url}/me/calendars/{calendar}/calendarView/delta"

    first, delta_link, pages = await delta_round(client, url, WINDOW)

    assert pages == 3 and {item["subject"] for item in first} == {"Kept", "Doomed", "Standup"}
    occurrences = [item for item in first if item["type"] == "occurrence"]
    assert len(occurrences) == 3 and {item["seriesMasterId"] for item in occurrences} == {series["id"]}
    moved = occurrences[1]["id"]
    trusted.edit_occurrence(calendar, moved, {"start": {"dateTime": "2027-01-11T10:00:00", "timeZone": "UTC"},
                                              "end": {"dateTime": "2027-01-11T11:00:00", "timeZone": "UTC"}})
    trusted.delete_event(calendar, doomed["id"])
    trusted.put_event(calendar, {"id": kept["id"], "subject": "Kept, renamed"})

    changes, _, _ = await delta_round(client, delta_link)

    by_id = {item["id"]: item for item in changes}
    assert by_id[doomed["id"]] == {"id": doomed["id"], "@removed": {"reason": "deleted"}}
    assert by_id[kept["id"]]["subject"] == "Kept, renamed"
    assert by_id[moved]["type"] == "exception" and by_id[moved]["start"]["dateTime"].startswith("2027-01-11T10")
    assert len(changes) == 3


async def test_an_expired_delta_token_answers_410_sync_state_not_found(trusted: GraphEmulator,
                                                                      client: aiohttp.ClientSession) -> None:
    calendar = trusted.accounts[ANNA].default_calendar_id
    url = f"{trusted.graph_url}/me/calendars/{calendar}/calendarView/delta"
    _, delta_link, _ = await delta_round(client, url, WINDOW)
    trusted.expire_delta_tokens(calendar)

    status, _, error = await call(client, "GET", delta_link)

    assert status == 410 and error["error"]["code"] == "syncStateNotFound"


async def test_throttling_answers_429_with_retry_after_then_recovers(trusted: GraphEmulator,
                                                                     client: aiohttp.ClientSession) -> None:
    trusted.fail(Failure(429, "TooManyRequests", retry_after=7), method="calendars.list")

    throttled = await call(client, "GET", f"{trusted.graph_url}/me/calendars")
    recovered = await call(client, "GET", f"{trusted.graph_url}/me/calendars")

    assert throttled[0] == 429 and throttled[1]["Retry-After"] == "7"
    assert throttled[2]["error"]["code"] == "TooManyRequests" and recovered[0] == 200
    assert trusted.count("calendars.list") == 2


async def test_batch_answers_each_request_and_refuses_more_than_twenty(trusted: GraphEmulator,
                                                                       client: aiohttp.ClientSession) -> None:
    requests = [{"id": str(n), "method": "POST", "url": "/me/events", "body": event_body(f"E{n}", 9),
                 "headers": {"Content-Type": "application/json"}} for n in range(3)]
    _, _, answer = await call(client, "POST", f"{trusted.graph_url}/$batch", json_body={"requests": requests})
    too_many, _, _ = await call(client, "POST", f"{trusted.graph_url}/$batch",
                                json_body={"requests": requests * 7})

    assert sorted(item["status"] for item in answer["responses"]) == [201, 201, 201]
    assert trusted.count("events.create") == 3 and too_many == 400


class Receiver:
    """A webhook: echoes validation tokens as text/plain (M4) and keeps every notification body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.echo = True

    async def handle(self, request: web.Request) -> web.Response:
        if "validationToken" in request.query:
            if not self.echo:
                return web.Response(status=404)
            return web.Response(text=request.query["validationToken"], content_type="text/plain")
        self.bodies.append(await request.json())
        return web.Response(status=202)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/webhooks/microsoft", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield hook, f"http://127.0.0.1:{port}/webhooks/microsoft"
    await runner.cleanup()


async def test_subscription_validates_then_notifies_changes_and_lifecycle_events(
        trusted: GraphEmulator, client: aiohttp.ClientSession, receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    calendar = trusted.accounts[ANNA].default_calendar_id
    expiry = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"changeType": "created,updated,deleted", "notificationUrl": url, "lifecycleNotificationUrl": url,
            "resource": f"me/calendars/{calendar}/events", "expirationDateTime": expiry, "clientState": "s3cret"}
    status, _, subscription = await call(client, "POST", f"{trusted.graph_url}/subscriptions", json_body=body)
    assert status == 201, subscription

    trusted.put_event(calendar, event_body("Remote", 15))
    trusted.send_lifecycle(subscription["id"], "reauthorizationRequired")
    await trusted.wait_for_notifications(2)

    change, lifecycle = (body_["value"][0] for body_ in hook.bodies)
    assert change["changeType"] == "created" and change["clientState"] == "s3cret"
    assert change["subscriptionId"] == subscription["id"]
    assert lifecycle["lifecycleEvent"] == "reauthorizationRequired"
    assert [n.status_code for n in trusted.notifications] == [202, 202]


async def test_a_subscription_whose_endpoint_does_not_echo_is_refused(
        trusted: GraphEmulator, client: aiohttp.ClientSession, receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver
    hook.echo = False
    expiry = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"changeType": "updated", "notificationUrl": url, "resource": "me/events", "expirationDateTime": expiry}

    status, _, error = await call(client, "POST", f"{trusted.graph_url}/subscriptions", json_body=body)

    assert status == 400 and error["error"]["code"] == "ValidationError" and not trusted.subscriptions


async def test_delta_removes_a_deleted_occurrence_and_an_event_changed_outside_the_window(
        trusted: GraphEmulator, client: aiohttp.ClientSession) -> None:
    calendar = trusted.accounts[ANNA].default_calendar_id
    series = trusted.put_event(calendar, event_body("Daily", 8, day=4) | {"recurrence": {
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "endDate", "startDate": "2027-01-04", "endDate": "2027-01-06"}}})
    later = trusted.put_event(calendar, event_body("Later", 9) | {
        "start": {"dateTime": "2027-06-01T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2027-06-01T10:00:00", "timeZone": "UTC"}})
    url = f"{trusted.graph_url}/me/calendars/{calendar}/calendarView/delta"
    first, delta_link, _ = await delta_round(client, url, WINDOW, page_size=10)
    assert [item["seriesMasterId"] for item in first] == [series["id"]] * 3
    cancelled = first[1]["id"]

    status, _, _ = await call(client, "DELETE", f"{trusted.graph_url}/me/events/{cancelled}")
    trusted.put_event(calendar, {"id": later["id"], "subject": "Later, renamed"})
    changes, _, _ = await delta_round(client, delta_link)

    assert status == 204
    assert changes == [{"id": cancelled, "@removed": {"reason": "deleted"}},
                       {"id": later["id"], "@removed": {"reason": "deleted"}}]  # M1: outside the window too


async def test_a_subscription_is_renewed_deleted_and_capped_at_its_maximum_lifetime(
        trusted: GraphEmulator, client: aiohttp.ClientSession, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver

    def expiry(minutes: int) -> str:
        return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")

    body = {"changeType": "created,updated,deleted", "notificationUrl": url, "resource": "me/events"}
    too_long, _, _ = await call(client, "POST", f"{trusted.graph_url}/subscriptions",
                                json_body=body | {"expirationDateTime": expiry(10_090)})
    _, _, created = await call(client, "POST", f"{trusted.graph_url}/subscriptions",
                              json_body=body | {"expirationDateTime": expiry(60)})
    subscription_url = f"{trusted.graph_url}/subscriptions/{created['id']}"
    _, _, renewed = await call(client, "PATCH", subscription_url, json_body={"expirationDateTime": expiry(10_000)})
    deleted, _, _ = await call(client, "DELETE", subscription_url)
    trusted.put_event(trusted.accounts[ANNA].default_calendar_id, event_body("Unheard", 9))

    assert too_long == 400  # M4: 10,080 minutes at most
    assert renewed["expirationDateTime"] > created["expirationDateTime"] and deleted == 204
    assert not trusted.subscriptions


async def test_a_503_from_the_token_endpoint_raises_in_msal_which_then_replays_it_for_retry_after(
        trusted: GraphEmulator) -> None:
    app, _, _ = await signed_in(trusted)
    (account,) = await asyncio.to_thread(app.get_accounts)
    trusted.fail(Failure(503, "temporarily_unavailable", retry_after=30), method="token")
    calls_before = trusted.count("token")

    for _ in range(2):
        with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
            await asyncio.to_thread(app.acquire_token_silent_with_error, [CALENDAR_SCOPE], account,
                                    force_refresh=True)

    assert trusted.count("token") == calls_before + 1  # msal answers the retry itself until Retry-After passes
