"""What `/croco <subcommand>` shows: each module's `screen` builds the modal that replaces the loading one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.blocks.common import View
from bot.context import BotContext
from bot.people import Person

Screen = Callable[[BotContext, Person, str], Awaitable[View]]
"""(context, who asks, the rest of the command's text) -> the modal."""
