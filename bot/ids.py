"""Every action id, view callback id and options action the app registers, in one place.

The manifest test compares these with what the app answers and what the manifests declare; a listener whose id is
not here is a bug (tests/bot/test_manifests.py)."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    OPEN_CONNECT = "open_connect"  # Home: opens the connect modal
    OPEN_SETTINGS = "open_settings"  # Home, every alert, the DM after connecting: opens the settings modal
    CONNECT_PROVIDER = "connect_provider"  # a provider button (a link; an unconfigured one explains itself)
    RESTORE_TO_CALENDAR = "restore_to_calendar"
    CANCEL_APPOINTMENT = "cancel_appointment"
    RECONNECT = "reconnect"
    CONFIRM_REMOVALS = "confirm_removals"
    OPEN_LINK = "open_link"  # a URL button (the reconnect link): Slack still sends the click, acked and nothing more
    PICK_LINKED_CALENDAR = "pick_linked_calendar"  # the external select over 100 calendars
    PICK_CONFLICT_CALENDARS = "pick_conflict_calendars"


class ViewCallback(StrEnum):
    SETTINGS = "croco_settings"


OPTIONS_ACTIONS = (Action.PICK_LINKED_CALENDAR, Action.PICK_CONFLICT_CALENDARS)
"""The actions whose options Slack loads from us (external selects)."""
