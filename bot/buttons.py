"""The buttons of notice DMs: ack at once, check the clicker is the notice's user, act through the services, then
put the outcome where the buttons were (chat.update).

The services are idempotent (sync/actions.py, `Booking.cancel`), so a double click acts once; the second click is
told it was done. A click by anyone else (a forwarded or shared message) is refused ephemerally and does nothing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlmodel import col

from bot import people
from bot.blocks.common import Block, actions, button, context, modal, section
from bot.blocks.notices import ACTIONS_BLOCK
from bot.context import BotContext
from bot.ids import Action
from storage.db import Database
from storage.enums import AppointmentStatus
from storage.models import Appointment, AppointmentAssignee, Connection, RemoteCalendar
from sync.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

NOT_YOURS = "Only the person this message is for can use its buttons."


@dataclass(frozen=True)
class Reply:
    """A click's answer: `outcome` replaces the buttons in the DM (None: they stay); `ephemeral` goes to the
    clicker alone."""

    outcome: str | None = None
    ephemeral: str | None = None
    blocks: list[Block] = field(default_factory=list)


Act = Callable[[BotContext, str, str], Awaitable[Reply]]
"""(ctx, the clicker's Croco user id, the button's value) -> the reply."""
Owners = Callable[[Database, str], Awaitable[set[str]]]


async def restore(ctx: BotContext, user_id: str, appointment_id: str) -> Reply:
    try:
        await ctx.actions.restore(appointment_id)
    except NotFound:
        return Reply(":grey_question: This appointment no longer exists.")
    except Invalid:  # the calendar server failed: nothing changed, the button still works
        return Reply(ephemeral=":warning: Your calendar server did not take the appointment; nothing changed. "
                               "Try the button again in a moment.")
    except Conflict:
        if await _status(ctx.db, appointment_id) == AppointmentStatus.CANCELLED:
            return Reply(":no_entry_sign: The appointment is cancelled: nothing to restore.")
        return Reply(":white_check_mark: Already restored: it is in your calendar.")
    return Reply(":white_check_mark: Restored to your calendar.")


async def cancel(ctx: BotContext, user_id: str, appointment_id: str) -> Reply:
    if await _status(ctx.db, appointment_id) == AppointmentStatus.CANCELLED:
        return Reply(":no_entry_sign: Already cancelled.")
    try:
        await ctx.booking.cancel(appointment_id)
    except NotFound:
        return Reply(":grey_question: This appointment no longer exists.")
    except Conflict as exc:
        return Reply(ephemeral=f":warning: {exc}")
    return Reply(":no_entry_sign: Appointment cancelled.")


async def confirm_removals(ctx: BotContext, user_id: str, calendar_id: str) -> Reply:
    removed = await ctx.actions.confirm_held_removals(user_id)
    if removed == 0:
        return Reply(":white_check_mark: Nothing left to remove: the removals were already applied.")
    return Reply(f":white_check_mark: Confirmed: {removed} event{'' if removed == 1 else 's'} removed.")


async def reconnect(ctx: BotContext, user_id: str, connection_id: str) -> Reply:
    """A fresh one-time link each click (it expires in 15 minutes), so the button stays."""
    try:
        link = await ctx.connect_links.reconnect(connection_id)
    except NotFound:
        return Reply(":grey_question: This connection no longer exists: connect again with `/croco connect`.")
    except Invalid as exc:
        return Reply(ephemeral=f":warning: {exc}")
    text = ":link: Open this link to reconnect. It works once, for 15 minutes."
    return Reply(ephemeral=text, blocks=[
        section(text), actions(button("Reconnect in the browser", Action.OPEN_LINK, url=link.url, style="primary"))])


async def appointment_owners(db: Database, appointment_id: str) -> set[str]:
    async with db.session() as session:
        return set(await session.scalars(select(col(AppointmentAssignee.user_id))
                                         .where(col(AppointmentAssignee.appointment_id) == appointment_id)))


async def connection_owners(db: Database, connection_id: str) -> set[str]:
    async with db.session() as session:
        return set(await session.scalars(select(col(Connection.user_id)).where(col(Connection.id) == connection_id)))


async def calendar_owners(db: Database, calendar_id: str) -> set[str]:
    async with db.session() as session:
        return set(await session.scalars(
            select(col(Connection.user_id))
            .join(RemoteCalendar, col(RemoteCalendar.connection_id) == col(Connection.id))
            .where(col(RemoteCalendar.id) == calendar_id)))


BUTTONS: dict[Action, tuple[Owners, Act]] = {
    Action.RESTORE_TO_CALENDAR: (appointment_owners, restore),
    Action.CANCEL_APPOINTMENT: (appointment_owners, cancel),
    Action.CONFIRM_REMOVALS: (calendar_owners, confirm_removals),
    Action.RECONNECT: (connection_owners, reconnect),
}
"""Action -> (who may click it, given the button's value; what it does)."""


def register(app: AsyncApp, ctx: BotContext) -> None:
    for action, (owners, act) in BUTTONS.items():
        app.action(action)(_listener(ctx, owners, act))

    @app.action(Action.OPEN_LINK)
    async def open_link(ack: AsyncAck) -> None:
        await ack()


def _listener(ctx: BotContext, owners: Owners, act: Act) -> Callable[..., Awaitable[None]]:
    async def listener(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        await click(ctx, body, client, respond, owners, act)

    return listener


async def click(ctx: BotContext, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond,
                owners: Owners, act: Act) -> None:
    clicked = body["actions"][0]
    value, team_id, slack_user_id = str(clicked.get("value", "")), body.get("team", {}).get("id", ""), \
        body.get("user", {}).get("id", "")
    extra = {"action": clicked.get("action_id"), "value": value, "team_id": team_id, "slack_user_id": slack_user_id}
    try:
        person = await people.known(ctx, team_id, slack_user_id)
        user = person.user if person else None
        if user is None or user.id not in await owners(ctx.db, value):
            log.warning("button refused: not the notice's user", extra=extra)
            await _tell(client, body, respond, NOT_YOURS)
            return
        extra["user_id"] = user.id
        reply = await act(ctx, user.id, value)
    except Exception as exc:  # the clicker sees it failed; the log has the rest
        log.exception("button failed", extra=extra)
        await _tell(client, body, respond, f":warning: That did not work ({type(exc).__name__}). Try again later.")
        return
    log.info("button done", extra=extra | {"outcome": reply.outcome})
    if reply.outcome is not None and body.get("container", {}).get("type") == "message":
        await _replace_buttons(client, body, reply.outcome, extra)
    elif reply.outcome is not None:  # a button of the Home tab: no message to update
        await _tell(client, body, respond, reply.outcome)
    if reply.ephemeral is not None:
        await _tell(client, body, respond, reply.ephemeral, reply.blocks)


async def _tell(client: AsyncWebClient, body: dict[str, Any], respond: AsyncRespond, text: str,
                blocks: list[Block] | None = None) -> None:
    """To the clicker only: an ephemeral reply under a message, or a small modal over the Home tab (a view has
    no response_url)."""
    if body.get("response_url"):
        await respond(text=text, blocks=blocks or None, response_type="ephemeral", replace_original=False)
        return
    try:
        await client.views_open(trigger_id=body["trigger_id"], view=modal("Croco", blocks or [section(text)]))
    except (KeyError, SlackApiError) as exc:
        log.warning("reply not shown", extra={"error": type(exc).__name__})


async def _replace_buttons(client: AsyncWebClient, body: dict[str, Any], outcome: str, extra: dict[str, Any]) -> None:
    """The DM as it was, its buttons replaced by the outcome."""
    container, message = body.get("container", {}), body.get("message", {})
    channel = body.get("channel", {}).get("id") or container.get("channel_id")
    ts = message.get("ts") or container.get("message_ts")
    if not channel or not ts:
        return
    kept = [b for b in message.get("blocks") or [] if b.get("block_id") != ACTIONS_BLOCK]
    try:
        await client.chat_update(channel=channel, ts=ts, text=message.get("text") or outcome,
                                 blocks=[*kept, context(outcome)])
    except SlackApiError as exc:
        log.warning("notice message not updated", extra=extra | {"error": exc.response.get("error")})


async def _status(db: Database, appointment_id: str) -> str | None:
    async with db.session() as session:
        appointment = await session.get(Appointment, appointment_id)
        return None if appointment is None else appointment.status
