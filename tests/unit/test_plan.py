"""Every sync rule of DESIGN.md section 4, decided by the pure planner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.enums import SyncMode
from sync.events import Guest, Occurrence, RemoteObject
from sync.plan import (
    MASS_DELETION_MINIMUM,
    ApplyRemoteEdit,
    CalendarRole,
    CancelImport,
    CreateRemote,
    DeleteRemote,
    DropImport,
    HoldRemovals,
    ImportedCopy,
    ImportOccurrence,
    Known,
    Link,
    Listing,
    PushedCopy,
    PushedDeletedRemotely,
    RecordPush,
    Relist,
    RestorePush,
    SetSlots,
    SkipItem,
    UpdateImport,
    UpdateRemote,
    Wanted,
    fingerprint,
    plan,
    plan_pushes,
)

T13 = datetime(2026, 3, 2, 13, tzinfo=UTC)
T14 = T13 + timedelta(hours=1)
ONE_WAY_LINKED = CalendarRole(linked=True, conflict=True, mode=SyncMode.ONE_WAY)
TWO_WAY_LINKED = CalendarRole(linked=True, conflict=True, mode=SyncMode.TWO_WAY)
CONFLICT_ONLY = CalendarRole(linked=False, conflict=True, mode=SyncMode.TWO_WAY)
MICHEL = Occurrence("", T13, T14, busy=True, title="Appointment with Dr. Michel", guests=(Guest("michel@example.com"),))


def event(item_id: str = "michel.ics", *occurrences: Occurrence, **kwargs: object) -> RemoteObject:
    return RemoteObject(item_id, kwargs.pop("etag", "e1"), occurrences or (MICHEL,), **kwargs)  # type: ignore[arg-type]


def changed(*objects: RemoteObject) -> Listing:
    return Listing(changed=objects)


def pushed(item_id: str = "a1.ics", *, pushed_at: Occurrence = MICHEL, local: Occurrence = MICHEL) -> PushedCopy:
    return PushedCopy(
        "a1", item_id, "e1", fingerprint(pushed_at.start, pushed_at.end, pushed_at.title),
        fingerprint(local.start, local.end, local.title), local_updated=T13 - timedelta(days=1),
    )


def moved(occurrence: Occurrence, hours: int) -> Occurrence:
    return Occurrence(occurrence.key, occurrence.start + timedelta(hours=hours), occurrence.end + timedelta(hours=hours),
                      occurrence.busy, occurrence.title)


# R2 / R3: foreign events -----------------------------------------------------------------------------


def test_r2_one_way_foreign_event_in_linked_calendar_becomes_a_blocking_slot() -> None:
    assert plan(ONE_WAY_LINKED, Known(), changed(event())).actions == (SetSlots("michel.ics", (MICHEL,)),)


def test_r2_two_way_foreign_event_becomes_an_imported_appointment_and_no_slot() -> None:
    assert plan(TWO_WAY_LINKED, Known(), changed(event())).actions == (ImportOccurrence("michel.ics", MICHEL),)


def test_r3_conflict_calendar_never_creates_appointments_even_in_two_way() -> None:
    assert plan(CONFLICT_ONLY, Known(), changed(event())).actions == (SetSlots("michel.ics", (MICHEL,)),)


def test_free_event_is_stored_but_does_not_block() -> None:
    free = Occurrence("", T13, T14, busy=False, title="Lunch")
    assert plan(CONFLICT_ONLY, Known(), changed(event("lunch.ics", free))).actions == (SetSlots("lunch.ics", (free,)),)


def test_linked_calendar_removed_from_conflicts_still_pulls_but_does_not_block() -> None:
    role = CalendarRole(linked=True, conflict=False, mode=SyncMode.ONE_WAY)
    (action,) = plan(role, Known(), changed(event())).actions
    assert isinstance(action, SetSlots) and action.occurrences[0].busy is False


def test_unchanged_listing_plans_nothing() -> None:
    as_stored = Occurrence("", MICHEL.start, MICHEL.end, MICHEL.busy, MICHEL.title)  # slots keep no key, no guests
    known = Known(slots={"michel.ics": (as_stored,)})
    assert plan(ONE_WAY_LINKED, known, Listing(changed=(event(),), full=True)).actions == ()


# R4 / R5 ---------------------------------------------------------------------------------------------


def test_r4_one_way_edit_replaces_the_slot() -> None:
    later = moved(MICHEL, 2)
    known = Known(slots={"michel.ics": (MICHEL,)})
    assert plan(ONE_WAY_LINKED, known, changed(event("michel.ics", later))).actions == (
        SetSlots("michel.ics", (later,)),
    )


def test_r4_two_way_time_change_reschedules_and_title_change_only_updates() -> None:
    copy = ImportedCopy("ap1", T13, T14, MICHEL.title, True)
    known = Known(imports={"michel.ics": {"": copy}})
    later = moved(MICHEL, 2)
    assert plan(TWO_WAY_LINKED, known, changed(event("michel.ics", later))).actions == (
        UpdateImport("ap1", "michel.ics", later, rescheduled=True),
    )
    renamed = Occurrence("", T13, T14, True, "Dr. Michel (phone)")
    assert plan(TWO_WAY_LINKED, known, changed(event("michel.ics", renamed))).actions == (
        UpdateImport("ap1", "michel.ics", renamed, rescheduled=False),
    )


@pytest.mark.parametrize("listing", [Listing(removed=("michel.ics",)), changed(event(cancelled=True))])
def test_r5_deleted_or_cancelled_remotely(listing: Listing) -> None:
    assert plan(ONE_WAY_LINKED, Known(slots={"michel.ics": (MICHEL,)}), listing).actions == (SetSlots("michel.ics", ()),)
    known = Known(imports={"michel.ics": {"": ImportedCopy("ap1", T13, T14, MICHEL.title, True)}})
    assert plan(TWO_WAY_LINKED, known, listing).actions == (CancelImport("ap1", "michel.ics"),)


def test_recurring_instance_removed_cancels_only_that_occurrence() -> None:
    monday, tuesday = MICHEL, Occurrence("2026-03-03", T13 + timedelta(days=1), T14 + timedelta(days=1), True, "x")
    known = Known(imports={"weekly.ics": {
        "": ImportedCopy("ap1", monday.start, monday.end, monday.title, True),
        "2026-03-03": ImportedCopy("ap2", tuesday.start, tuesday.end, tuesday.title, True),
    }})
    assert plan(TWO_WAY_LINKED, known, changed(event("weekly.ics", monday))).actions == (
        CancelImport("ap2", "weekly.ics"),
    )


def test_r5_removal_naming_no_stored_item_relists_the_calendar_once() -> None:
    """Graph's delta names a deleted occurrence of a series by its own id, the series being one stored item."""
    known = Known(slots={"weekly": (MICHEL, moved(MICHEL, 24 * 7)), "michel.ics": (MICHEL,)})
    listing = Listing(removed=("michel.ics", "weekly_20260309T130000", "weekly_20260309T130000"),
                      removals_name_occurrences=True)
    assert plan(CONFLICT_ONLY, known, listing).actions == (
        SetSlots("michel.ics", ()), Relist(("weekly_20260309T130000",)),
    )
    full = Listing(changed=(event("weekly", MICHEL), event("michel.ics")), removed=listing.removed[1:], full=True,
                   removals_name_occurrences=True)
    assert plan(CONFLICT_ONLY, known, full).actions == (SetSlots("weekly", (MICHEL,)),)  # never again


def test_r5_removal_naming_no_stored_item_is_nothing_where_removals_name_what_we_store() -> None:
    """CalDAV hrefs and Google ids: an unknown removal is an event never stored (deleted outside the window)."""
    known = Known(slots={"michel.ics": (MICHEL,)})
    assert plan(CONFLICT_ONLY, known, Listing(removed=("never-seen.ics",))).actions == ()


def test_switching_to_one_way_drops_imports_quietly_and_blocks_instead() -> None:
    known = Known(imports={"michel.ics": {"": ImportedCopy("ap1", T13, T14, MICHEL.title, True)}})
    assert plan(ONE_WAY_LINKED, known, changed(event())).actions == (
        SetSlots("michel.ics", (MICHEL,)), DropImport("ap1"),
    )


# R1 / R6 / R7 / R8: our own events -------------------------------------------------------------------


def test_r1_our_unchanged_event_is_ignored() -> None:
    known = Known(pushes={"a1.ics": pushed()})
    assert plan(TWO_WAY_LINKED, known, changed(event("a1.ics", appointment_id="a1"))).actions == ()


def test_r1_our_event_seen_in_a_calendar_we_did_not_push_to_is_never_imported() -> None:
    assert plan(TWO_WAY_LINKED, Known(), changed(event("a1.ics", appointment_id="a1"))).actions == ()


def test_crash_after_remote_write_is_adopted_not_written_again() -> None:
    known = Known(expected_pushes={"a1": fingerprint(T13, T14, MICHEL.title)})
    assert plan(ONE_WAY_LINKED, known, changed(event("a1.ics", appointment_id="a1", etag="e9"))).actions == (
        RecordPush("a1", "a1.ics", "e9", fingerprint(T13, T14, MICHEL.title)),
    )


def test_etag_bump_without_visible_change_only_records_the_etag() -> None:
    known = Known(pushes={"a1.ics": pushed()})
    assert plan(ONE_WAY_LINKED, known, changed(event("a1.ics", appointment_id="a1", etag="e2"))).actions == (
        RecordPush("a1", "a1.ics", "e2", pushed().fingerprint),
    )


def test_r6_one_way_remote_edit_of_our_event_is_reverted() -> None:
    later = moved(MICHEL, 1)
    known = Known(pushes={"a1.ics": pushed()})
    assert plan(ONE_WAY_LINKED, known, changed(event("a1.ics", later, appointment_id="a1", etag="e2"))).actions == (
        RestorePush("a1", "a1.ics", "e2", later),
    )


def test_r6_two_way_remote_edit_of_our_event_is_applied() -> None:
    later = moved(MICHEL, 1)
    known = Known(pushes={"a1.ics": pushed()})
    assert plan(TWO_WAY_LINKED, known, changed(event("a1.ics", later, appointment_id="a1", etag="e2"))).actions == (
        ApplyRemoteEdit("a1", "a1.ics", "e2", later, fingerprint(later.start, later.end, later.title)),
    )


@pytest.mark.parametrize(("role", "cancel"), [(ONE_WAY_LINKED, False), (TWO_WAY_LINKED, True)])
def test_r7_our_event_deleted_remotely(role: CalendarRole, cancel: bool) -> None:
    known = Known(pushes={"a1.ics": pushed()})
    assert plan(role, known, Listing(removed=("a1.ics",))).actions == (
        PushedDeletedRemotely("a1", "a1.ics", cancel=cancel),
    )


def test_r8_both_changed_the_later_change_wins() -> None:
    local = moved(MICHEL, 3)
    remote = moved(MICHEL, 1)
    known = Known(pushes={"a1.ics": pushed(local=local)})  # local change at T13 - 1 day
    remote_later = event("a1.ics", remote, appointment_id="a1", updated=T13)
    assert plan(TWO_WAY_LINKED, known, changed(remote_later)).actions == (
        ApplyRemoteEdit("a1", "a1.ics", "e1", remote, fingerprint(remote.start, remote.end, remote.title), True),
    )
    remote_earlier = event("a1.ics", remote, appointment_id="a1", updated=T13 - timedelta(days=2))
    assert plan(TWO_WAY_LINKED, known, changed(remote_earlier)).actions == (
        RestorePush("a1", "a1.ics", "e1", remote, both_changed=True),
    )


def test_remote_already_showing_our_latest_change_is_just_recorded() -> None:
    local = moved(MICHEL, 3)
    known = Known(pushes={"a1.ics": pushed(local=local)})
    assert plan(TWO_WAY_LINKED, known, changed(event("a1.ics", local, appointment_id="a1", etag="e5"))).actions == (
        RecordPush("a1", "a1.ics", "e5", fingerprint(local.start, local.end, local.title)),
    )


# Safety ----------------------------------------------------------------------------------------------


def _many_slots(n: int) -> Known:
    return Known(slots={f"{i}.ics": (MICHEL,) for i in range(n)})


def test_mass_deletion_is_held_above_half_of_at_least_twenty_items() -> None:
    known = _many_slots(MASS_DELETION_MINIMUM)
    result = plan(CONFLICT_ONLY, known, Listing(removed=tuple(f"{i}.ics" for i in range(11))))
    assert result.held and result.actions == (HoldRemovals(11, 20),)
    confirmed = plan(CONFLICT_ONLY, known, Listing(removed=tuple(f"{i}.ics" for i in range(11))),
                     confirmed_removals=True)
    assert not confirmed.held and len(confirmed.actions) == 11 and confirmed.removed == 11  # reported back


def test_half_or_small_calendars_delete_without_confirmation() -> None:
    assert not plan(CONFLICT_ONLY, _many_slots(20), Listing(removed=tuple(f"{i}.ics" for i in range(10)))).held
    assert not plan(CONFLICT_ONLY, _many_slots(19), Listing(removed=tuple(f"{i}.ics" for i in range(19)))).held


def test_full_listing_after_invalid_cursor_removes_only_what_is_missing() -> None:
    known = Known(slots={"a.ics": (MICHEL,), "b.ics": (MICHEL,)})
    listing = Listing(changed=(event("a.ics"),), full=True)
    assert plan(CONFLICT_ONLY, known, listing).actions == (SetSlots("b.ics", ()),)


def test_bad_item_is_skipped_and_kept_while_the_rest_syncs() -> None:
    known = Known(slots={"bad.ics": (MICHEL,)})
    listing = Listing(changed=(event("good.ics"),), skipped=(("bad.ics", "DTEND before DTSTART"),), full=True)
    assert plan(CONFLICT_ONLY, known, listing).actions == (
        SkipItem("bad.ics", "DTEND before DTSTART"), SetSlots("good.ics", (MICHEL,)),
    )


# P1-P5: push -----------------------------------------------------------------------------------------


def test_p1_booked_appointment_is_created_once_in_the_linked_calendar() -> None:
    assert plan_pushes("L", [Wanted("a1", "f1")], []) == (CreateRemote("a1", "L"),)
    assert plan_pushes("L", [Wanted("a1", "f1")], [Link("a1", "L", "a1.ics", "e", "f1")]) == ()


def test_p2_changed_appointment_updates_the_copy_with_its_etag() -> None:
    assert plan_pushes("L", [Wanted("a1", "f2")], [Link("a1", "L", "a1.ics", "e", "f1")]) == (
        UpdateRemote("a1", "L", "a1.ics", "e"),
    )


def test_p3_cancelled_appointment_deletes_the_copy() -> None:
    assert plan_pushes("L", [], [Link("a1", "L", "a1.ics", "e", "f1")]) == (DeleteRemote("a1", "L", "a1.ics", "e"),)


def test_p4_new_linked_calendar_moves_the_copy() -> None:
    assert plan_pushes("NEW", [Wanted("a1", "f1")], [Link("a1", "OLD", "a1.ics", "e", "f1")]) == (
        DeleteRemote("a1", "OLD", "a1.ics", "e"), CreateRemote("a1", "NEW"),
    )


def test_p5_without_linked_calendar_nothing_is_pushed() -> None:
    assert plan_pushes(None, [Wanted("a1", "f1")], []) == ()
