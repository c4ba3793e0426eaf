"""The sync planner: stored state + what the provider listed -> a list of actions (DESIGN.md section 4).

Pure: no I/O, no clock, no database. `sync/engine.py` gathers the inputs, calls `plan()` and applies
the actions in one transaction. Every rule P/R of the design is decided here and tested on this module.

Identity follows vdirsyncer: remote items are matched by their provider id (`item_id`), never by content,
and our own pushed events by the appointment id in our marker. Whether one of our events was edited
remotely is decided on its meaning (start, end, title), not its bytes: servers rewrite what we PUT.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from storage.enums import SyncMode
from sync.events import Occurrence, RemoteObject

MASS_DELETION_MINIMUM = 20
"""Below this many known items a calendar may empty itself without confirmation."""


@dataclass(frozen=True)
class Listing:
    """What the provider returned this cycle. With `full`, anything not listed is gone."""

    changed: tuple[RemoteObject, ...] = ()
    removed: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (item_id, reason) for bad remote data
    full: bool = False
    removals_name_occurrences: bool = False  # ChangeSet's: an unknown removal may be an occurrence (Graph)


@dataclass(frozen=True)
class CalendarRole:
    """How the user uses this remote calendar."""

    linked: bool
    conflict: bool
    mode: SyncMode

    @property
    def imports_appointments(self) -> bool:
        return self.linked and self.mode == SyncMode.TWO_WAY


@dataclass(frozen=True)
class ImportedCopy:
    appointment_id: str
    start: datetime
    end: datetime
    title: str | None
    busy: bool


@dataclass(frozen=True)
class PushedCopy:
    """An appointment we pushed into this calendar, as it stood when we pushed it."""

    appointment_id: str
    item_id: str
    etag: str | None
    fingerprint: str  # of what we pushed
    local_fingerprint: str  # of the appointment now; differs when it changed locally since the push
    local_updated: datetime


@dataclass(frozen=True)
class Known:
    """What the database holds for this calendar (imports limited to those ending inside the window)."""

    slots: Mapping[str, tuple[Occurrence, ...]] = field(default_factory=dict)
    imports: Mapping[str, Mapping[str, ImportedCopy]] = field(default_factory=dict)
    pushes: Mapping[str, PushedCopy] = field(default_factory=dict)  # by item id
    expected_pushes: Mapping[str, str] = field(default_factory=dict)  # appointment id -> fingerprint, unlinked yet

    def item_ids(self) -> set[str]:
        return set(self.slots) | set(self.imports) | set(self.pushes)


# Actions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetSlots:
    """Replace the blocked slots of one remote item (empty: remove them)."""

    item_id: str
    occurrences: tuple[Occurrence, ...]


@dataclass(frozen=True)
class ImportOccurrence:
    """R2 two-way: a new imported appointment, a contact per guest, `appointment.created` automations."""

    item_id: str
    occurrence: Occurrence


@dataclass(frozen=True)
class UpdateImport:
    """R4 two-way: the imported appointment follows the remote; a time change fires `rescheduled`."""

    appointment_id: str
    item_id: str
    occurrence: Occurrence
    rescheduled: bool


@dataclass(frozen=True)
class CancelImport:
    """R5 two-way: the remote event is gone; the appointment is cancelled and `cancelled` fires."""

    appointment_id: str
    item_id: str


@dataclass(frozen=True)
class DropImport:
    """The calendar no longer imports (mode or role changed): remove the mirror quietly, no automations."""

    appointment_id: str


@dataclass(frozen=True)
class RecordPush:
    """Our event is where it should be: (re)record its link, e.g. after a crash before the commit (P1)."""

    appointment_id: str
    item_id: str
    etag: str | None
    fingerprint: str


@dataclass(frozen=True)
class RestorePush:
    """R6 one-way, or R8 with the local side later: write the appointment back over the remote edit."""

    appointment_id: str
    item_id: str
    etag: str | None
    remote: Occurrence | None
    both_changed: bool = False


@dataclass(frozen=True)
class ApplyRemoteEdit:
    """R6 two-way, or R8 with the remote side later: the appointment takes the remote time and title."""

    appointment_id: str
    item_id: str
    etag: str | None
    occurrence: Occurrence
    fingerprint: str
    both_changed: bool = False


@dataclass(frozen=True)
class PushedDeletedRemotely:
    """R7: one-way keeps the appointment booked (not re-pushed) and asks the user; two-way cancels it."""

    appointment_id: str
    item_id: str
    cancel: bool


@dataclass(frozen=True)
class ForgetPush:
    """Our copy left in a calendar we no longer push to is gone: nothing to clean up there (P4), and the
    appointment, pushed to the new linked calendar, is not the user's to cancel from here."""

    appointment_id: str
    item_id: str


@dataclass(frozen=True)
class SkipItem:
    """Bad remote data: that item is left as it was and reported; the rest of the calendar syncs."""

    item_id: str
    reason: str


@dataclass(frozen=True)
class Relist:
    """R5 for removals naming no stored item: Graph names a deleted occurrence of a series by the occurrence's id
    (opaque), while the series is stored as one item under its master's id. Only a full listing, reconciled by
    id, shows which occurrence went, so the calendar is listed again in full. Never planned for a full listing,
    so relisting cannot repeat itself. Only for providers whose removals may name occurrences
    (`Listing.removals_name_occurrences`): CalDAV hrefs and Google ids name what we store, and there an unknown
    removal is an event we never stored (outside the window, or created and deleted between two syncs)."""

    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class HoldRemovals:
    """Mass-deletion guard: removals are held until the user confirms."""

    removing: int
    known: int


PlanAction = (
    SetSlots | ImportOccurrence | UpdateImport | CancelImport | DropImport | RecordPush | RestorePush
    | ApplyRemoteEdit | PushedDeletedRemotely | ForgetPush | SkipItem | Relist | HoldRemovals
)


@dataclass(frozen=True)
class Plan:
    actions: tuple[PlanAction, ...]
    held: bool = False  # removals held: the engine keeps the old cursor so they come back next cycle
    removed: int = 0  # known items the plan removes (deleted or cancelled remotely)


def fingerprint(start: datetime, end: datetime, title: str | None) -> str:
    """What a person sees of an event: our edit detection ignores everything else a server may rewrite."""
    text = f"{start.isoformat()}|{end.isoformat()}|{title or ''}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def plan(
    role: CalendarRole, known: Known, listing: Listing, *, confirmed_removals: bool = False,
    held_basis: int | None = None,
) -> Plan:
    """`held_basis`: how many items were known when the removals were first held. While the hold waits for the
    user, new items that the rest of each plan adds must not dilute the share of removals and lift it."""
    actions: list[PlanAction] = [SkipItem(item_id, reason) for item_id, reason in listing.skipped]
    skipped = {item_id for item_id, _ in listing.skipped}
    listed: set[str] = set()
    removed: list[str] = []

    for obj in listing.changed:
        if obj.cancelled:
            removed.append(obj.item_id)
            aid = obj.appointment_id
            if aid is not None and role.linked and aid in known.expected_pushes and obj.item_id not in known.pushes:
                # our copy, written before a crash kept us from recording it, then cancelled by the user: R7
                actions.append(PushedDeletedRemotely(aid, obj.item_id, cancel=role.mode == SyncMode.TWO_WAY))
            continue
        listed.add(obj.item_id)
        if obj.appointment_id is not None:
            actions.extend(_ours(role, known, obj))
        else:
            actions.extend(_foreign(role, known, obj))

    removed.extend(listing.removed)
    if listing.full:
        removed.extend(known.item_ids() - listed - skipped - set(removed))
    known_ids = known.item_ids()
    gone = [item_id for item_id in dict.fromkeys(removed) if item_id in known_ids]
    removals = [action for item_id in gone for action in _removed(role, known, item_id)]

    unknown = (tuple(i for i in dict.fromkeys(listing.removed) if i not in known_ids)
               if listing.removals_name_occurrences and not listing.full else ())
    relist = (Relist(unknown),) if unknown else ()

    known_count, removing = held_basis or len(known_ids), len(gone)
    if not confirmed_removals and known_count >= MASS_DELETION_MINIMUM and removing * 2 > known_count:
        return Plan((*actions, HoldRemovals(removing, known_count)), held=True)  # the cursor stays: they come back
    return Plan((*actions, *removals, *relist), removed=len(gone))


def _foreign(role: CalendarRole, known: Known, obj: RemoteObject) -> Iterable[PlanAction]:
    """R2-R4 for an event we did not create."""
    blocking = tuple(_with_busy(o, o.busy and role.conflict) for o in obj.occurrences)
    wanted_slots = () if role.imports_appointments else blocking
    if _slot_views(known.slots.get(obj.item_id, ())) != _slot_views(wanted_slots):
        yield SetSlots(obj.item_id, wanted_slots)

    stored = known.imports.get(obj.item_id, {})
    if not role.imports_appointments:
        yield from (DropImport(copy.appointment_id) for copy in stored.values())
        return
    for occurrence in blocking:
        copy = stored.get(occurrence.key)
        if copy is None:
            yield ImportOccurrence(obj.item_id, occurrence)
        elif (copy.start, copy.end, copy.title, copy.busy) != (
            occurrence.start, occurrence.end, occurrence.title, occurrence.busy
        ):
            rescheduled = (copy.start, copy.end) != (occurrence.start, occurrence.end)
            yield UpdateImport(copy.appointment_id, obj.item_id, occurrence, rescheduled)
    listed_keys = {o.key for o in blocking}
    yield from (CancelImport(c.appointment_id, obj.item_id) for k, c in stored.items() if k not in listed_keys)


def _ours(role: CalendarRole, known: Known, obj: RemoteObject) -> Iterable[PlanAction]:
    """R1, R6, R8 for an event carrying our marker."""
    assert obj.appointment_id is not None
    push = known.pushes.get(obj.item_id)
    remote = obj.occurrences[0] if obj.occurrences else None
    remote_print = fingerprint(remote.start, remote.end, remote.title) if remote else ""
    if push is None:
        expected = known.expected_pushes.get(obj.appointment_id)
        if expected is not None:  # written before a crash, never recorded: adopt, never write a second copy
            yield RecordPush(obj.appointment_id, obj.item_id, obj.etag, remote_print or expected)
        return  # R1: our event seen where we did not put it (a shared calendar): never imported
    if not role.linked:  # a copy P4 is about to delete: follow its etag so the delete's precondition holds
        if obj.etag != push.etag or remote_print != push.fingerprint:
            yield RecordPush(push.appointment_id, obj.item_id, obj.etag, remote_print)
        return
    if remote_print == push.fingerprint:
        if obj.etag != push.etag:
            yield RecordPush(push.appointment_id, obj.item_id, obj.etag, push.fingerprint)
        return
    if remote_print == push.local_fingerprint:  # the remote already shows our latest local change
        yield RecordPush(push.appointment_id, obj.item_id, obj.etag, remote_print)
        return
    local_changed = push.local_fingerprint != push.fingerprint
    if role.mode == SyncMode.ONE_WAY or remote is None:
        yield RestorePush(push.appointment_id, obj.item_id, obj.etag, remote, both_changed=local_changed)
        return
    remote_later = obj.updated is not None and obj.updated > push.local_updated
    if local_changed and not remote_later:
        yield RestorePush(push.appointment_id, obj.item_id, obj.etag, remote, both_changed=True)
        return
    yield ApplyRemoteEdit(push.appointment_id, obj.item_id, obj.etag, remote, remote_print, local_changed)


def _removed(role: CalendarRole, known: Known, item_id: str) -> Iterable[PlanAction]:
    """R5 and R7: the item is gone from the calendar (deleted, or cancelled as a whole)."""
    push = known.pushes.get(item_id)
    if push is not None and not role.linked:
        yield ForgetPush(push.appointment_id, item_id)
    elif push is not None:
        yield PushedDeletedRemotely(push.appointment_id, item_id, cancel=role.mode == SyncMode.TWO_WAY)
    if known.slots.get(item_id):
        yield SetSlots(item_id, ())
    for copy in known.imports.get(item_id, {}).values():
        yield CancelImport(copy.appointment_id, item_id) if role.imports_appointments else DropImport(
            copy.appointment_id
        )


def _slot_views(occurrences: Iterable[Occurrence]) -> Counter[tuple[datetime, datetime, bool, str | None, bool]]:
    """What a blocked slot stores: two listings that agree on this need no write (a multiset: titles may be
    missing, so the views cannot be sorted)."""
    return Counter((o.start, o.end, o.busy, o.title, o.all_day) for o in occurrences)


def _with_busy(occurrence: Occurrence, busy: bool) -> Occurrence:
    return occurrence if occurrence.busy == busy else replace(occurrence, busy=busy)


# Push (system -> linked calendar) -----------------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """A booked appointment that should be in the user's linked calendar, with its current fingerprint."""

    appointment_id: str
    fingerprint: str


@dataclass(frozen=True)
class Link:
    """Where a copy we pushed lives now, and what it showed when we wrote it."""

    appointment_id: str
    calendar_id: str
    item_id: str
    etag: str | None
    fingerprint: str


@dataclass(frozen=True)
class CreateRemote:
    appointment_id: str
    calendar_id: str


@dataclass(frozen=True)
class UpdateRemote:
    appointment_id: str
    calendar_id: str
    item_id: str
    etag: str | None


@dataclass(frozen=True)
class DeleteRemote:
    appointment_id: str
    calendar_id: str
    item_id: str
    etag: str | None


PushAction = CreateRemote | UpdateRemote | DeleteRemote


def plan_pushes(linked_calendar_id: str | None, wanted: Iterable[Wanted], links: Iterable[Link]) -> tuple[
    PushAction, ...
]:
    """P1-P5. `wanted` and `links` must cover the same appointments (the engine scopes both to the window),
    or a copy outside that scope would look unwanted and be deleted."""
    wanted_prints = {w.appointment_id: w.fingerprint for w in wanted}
    actions: list[PushAction] = []
    in_linked: set[str] = set()
    for link in links:
        keep = link.calendar_id == linked_calendar_id and link.appointment_id in wanted_prints
        if not keep:  # P3 cancelled, P4 moved to another linked calendar, P5 no linked calendar any more
            actions.append(DeleteRemote(link.appointment_id, link.calendar_id, link.item_id, link.etag))
            continue
        in_linked.add(link.appointment_id)
        if link.fingerprint != wanted_prints[link.appointment_id]:  # P2
            actions.append(UpdateRemote(link.appointment_id, link.calendar_id, link.item_id, link.etag))
    if linked_calendar_id is not None:  # P1 (P5: without a linked calendar nothing is pushed)
        actions.extend(
            CreateRemote(appointment_id, linked_calendar_id)
            for appointment_id in wanted_prints
            if appointment_id not in in_linked
        )
    return tuple(actions)
