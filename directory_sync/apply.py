"""The sync engine: make Beem's members and groups match the directory records (issue 4).

Jobs converge, they don't replay (design.md §3). A job locks the directory record, reads its
*current* document and makes the linked member (or group) match it, then finishes every pending
event of that record up to the version it applied: the newest one ``applied`` with the outcome,
the older ones ``skipped`` (superseded). So duplicated, reordered or retried jobs reach the
same end state, and several queued changes of one user collapse into one apply.

Errors: a refusal the directory must fix (a phone that belongs to another member, an invalid
value) fails the event with a readable reason and rolls the whole apply back. Transient
database errors (deadlock, lock timeout, a lost connection, a unique race) propagate to the
Celery task, which retries with backoff and fails the event when it gives up.

Locks (PostgreSQL; ``select_for_update`` is a no-op on SQLite):
- the record being applied: ``FOR UPDATE``;
- a user's manager record: ``FOR SHARE`` *before* any member row is written, so a manager
  being created right now is seen once its job commits (and the manager's job, which fixes
  up its reports, cannot miss a report created concurrently);
- a group's user records: ``FOR SHARE``, so a user whose member is being created right now is
  either seen by the group job or sees the group itself.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import Count, DateTimeField, F, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone
from django.utils.translation import gettext as _

from members import selectors as member_selectors
from members import services as member_services
from members.models import Department, Group, Member, Organization
from members.phones import InvalidPhoneNumber, phone_to_e164

from .models import ChangeEvent, DirectoryMembership, DirectoryRecord, ReviewItem, SyncSettings

logger = logging.getLogger(__name__)

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

Outcome = ChangeEvent.Outcome
Status = ChangeEvent.Status


class ApplyError(Exception):
    """A permanent refusal: the directory data must change before this record can apply."""


# How long an apply waits for a row lock (PostgreSQL) before giving up and being retried.
LOCK_TIMEOUT = "30s"

# Errors that retrying cannot fix; anything else transient is retried by the task.
PERMANENT_ERRORS = (ApplyError, member_services.MemberError, DataError)


@dataclass
class ApplyResult:
    status: str
    outcome: str = ""
    reason: str = ""


@dataclass
class _Notes:
    """What one apply did beyond the plain outcome, for the event's reason."""

    lines: list[str] = field(default_factory=list)
    held: bool = False
    changed: bool = False

    def add(self, text: str) -> None:
        self.lines.append(text)

    @property
    def text(self) -> str:
        return " ".join(self.lines)


# --- reading the canonical document (shared data contract) -------------------------------


def _typed_value(document: dict, attribute: str, wanted_type: str, key: str = "value") -> str:
    for entry in document.get(attribute) or []:
        if isinstance(entry, dict) and (entry.get("type") or "").lower() == wanted_type:
            value = entry.get(key)
            if value:
                return str(value).strip()
    return ""


def _enterprise(document: dict) -> dict:
    value = document.get(ENTERPRISE)
    return value if isinstance(value, dict) else {}


def document_manager_scim_id(document: dict) -> uuid.UUID | None:
    manager = _enterprise(document).get("manager")
    value = manager.get("value") if isinstance(manager, dict) else None
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def document_department(document: dict) -> str:
    return str(_enterprise(document).get("department") or "").strip()


def _clip(value: str, field_name: str) -> str:
    # The SCIM layer bounds what it stores; clip to the member column so an oversized value
    # from an older record never turns into a database error.
    limit = Member._meta.get_field(field_name).max_length
    return value[:limit]


def document_member_fields(document: dict) -> dict:
    """The directory-owned member fields of a user document (raw phone, email as sent)."""
    name = document.get("name") if isinstance(document.get("name"), dict) else {}
    enterprise = _enterprise(document)
    return {
        "display_name": _clip(str(document.get("displayName") or "").strip(), "display_name"),
        "given_name": _clip(str(name.get("givenName") or "").strip(), "given_name"),
        "family_name": _clip(str(name.get("familyName") or "").strip(), "family_name"),
        "phone": _typed_value(document, "phoneNumbers", "mobile"),
        "email": _typed_value(document, "emails", "work").lower(),
        "job_title": _clip(str(document.get("title") or "").strip(), "job_title"),
        "country": _clip(_typed_value(document, "addresses", "work", "country"), "country"),
        "employee_number": _clip(
            str(enterprise.get("employeeNumber") or "").strip(), "employee_number"
        ),
    }


# --- settings and locks --------------------------------------------------------------------


def _sync_settings(organization_id: int) -> SyncSettings:
    # Read only: an organization that never opened its settings page has the defaults.
    found = SyncSettings.objects.filter(organization_id=organization_id).first()
    return found or SyncSettings(organization_id=organization_id)


def _lock_for_share(record_ids: list[int]) -> None:
    if not record_ids or not connection.features.has_select_for_update:
        return
    table = DirectoryRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR SHARE",  # noqa: S608
            [sorted(record_ids)],
        )


def _transaction_tune() -> None:
    """Per-transaction settings of an apply (PostgreSQL).

    A job must not wait forever behind a stuck lock: past ``LOCK_TIMEOUT`` it fails with
    OperationalError and Celery retries it later with backoff. No WAL flush wait at commit
    either (an fsync, ~6 ms on the bench machine): an apply lost to a PostgreSQL crash is lost
    whole, member and event status together, so the event is still pending and the sweep
    wakes the job again; jobs converge, nothing the directory sent is lost.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, true), "
            "set_config('synchronous_commit', 'off', true)",
            [LOCK_TIMEOUT],
        )


def _record_lock(record_id: int) -> DirectoryRecord | None:
    return (
        DirectoryRecord.objects.select_for_update(of=("self",))
        .select_related("organization", "member", "group")
        .filter(pk=record_id)
        .first()
    )


def _records_set(record: DirectoryRecord, **values) -> None:
    # A queryset update: DirectoryRecord.updated_at is the SCIM meta.lastModified, which an
    # apply must not move.
    DirectoryRecord.objects.filter(pk=record.pk).update(**values)
    for key, value in values.items():
        setattr(record, key, value)


# --- events ------------------------------------------------------------------------------


def _events_finish(*, record_id: int, version: int, status: str, outcome: str, reason: str) -> int:
    """Finish the record's pending events up to ``version``: newest gets the result."""
    pending = list(
        ChangeEvent.objects.filter(
            record_id=record_id, status=Status.PENDING, record_version__lte=version
        )
        .order_by("-record_version", "-id")
        .values_list("pk", flat=True)
    )
    if not pending:
        return 0
    now = timezone.now()
    ChangeEvent.objects.filter(pk=pending[0]).update(
        status=status,
        outcome=outcome,
        reason=reason,
        finished_at=now,
        dispatched_at=_dispatched_at(now),
    )
    if len(pending) > 1:
        ChangeEvent.objects.filter(pk__in=pending[1:]).update(
            status=Status.SKIPPED,
            outcome="",
            reason=_("Superseded: the directory record was applied at version %(version)s.")
            % {"version": version},
            finished_at=now,
        )
    return len(pending)


def _dispatched_at(now):
    # When a job took the event: kept if the sweep had set it, else the finish time.
    return Coalesce(F("dispatched_at"), Value(now, output_field=DateTimeField()))


def _superseded(version: int) -> str:
    return _("Superseded: the directory record was applied at version %(version)s.") % {
        "version": version
    }


def _event_skip(event_id: int, reason: str) -> None:
    ChangeEvent.objects.filter(pk=event_id, status=Status.PENDING).update(
        status=Status.SKIPPED, reason=reason, finished_at=timezone.now()
    )


def change_event_fail(*, event_id: int, reason: str) -> None:
    """Fail a still-pending event with ``reason`` (the task gave up on it)."""
    ChangeEvent.objects.filter(pk=event_id, status=Status.PENDING).update(
        status=Status.FAILED, reason=reason[:2000], finished_at=timezone.now()
    )


def change_event_apply(*, event_id: int) -> ApplyResult | None:
    """Apply the change event ``event_id`` by converging its record (the Celery job's body)."""
    event = ChangeEvent.objects.filter(pk=event_id).only("status", "record_id").first()
    if event is None or event.status != Status.PENDING:
        # Already finished by this job's twin or by a newer version: nothing to do.
        return None
    ChangeEvent.objects.filter(pk=event_id).update(attempts=F("attempts") + 1)
    if event.record_id is None:
        _event_skip(event_id, _("The directory record no longer exists."))
        return ApplyResult(status=Status.SKIPPED)
    return record_apply(record_id=event.record_id, event_id=event_id)


def record_events_fail(*, record_id: int, reason: str) -> int:
    """Fail every pending event of the record (a drain gave up on it)."""
    return ChangeEvent.objects.filter(record_id=record_id, status=Status.PENDING).update(
        status=Status.FAILED, reason=reason[:2000], finished_at=timezone.now()
    )


def record_apply(
    *, record_id: int, event_id: int | None = None, if_stale: bool = False
) -> ApplyResult | None:
    """Converge one directory record now and finish its pending events.

    With ``event_id`` the apply is skipped when that event is no longer pending or when the
    record was already applied at its current version; without it (an administrator's review
    decision) the record is always re-applied, unless ``if_stale`` (a drain): then a record
    already applied at its current version only has its pending events finished as skipped.
    """
    version = None
    try:
        with transaction.atomic():
            _transaction_tune()
            record = _record_lock(record_id)
            if record is None:
                if event_id is not None:
                    _event_skip(event_id, _("The directory record no longer exists."))
                return None
            version = record.version
            if event_id is not None:
                status = (
                    ChangeEvent.objects.filter(pk=event_id).values_list("status", flat=True).first()
                )
                if status != Status.PENDING:
                    return None
                if record.applied_version >= version:
                    _event_skip(
                        event_id,
                        _("Superseded: the directory record was applied at version %(version)s.")
                        % {"version": record.applied_version},
                    )
                    return ApplyResult(status=Status.SKIPPED)
            elif if_stale and record.applied_version >= version:
                _events_finish(
                    record_id=record.pk,
                    version=version,
                    status=Status.SKIPPED,
                    outcome="",
                    reason=_superseded(record.applied_version),
                )
                return ApplyResult(status=Status.SKIPPED)
            sync_settings = _sync_settings(record.organization_id)
            if record.resource_type == DirectoryRecord.ResourceType.GROUP:
                outcome, notes = _group_converge(record)
            else:
                outcome, notes = _user_converge(record, sync_settings)
            _records_set(record, applied_version=version)
            _events_finish(
                record_id=record.pk,
                version=version,
                status=Status.APPLIED,
                outcome=outcome,
                reason=notes.text,
            )
            if record.deleted_at is not None:
                # The tombstone has done its job; events keep scim_id and label (SET_NULL).
                record.delete()
            return ApplyResult(status=Status.APPLIED, outcome=outcome, reason=notes.text)
    except PERMANENT_ERRORS as exc:
        reason = str(exc) or exc.__class__.__name__
        with transaction.atomic():
            record = _record_lock(record_id)
            if record is not None:
                _events_finish(
                    record_id=record.pk,
                    version=version or record.version,
                    status=Status.FAILED,
                    outcome="",
                    reason=reason,
                )
            elif event_id is not None:
                change_event_fail(event_id=event_id, reason=reason)
        logger.info("directory record %s not applied: %s", record_id, reason)
        return ApplyResult(status=Status.FAILED, reason=reason)


# --- draining an organization's outbox (the batch job) -------------------------------------

# Pending events read per batch (oldest first), and records applied per transaction.
DRAIN_BATCH = 500
DRAIN_CHUNK = 100
# pg_try_advisory_lock(class, organization id): one drain per organization at a time.
_DRAIN_LOCK_CLASS = 0x6265
TRANSIENT_ERRORS = (OperationalError, InterfaceError, IntegrityError)


def _drain_lock(organization_id: int) -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_DRAIN_LOCK_CLASS, organization_id])
        return bool(cursor.fetchone()[0])


def _drain_unlock(organization_id: int) -> None:
    if connection.vendor != "postgresql":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_unlock(%s, %s)", [_DRAIN_LOCK_CLASS, organization_id]
            )
    except Exception:  # noqa: BLE001 - a lost connection released the lock already
        logger.warning("could not release the drain lock of organization %s", organization_id)


def events_drain(*, organization_id: int, batch_size: int = DRAIN_BATCH) -> int:
    """Apply every pending change event of the organization; returns how many were finished.

    Events are read oldest first in batches; each record of a batch is applied once, at its
    newest version (which finishes all its pending events up to it). Records are applied in
    chunks of ``DRAIN_CHUNK``, one transaction each. One drain per organization runs at a
    time: a second one (woken meanwhile) returns at once, the running one keeps reading until
    a full pass finds nothing new. Transient errors propagate (the task retries, tagged with
    the record: ``exc.beem_record_id``); a record that cannot apply fails its events.
    """
    if not _drain_lock(organization_id):
        return 0
    try:
        return _events_drain(organization_id=organization_id, batch_size=max(1, batch_size))
    finally:
        _drain_unlock(organization_id)


def _events_drain(*, organization_id: int, batch_size: int) -> int:
    pending = ChangeEvent.objects.filter(organization_id=organization_id, status=Status.PENDING)
    seen: set[int] = set()
    cursor, progressed, finished = 0, False, 0
    while True:
        rows = list(
            pending.filter(pk__gt=cursor).order_by("pk").values_list("pk", "record_id")[:batch_size]
        )
        if not rows:
            # An event committed late with a lower id than the cursor: one more pass from the
            # start, until a pass finds nothing new.
            if cursor == 0 or not progressed:
                return finished
            cursor, progressed = 0, False
            continue
        cursor = rows[-1][0]
        rows = [row for row in rows if row[0] not in seen]
        if not rows:
            continue
        progressed = True
        event_ids = [pk for pk, _record_id in rows]
        seen.update(event_ids)
        ChangeEvent.objects.filter(pk__in=event_ids).update(attempts=F("attempts") + 1)
        orphans = [pk for pk, record_id in rows if record_id is None]
        if orphans:
            ChangeEvent.objects.filter(pk__in=orphans, status=Status.PENDING).update(
                status=Status.SKIPPED,
                reason=_("The directory record no longer exists."),
                finished_at=timezone.now(),
            )
        record_ids = list(dict.fromkeys(r for _pk, r in rows if r is not None))
        for start in range(0, len(record_ids), DRAIN_CHUNK):
            _records_drain(record_ids[start : start + DRAIN_CHUNK])
        finished += len(rows)


def _records_drain(record_ids: list[int]) -> None:
    """Apply a chunk of records: active users in one batched transaction, the rest (groups,
    removals, refusals, anything the batch gave up on) one by one with ``record_apply``."""
    try:
        done = _users_batch_apply(record_ids)
    except PERMANENT_ERRORS:
        # A refusal (a phone another member holds): the chunk rolled back whole; each record
        # applies alone now, and the refused one fails with its own reason.
        done = set()
    except Exception:  # noqa: BLE001 - the careful path below sorts it out (or fails it)
        # A unique race, a lock timeout, bad data: same, and worth a line in the log.
        logger.warning(
            "batched apply of %s records rolled back; applying one by one",
            len(record_ids),
            exc_info=True,
        )
        done = set()
    for record_id in record_ids:
        if record_id not in done:
            _record_drain(record_id)


def _record_drain(record_id: int) -> None:
    try:
        record_apply(record_id=record_id, if_stale=True)
    except TRANSIENT_ERRORS as exc:
        exc.beem_record_id = record_id
        raise
    except Exception as exc:  # noqa: BLE001 - fail this record's events, keep draining
        logger.exception("directory record %s could not be applied", record_id)
        record_events_fail(
            record_id=record_id, reason=f"Unexpected error ({exc.__class__.__name__}): {exc}"
        )


# --- the batched user apply ----------------------------------------------------------------


@dataclass
class _UserPlan:
    record: DirectoryRecord
    document: dict
    fields: dict
    notes: _Notes
    member: Member | None = None
    created: bool = False
    outcome: str = Outcome.UPDATED
    duplicates: list[tuple[Member, str]] = field(default_factory=list)
    departments: _DepartmentPlan | None = None


def _same_member(a: Member | None, b: Member | None) -> bool:
    if a is None or b is None:
        return False
    return a is b or (a.pk is not None and a.pk == b.pk)


class _MemberIndex:
    """The organization's members a batch can meet, by phone and email, with their links.

    Kept current while the batch applies (members it creates or renumbers), so two records
    of one batch see each other as the per-record path would see committed rows.
    """

    def __init__(self, organization_id: int, phones: set[str], emails: set[str]):
        self.by_phone: dict[str, Member] = {}
        self.by_email: dict[str, Member] = {}
        # Member row (pk, or the object while unsaved) -> its (index, key) entries.
        self.entries: dict[object, list[tuple[dict, str]]] = {}
        # id(member) -> the directory record the member is linked to.
        self.linked: dict[int, DirectoryRecord] = {}
        q = Q()
        if phones:
            q |= Q(phone__in=phones)
        if emails:
            q |= Q(email_lower__in=emails)
        if not q:
            return
        found = list(
            Member.objects.filter(organization_id=organization_id)
            .annotate(email_lower=Lower("email"))
            .filter(q)
        )
        for member in found:
            self.add(member)
        if found:
            links = DirectoryRecord.objects.filter(member_id__in=[m.pk for m in found]).only(
                "pk", "member_id", "user_name", "display_name"
            )
            by_pk = {m.pk: m for m in found}
            for record in links:
                self.linked[id(by_pk[record.member_id])] = record

    @staticmethod
    def _row(member: Member) -> object:
        return member.pk if member.pk is not None else id(member)

    def add(self, member: Member) -> None:
        entries = self.entries.setdefault(self._row(member), [])
        if member.phone:
            self.by_phone[member.phone] = member
            entries.append((self.by_phone, member.phone))
        if member.email:
            self.by_email[member.email.lower()] = member
            entries.append((self.by_email, member.email.lower()))

    def replace(self, member: Member) -> None:
        """Index ``member``'s current phone and email (its old ones are dropped); it may be a
        second object for a row already indexed: this one is used from now on."""
        for index, key in self.entries.pop(self._row(member), []):
            value = index.get(key)
            if value is not None and _same_member(value, member):
                if value is not member and id(value) in self.linked:
                    self.linked.setdefault(id(member), self.linked[id(value)])
                del index[key]
        self.add(member)

    def find(self, key: str, value: str) -> Member | None:
        return (self.by_phone if key == "phone" else self.by_email).get(
            value if key == "phone" else value.lower()
        )

    def linked_elsewhere(self, member: Member, record: DirectoryRecord) -> DirectoryRecord | None:
        linked = self.linked.get(id(member))
        return linked if linked is not None and linked.pk != record.pk else None


def _batch_identify(plan: _UserPlan, index: _MemberIndex, identify_by: str) -> Member | None:
    key = "email" if identify_by == SyncSettings.IdentifyBy.EMAIL else "phone"
    value = plan.fields.get(key)
    found = index.find(key, value) if value else None
    if found is None or index.linked_elsewhere(found, plan.record) is not None:
        return None
    return found


def _clash(
    *,
    key: str,
    value: str,
    other: Member,
    linked: DirectoryRecord | None,
    identifier: str,
    fields: dict,
    duplicates: list,
    notes: _Notes,
) -> None:
    """``value`` of attribute ``key`` belongs to ``other`` (linked to directory user
    ``linked``, if any): a refusal when ``key`` identifies members, otherwise the value is not
    synced and ``other`` is a possible duplicate. Shared by the per-record and batch paths."""
    if key == identifier:
        owner = (
            _("directory user %(user)s") % {"user": linked.user_name or linked.display_name}
            if linked
            else _member_label(other)
        )
        raise ApplyError(
            _("%(attribute)s %(value)s already belongs to %(owner)s.")
            % {
                "attribute": _("The mobile number") if key == "phone" else _("The email"),
                "value": value,
                "owner": owner,
            }
        )
    del fields[key]
    duplicates.append((other, key))
    notes.add(
        _("%(attribute)s %(value)s belongs to member %(other)s; not synced (possible duplicate).")
        % {
            "attribute": _("The mobile number") if key == "phone" else _("The email"),
            "value": value,
            "other": _member_label(other),
        }
    )


def _batch_clashes(
    plan: _UserPlan, member: Member | None, index: _MemberIndex, identify_by: str
) -> list[tuple[Member, str]]:
    """``_resolve_clashes`` against the batch's member index (same rules, same reasons)."""
    identifier = "email" if identify_by == SyncSettings.IdentifyBy.EMAIL else "phone"
    fields, notes, record = plan.fields, plan.notes, plan.record
    duplicates = []
    for key in ("phone", "email"):
        value = fields.get(key)
        if not value:
            continue
        other = index.find(key, value)
        if other is None or _same_member(other, member):
            continue
        linked = index.linked_elsewhere(other, record)
        _clash(
            key=key,
            value=value,
            other=other,
            linked=linked,
            identifier=identifier,
            fields=fields,
            duplicates=duplicates,
            notes=notes,
        )
    return duplicates


def _users_batch_apply(record_ids: list[int]) -> set[int]:
    """Converge the chunk's active directory users in one transaction, with a few statements
    per chunk instead of ~25 per user; returns the ids of the records it finished.

    Same rules as ``_user_converge`` (identify, clashes and possible duplicates, manager,
    departments and holds, groups, reports): only the reads are prefetched for the chunk and
    the writes are bulk. Records it does not take (groups, removals, a refusal found while
    reading) are left to ``record_apply``; any error rolls the whole chunk back (the caller
    then applies every record one by one).
    """
    with transaction.atomic():
        _transaction_tune()
        records = list(
            DirectoryRecord.objects.select_for_update(of=("self",))
            .select_related("member")
            .filter(pk__in=record_ids)
            .order_by("pk")
        )
        if not records:
            return set()
        organization_id = records[0].organization_id
        organization = Organization.objects.get(pk=organization_id)
        for record in records:
            record.organization = organization
        sync_settings = _sync_settings(organization_id)
        identify_by = sync_settings.identify_by
        default_country = sync_settings.default_phone_country or None

        current = [r for r in records if r.applied_version >= r.version]
        plans: list[_UserPlan] = []
        for record in records:
            if (
                record.applied_version >= record.version
                or record.resource_type != DirectoryRecord.ResourceType.USER
                or record.deleted_at is not None
                or not record.active
            ):
                continue
            try:
                document = record.document or {}
                notes = _Notes()
                fields = document_member_fields(document)
                _normalise_phone(
                    fields, identify_by=identify_by, default_country=default_country, notes=notes
                )
                _check_email(fields, identify_by=identify_by, notes=notes)
            except Exception:  # noqa: BLE001 - refused or malformed: record_apply says why
                continue
            plans.append(_UserPlan(record=record, document=document, fields=fields, notes=notes))
        if not plans and not current:
            return set()

        # Managers: lock their records before any member row is written (module docstring).
        in_chunk = {r.pk: r for r in records}
        manager_of: dict[int, uuid.UUID] = {}
        for plan in plans:
            scim_id = document_manager_scim_id(plan.document)
            if scim_id is not None and scim_id != plan.record.scim_id:
                manager_of[plan.record.pk] = scim_id
        manager_records: dict[uuid.UUID, int] = {}
        outside_managers: dict[int, Member] = {}
        if manager_of:
            manager_records = {
                scim_id: pk
                for pk, scim_id in DirectoryRecord.objects.filter(
                    organization_id=organization_id,
                    resource_type=DirectoryRecord.ResourceType.USER,
                    scim_id__in=set(manager_of.values()),
                ).values_list("pk", "scim_id")
            }
            outside = [pk for pk in manager_records.values() if pk not in in_chunk]
            _lock_for_share(outside)
            # Read after the lock: a manager job that just committed has set its member.
            outside_managers = {
                r.pk: r.member
                for r in DirectoryRecord.objects.filter(
                    pk__in=outside, deleted_at__isnull=True, member__isnull=False
                ).select_related("member")
            }

        index = _MemberIndex(
            organization_id,
            {p.fields["phone"] for p in plans if p.fields.get("phone")},
            {p.fields["email"] for p in plans if p.fields.get("email")},
        )
        for record in records:
            if record.member is not None:
                index.replace(record.member)
                index.linked[id(record.member)] = record
        departments = _DepartmentCache()
        if sync_settings.department_format != SyncSettings.DepartmentFormat.STRUCTURE_STRING:
            names = {document_department(p.document) for p in plans} - {""}
            departments.named = {name: [] for name in names}
            for department in Department.objects.filter(
                organization_id=organization_id, name__in=names
            ).order_by("id"):
                departments.named[department.name].append(department)

        new_members: list[Member] = []
        for plan in plans:
            record, fields = plan.record, plan.fields
            member = record.member
            if member is None:
                member = _batch_identify(plan, index, identify_by)
                plan.outcome = Outcome.LINKED if member is not None else Outcome.CREATED
            plan.duplicates = _batch_clashes(plan, member, index, identify_by)
            fields["directory_managed"] = True
            plan.departments = _department_plan(
                record, plan.document, sync_settings, plan.notes, departments
            )
            if plan.departments.display is not None:
                fields["department_display"] = plan.departments.display
            if member is None:
                create_fields = {k: v for k, v in fields.items() if v not in ("", None)}
                # _normalise_phone and _check_email validated both (or dropped them).
                member = member_services.members_build(
                    organization=organization,
                    rows=[create_fields],
                    default_country=default_country,
                    validated=True,
                )[0]
                new_members.append(member)
                plan.created = True
                plan.notes.changed = True
            else:
                member, changed = member_services.member_update(
                    member=member, default_country=default_country, check_unique=False, **fields
                )
                plan.notes.changed = plan.notes.changed or bool(changed)
            index.replace(member)
            index.linked[id(member)] = record
            plan.member = member

        member_services.members_insert(members=new_members)
        members_of = {p.record.pk: p.member for p in plans}
        for record in records:
            if record.pk not in members_of:
                members_of[record.pk] = record.member if record.deleted_at is None else None

        # Managers, now that every member of the chunk has its id.
        manager_changed: list[Member] = []
        for plan in plans:
            manager = None
            manager_pk = manager_records.get(manager_of.get(plan.record.pk))
            if manager_pk is not None:
                manager = (
                    members_of.get(manager_pk)
                    if manager_pk in in_chunk
                    else outside_managers.get(manager_pk)
                )
            if _same_member(manager, plan.member):
                manager = None
            if plan.member.manager_id != (manager.pk if manager is not None else None):
                plan.member.manager = manager
                manager_changed.append(plan.member)
                plan.notes.changed = True
        member_services.members_save_fields(members=manager_changed, fields=["manager"])

        for plan in plans:
            plan.record.member = plan.member
            plan.record.applied_version = plan.record.version
        member_services.rows_update(
            model=DirectoryRecord,
            objs=[p.record for p in plans],
            fields=["member", "applied_version"],
        )

        changed = member_services.member_departments_set_many(
            plans=[
                (p.member, p.departments.departments, (p.departments.departments or [None])[0])
                for p in plans
                if p.departments.departments is not None
            ]
        )
        for plan in plans:
            if plan.departments.hold_value:
                _department_hold_member(plan.record, plan.member)
            for other, attribute in plan.duplicates:
                _possible_duplicate_open(plan.record, plan.member, other, attribute)

        wanted: dict[int, set[int]] = {}
        for record_id, group_id in DirectoryMembership.objects.filter(
            user_record_id__in=[p.record.pk for p in plans],
            group_record__deleted_at__isnull=True,
            group_record__group__isnull=False,
        ).values_list("user_record_id", "group_record__group_id"):
            wanted.setdefault(members_of[record_id].pk, set()).add(group_id)
        changed |= member_services.member_groups_add_many(wanted=wanted)

        _reports_fix_many(organization_id, {p.record.scim_id: p.member for p in plans})

        results: dict[int, tuple[int, str, str, str]] = {}
        for plan in plans:
            outcome = plan.outcome
            if outcome == Outcome.UPDATED:
                if plan.notes.held:
                    outcome = Outcome.HELD
                elif not (plan.notes.changed or plan.member.pk in changed):
                    outcome = Outcome.UNCHANGED
            results[plan.record.pk] = (
                plan.record.version,
                Status.APPLIED,
                outcome,
                plan.notes.text,
            )
        for record in current:
            results[record.pk] = (
                record.version,
                Status.SKIPPED,
                "",
                _superseded(record.applied_version),
            )
        _events_finish_many(results)
        return set(results)


def _reports_fix_many(organization_id: int, managers: dict[uuid.UUID, Member]) -> None:
    """``_reports_fix`` for a chunk: members whose directory manager is one of ``managers``."""
    if not managers:
        return
    reports = DirectoryRecord.objects.filter(
        organization_id=organization_id,
        resource_type=DirectoryRecord.ResourceType.USER,
        manager_scim_id__in=list(managers),
        deleted_at__isnull=True,
        member__isnull=False,
    ).select_related("member")
    fix = []
    for report in reports:
        manager = managers[report.manager_scim_id]
        if report.member_id == manager.pk or report.member.manager_id == manager.pk:
            continue
        report.member.manager = manager
        fix.append(report.member)
    member_services.members_save_fields(members=fix, fields=["manager"])


def _events_finish_many(results: dict[int, tuple[int, str, str, str]]) -> None:
    """``_events_finish`` for many records: ``results`` maps a record id to (version, status,
    outcome, reason). One read, one update per distinct result."""
    if not results:
        return
    rows = (
        ChangeEvent.objects.filter(record_id__in=list(results), status=Status.PENDING)
        .order_by("record_id", "-record_version", "-id")
        .values_list("pk", "record_id", "record_version")
    )
    updates: dict[tuple[str, str, str], list[int]] = {}
    newest_done: set[int] = set()
    for pk, record_id, record_version in rows:
        version, status, outcome, reason = results[record_id]
        if record_version > version:
            continue
        if record_id in newest_done:
            key = (Status.SKIPPED, "", _superseded(version))
        else:
            newest_done.add(record_id)
            key = (status, outcome, reason)
        updates.setdefault(key, []).append(pk)
    now = timezone.now()
    for (status, outcome, reason), pks in updates.items():
        ChangeEvent.objects.filter(pk__in=pks).update(
            status=status,
            outcome=outcome,
            reason=reason,
            finished_at=now,
            dispatched_at=_dispatched_at(now),
        )


# --- users ---------------------------------------------------------------------------------


def _member_linked_elsewhere(member: Member, record: DirectoryRecord) -> DirectoryRecord | None:
    return DirectoryRecord.objects.filter(member=member).exclude(pk=record.pk).first()


def _member_label(member: Member) -> str:
    return member.full_name or member.email or member.phone or f"#{member.pk}"


def _user_converge(record: DirectoryRecord, sync_settings: SyncSettings) -> tuple[str, _Notes]:
    notes = _Notes()
    if record.deleted_at is not None or not record.active:
        return _user_remove(record, sync_settings, notes), notes

    document = record.document or {}
    # Lock the manager's record before touching any member row (see the module docstring).
    manager_member = _manager_member(record, document)
    fields = document_member_fields(document)
    identify_by = sync_settings.identify_by
    default_country = sync_settings.default_phone_country or None
    _normalise_phone(fields, identify_by=identify_by, default_country=default_country, notes=notes)
    _check_email(fields, identify_by=identify_by, notes=notes)

    member = record.member
    outcome = Outcome.UPDATED
    if member is None:
        member = _identify(record, fields, identify_by=identify_by)
        outcome = Outcome.LINKED if member is not None else Outcome.CREATED
    duplicates = _resolve_clashes(record, member, fields, identify_by=identify_by, notes=notes)
    fields["manager"] = manager_member if manager_member != member else None
    fields["directory_managed"] = True

    department_plan = _department_plan(record, document, sync_settings, notes)
    if department_plan.display is not None:
        fields["department_display"] = department_plan.display

    if member is None:
        create_fields = {k: v for k, v in fields.items() if v not in ("", None) or k == "manager"}
        member = member_services.member_create(
            organization=record.organization, default_country=default_country, **create_fields
        )
        notes.changed = True
    else:
        member, changed = member_services.member_update(
            member=member, default_country=default_country, **fields
        )
        notes.changed = notes.changed or bool(changed)
    if record.member_id != member.pk:
        _records_set(record, member=member)

    if department_plan.departments is not None:
        primary = department_plan.departments[0] if department_plan.departments else None
        if member_services.member_departments_set(
            member=member, departments=department_plan.departments, primary=primary
        ):
            notes.changed = True
    if department_plan.hold_value:
        _department_hold_member(record, member)

    for other, attribute in duplicates:
        _possible_duplicate_open(record, member, other, attribute)

    if member_services.member_groups_add(member=member, group_ids=_user_group_ids(record)):
        notes.changed = True
    _reports_fix(record, member)

    if outcome == Outcome.UPDATED:
        if notes.held:
            outcome = Outcome.HELD
        elif not notes.changed:
            outcome = Outcome.UNCHANGED
    return outcome, notes


def _user_remove(record: DirectoryRecord, sync_settings: SyncSettings, notes: _Notes) -> str:
    if record.member_id is None:
        return Outcome.UNCHANGED
    rule = (
        member_services.DeletionRule.TO_MANAGER
        if sync_settings.deletion_rule == SyncSettings.DeletionRule.DELETE_TRANSFER_TO_MANAGER
        else member_services.DeletionRule.UNASSIGN
    )
    deletion = member_services.member_delete(
        member=record.member, rule=rule, actor_label="directory"
    )
    _records_set(record, member=None)
    if deletion.resources_unassigned:
        notes.add(
            _("%(count)s resources are unassigned and listed for reassignment.")
            % {"count": deletion.resources_unassigned}
        )
    if deletion.resources_to_manager:
        notes.add(
            _("%(count)s resources were given to the manager.")
            % {"count": deletion.resources_to_manager}
        )
    return Outcome.DELETED


def _manager_member(record: DirectoryRecord, document: dict) -> Member | None:
    manager_scim_id = document_manager_scim_id(document)
    if manager_scim_id is None or manager_scim_id == record.scim_id:
        return None
    manager_record = (
        DirectoryRecord.objects.filter(
            organization_id=record.organization_id,
            resource_type=DirectoryRecord.ResourceType.USER,
            scim_id=manager_scim_id,
        )
        .only("pk")
        .first()
    )
    if manager_record is None:
        return None
    _lock_for_share([manager_record.pk])
    # Re-read after the lock: a manager job that just committed has set its member.
    return Member.objects.filter(
        directory_record__pk=manager_record.pk, directory_record__deleted_at=None
    ).first()


def _normalise_phone(
    fields: dict, *, identify_by: str, default_country: str | None, notes: _Notes
) -> None:
    raw = fields["phone"]
    if not raw:
        return
    try:
        fields["phone"] = phone_to_e164(raw, default_country=default_country)
    except InvalidPhoneNumber as exc:
        if identify_by == SyncSettings.IdentifyBy.PHONE:
            raise ApplyError(
                _("The mobile number cannot be used to identify the member: %(error)s")
                % {"error": exc}
            )
        # Not the identifier: keep the member's current number and say why.
        del fields["phone"]
        notes.add(_("Mobile number not synced: %(error)s") % {"error": exc})


def _check_email(fields: dict, *, identify_by: str, notes: _Notes) -> None:
    value = fields["email"]
    if not value:
        return
    try:
        validate_email(value)
    except DjangoValidationError:
        message = _("%(value)s is not a valid email address.") % {"value": value}
        if identify_by == SyncSettings.IdentifyBy.EMAIL:
            raise ApplyError(message)
        # Not the identifier: keep the member's current email and say why.
        del fields["email"]
        notes.add(_("Email not synced: %(error)s") % {"error": message})


def _identify(record: DirectoryRecord, fields: dict, *, identify_by: str) -> Member | None:
    """The existing, not yet linked member the directory user is, by the configured key."""
    organization = record.organization
    if identify_by == SyncSettings.IdentifyBy.EMAIL:
        value = fields.get("email")
        found = (
            member_selectors.member_find_by_email(organization=organization, email=value)
            if value
            else None
        )
    else:
        value = fields.get("phone")
        found = (
            member_selectors.member_find_by_phone(organization=organization, phone=value)
            if value
            else None
        )
    if found is None or _member_linked_elsewhere(found, record) is not None:
        # Linked to another directory user: never steal it; the clash check explains.
        return None
    return found


def _resolve_clashes(
    record: DirectoryRecord,
    member: Member | None,
    fields: dict,
    *,
    identify_by: str,
    notes: _Notes,
) -> list[tuple[Member, str]]:
    """Check phone and email against other members; returns likely duplicates to review.

    The identifying attribute belonging to someone else is a refusal (the event fails with the
    reason). The other attribute belonging to someone else is the product document's
    "mismatch" case: the member is still created or updated, without that value, and a
    possible-duplicate review item names both members.
    """
    identifier = "email" if identify_by == SyncSettings.IdentifyBy.EMAIL else "phone"
    others = Member.objects.filter(organization_id=record.organization_id)
    if member is not None:
        others = others.exclude(pk=member.pk)
    duplicates = []
    for key in ("phone", "email"):
        value = fields.get(key)
        if not value:
            continue
        lookup = {"phone": value} if key == "phone" else {"email__iexact": value}
        other = others.filter(**lookup).first()
        if other is None:
            continue
        linked = _member_linked_elsewhere(other, record)
        _clash(
            key=key,
            value=value,
            other=other,
            linked=linked,
            identifier=identifier,
            fields=fields,
            duplicates=duplicates,
            notes=notes,
        )
    return duplicates


def _possible_duplicate_open(
    record: DirectoryRecord, member: Member, other: Member, attribute: str
) -> None:
    # One item per pair, whatever its status: "keep both" must stay decided.
    exists = ReviewItem.objects.filter(
        kind=ReviewItem.Kind.POSSIBLE_DUPLICATE, record=record, member=member, other_member=other
    ).exists()
    if exists:
        return
    ReviewItem.objects.create(
        organization_id=record.organization_id,
        kind=ReviewItem.Kind.POSSIBLE_DUPLICATE,
        record=record,
        member=member,
        other_member=other,
        detail=_(
            "Directory user %(user)s was synced to member %(member)s, but member %(other)s "
            "already has its %(attribute)s. They may be the same person."
        )
        % {
            "user": record.user_name,
            "member": _member_label(member),
            "other": _member_label(other),
            "attribute": _("mobile number") if attribute == "phone" else _("email"),
        },
    )


def _user_group_ids(record: DirectoryRecord) -> list[int]:
    return list(
        DirectoryMembership.objects.filter(
            user_record=record,
            group_record__deleted_at__isnull=True,
            group_record__group__isnull=False,
        )
        .order_by("group_record__group_id")
        .values_list("group_record__group_id", flat=True)
    )


def _reports_fix(record: DirectoryRecord, member: Member) -> None:
    """Link the members whose directory manager is this record (manager linked later)."""
    reports = (
        DirectoryRecord.objects.filter(
            organization_id=record.organization_id,
            resource_type=DirectoryRecord.ResourceType.USER,
            manager_scim_id=record.scim_id,
            deleted_at__isnull=True,
            member__isnull=False,
        )
        .exclude(member=member)
        .filter(Q(member__manager__isnull=True) | ~Q(member__manager=member))
        .select_related("member")
    )
    for report in reports:
        member_services.member_update(member=report.member, manager=member)


# --- departments ---------------------------------------------------------------------------


@dataclass
class _DepartmentCache:
    """Departments read once for a batch: plain names (all matches, by id) and paths."""

    named: dict[str, list[Department]] = field(default_factory=dict)
    paths: dict[tuple[str, ...], Department] = field(default_factory=dict)


@dataclass
class _DepartmentPlan:
    # None: leave the member's departments as they are (held for the administrator).
    departments: list[Department] | None = None
    display: str | None = None
    hold_value: str = ""


def _department_plan(
    record: DirectoryRecord,
    document: dict,
    sync_settings: SyncSettings,
    notes: _Notes,
    cache: _DepartmentCache | None = None,
) -> _DepartmentPlan:
    value = document_department(document)
    organization = record.organization
    if sync_settings.department_format == SyncSettings.DepartmentFormat.STRUCTURE_STRING:
        delimiter = sync_settings.department_delimiter or "/"
        parts = [p.strip() for p in value.split(delimiter) if p.strip()]
        departments = []
        if parts:
            leaf = cache.paths.get(tuple(parts)) if cache is not None else None
            if leaf is None:
                leaf = member_services.department_path_ensure(organization=organization, path=parts)
                if cache is not None:
                    cache.paths[tuple(parts)] = leaf
            departments = [leaf]
        return _DepartmentPlan(
            departments=departments, display=Member.DepartmentDisplay.CURRENT_ONLY
        )
    if not value:
        return _DepartmentPlan(departments=[])
    if cache is not None and value in cache.named:
        matches = cache.named[value]
    else:
        matches = member_selectors.departments_named(organization=organization, name=value)
    if not matches:
        # Plain names come from a flat directory attribute: a name Beem does not know yet is
        # created at the root, where the administrator can move it (README "How sync treats
        # your members").
        created = member_services.department_get_or_create(organization=organization, name=value)
        if cache is not None:
            cache.named[value] = [created]
        return _DepartmentPlan(departments=[created])
    if len(matches) == 1:
        return _DepartmentPlan(departments=matches)
    policy = sync_settings.duplicate_department_policy
    if policy == SyncSettings.DuplicateDepartmentPolicy.FIRST_MATCH:
        return _DepartmentPlan(departments=matches[:1])
    if policy == SyncSettings.DuplicateDepartmentPolicy.ALL_MATCHES:
        return _DepartmentPlan(departments=matches)
    return _department_hold(record, value, matches, notes)


def _department_hold(
    record: DirectoryRecord, value: str, matches: list[Department], notes: _Notes
) -> _DepartmentPlan:
    item = (
        ReviewItem.objects.filter(record=record, kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT)
        .select_related("chosen_department")
        .order_by("-id")
        .first()
    )
    if item is not None and item.directory_value == value and item.chosen_department_id:
        # The administrator's pick stays until the directory value changes.
        return _DepartmentPlan(departments=[item.chosen_department])
    if item is not None and item.directory_value != value and item.status == ReviewItem.Status.OPEN:
        item.status = ReviewItem.Status.RESOLVED
        item.resolution = "superseded"
        item.resolved_at = timezone.now()
        item.save(update_fields=["status", "resolution", "resolved_at"])
    if item is None or item.directory_value != value:
        item = ReviewItem.objects.create(
            organization_id=record.organization_id,
            kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT,
            record=record,
            member=record.member,
            directory_value=value,
            detail=_(
                "Department “%(name)s” matches %(count)s departments; choose the one for "
                "directory user %(user)s."
            )
            % {"name": value, "count": len(matches), "user": record.user_name},
        )
    elif item.status != ReviewItem.Status.OPEN:
        # The pick was cleared (its department was deleted): ask again.
        item.status = ReviewItem.Status.OPEN
        item.resolution = ""
        item.resolved_at = None
        item.save(update_fields=["status", "resolution", "resolved_at"])
    item.candidates.set(matches)
    notes.held = True
    notes.add(
        _("Department “%(name)s” matches %(count)s departments: held for an administrator.")
        % {"name": value, "count": len(matches)}
    )
    return _DepartmentPlan(departments=None, hold_value=value)


def _department_hold_member(record: DirectoryRecord, member: Member) -> None:
    # The hold may have been opened before the member existed (first apply).
    ReviewItem.objects.filter(
        record=record, kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT, member__isnull=True
    ).update(member=member)


# --- groups --------------------------------------------------------------------------------


def _group_converge(record: DirectoryRecord) -> tuple[str, _Notes]:
    notes = _Notes()
    if record.deleted_at is not None:
        if record.group_id is None:
            return Outcome.UNCHANGED, notes
        member_services.group_delete(group=record.group)
        _records_set(record, group=None)
        return Outcome.GROUP_DELETED, notes
    name = _clip_group_name(str((record.document or {}).get("displayName") or record.display_name))
    group = record.group
    if group is None:
        group = member_services.group_create(
            organization=record.organization, name=name, directory_managed=True
        )
        _records_set(record, group=group)
    else:
        member_services.group_rename(group=group, name=name)
    user_record_ids = list(
        DirectoryMembership.objects.filter(group_record=record).values_list(
            "user_record_id", flat=True
        )
    )
    # Wait for user jobs in flight so their new members are seen (module docstring).
    _lock_for_share(user_record_ids)
    member_ids = DirectoryRecord.objects.filter(
        pk__in=user_record_ids, deleted_at__isnull=True, member__isnull=False
    ).values_list("member_id", flat=True)
    added, removed = member_services.group_members_set(group=group, member_ids=member_ids)
    notes.add(
        _("%(added)s members added, %(removed)s removed.") % {"added": added, "removed": removed}
    )
    return Outcome.GROUP_SYNCED, notes


def _clip_group_name(name: str) -> str:
    return name.strip()[: Group._meta.get_field("name").max_length]


# --- comparison (tests, reconcile) ---------------------------------------------------------


def record_member_differences(record: DirectoryRecord) -> list[str]:
    """How the Beem side differs from the directory record; empty when they match.

    Shared by the engine's tests and the operators' reconcile command. Values the engine
    deliberately leaves alone are not differences: an identifier another member holds (a
    possible duplicate), an invalid mobile when phone is not the identifier, and a department
    held for an administrator.
    """
    record = (
        DirectoryRecord.objects.select_related("member", "group", "organization")
        .filter(pk=record.pk)
        .first()
    )
    if record is None:
        return []
    if record.resource_type == DirectoryRecord.ResourceType.GROUP:
        return _group_differences(record)
    sync_settings = _sync_settings(record.organization_id)
    member = record.member
    if record.deleted_at is not None or not record.active:
        return [f"member {member.pk} exists for an inactive directory user"] if member else []
    if member is None:
        return ["no member for an active directory user"]
    document = record.document or {}
    expected = document_member_fields(document)
    differences = []
    default_country = sync_settings.default_phone_country or None
    try:
        expected["phone"] = (
            phone_to_e164(expected["phone"], default_country=default_country)
            if expected["phone"]
            else None
        )
    except InvalidPhoneNumber:
        expected.pop("phone")
    expected["email"] = expected["email"] or None
    others = Member.objects.filter(organization_id=record.organization_id).exclude(pk=member.pk)
    for key, value in expected.items():
        actual = getattr(member, key)
        if key in ("phone", "email") and value:
            lookup = {"phone": value} if key == "phone" else {"email__iexact": value}
            if actual != value and others.filter(**lookup).exists():
                continue
        if (actual or "") != (value or ""):
            differences.append(f"{key}: member has {actual!r}, directory has {value!r}")
    if not member.directory_managed:
        differences.append("member is not marked as managed by directory sync")
    manager_scim_id = document_manager_scim_id(document)
    expected_manager = None
    if manager_scim_id and manager_scim_id != record.scim_id:
        expected_manager = (
            DirectoryRecord.objects.filter(
                organization_id=record.organization_id, scim_id=manager_scim_id
            )
            .values_list("member_id", flat=True)
            .first()
        )
    if member.manager_id != expected_manager:
        differences.append(
            f"manager: member has {member.manager_id!r}, directory has {expected_manager!r}"
        )
    differences += _department_differences(record, member, document, sync_settings)
    group_ids = set(_user_group_ids(record))
    actual_groups = set(
        member.group_links.filter(group__directory_managed=True).values_list("group_id", flat=True)
    )
    if group_ids - actual_groups:
        differences.append(f"groups missing: {sorted(group_ids - actual_groups)}")
    return differences


def _department_differences(
    record: DirectoryRecord, member: Member, document: dict, sync_settings: SyncSettings
) -> list[str]:
    value = document_department(document)
    links = list(member.department_links.select_related("department"))
    if sync_settings.department_format == SyncSettings.DepartmentFormat.STRUCTURE_STRING:
        delimiter = sync_settings.department_delimiter or "/"
        parts = [p.strip() for p in value.split(delimiter) if p.strip()]
        paths = [
            [d.name for d in member_selectors.department_path(link.department)] for link in links
        ]
        expected = [parts] if parts else []
        if paths != expected:
            return [f"departments: member has {paths!r}, directory has {expected!r}"]
        if parts and member.department_display != Member.DepartmentDisplay.CURRENT_ONLY:
            return ["department display is not 'current department only'"]
        return []
    names = sorted(link.department.name for link in links)
    if not value:
        return [f"departments: member has {names!r}, directory has none"] if names else []
    held = ReviewItem.objects.filter(
        record=record,
        kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT,
        directory_value=value,
        status=ReviewItem.Status.OPEN,
    ).exists()
    if held or (names and set(names) == {value}):
        return []
    return [f"departments: member has {names!r}, directory has {value!r}"]


def _group_differences(record: DirectoryRecord) -> list[str]:
    if record.deleted_at is not None:
        return (
            [f"group {record.group_id} exists for a deleted directory group"]
            if record.group_id
            else []
        )
    group = record.group
    if group is None:
        return ["no group for the directory group"]
    differences = []
    name = _clip_group_name(str((record.document or {}).get("displayName") or record.display_name))
    if group.name != name:
        differences.append(f"name: group has {group.name!r}, directory has {name!r}")
    expected = set(
        DirectoryRecord.objects.filter(
            group_links__group_record=record, deleted_at__isnull=True, member__isnull=False
        ).values_list("member_id", flat=True)
    )
    actual = set(group.memberships.values_list("member_id", flat=True))
    if expected != actual:
        differences.append(
            f"members: missing {sorted(expected - actual)}, extra {sorted(actual - expected)}"
        )
    return differences


# --- runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    created: int
    linked: int
    updated: int
    unchanged: int
    held: int
    deleted: int
    groups_synced: int
    groups_deleted: int
    failed: int
    skipped: int
    pending: int
    # The failed events with their reasons (a lazy queryset: page it in the UI).
    failures: QuerySet[ChangeEvent]


def run_summary(run) -> RunSummary:
    """What a provisioning run did, counted over its events in one query."""
    applied = Q(status=Status.APPLIED)
    counts = ChangeEvent.objects.filter(run=run).aggregate(
        created=Count("id", filter=applied & Q(outcome=Outcome.CREATED)),
        linked=Count("id", filter=applied & Q(outcome=Outcome.LINKED)),
        updated=Count("id", filter=applied & Q(outcome=Outcome.UPDATED)),
        unchanged=Count("id", filter=applied & Q(outcome=Outcome.UNCHANGED)),
        held=Count("id", filter=applied & Q(outcome=Outcome.HELD)),
        deleted=Count("id", filter=applied & Q(outcome=Outcome.DELETED)),
        groups_synced=Count("id", filter=applied & Q(outcome=Outcome.GROUP_SYNCED)),
        groups_deleted=Count("id", filter=applied & Q(outcome=Outcome.GROUP_DELETED)),
        failed=Count("id", filter=Q(status=Status.FAILED)),
        skipped=Count("id", filter=Q(status=Status.SKIPPED)),
        pending=Count("id", filter=Q(status=Status.PENDING)),
    )
    failures = (
        ChangeEvent.objects.filter(run=run, status=Status.FAILED)
        .only("id", "label", "kind", "reason", "scim_id", "finished_at")
        .order_by("id")
    )
    return RunSummary(failures=failures, **counts)
