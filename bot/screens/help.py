"""`/croco help`, also the answer to an unknown subcommand."""

from __future__ import annotations

from bot.blocks import help as blocks
from bot.blocks.common import View
from bot.context import BotContext
from bot.people import Person


async def screen(ctx: BotContext, person: Person, args: str) -> View:
    return blocks.help_view(unknown=args or None)
