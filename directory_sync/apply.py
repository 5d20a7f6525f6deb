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
from django.db import DataError, connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from members import selectors as member_selectors
from members import services as member_services
from members.models import Department, Group, Member
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
        status=status, outcome=outcome, reason=reason, finished_at=now
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


def record_apply(*, record_id: int, event_id: int | None = None) -> ApplyResult | None:
    """Converge one directory record now and finish its pending events.

    With ``event_id`` the apply is skipped when that event is no longer pending or when the
    record was already applied at its current version; without it (an administrator's review
    decision) the record is always re-applied.
    """
    version = None
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # A job must not wait forever behind a stuck lock: past this it fails with
                # OperationalError and Celery retries it later with backoff.
                # No WAL flush wait at commit either (an fsync, ~6 ms on the bench machine, a
                # large share of a job): an apply lost to a PostgreSQL crash is lost whole,
                # member and event status together, so the event is still pending and the
                # sweep re-dispatches it; jobs converge, nothing the directory sent is lost.
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT set_config('lock_timeout', %s, true), "
                        "set_config('synchronous_commit', 'off', true)",
                        [LOCK_TIMEOUT],
                    )
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
            _(
                "%(attribute)s %(value)s belongs to member %(other)s; not synced "
                "(possible duplicate)."
            )
            % {
                "attribute": _("The mobile number") if key == "phone" else _("The email"),
                "value": value,
                "other": _member_label(other),
            }
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
class _DepartmentPlan:
    # None: leave the member's departments as they are (held for the administrator).
    departments: list[Department] | None = None
    display: str | None = None
    hold_value: str = ""


def _department_plan(
    record: DirectoryRecord, document: dict, sync_settings: SyncSettings, notes: _Notes
) -> _DepartmentPlan:
    value = document_department(document)
    organization = record.organization
    if sync_settings.department_format == SyncSettings.DepartmentFormat.STRUCTURE_STRING:
        delimiter = sync_settings.department_delimiter or "/"
        parts = [p.strip() for p in value.split(delimiter) if p.strip()]
        departments = (
            [member_services.department_path_ensure(organization=organization, path=parts)]
            if parts
            else []
        )
        return _DepartmentPlan(
            departments=departments, display=Member.DepartmentDisplay.CURRENT_ONLY
        )
    if not value:
        return _DepartmentPlan(departments=[])
    matches = member_selectors.departments_named(organization=organization, name=value)
    if not matches:
        # Plain names come from a flat directory attribute: a name Beem does not know yet is
        # created at the root, where the administrator can move it (README "How sync treats
        # your members").
        return _DepartmentPlan(
            departments=[
                member_services.department_get_or_create(organization=organization, name=value)
            ]
        )
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
