"""An injected clock for tests: it moves only when the test moves it, so no result depends on today's date."""

from __future__ import annotations

from datetime import datetime, timedelta


class ManualClock:
    def __init__(self, start: datetime) -> None:
        self.start = self.now = start

    def __call__(self) -> datetime:
        return self.now

    def later(self, by: timedelta) -> None:
        """Move on by `by`."""
        self.now += by

    def at(self, offset: timedelta) -> None:
        """Stand at `offset` after the start."""
        self.now = self.start + offset
