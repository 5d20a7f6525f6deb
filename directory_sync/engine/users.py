"""Users, second half: the one user apply, a batch (one record is a batch of one): bulk
writes of members, managers, departments, groups and possible duplicates."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from members import services as member_services
from members.bulk_update import bulk_update_rows
from members.models import Department, Member, Organization

from ..models import DirectoryMembership, DirectoryRecord, ReviewItem, SyncSettings
from ..notes import Message, review_detail
from ..notes import ngettext_message as ngettext  # the name makemessages extracts
from ..store.records import records_lock_for_share
from .departments import DepartmentCache, department_hold_member, department_plan
from .events import events_finish_many, superseded_reason
from .fields import document_department, document_manager_scim_id
from .identifiers import (
    IDENTIFIER_KEYS,
    UserPlan,
    attribute_label,
    member_label,
    owner_member,
    owner_member_label,
    user_plan,
    users_plan,
)
from .records import record_set, sync_settings_read, transaction_tune, users_lock
from .results import Notes, Outcome, Status


def users_apply(
    records: list[DirectoryRecord],
    *,
    organization: Organization,
    sync_settings: SyncSettings,
    force: bool = False,
) -> dict[int, tuple[int, str, str, str]]:
    """Converge locked directory users (the only user apply; call inside a transaction) and
    finish their events; returns each finished record's (version, status, outcome, reason).

    A few statements per batch, whatever its size: the reads are prefetched for the batch and
    the writes are bulk. A record already applied at its version is only finished as
    skipped, unless ``force`` (an administrator's decision re-applies it). A refusal fails that
    record alone (nothing of it is written); other errors roll the whole batch back.
    """
    results: dict[int, tuple[int, str, str, str]] = {}
    plans: list[UserPlan] = []
    for record in records:
        record.organization = organization
        if record.applied_version >= record.version and not force:
            results[record.pk] = (
                record.version,
                Status.SKIPPED,
                "",
                superseded_reason(record.applied_version),
            )
        else:
            plans.append(user_plan(record, sync_settings))
    if not plans:
        events_finish_many(results)
        return results
    users_plan(plans, organization, sync_settings)
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
                plan.notes.lines,
            )
    live = [p for p in plans if not p.error and not p.remove]
    for plan in live:
        for key in IDENTIFIER_KEYS:
            if key in plan.rejected:
                plan.notes.add(
                    Message(
                        gettext_noop(
                            "%(attribute)s %(value)s belongs to member %(other)s; not synced "
                            "(possible duplicate)."
                        ),
                        attribute=attribute_label(key),
                        value=plan.fields.pop(key),
                        other=owner_member_label(plan.rejected[key]),
                    )
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
        records_lock_for_share(outside)
        # Read after the lock: a manager job that just committed has set its member.
        outside_managers = {
            r.pk: r.member
            for r in DirectoryRecord.objects.filter(
                pk__in=outside, deleted_at__isnull=True, member__isnull=False
            ).select_related("member")
        }

    departments = DepartmentCache()
    if sync_settings.department_format != SyncSettings.DepartmentFormat.STRUCTURE_STRING:
        names = {document_department(p.document) for p in live} - {""}
        departments.named = {name: [] for name in names}
        for department in Department.objects.filter(
            organization_id=organization.pk, name__in=names
        ).order_by("id"):
            departments.named[department.name].append(department)

    # Values moving between members of the batch: cleared first, then set.
    for key in IDENTIFIER_KEYS:
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
        plan.departments = department_plan(
            record, plan.document, sync_settings, plan.notes, departments
        )
        if plan.departments.display is not None:
            fields["department_display"] = plan.departments.display
        if plan.member is None:
            plan.outcome = Outcome.CREATED
            create_fields = {k: v for k, v in fields.items() if v not in ("", None)}
            # phone_normalise and email_check validated both (or dropped them).
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
    bulk_update_rows(
        model=DirectoryRecord,
        objs=[p.record for p in plans if not p.error],
        fields=["member", "applied_version", "applied_department"],
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
            department_hold_member(plan.record, plan.member)
        for key, owner in plan.rejected.items():
            other = owner_member(owner)
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
        results[plan.record.pk] = (plan.record.version, Status.APPLIED, outcome, plan.notes.lines)
    events_finish_many(results)
    for plan in plans:
        if plan.remove and plan.record.deleted_at is not None:
            # The tombstone has done its job; events keep scim_id and label (SET_NULL).
            plan.record.delete()
    return results


def users_batch_apply(record_ids: list[int]) -> set[int]:
    """Apply the chunk's directory users in one transaction; returns the ids of the records
    it finished (groups are left to ``record_apply``)."""
    with transaction.atomic():
        transaction_tune()
        records = users_lock(record_ids)
        if not records:
            return set()
        organization = Organization.objects.get(pk=records[0].organization_id)
        results = users_apply(
            records,
            organization=organization,
            sync_settings=sync_settings_read(organization.pk),
        )
        return set(results)


def _reports_fix_many(organization_id: int, managers: dict[uuid.UUID, Member]) -> None:
    """Point the members whose directory manager is one of ``managers`` at that manager's
    member (reports applied before their manager's member existed)."""
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


def _user_remove(record: DirectoryRecord, sync_settings: SyncSettings, notes: Notes) -> str:
    if record.member_id is None:
        return Outcome.UNCHANGED
    deletion = member_services.member_delete(
        member=record.member, rule=sync_settings.deletion_rule, actor_label="directory"
    )
    record_set(record, member=None)
    if deletion.resources_unassigned:
        notes.add(
            ngettext(
                "%(count)s resource moved to Unassigned.",
                "%(count)s resources moved to Unassigned.",
                deletion.resources_unassigned,
                count=deletion.resources_unassigned,
            )
        )
    if deletion.resources_to_manager:
        notes.add(
            ngettext(
                "%(count)s resource given to the manager.",
                "%(count)s resources given to the manager.",
                deletion.resources_to_manager,
                count=deletion.resources_to_manager,
            )
        )
    return Outcome.DELETED


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
        **review_detail(
            Message(
                gettext_noop(
                    "Directory user %(user)s was synced to member %(member)s, but member "
                    "%(other)s already has its %(attribute)s. They may be the same person."
                ),
                user=record.user_name,
                member=member_label(member),
                other=member_label(other),
                attribute=Message(
                    gettext_noop("mobile number") if attribute == "phone" else gettext_noop("email")
                ),
            )
        ),
    )


def _possible_duplicates_settle(plans: list[UserPlan]) -> None:
    """Resolve the open possible-duplicate items of ``plans`` that their apply no longer
    raises: the value was synced after all (its holder gave it up, as in a swap applied in
    halves) or the directory changed it."""
    raised = {
        (p.record.pk, member.pk)
        for p in plans
        for member in map(owner_member, p.rejected.values())
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
