"""The sync engine: make Beem's members and groups match the directory records (issue 4).

Jobs converge, they don't replay (design.md §3). A job locks the directory record, reads its
*current* document and makes the linked member (or group) match it, then finishes every pending
event of that record up to the version it applied: the newest one ``applied`` with the outcome,
the older ones ``skipped`` (superseded). So duplicated, reordered or retried jobs reach the
same end state, and several queued changes of one user collapse into one apply.

Users have one apply path, a batch (``_users_apply``; one record is a batch of one), so every
rule (identify, identifier clashes, possible duplicates, manager, departments, groups) lives
once. Failed events of a record are resolved when a newer version of it applies or it is
deleted (skipped as superseded), or when it applies later at the same version (applied).

Errors: a refusal the directory must fix (a phone that belongs to another member, an invalid
value) fails that record's event with a readable reason and writes nothing of that record.
Transient database errors (deadlock, lock timeout, a lost connection, a unique race) propagate
to the Celery task, which retries with backoff and fails the events when it gives up.

Locks (PostgreSQL; ``select_for_update`` is a no-op on SQLite):
- the records being applied: ``FOR UPDATE`` (a batch's records in id order, then the records
  it pulls in because they hold or wait for an identifier it moves);
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
from .scim.documents import work_email

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
        "email": (work_email(document) or "").strip(),
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
    A user is applied as a batch of one (``_users_apply``).
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
                    _event_skip(event_id, _superseded(record.applied_version))
                    return ApplyResult(status=Status.SKIPPED)
            elif if_stale and record.applied_version >= version:
                _events_finish_many(
                    {record.pk: (version, Status.SKIPPED, "", _superseded(record.applied_version))}
                )
                return ApplyResult(status=Status.SKIPPED)
            sync_settings = _sync_settings(record.organization_id)
            if record.resource_type == DirectoryRecord.ResourceType.USER:
                results = _users_apply(
                    [record],
                    organization=record.organization,
                    sync_settings=sync_settings,
                    force=True,
                )
                _version, status, outcome, reason = results[record_id]
                return ApplyResult(status=status, outcome=outcome, reason=reason)
            outcome, notes = _group_converge(record)
            _records_set(record, applied_version=version)
            _events_finish_many({record.pk: (version, Status.APPLIED, outcome, notes.text)})
            if record.deleted_at is not None:
                # The tombstone has done its job; events keep scim_id and label (SET_NULL).
                record.delete()
            return ApplyResult(status=Status.APPLIED, outcome=outcome, reason=notes.text)
    except PERMANENT_ERRORS as exc:
        reason = str(exc) or exc.__class__.__name__
        with transaction.atomic():
            record = _record_lock(record_id)
            if record is not None:
                _events_finish_many(
                    {record.pk: (version or record.version, Status.FAILED, "", reason)}
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
    """Apply a chunk of records: its users in one batched transaction, the rest (groups, and
    every record of a batch that rolled back) one by one with ``record_apply``."""
    try:
        done = _users_batch_apply(record_ids)
    except PERMANENT_ERRORS:
        # Bad data the planning did not foresee: the chunk rolled back whole; each record
        # applies alone now, and the bad one fails with its own reason.
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


# --- users: one path, a batch (applying one record is a batch of one) ----------------------
#
# Identifiers (mobile number, email) are unique per organization and move between users: two
# users swap numbers, or a number rotates A→B→C→A over several PATCHes. A value another member
# holds is judged against the *directory's* state, not the members' current values: when the
# holder's directory record (its current document) no longer wants the value, that record is
# applied in the same transaction (pulled into the batch) and gives it up; members whose value
# moves to another member of the batch are cleared first, then set (the unique constraints are
# partial indexes, which PostgreSQL cannot defer). A record that failed because a value was
# taken is applied again (pulled) as soon as a batch frees that value. What remains a refusal
# (or, for the attribute that does not identify members, a possible duplicate): the value
# belongs to a member created in Beem, or to a directory user whose current document holds it.

_KEYS = ("phone", "email")


@dataclass
class _UserPlan:
    record: DirectoryRecord
    document: dict
    # The directory's member fields; "phone"/"email" normalised, or absent when not synced.
    fields: dict
    notes: _Notes
    member: Member | None = None
    # An inactive or deleted user: its member is deleted.
    remove: bool = False
    # A refusal known from the document alone (invalid identifier).
    refused: str = ""
    # The refusal of this apply (``refused`` or a clash) and the values not synced: key ->
    # the owner of the value (a Member, or the plan of the directory user that keeps it).
    error: str = ""
    rejected: dict[str, object] = field(default_factory=dict)
    created: bool = False
    outcome: str = Outcome.UPDATED
    departments: _DepartmentPlan | None = None

    def current(self, key: str) -> str | None:
        value = getattr(self.member, key) if self.member is not None else None
        return (value.lower() if key == "email" else value) if value else None

    def desired(self, key: str) -> str | None:
        if self.remove:
            return None
        if key not in self.fields:
            return self.current(key)
        return self.fields[key] or None

    def final(self, key: str) -> str | None:
        """The value the member ends with if this plan is applied as judged so far."""
        if self.remove:
            return None
        if self.error or key in self.rejected:
            return self.current(key)
        return self.desired(key)

    def judged_reset(self) -> None:
        self.error, self.rejected = self.refused, {}
        self.member, self.outcome = self.record.member, Outcome.UPDATED


def _user_plan(record: DirectoryRecord, sync_settings: SyncSettings) -> _UserPlan:
    """Read what the directory wants for ``record`` (no write)."""
    document = record.document or {}
    notes = _Notes()
    if record.deleted_at is not None or not record.active:
        return _UserPlan(record, document, {}, notes, member=record.member, remove=True)
    fields = document_member_fields(document)
    plan = _UserPlan(record, document, fields, notes, member=record.member)
    try:
        _normalise_phone(
            fields,
            identify_by=sync_settings.identify_by,
            default_country=sync_settings.default_phone_country or None,
            notes=notes,
        )
        _check_email(fields, identify_by=sync_settings.identify_by, notes=notes)
    except ApplyError as exc:
        plan.refused = plan.error = str(exc)
    return plan


def _identifier(sync_settings: SyncSettings) -> str:
    return "email" if sync_settings.identify_by == SyncSettings.IdentifyBy.EMAIL else "phone"


def _attribute_label(key: str) -> str:
    return _("The mobile number") if key == "phone" else _("The email")


def _owner_member(owner: object) -> Member | None:
    return owner.member if isinstance(owner, _UserPlan) else owner


def _owner_member_label(owner: object) -> str:
    member = _owner_member(owner)
    if member is not None:
        return _member_label(member)
    fields = owner.fields
    name = fields.get("display_name") or " ".join(
        p for p in (fields.get("given_name"), fields.get("family_name")) if p
    )
    return name or fields.get("email") or fields.get("phone") or owner.record.user_name or ""


@dataclass
class _Holders:
    """The members holding values a batch wants, and the directory records they are linked to
    (records outside the batch only)."""

    members: dict[tuple[str, str], Member]
    records: dict[int, DirectoryRecord]


def _holders_read(organization_id: int, plans: list[_UserPlan]) -> _Holders:
    wanted = {key: {p.desired(key) for p in plans} - {None} for key in _KEYS}
    q = Q()
    if wanted["phone"]:
        q |= Q(phone__in=wanted["phone"])
    if wanted["email"]:
        q |= Q(email_lower__in=wanted["email"])
    if not q:
        return _Holders({}, {})
    planned = {p.member.pk: p.member for p in plans if p.member is not None}
    holders: dict[tuple[str, str], Member] = {}
    for member in (
        Member.objects.filter(organization_id=organization_id)
        .annotate(email_lower=Lower("email"))
        .filter(q)
    ):
        member = planned.get(member.pk, member)
        if member.phone in wanted["phone"]:
            holders[("phone", member.phone)] = member
        if member.email and member.email.lower() in wanted["email"]:
            holders[("email", member.email.lower())] = member
    outside = {m.pk for m in holders.values()} - set(planned)
    records = (
        {r.member_id: r for r in DirectoryRecord.objects.filter(member_id__in=outside)}
        if outside
        else {}
    )
    return _Holders(holders, records)


def _refusal(key: str, value: str, owner: object, holders: _Holders) -> str:
    if isinstance(owner, _UserPlan):
        record = owner.record
    else:
        record = holders.records.get(owner.pk)
    label = (
        _("directory user %(user)s") % {"user": record.user_name or record.display_name}
        if record is not None
        else _member_label(owner)
    )
    return _("%(attribute)s %(value)s already belongs to %(owner)s.") % {
        "attribute": _attribute_label(key),
        "value": value,
        "owner": label,
    }


def _users_judge(plans: list[_UserPlan], holders: _Holders, identifier: str) -> None:
    """Decide which plans may take their identifiers (see the section comment).

    A value wanted by several plans goes to the one whose member holds it, else to the first
    (record order); a value held by a member outside the batch stays with it. The loser is
    refused when the value identifies members, else keeps its own value (a possible
    duplicate). Losing reverts a plan to its member's values, which may decide another
    conflict: repeat until nothing changes.
    """
    for plan in plans:
        plan.judged_reset()
    linked = {p.member.pk for p in plans if p.member is not None}
    linked |= set(holders.records)
    # Identify: a new directory user takes the member created in Beem with its identifier.
    for plan in plans:
        if plan.member is not None or plan.remove or plan.error:
            continue
        value = plan.fields.get(identifier)
        found = holders.members.get((identifier, value)) if value else None
        if found is not None and found.pk not in linked:
            plan.member, plan.outcome = found, Outcome.LINKED
            linked.add(found.pk)
    planned = {p.member.pk for p in plans if p.member is not None}
    while True:
        claims: dict[tuple[str, str], list[_UserPlan]] = {}
        for plan in plans:
            for key in _KEYS:
                value = plan.final(key)
                if value:
                    claims.setdefault((key, value), []).append(plan)
        settled, open_ = [], []
        for (key, value), claimants in claims.items():
            holder = holders.members.get((key, value))
            if holder is not None and holder.pk not in planned:
                settled.append((key, value, holder, claimants))
            elif len(claimants) > 1:
                owner = next((p for p in claimants if p.current(key) == value), None)
                target = settled if owner is not None else open_
                owner = owner or claimants[0]
                target.append((key, value, owner, [p for p in claimants if p is not owner]))
        # Owners that cannot lose the value first; an undecided one only when none is left,
        # since deciding it may make another plan lose and revert.
        losses = settled or open_[:1]
        changed = False
        for key, value, owner, losers in losses:
            for plan in losers:
                if plan.final(key) != value:
                    continue  # reverted by an earlier loss of this round
                if key == identifier:
                    plan.error = _refusal(key, value, owner, holders)
                else:
                    plan.rejected[key] = owner
                changed = True
        for plan in plans:
            if (
                not plan.error
                and not plan.remove
                and not plan.final("phone")
                and not plan.final("email")
            ):
                plan.error = _("A member needs a mobile number or an email address.")
                changed = True
        if not changed:
            return


def _released(plans: list[_UserPlan]) -> dict[str, set[str]]:
    released: dict[str, set[str]] = {key: set() for key in _KEYS}
    for plan in plans:
        for key in _KEYS:
            current = plan.current(key)
            if current and plan.final(key) != current:
                released[key].add(current)
    return released


def _waiting_records(
    organization_id: int,
    sync_settings: SyncSettings,
    plans: list[_UserPlan],
    released: dict[str, set[str]],
) -> list[int]:
    """Records of the organization that wait for a value this batch frees: their last apply
    failed (the value was taken), or left it unsynced as a possible duplicate."""
    members = [p.member.pk for p in plans if p.member is not None and p.member.pk is not None]
    candidates = set(
        ChangeEvent.objects.filter(
            organization_id=organization_id, status=Status.FAILED, record__isnull=False
        ).values_list("record_id", flat=True)
    ) | set(
        ReviewItem.objects.filter(
            organization_id=organization_id,
            kind=ReviewItem.Kind.POSSIBLE_DUPLICATE,
            status=ReviewItem.Status.OPEN,
            other_member_id__in=members,
            record__isnull=False,
        ).values_list("record_id", flat=True)
    )
    candidates -= {p.record.pk for p in plans}
    if not candidates:
        return []
    waiting = []
    for record in DirectoryRecord.objects.filter(
        pk__in=candidates,
        resource_type=DirectoryRecord.ResourceType.USER,
        deleted_at__isnull=True,
        active=True,
    ).select_related("member"):
        plan = _user_plan(record, sync_settings)
        if any(
            plan.desired(key) in released[key] and plan.desired(key) != plan.current(key)
            for key in _KEYS
        ):
            waiting.append(record.pk)
    return waiting


def _users_lock(record_ids: list[int]) -> list[DirectoryRecord]:
    return list(
        DirectoryRecord.objects.select_for_update(of=("self",))
        .select_related("member")
        .filter(pk__in=record_ids, resource_type=DirectoryRecord.ResourceType.USER)
        .order_by("pk")
    )


def _users_plan(
    plans: list[_UserPlan], organization: Organization, sync_settings: SyncSettings
) -> _Holders:
    """Identify and judge ``plans``, pulling in the records a decision depends on: holders of
    wanted values whose directory record no longer wants them, and records waiting for a
    value the batch frees. Set-based: a few statements per round, one round when nothing
    moves between users (an initial sync)."""
    identifier = _identifier(sync_settings)
    # Each record is pulled at most once (a record that could not be locked stays outside).
    tried: set[int] = set()
    while True:
        holders = _holders_read(organization.pk, plans)
        planned = {p.record.pk for p in plans}
        pull = []
        for (key, value), member in holders.members.items():
            record = holders.records.get(member.pk)
            if record is None or record.pk in planned:
                continue
            record.member = member
            if record.pk not in tried and _user_plan(record, sync_settings).final(key) != value:
                pull.append(record.pk)
        if not pull:
            _users_judge(plans, holders, identifier)
            released = _released(plans)
            if any(released.values()):
                pull = [
                    pk
                    for pk in _waiting_records(organization.pk, sync_settings, plans, released)
                    if pk not in tried
                ]
        if not pull:
            return holders
        tried.update(pull)
        for record in _users_lock(sorted(set(pull))):
            record.organization = organization
            plans.append(_user_plan(record, sync_settings))


def _users_apply(
    records: list[DirectoryRecord],
    *,
    organization: Organization,
    sync_settings: SyncSettings,
    force: bool = False,
) -> dict[int, tuple[int, str, str, str]]:
    """Converge locked directory users (the only user apply; call inside a transaction) and
    finish their events; returns each finished record's (version, status, outcome, reason).

    A few statements per batch instead of ~25 per user: the reads are prefetched for the batch
    and the writes are bulk. A record already applied at its version is only finished as
    skipped, unless ``force`` (an administrator's decision re-applies it). A refusal fails that
    record alone (nothing of it is written); other errors roll the whole batch back.
    """
    results: dict[int, tuple[int, str, str, str]] = {}
    plans: list[_UserPlan] = []
    for record in records:
        record.organization = organization
        if record.applied_version >= record.version and not force:
            results[record.pk] = (
                record.version,
                Status.SKIPPED,
                "",
                _superseded(record.applied_version),
            )
        else:
            plans.append(_user_plan(record, sync_settings))
    if not plans:
        _events_finish_many(results)
        return results
    _users_plan(plans, organization, sync_settings)
    for plan in plans:
        results.pop(plan.record.pk, None)
    default_country = sync_settings.default_phone_country or None

    for plan in plans:
        if plan.error:
            results[plan.record.pk] = (plan.record.version, Status.FAILED, "", plan.error)
    # Removals first: a deleted member frees its identifiers for the others.
    for plan in plans:
        if plan.remove:
            outcome = _user_remove(plan.record, sync_settings, plan.notes)
            results[plan.record.pk] = (
                plan.record.version,
                Status.APPLIED,
                outcome,
                plan.notes.text,
            )
    live = [p for p in plans if not p.error and not p.remove]
    for plan in live:
        for key in _KEYS:
            if key in plan.rejected:
                plan.notes.add(
                    _(
                        "%(attribute)s %(value)s belongs to member %(other)s; not synced "
                        "(possible duplicate)."
                    )
                    % {
                        "attribute": _attribute_label(key),
                        "value": plan.fields.pop(key),
                        "other": _owner_member_label(plan.rejected[key]),
                    }
                )

    # Managers: lock their records before any member row is written (module docstring).
    in_batch = {r.pk: r for r in records}
    in_batch.update({p.record.pk: p.record for p in plans})
    manager_of: dict[int, uuid.UUID] = {}
    for plan in live:
        scim_id = document_manager_scim_id(plan.document)
        if scim_id is not None and scim_id != plan.record.scim_id:
            manager_of[plan.record.pk] = scim_id
    manager_records: dict[uuid.UUID, int] = {}
    outside_managers: dict[int, Member] = {}
    if manager_of:
        manager_records = {
            scim_id: pk
            for pk, scim_id in DirectoryRecord.objects.filter(
                organization_id=organization.pk,
                resource_type=DirectoryRecord.ResourceType.USER,
                scim_id__in=set(manager_of.values()),
            ).values_list("pk", "scim_id")
        }
        outside = [pk for pk in manager_records.values() if pk not in in_batch]
        _lock_for_share(outside)
        # Read after the lock: a manager job that just committed has set its member.
        outside_managers = {
            r.pk: r.member
            for r in DirectoryRecord.objects.filter(
                pk__in=outside, deleted_at__isnull=True, member__isnull=False
            ).select_related("member")
        }

    departments = _DepartmentCache()
    if sync_settings.department_format != SyncSettings.DepartmentFormat.STRUCTURE_STRING:
        names = {document_department(p.document) for p in live} - {""}
        departments.named = {name: [] for name in names}
        for department in Department.objects.filter(
            organization_id=organization.pk, name__in=names
        ).order_by("id"):
            departments.named[department.name].append(department)

    # Values moving between members of the batch: cleared first, then set.
    for key in _KEYS:
        taken = {p.final(key) for p in live} - {None}
        moving = [
            p.member.pk
            for p in live
            if p.member is not None and p.current(key) in taken and p.final(key) != p.current(key)
        ]
        member_services.members_field_clear(member_ids=moving, field=key)

    new_members: list[Member] = []
    for plan in live:
        record, fields = plan.record, plan.fields
        fields["directory_managed"] = True
        plan.departments = _department_plan(
            record, plan.document, sync_settings, plan.notes, departments
        )
        if plan.departments.display is not None:
            fields["department_display"] = plan.departments.display
        if plan.member is None:
            plan.outcome = Outcome.CREATED
            create_fields = {k: v for k, v in fields.items() if v not in ("", None)}
            # _normalise_phone and _check_email validated both (or dropped them).
            plan.member = member_services.members_build(
                organization=organization,
                rows=[create_fields],
                default_country=default_country,
                validated=True,
            )[0]
            new_members.append(plan.member)
            plan.created = True
            plan.notes.changed = True
        else:
            plan.member, changed = member_services.member_update(
                member=plan.member,
                default_country=default_country,
                check_unique=False,
                **fields,
            )
            plan.notes.changed = plan.notes.changed or bool(changed)

    member_services.members_insert(members=new_members)
    members_of: dict[int, Member | None] = {p.record.pk: p.member for p in live}
    for record in in_batch.values():
        if record.pk not in members_of:
            members_of[record.pk] = (
                record.member if record.deleted_at is None and record.active else None
            )

    # Managers, now that every member of the batch has its id.
    manager_changed: list[Member] = []
    for plan in live:
        manager = None
        manager_pk = manager_records.get(manager_of.get(plan.record.pk))
        if manager_pk is not None:
            manager = (
                members_of.get(manager_pk)
                if manager_pk in in_batch
                else outside_managers.get(manager_pk)
            )
        if manager is not None and manager.pk == plan.member.pk:
            manager = None
        if plan.member.manager_id != (manager.pk if manager is not None else None):
            plan.member.manager = manager
            manager_changed.append(plan.member)
            plan.notes.changed = True
    member_services.members_save_fields(members=manager_changed, fields=["manager"])

    for plan in live:
        plan.record.member = plan.member
    for plan in plans:
        if not plan.error:
            plan.record.applied_version = plan.record.version
    member_services.rows_update(
        model=DirectoryRecord,
        objs=[p.record for p in plans if not p.error],
        fields=["member", "applied_version"],
    )

    changed = member_services.member_departments_set_many(
        plans=[
            (p.member, p.departments.departments, (p.departments.departments or [None])[0])
            for p in live
            if p.departments.departments is not None
        ]
    )
    for plan in live:
        if plan.departments.hold_value:
            _department_hold_member(plan.record, plan.member)
        for key, owner in plan.rejected.items():
            other = _owner_member(owner)
            if other is not None:
                _possible_duplicate_open(plan.record, plan.member, other, key)
    _possible_duplicates_settle(live)

    wanted: dict[int, set[int]] = {}
    for record_id, group_id in DirectoryMembership.objects.filter(
        user_record_id__in=[p.record.pk for p in live],
        group_record__deleted_at__isnull=True,
        group_record__group__isnull=False,
    ).values_list("user_record_id", "group_record__group_id"):
        wanted.setdefault(members_of[record_id].pk, set()).add(group_id)
    changed |= member_services.member_groups_add_many(wanted=wanted)

    _reports_fix_many(organization.pk, {p.record.scim_id: p.member for p in live})

    for plan in live:
        outcome = plan.outcome
        if outcome == Outcome.UPDATED:
            if plan.notes.held:
                outcome = Outcome.HELD
            elif not (plan.notes.changed or plan.member.pk in changed):
                outcome = Outcome.UNCHANGED
        results[plan.record.pk] = (plan.record.version, Status.APPLIED, outcome, plan.notes.text)
    _events_finish_many(results)
    for plan in plans:
        if plan.remove and plan.record.deleted_at is not None:
            # The tombstone has done its job; events keep scim_id and label (SET_NULL).
            plan.record.delete()
    return results


def _users_batch_apply(record_ids: list[int]) -> set[int]:
    """Apply the chunk's directory users in one transaction; returns the ids of the records
    it finished (groups are left to ``record_apply``)."""
    with transaction.atomic():
        _transaction_tune()
        records = _users_lock(record_ids)
        if not records:
            return set()
        organization = Organization.objects.get(pk=records[0].organization_id)
        results = _users_apply(
            records,
            organization=organization,
            sync_settings=_sync_settings(organization.pk),
        )
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
    """Finish the events of many records: ``results`` maps a record id to (version, status,
    outcome, reason). Each record's newest event up to ``version`` gets the result, its older
    ones are skipped as superseded. Failed events count too when the record applied (or was
    already applied): a newer version or a later retry resolved them, no operator needed.
    One read, one update per distinct result."""
    if not results:
        return
    rows = (
        ChangeEvent.objects.filter(
            record_id__in=list(results), status__in=(Status.PENDING, Status.FAILED)
        )
        .order_by("record_id", "-record_version", "-id")
        .values_list("pk", "record_id", "record_version", "status")
    )
    updates: dict[tuple[str, str, str], list[int]] = {}
    newest_done: set[int] = set()
    for pk, record_id, record_version, current in rows:
        version, status, outcome, reason = results[record_id]
        if record_version > version or (current == Status.FAILED and status == Status.FAILED):
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


# --- user helpers --------------------------------------------------------------------------


def _member_label(member: Member) -> str:
    return member.full_name or member.email or member.phone or f"#{member.pk}"


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


def _possible_duplicates_settle(plans: list[_UserPlan]) -> None:
    """Resolve the open possible-duplicate items of ``plans`` that their apply no longer
    raises: the value was synced after all (its holder gave it up, as in a swap applied in
    halves) or the directory changed it."""
    raised = {
        (p.record.pk, member.pk)
        for p in plans
        for member in map(_owner_member, p.rejected.values())
        if member is not None
    }
    stale = [
        pk
        for pk, record_id, other_id in ReviewItem.objects.filter(
            kind=ReviewItem.Kind.POSSIBLE_DUPLICATE,
            status=ReviewItem.Status.OPEN,
            record_id__in=[p.record.pk for p in plans],
        ).values_list("pk", "record_id", "other_member_id")
        if (record_id, other_id) not in raised
    ]
    if stale:
        ReviewItem.objects.filter(pk__in=stale).update(
            status=ReviewItem.Status.RESOLVED, resolution="superseded", resolved_at=timezone.now()
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
