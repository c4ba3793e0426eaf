"""The Google emulator answers the real client libraries as Google would (research/provider-apis.md section G).

Every test drives google-api-python-client, google-auth or google-auth-oauthlib unmodified, reaching the
emulator only through its URLs; the blocking calls run in a thread while the emulator serves on the loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import google_auth_httplib2
import httplib2
import pytest
from aiohttp import web
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from googleapiclient.discovery import Resource, build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError

from tests.clocks import ManualClock
from tests.emulators.google import CALENDAR_SCOPE, CLIENT_ID, CLIENT_SECRET, Failure, GoogleEmulator

JOHN = "john@example.com"
TEAM = "team@group.calendar.google.com"
REDIRECT = "http://127.0.0.1:9/oauth/google/callback"  # never reached: the test reads the redirect itself


def credentials(google: GoogleEmulator, tokens: dict[str, Any]) -> Credentials:
    return Credentials(token=tokens["access_token"], refresh_token=tokens.get("refresh_token"),
                       token_uri=google.token_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                       scopes=tokens["scope"].split())


def service(google: GoogleEmulator, creds: Credentials) -> Resource:
    http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(proxy_info=None))
    return build("calendar", "v3", static_discovery=True, http=http,
                 client_options={"api_endpoint": google.root_url + "calendar/v3/"})


async def run(request: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(request.execute, **kwargs)


def error_reason(error: HttpError) -> tuple[int, str]:
    body = json.loads(error.content)
    return body["error"]["code"], body["error"]["errors"][0]["reason"]


@pytest.fixture
async def calendar(google: GoogleEmulator) -> Resource:
    """John's calendar service: his primary calendar (owner) and the team's (writer)."""
    google.add_account(JOHN, time_zone="Europe/Paris").add_calendar(TEAM, "Team", "writer")
    return service(google, credentials(google, google.grant(JOHN)))


def event(summary: str, day: int, hour: int = 9, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "start": {"dateTime": f"2026-03-{day:02d}T{hour:02d}:00:00+01:00"},
            "end": {"dateTime": f"2026-03-{day:02d}T{hour + 1:02d}:00:00+01:00"}} | extra


def flow(google: GoogleEmulator) -> Flow:
    config = {"web": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "auth_uri": google.auth_url,
                      "token_uri": google.token_url, "redirect_uris": [REDIRECT]}}
    return Flow.from_client_config(config, scopes=[CALENDAR_SCOPE], redirect_uri=REDIRECT)


async def consent(url: str) -> str:
    """The browser step: the emulator's consent page redirects at once; return where it sends the user."""
    async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False) as response:
        assert response.status == 302
        return response.headers["Location"]


async def test_oauth_code_flow_with_pkce_then_refresh(google: GoogleEmulator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # oauthlib refuses http URLs otherwise
    google.add_account(JOHN)
    google.consent_as = JOHN
    login = flow(google)
    url, state = login.authorization_url(access_type="offline", prompt="consent")
    redirect = await consent(url)
    assert redirect.startswith(REDIRECT) and f"state={state}" in redirect

    await asyncio.to_thread(login.fetch_token, authorization_response=redirect)
    creds = login.credentials
    first_refresh = creds.refresh_token
    assert creds.token and first_refresh
    listed = await run(service(google, creds).calendarList().list())
    assert [entry["id"] for entry in listed["items"]] == [JOHN]

    old_token = creds.token
    await asyncio.to_thread(creds.refresh, AuthRequest())
    assert creds.token != old_token and creds.refresh_token == first_refresh
    assert google.requests[-1].method == "token"


async def test_a_wrong_verifier_or_a_reused_code_is_refused(google: GoogleEmulator,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    google.add_account(JOHN)
    login = flow(google)
    url, _ = login.authorization_url(access_type="offline")
    redirect = await consent(url)
    right_verifier = login.code_verifier
    login.code_verifier = "x" * 64
    with pytest.raises(InvalidGrantError):
        await asyncio.to_thread(login.fetch_token, authorization_response=redirect)

    login.code_verifier = right_verifier  # a code works once, even after a failed exchange
    with pytest.raises(InvalidGrantError):
        await asyncio.to_thread(login.fetch_token, authorization_response=redirect)


async def test_consent_denied_redirects_with_the_error(google: GoogleEmulator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    google.add_account(JOHN)
    google.deny_next_consent = "access_denied"
    url, state = flow(google).authorization_url(access_type="offline")
    redirect = await consent(url)
    assert "error=access_denied" in redirect and f"state={state}" in redirect and "code=" not in redirect


async def test_expired_access_tokens_refresh_and_revoked_grants_fail(google: GoogleEmulator,
                                                                     calendar: Resource) -> None:
    google.expire_access_tokens()
    assert (await run(calendar.calendarList().list()))["items"]  # AuthorizedHttp refreshed on the 401
    assert [request.method for request in google.requests] == ["calendarList.list", "token", "calendarList.list"]

    google.revoke(JOHN)
    with pytest.raises(RefreshError, match="invalid_grant"):
        await run(calendar.calendarList().list())


async def test_calendar_list_pages_and_filters_on_access_role(google: GoogleEmulator,
                                                              calendar: Resource) -> None:
    account = google.accounts[JOHN]
    account.add_calendar("holidays@group.v.calendar.google.com", "Holidays", "reader", summary_override="Days off")
    account.add_calendar("boss@example.com", "Boss", "freeBusyReader")
    first = await run(calendar.calendarList().list(maxResults=2))
    assert "nextSyncToken" not in first
    second = await run(calendar.calendarList().list(maxResults=2, pageToken=first["nextPageToken"]))
    entries = {entry["id"]: entry for entry in first["items"] + second["items"]}
    assert "nextPageToken" not in second and len(entries) == 4
    assert entries[JOHN]["primary"] is True and entries[JOHN]["accessRole"] == "owner"
    assert "primary" not in entries[TEAM] and entries[TEAM]["timeZone"] == "UTC"
    assert entries["holidays@group.v.calendar.google.com"]["summaryOverride"] == "Days off"

    writable = await run(calendar.calendarList().list(minAccessRole="writer"))
    assert {entry["id"] for entry in writable["items"]} == {JOHN, TEAM}


async def test_insert_then_full_and_incremental_sync(google: GoogleEmulator, calendar: Resource) -> None:
    google.page_size_cap = 2
    events = calendar.events()
    inserted = [await run(events.insert(calendarId=TEAM, body=event(f"Meeting {day}", day))) for day in (2, 3, 4)]
    assert inserted[0]["iCalUID"] == f"{inserted[0]['id']}@google.com" and inserted[0]["status"] == "confirmed"
    assert inserted[0]["organizer"] == {"email": TEAM, "displayName": "Team", "self": True}

    first = await run(events.list(calendarId=TEAM))
    assert len(first["items"]) == 2 and "nextSyncToken" not in first
    last = await run(events.list(calendarId=TEAM, pageToken=first["nextPageToken"]))
    assert len(last["items"]) == 1 and "nextPageToken" not in last
    token = last["nextSyncToken"]

    idle = await run(events.list(calendarId=TEAM, syncToken=token))
    assert idle["items"] == []
    google.put_event(TEAM, event("Someone else's", 5))
    await run(events.delete(calendarId=TEAM, eventId=inserted[0]["id"]))
    changed = await run(events.list(calendarId=TEAM, syncToken=idle["nextSyncToken"]))
    by_summary = {item.get("summary"): item for item in changed["items"]}
    assert set(by_summary) == {"Someone else's", None}
    assert by_summary[None]["id"] == inserted[0]["id"] and by_summary[None]["status"] == "cancelled"

    with pytest.raises(HttpError) as banned:
        await run(events.list(calendarId=TEAM, syncToken=token, timeMin="2026-03-01T00:00:00Z"))
    assert error_reason(banned.value)[0] == 400
    google.expire_sync_tokens(TEAM)
    with pytest.raises(HttpError) as stale:
        await run(events.list(calendarId=TEAM, syncToken=changed["nextSyncToken"]))
    assert error_reason(stale.value) == (410, "fullSyncRequired")
    with pytest.raises(HttpError) as duplicate:
        await run(events.insert(calendarId=TEAM, body=event("Again", 6, id=inserted[0]["id"])))
    assert error_reason(duplicate.value) == (409, "duplicate")


async def test_a_stale_etag_is_a_failed_precondition(google: GoogleEmulator, calendar: Resource) -> None:
    events = calendar.events()
    created = await run(events.insert(calendarId=JOHN, body=event("Lunch", 2, 12)))
    patched = await run(events.patch(calendarId=JOHN, eventId=created["id"], body={"summary": "Late lunch"}))
    assert patched["etag"] != created["etag"] and patched["start"] == created["start"]

    stale = events.update(calendarId=JOHN, eventId=created["id"], body=event("Brunch", 2, 11))
    stale.headers["If-Match"] = created["etag"]
    with pytest.raises(HttpError) as failed:
        await run(stale)
    assert error_reason(failed.value) == (412, "conditionNotMet")
    assert google.event(JOHN, created["id"])["summary"] == "Late lunch"  # type: ignore[index]


async def test_recurring_series_expand_with_exceptions(google: GoogleEmulator, calendar: Resource) -> None:
    events = calendar.events()
    weekly = {"summary": "Standup", "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE;TZID=Europe/Paris:20260309T093000"],
              "start": {"dateTime": "2026-03-02T09:30:00", "timeZone": "Europe/Paris"},
              "end": {"dateTime": "2026-03-02T10:00:00", "timeZone": "Europe/Paris"}}
    master = await run(events.insert(calendarId=JOHN, body=weekly))
    instances = (await run(events.instances(calendarId=JOHN, eventId=master["id"])))["items"]
    assert [item["id"] for item in instances] == [
        f"{master['id']}_20260302T083000Z", f"{master['id']}_20260316T083000Z", f"{master['id']}_20260323T083000Z"]
    await run(events.patch(calendarId=JOHN, eventId=instances[1]["id"], body={"summary": "Retro"}))
    await run(events.delete(calendarId=JOHN, eventId=instances[2]["id"]))

    listed = await run(events.list(calendarId=JOHN, singleEvents=True, showDeleted=True,
                                   timeMin="2026-03-10T00:00:00Z", timeMax="2026-04-01T00:00:00Z"))
    assert [(item.get("summary"), item["status"]) for item in listed["items"]] == [
        ("Retro", "confirmed"), (None, "cancelled")]
    assert listed["items"][1]["recurringEventId"] == master["id"]
    assert listed["items"][1]["originalStartTime"]["dateTime"] == "2026-03-23T09:30:00+01:00"


async def test_a_batch_of_three_inserts(google: GoogleEmulator, calendar: Resource) -> None:
    answers: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Exception | None) -> None:
        answers[request_id] = exception or response

    batch = BatchHttpRequest(callback=collect, batch_uri=google.root_url + "batch/calendar/v3")
    for day in (2, 3, 4):
        batch.add(calendar.events().insert(calendarId=TEAM, body=event(f"Batched {day}", day)))
    google.fail(Failure(status=409, reason="duplicate"), method="events.insert")
    await asyncio.to_thread(batch.execute)

    assert isinstance(answers["1"], HttpError) and error_reason(answers["1"]) == (409, "duplicate")
    assert [answers[key]["summary"] for key in ("2", "3")] == ["Batched 3", "Batched 4"]
    assert google.count("events.insert") == 3 and len(google.events(TEAM)) == 2


async def test_rate_limit_is_retried_by_the_client(google: GoogleEmulator, calendar: Resource) -> None:
    google.fail(Failure(status=403, reason="rateLimitExceeded"), method="events.list")
    listed = await run(calendar.events().list(calendarId=JOHN), num_retries=1)
    assert listed["items"] == [] and google.count("events.list") == 2


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Our end of a push channel: records each notification's headers and body."""
    received: list[dict[str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(dict(request.headers) | {"body": await request.text()})
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/google/push", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/google/push", received
    await runner.cleanup()


async def test_watch_then_a_change_notifies_the_channel(google: GoogleEmulator, calendar: Resource,
                                                        receiver: tuple[str, list[dict[str, str]]]) -> None:
    address, received = receiver
    channel = await run(calendar.events().watch(
        calendarId=TEAM, body={"id": "chan-1", "type": "web_hook", "address": address, "token": "team"}))
    assert channel["kind"] == "api#channel" and channel["resourceId"] and int(channel["expiration"]) > 0
    google.put_event(TEAM, event("Pushed", 9))

    notifications = await google.wait_for_notifications(2)
    assert [(n.channel_id, n.state, n.status_code) for n in notifications] == [
        ("chan-1", "sync", 200), ("chan-1", "exists", 200)]
    assert received[1]["X-Goog-Resource-State"] == "exists" and received[1]["X-Goog-Channel-Token"] == "team"
    assert int(received[1]["X-Goog-Message-Number"]) > int(received[0]["X-Goog-Message-Number"]) == 1
    assert received[1]["body"] == "" and received[1]["X-Goog-Resource-ID"] == channel["resourceId"]

    await run(calendar.channels().stop(body={"id": "chan-1", "resourceId": channel["resourceId"]}))
    with pytest.raises(HttpError) as unknown:
        await run(calendar.channels().stop(body={"id": "chan-1", "resourceId": channel["resourceId"]}))
    assert error_reason(unknown.value) == (404, "notFound")


async def test_freebusy_merges_busy_time_and_reports_unknown_calendars(google: GoogleEmulator,
                                                                       calendar: Resource) -> None:
    google.put_event(JOHN, event("Busy", 2, 9))
    google.put_event(JOHN, event("Adjacent", 2, 10))
    google.put_event(JOHN, event("Free", 2, 14, transparency="transparent"))
    google.put_event(JOHN, event("Declined", 2, 16, attendees=[{"email": JOHN, "responseStatus": "declined"}]))
    answer = await run(calendar.freebusy().query(body={
        "timeMin": "2026-03-02T00:00:00Z", "timeMax": "2026-03-03T00:00:00Z",
        "items": [{"id": JOHN}, {"id": "stranger@example.com"}]}))
    assert answer["calendars"][JOHN] == {"busy": [{"start": "2026-03-02T08:00:00Z", "end": "2026-03-02T10:00:00Z"}]}
    assert answer["calendars"]["stranger@example.com"]["errors"][0]["reason"] == "notFound"

    with pytest.raises(HttpError) as too_long:
        await run(calendar.freebusy().query(body={"timeMin": "2026-01-01T00:00:00Z",
                                                  "timeMax": "2026-06-01T00:00:00Z", "items": [{"id": JOHN}]}))
    assert error_reason(too_long.value)[0] == 400


async def test_incremental_sync_of_a_changed_series_lists_its_instances_in_the_first_window(
        google: GoogleEmulator, calendar: Resource) -> None:
    events = calendar.events()
    daily = {"summary": "Daily", "recurrence": ["RRULE:FREQ=DAILY"],
             "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Paris"},
             "end": {"dateTime": "2026-03-02T09:15:00+01:00", "timeZone": "Europe/Paris"}}
    master = await run(events.insert(calendarId=JOHN, body=daily))
    full = await run(events.list(calendarId=JOHN, singleEvents=True, timeMin="2026-03-03T00:00:00+01:00",
                                 timeMax="2026-03-05T00:00:00+01:00"))
    assert [item["start"]["dateTime"] for item in full["items"]] == ["2026-03-03T09:00:00+01:00",
                                                                     "2026-03-04T09:00:00+01:00"]
    await run(events.patch(calendarId=JOHN, eventId=master["id"], body={"summary": "Daily sync"}))
    changed = await run(events.list(calendarId=JOHN, singleEvents=True, syncToken=full["nextSyncToken"]))
    assert [(item["id"], item["summary"]) for item in changed["items"]] == [
        (f"{master['id']}_20260303T080000Z", "Daily sync"), (f"{master['id']}_20260304T080000Z", "Daily sync")]


async def test_a_listing_going_stale_mid_paging_answers_410(google: GoogleEmulator, calendar: Resource) -> None:
    for day in (2, 3):
        google.put_event(TEAM, event(f"Seeded {day}", day))
    google.page_size_cap = 1
    google.fail_after_pages(TEAM, pages=1)
    first = await run(calendar.events().list(calendarId=TEAM))
    with pytest.raises(HttpError) as other_listing:  # a page token belongs to its own listing
        await run(calendar.events().list(calendarId=JOHN, pageToken=first["nextPageToken"]))
    assert error_reason(other_listing.value)[0] == 400
    with pytest.raises(HttpError) as stale:
        await run(calendar.events().list(calendarId=TEAM, pageToken=first["nextPageToken"]))
    assert error_reason(stale.value) == (410, "fullSyncRequired")


async def test_readers_cannot_write_and_free_busy_readers_cannot_list(google: GoogleEmulator,
                                                                      calendar: Resource) -> None:
    google.accounts[JOHN].add_calendar("reader@example.com", "Read only", "reader")
    google.accounts[JOHN].add_calendar("boss@example.com", "Boss", "freeBusyReader")
    with pytest.raises(HttpError) as write:
        await run(calendar.events().insert(calendarId="reader@example.com", body=event("No", 2)))
    with pytest.raises(HttpError) as read:
        await run(calendar.events().list(calendarId="boss@example.com"))
    assert error_reason(write.value) == error_reason(read.value) == (403, "requiredAccessLevel")
    busy = await run(calendar.freebusy().query(body={"timeMin": "2026-03-02T00:00:00Z",
                                                     "timeMax": "2026-03-03T00:00:00Z",
                                                     "items": [{"id": "boss@example.com"}]}))
    assert busy["calendars"]["boss@example.com"] == {"busy": []}


async def test_tokens_and_channels_expire_on_the_injected_clock(
        receiver: tuple[str, list[dict[str, str]]]) -> None:
    clock = ManualClock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    google = GoogleEmulator(clock=clock)
    await google.start()
    try:
        google.add_account(JOHN)
        calendar = service(google, credentials(google, google.grant(JOHN)))
        in_an_hour = int((clock.now + timedelta(hours=1)).timestamp() * 1000)
        channel = await run(calendar.events().watch(calendarId=JOHN, body={
            "id": "short", "type": "web_hook", "address": receiver[0], "expiration": in_an_hour}))
        assert channel["expiration"] == str(in_an_hour)
        await google.wait_for_notifications(1)

        clock.later(timedelta(hours=2))  # the access token (3599 s) and the channel are both over
        google.put_event(JOHN, event("Unheard", 4))
        assert google.channels == {}
        assert (await run(calendar.calendarList().list()))["items"]
        assert [request.method for request in google.requests[-3:]] == ["calendarList.list", "token",
                                                                         "calendarList.list"]
        assert [n.state for n in google.notifications] == ["sync"]
    finally:
        await google.close()
