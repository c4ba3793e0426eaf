"""`/croco status`: connections, each calendar's role and last sync, and problems in plain words."""

from __future__ import annotations

from bot.blocks import status as blocks
from bot.blocks.common import View
from bot.context import BotContext
from bot.people import Person
from sync.status import read_status


async def screen(ctx: BotContext, person: Person, args: str) -> View:
    return blocks.status_view(await read_status(ctx.db, person.user_id, now=ctx.clock()))
