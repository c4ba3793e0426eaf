"""What Croco counts as it works, for `/metrics` (API.md "Operations").

- Counters and histograms are recorded where the work happens, in this process (`TELEMETRY`): sync cycles,
  provider requests, notices delivered, bookings, automation webhook deliveries.
- The freshness and backlog gauges are read from the database when `/metrics` is scraped (`sync/gauges.py`),
  so several `croco serve` processes sharing one database report the same figures. They live apart so that the
  providers, which count their requests here, import nothing that reaches the database.
- Labels are providers, kinds, statuses and results, never a user or calendar id: their number stays bounded.

`count_request` also adds to the request count of the sync cycle running in this task (`counting_requests`),
which the engine's one log line per cycle carries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

SYNC_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""A cycle is a delta round (tens of milliseconds) up to a first import of thousands of events (a minute)."""


@dataclass(frozen=True)
class Telemetry:
    """The process's counters and histograms, in their own registry (the web layer exposes it)."""

    registry: CollectorRegistry
    sync_cycles: Counter  # provider, result: ok, error, auth_failed
    sync_cycle_seconds: Histogram  # provider
    provider_requests: Counter  # provider, status: the HTTP status, or `unreachable`
    notices_delivered: Counter  # kind
    bookings: Counter  # kind (of team calendar), result: booked, refused
    webhook_deliveries: Counter  # result

    @classmethod
    def create(cls) -> Telemetry:
        registry = CollectorRegistry()
        return cls(
            registry,
            Counter("croco_sync_cycles", "Sync cycles of one calendar, by outcome", ["provider", "result"],
                    registry=registry),
            Histogram("croco_sync_cycle_seconds", "Duration of one calendar's sync cycle", ["provider"],
                      buckets=SYNC_SECONDS_BUCKETS, registry=registry),
            Counter("croco_provider_requests", "Requests made to calendar providers, by answer",
                    ["provider", "status"], registry=registry),
            Counter("croco_notices_delivered", "Notices the sink (Slack) accepted", ["kind"], registry=registry),
            Counter("croco_bookings", "Booking attempts on team calendars", ["kind", "result"], registry=registry),
            Counter("croco_webhook_deliveries", "Automation webhook delivery attempts", ["result"],
                    registry=registry),
        )


TELEMETRY = Telemetry.create()
"""This process's: every component records here, `/metrics` exposes it."""

_cycle_requests: ContextVar[list[int] | None] = ContextVar("croco_cycle_requests", default=None)


def count_request(provider: str, status: int | str) -> None:
    """One request to a provider answered `status` (an HTTP status, or `unreachable`)."""
    TELEMETRY.provider_requests.labels(provider, str(status)).inc()
    box = _cycle_requests.get()
    if box is not None:
        box[0] += 1


@contextmanager
def counting_requests() -> Iterator[list[int]]:
    """Count the provider requests made inside (in this task, and in threads started with its context):
    the box's one number."""
    box = [0]
    token = _cycle_requests.set(box)
    try:
        yield box
    finally:
        _cycle_requests.reset(token)
