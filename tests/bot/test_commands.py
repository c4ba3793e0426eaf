"""`/croco`: signed requests only, ack first, a loading modal replaced by the subcommand's screen."""

from __future__ import annotations

import time

import pytest

from tests.bot.conftest import ANN, SlackWorld


def _title(view: dict[str, object]) -> str:
    return view["title"]["text"]  # type: ignore[index,no-any-return]


async def test_help_opens_a_loading_modal_then_shows_every_subcommand(world: SlackWorld) -> None:
    status, _ = await world.sender.command("help", user_id=ANN.id)
    assert status == 200
    (opened,) = await world.slack.wait_for("views.open")
    assert "Loading" in str(opened.args["view"])
    (updated,) = await world.slack.wait_for("views.update")
    text = str(updated.args["view"]["blocks"])
    assert all(f"/croco {name}" in text for name in ("connect", "settings", "status", "why", "help"))


async def test_an_unknown_subcommand_answers_with_help_naming_it(world: SlackWorld) -> None:
    await world.sender.command("frobnicate now", user_id=ANN.id)
    (updated,) = await world.slack.wait_for("views.update")
    assert "frobnicate" in str(updated.args["view"]["blocks"]) and "/croco settings" in str(updated.args["view"])


async def test_a_first_command_makes_the_member_a_croco_user_from_their_profile(world: SlackWorld) -> None:
    await world.sender.command("help", user_id=ANN.id)
    await world.slack.wait_for("views.update")
    found = await (await world.api.get("/api/v1/users", params={"slack_user_id": ANN.id})).json()
    assert [(u["name"], u["email"], u["timezone"]) for u in found["items"]] == \
        [("Ann Lee", "ann@example.com", "America/New_York")]
    await world.sender.command("help", user_id=ANN.id)
    await world.slack.wait_for("views.update", 2)
    assert len(world.slack.calls_to("users.info")) == 1  # known from then on


async def test_a_user_made_through_the_api_with_the_slack_id_is_the_one_slack_finds(world: SlackWorld) -> None:
    made = await (await world.api.post("/api/v1/users", json={
        "name": "Ann", "email": "ann@work.example", "timezone": "Europe/Paris", "slack_user_id": ANN.id})).json()
    await world.sender.command("help", user_id=ANN.id)
    await world.slack.wait_for("views.update")
    found = await (await world.api.get("/api/v1/users", params={"slack_user_id": ANN.id})).json()
    assert [u["id"] for u in found["items"]] == [made["id"]]
    assert world.slack.calls_to("users.info") == []


@pytest.mark.parametrize("forgery", ["missing", "wrong", "stale"])
async def test_unsigned_forged_or_stale_requests_get_401_and_do_nothing(world: SlackWorld, forgery: str) -> None:
    body = world.sender.command_body("help", user_id=ANN.id)
    content_type = "application/x-www-form-urlencoded"
    stamp = int(time.time()) - (360 if forgery == "stale" else 0)  # stale: correctly signed, six minutes ago
    sent = world.sender.signed_headers(body, timestamp=stamp, content_type=content_type)
    if forgery == "missing":
        del sent["X-Slack-Signature"]
    if forgery == "wrong":
        sent["X-Slack-Signature"] = "v0=" + "0" * 64
    status, _ = await world.sender.post(body, content_type, headers=sent)
    assert status == 401
    assert world.slack.attempts == []
    assert await (await world.api.get("/api/v1/users", params={"slack_user_id": ANN.id})).json() == {"items": []}


async def test_url_verification_is_answered_with_the_challenge(world: SlackWorld) -> None:
    status, text = await world.sender.post('{"type": "url_verification", "challenge": "c-42", "token": "t"}',
                                           "application/json")
    assert (status, "c-42" in text) == (200, True)
