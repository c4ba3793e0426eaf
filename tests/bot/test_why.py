"""`/croco why [date]`: the troubleshooter of the user's team calendars for a day of their own time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import update

from storage.db import Database
from storage.enums import ConnectionStatus
from storage.models import BlockedSlot, RemoteCalendar, User
from storage.secrets import SecretBox
from sync import troubleshoot
from tests.bot.conftest import ANN, SlackWorld
from tests.factories import add_connection
from tests.web.conftest import NOW

BOB_SLACK_ID = "U0BOB"
NEW_YORK = ZoneInfo("America/New_York")
NINE_TO_FIVE = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


async def user(world: SlackWorld, name: str, email: str, timezone: str, slack_user_id: str) -> str:
    response = await world.api.post("/api/v1/users", json={
        "name": name, "email": email, "timezone": timezone, "slack_user_id": slack_user_id})
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def team_calendar(world: SlackWorld, member_ids: list[str], timezone: str, **rules: Any) -> str:
    response = await world.api.post("/api/v1/calendars", json={
        "name": "Consultations", "kind": "collective", "member_ids": member_ids, "duration_minutes": 30,
        "timezone": timezone, "open_hours": NINE_TO_FIVE} | rules)
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def busy(db: Database, box: SecretBox, user_id: str, calendar: str, title: str, start: datetime,
               end: datetime, *, fetched_ago: timedelta, status: ConnectionStatus = ConnectionStatus.OK) -> None:
    """An external event synced from `calendar` of a connection of the user, fetched `fetched_ago` before now."""
    async with db.session() as session:
        owner = await session.get(User, user_id)
    assert owner is not None
    _, (remote,) = await add_connection(db, owner, box, status=status)
    async with db.write() as session:
        await session.execute(update(RemoteCalendar).where(RemoteCalendar.id == remote.id).values(name=calendar))
        session.add(BlockedSlot(user_id=user_id, remote_calendar_id=remote.id, remote_id=f"{title}.ics",
                                start=start, end=end, title=title, fetched_at=NOW - fetched_ago))


def new_york(day: int, hour: int) -> datetime:
    return datetime(2021, 3, day, hour, tzinfo=NEW_YORK)


async def why(world: SlackWorld, text: str, slack_user_id: str = ANN.id) -> tuple[str, list[str]]:
    """The modal `/croco why <text>` shows: (its title, every line of its text)."""
    seen = len(world.slack.calls_to("views.update"))
    status, _ = await world.sender.command(f"why {text}".strip(), user_id=slack_user_id)
    assert status == 200
    view = (await world.slack.wait_for("views.update", seen + 1))[-1].args["view"]
    texts = []
    for block in view["blocks"]:
        texts.extend([block["text"]["text"]] if "text" in block else [e["text"] for e in block.get("elements", [])])
    return view["title"]["text"], "\n".join(texts).split("\n")


async def ann_and_bob(world: SlackWorld, db: Database, box: SecretBox, *,
                      bobs_connection: ConnectionStatus = ConnectionStatus.OK) -> None:
    """Ann (New York) and Bob share a collective calendar, open 09:00-17:00 New York time. On 2 March Ann has
    the dentist 13:00-14:00 (fetched 12 minutes ago), Bob a job interview 15:00-16:00 (fetched 3 hours ago)."""
    ann = await user(world, "Ann Lee", "ann@example.com", "America/New_York", ANN.id)
    bob = await user(world, "Bob <!channel>", "bob@example.com", "Europe/Paris", BOB_SLACK_ID)
    await team_calendar(world, [ann, bob], "America/New_York")
    await busy(db, box, ann, "Work", "Dentist", new_york(2, 13), new_york(2, 14), fetched_ago=timedelta(minutes=12))
    await busy(db, box, bob, "Personal", "Job interview", new_york(2, 15), new_york(2, 16),
               fetched_ago=timedelta(hours=3), status=bobs_connection)


def line_at(lines: list[str], times: str) -> str:
    (found,) = [line for line in lines if line.startswith(f"*{times}*")]
    return found


async def test_why_names_the_users_event_its_calendar_and_when_it_was_fetched(
        world: SlackWorld, db: Database, secret_box: SecretBox) -> None:
    await ann_and_bob(world, db, secret_box)
    title, lines = await why(world, "2021-03-02")
    assert title == "Why, Tue 2 Mar"
    assert "*Blocked times on Tuesday 2 March 2021*" in lines and "*Consultations*" in lines
    assert line_at(lines, "13:00–14:00") == ("*13:00–14:00*  You are busy with *Dentist* in _Work_, fetched 12 min ago; "
                                             "not enough members free (1 of 2 busy)")
    assert line_at(lines, "00:00–09:00").endswith("Outside the calendar's open hours")
    assert line_at(lines, "17:00–24:00").endswith("Outside the calendar's open hours")
    assert not any("13:30" in line for line in lines)  # the blocked hour is one line, not two slots


async def test_another_members_event_is_shown_without_its_title(
        world: SlackWorld, db: Database, secret_box: SecretBox) -> None:
    await ann_and_bob(world, db, secret_box)
    _, lines = await why(world, "2021-03-02")
    bobs = line_at(lines, "15:00–16:00")
    assert bobs.startswith("*15:00–16:00*  Bob &lt;!channel&gt; is busy with an event in _Personal_, fetched 3 h ago")
    assert not any("Job interview" in line for line in lines)
    _, lines = await why(world, "2021-03-02", BOB_SLACK_ID)  # Bob sees his own title, not Ann's, at Paris times
    assert "You are busy with *Job interview* in _Personal_" in line_at(lines, "21:00–22:00")
    assert "Ann Lee is busy with an event in _Work_, fetched 12 min ago" in line_at(lines, "19:00–20:00")
    assert not any("Dentist" in line for line in lines)


async def test_an_event_of_a_broken_connection_is_stale(world: SlackWorld, db: Database,
                                                        secret_box: SecretBox) -> None:
    await ann_and_bob(world, db, secret_box, bobs_connection=ConnectionStatus.BROKEN)
    _, lines = await why(world, "2021-03-02")
    assert "STALE" in line_at(lines, "15:00–16:00") and "may be out of date" in line_at(lines, "15:00–16:00")
    assert "STALE" not in line_at(lines, "13:00–14:00")  # Ann's connection works


async def test_today_and_tomorrow_are_days_of_the_users_time_zone(world: SlackWorld, db: Database,
                                                                 secret_box: SecretBox) -> None:
    """At 08:00 UTC on 1 March it is still 28 February, 22:00, in Honolulu."""
    honolulu = ZoneInfo("Pacific/Honolulu")
    kai = await user(world, "Kai", "kai@example.com", "Pacific/Honolulu", ANN.id)
    await team_calendar(world, [kai], "Pacific/Honolulu")
    for day, title in ((datetime(2021, 2, 28), "Sunday surf"), (datetime(2021, 3, 1), "Monday standup")):
        noon = day.replace(hour=12, tzinfo=honolulu)
        await busy(db, secret_box, kai, "Work", title, noon, noon + timedelta(hours=1), fetched_ago=timedelta())
    for text in ("", "today"):
        title, lines = await why(world, text)
        assert title == "Why, Sun 28 Feb" and "*Blocked times on Sunday 28 February 2021*" in lines
        assert "Already past; you are busy with *Sunday surf* in _Work_, fetched just now" in \
            line_at(lines, "12:00–13:00")
        assert not any("Monday standup" in line for line in lines)
    title, lines = await why(world, "Tomorrow")
    assert title == "Why, Mon 1 Mar"
    assert line_at(lines, "12:00–13:00").endswith("You are busy with *Monday standup* in _Work_, fetched just now")


async def test_a_day_it_cannot_read_is_explained_not_a_failure(world: SlackWorld) -> None:
    for text in ("banana", "2021-02-30", "02/03/2021", "0001-01-01"):
        title, lines = await why(world, text)
        assert title == "Croco why"
        assert f"I can't read `{text}` as a day." in " ".join(lines)
        assert "YYYY-MM-DD" in " ".join(lines) and "`/croco why tomorrow`" in " ".join(lines)


async def test_no_team_calendar_or_nothing_blocked_says_so(world: SlackWorld) -> None:
    _, lines = await why(world, "2021-03-02")
    assert any("not a member of any team calendar" in line for line in lines)
    ann = (await (await world.api.get("/api/v1/users", params={"slack_user_id": ANN.id})).json())["items"][0]
    await team_calendar(world, [ann["id"]], "America/New_York", open_hours=None)  # open all day, no event
    _, lines = await why(world, "2021-03-02")
    assert any("Nothing is blocked that day" in line for line in lines)


async def test_a_booked_appointment_is_named_with_its_team_calendar(world: SlackWorld, db: Database,
                                                                    secret_box: SecretBox) -> None:
    await ann_and_bob(world, db, secret_box)
    (ann,) = (await (await world.api.get("/api/v1/users", params={"slack_user_id": ANN.id})).json())["items"]
    calendars = await troubleshoot.calendars_of_member(db, ann["id"])
    booked = await world.api.post(f"/api/v1/calendars/{calendars[0].id}/appointments", json={
        "start": new_york(2, 10).isoformat(), "contact": {"name": "Ada Lovelace", "email": "ada@example.com"}})
    assert booked.status == 201, await booked.text()
    _, lines = await why(world, "2021-03-02")
    line = line_at(lines, "10:00–10:30")
    assert line.startswith("*10:00–10:30*  You are booked for the appointment *Consultations with Ada Lovelace* "
                           "of _Consultations_")
    assert "Bob &lt;!channel&gt; is booked for an appointment of _Consultations_" in line  # no title for Bob
