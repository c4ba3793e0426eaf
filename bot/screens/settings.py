"""`/croco settings` and the Open settings button: the settings modal, its submission and its option loads.

The listeners are thin: who asks, then `sync.accounts` reads and `put_settings`; the view comes from
`bot.blocks.settings`. A submission is answered in its ack (inline errors or close), so the save, a few fast
database statements, happens before the ack; no Slack call does."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import people
from bot.blocks import settings as blocks
from bot.blocks.common import View
from bot.context import BotContext
from bot.ids import Action, ViewCallback
from bot.modals import open_screen
from bot.people import Person
from storage.enums import Access
from sync import accounts
from sync.errors import Invalid

log = logging.getLogger(__name__)
TITLE = blocks.TITLE


async def screen(ctx: BotContext, person: Person, args: str) -> View:
    await ctx.calendar_lists.refresh_user(person.user_id, ctx.clock())  # a calendar shared since shows up now
    calendars = await _calendars(ctx, person)
    if not calendars:
        return blocks.no_connection_view()
    return blocks.settings_view(calendars, await accounts.get_settings(ctx.db, person.user_id))


async def save(ctx: BotContext, person: Person, view: dict[str, Any]) -> dict[str, str]:
    """Saves a submitted settings modal; the inline errors (block id -> message) when it cannot be saved."""
    linked_shown = blocks.has_input(view, blocks.LINKED)
    choices, errors = blocks.read_submission(view.get("state", {}).get("values", {}))
    if choices is None:
        return errors
    errors = blocks.check(choices, await _calendars(ctx, person), linked_shown=linked_shown)
    if errors:
        return errors
    try:
        await accounts.put_settings(
            ctx.db, person.user_id, choices.linked_calendar_id, choices.conflict_calendar_ids, choices.mode,
            choices.window_days_back, choices.window_days_ahead, now=ctx.clock(), daily_agenda=choices.daily_agenda,
        )
    except Invalid as exc:
        log.info("settings refused", extra={"user_id": person.user_id, "code": exc.code})
        return blocks.error_for(exc.code, exc.message, linked_shown=linked_shown)
    log.info("settings saved", extra={"user_id": person.user_id, "linked_calendar_id": choices.linked_calendar_id,
                                      "mode": choices.mode, "conflicts": len(choices.conflict_calendar_ids)})
    ctx.settings_saved()
    return {}


async def _calendars(ctx: BotContext, person: Person) -> list[blocks.Calendar]:
    return [blocks.Calendar(c.calendar.id, c.calendar.name, c.calendar.access == Access.FULL)
            for c in await accounts.user_calendars(ctx.db, person.user_id)]


async def _person(ctx: BotContext, body: dict[str, Any]) -> Person | None:
    """Who submits or types: met when they opened the modal, so no Slack call stands before the ack."""
    return await people.known(ctx, body.get("team", {}).get("id", ""), body.get("user", {}).get("id", ""))


NOT_MET = "Croco does not know you yet: type /croco settings to open this again."


def _first_input(view: dict[str, Any]) -> str:
    """Where an error about the whole form shows (Slack shows errors under input blocks only)."""
    return blocks.LINKED if blocks.has_input(view, blocks.LINKED) else blocks.CONFLICTS


def register(app: AsyncApp, ctx: BotContext) -> None:

    @app.action(Action.OPEN_SETTINGS)
    async def open_settings(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await open_screen(ctx, client, body, TITLE, lambda person: screen(ctx, person, ""))

    @app.view(ViewCallback.SETTINGS)
    async def submitted(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        view = body.get("view", {})
        try:
            person = await _person(ctx, body)
            errors = await save(ctx, person, view) if person else {_first_input(view): NOT_MET}
        except Exception as exc:  # answered in the modal, never as Slack's bare "trouble connecting"
            log.exception("settings not saved", extra={"slack_user_id": body.get("user", {}).get("id")})
            errors = {_first_input(view): f"That did not work ({type(exc).__name__}). Try again in a moment."}
        if errors:
            await ack(response_action="errors", errors=errors)
        else:
            await ack()

    async def load(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """An external select's options: the user's calendars matching the typed text (linked: full only)."""
        person = await _person(ctx, body)
        full_only = body.get("action_id") == Action.PICK_LINKED_CALENDAR
        calendars = await _calendars(ctx, person) if person else []
        await ack(options=blocks.options_for(calendars, body.get("value", ""), full_only=full_only))

    app.options(Action.PICK_LINKED_CALENDAR)(load)
    app.options(Action.PICK_CONFLICT_CALENDARS)(load)
