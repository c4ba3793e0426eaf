"""A recording notice sink: what the tests deliver to until Slack is the real sink."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sync.outbox import OutgoingNotice


@dataclass
class RecordingSink:
    """Records every call it gets (repeats included, so a test sees a double delivery); raises `failures` in
    order, one per call, before it accepts. `during` runs inside each call, before it accepts or fails."""

    failures: list[BaseException] = field(default_factory=list)
    during: Callable[[OutgoingNotice], Awaitable[None]] | None = None
    calls: list[OutgoingNotice] = field(default_factory=list)
    accepted: list[OutgoingNotice] = field(default_factory=list)

    async def deliver(self, notice: OutgoingNotice) -> None:
        self.calls.append(notice)
        if self.during is not None:
            await self.during(notice)
        if self.failures:
            raise self.failures.pop(0)
        self.accepted.append(notice)
