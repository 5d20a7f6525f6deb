"""Deleting a member and merging two members: nothing the member owned is ever lost."""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..directory import DirectorySyncStatus, directory_sync_status
from ..models import DeletionRule, DepartmentMembership, GroupMembership, Member, Resource
from .audit import audit_record
from .errors import MemberError
from .groups import member_groups_add
from .resources import resources_move_from_deleted_owner


@dataclass(frozen=True)
class MemberDeletion:
    member_id: int
    member_name: str
    resources_unassigned: int
    resources_to_manager: int


def member_delete(
    *, member: Member, rule: str = DeletionRule.DELETE_DIRECTLY, actor_label: str = "system"
) -> MemberDeletion:
    """Delete a member without ever destroying what they own.

    Resources move to the manager (``DELETE_TRANSFER_TO_MANAGER`` with a manager) or become
    unassigned and are listed for reassignment. ``Resource.owner`` is PROTECT, so a path that
    forgot this fails.
    """
    with transaction.atomic():
        member = Member.objects.select_for_update().get(pk=member.pk)
        name = member.full_name or str(member)
        heir_id = member.manager_id if rule == DeletionRule.DELETE_TRANSFER_TO_MANAGER else None
        moved = resources_move_from_deleted_owner(owner=member, name=name, heir_id=heir_id)
        to_manager = moved if heir_id else 0
        unassigned = 0 if heir_id else moved
        member_id = member.pk
        if unassigned or to_manager:
            audit_record(
                organization=member.organization,
                action="member.resources_moved",
                actor_label=actor_label,
                detail={"member": name, "unassigned": unassigned, "to_manager": to_manager},
            )
        member.delete()
    return MemberDeletion(member_id, name, unassigned, to_manager)


@dataclass(frozen=True)
class MemberMerge:
    source_id: int
    source_name: str
    target_id: int
    resources_moved: int
    groups_added: int
    departments_added: int
    reports_moved: int


def member_merge(
    *, source: Member, target: Member, actor=None, actor_label: str | None = None
) -> MemberMerge:
    """Fold ``source`` into ``target`` and delete ``source``; nothing ``source`` had is lost.

    ``target`` keeps its own values. It gains ``source``'s resources, groups, departments
    (its primary department stays; ``source``'s becomes primary only when it had none) and
    reports, and takes ``source``'s mobile number or email where it has none (they are unique,
    so only once ``source`` is gone).
    """
    if source.pk == target.pk:
        raise MemberError("A member cannot be merged into itself.")
    if source.organization_id != target.organization_id:
        raise MemberError("Both members must belong to the same organization.")
    with transaction.atomic():
        locked = {
            m.pk: m
            for m in Member.objects.select_for_update().filter(pk__in=[source.pk, target.pk])
        }
        source, target = locked[source.pk], locked[target.pk]
        name = source.full_name or str(source)
        resources = Resource.objects.filter(owner=source).update(
            owner=target, updated_at=timezone.now()
        )
        source_groups = set(
            GroupMembership.objects.filter(member=source).values_list("group_id", flat=True)
        )
        groups_added = member_groups_add(member=target, group_ids=source_groups)
        target_links = {
            link.department_id: link for link in DepartmentMembership.objects.filter(member=target)
        }
        has_primary = any(link.is_primary for link in target_links.values())
        departments_added = 0
        for link in DepartmentMembership.objects.filter(member=source).order_by("-is_primary"):
            if link.department_id in target_links:
                continue
            DepartmentMembership.objects.create(
                member=target,
                department_id=link.department_id,
                is_primary=link.is_primary and not has_primary,
            )
            has_primary = has_primary or link.is_primary
            departments_added += 1
        reports = (
            Member.objects.filter(manager=source)
            .exclude(pk=target.pk)
            .update(manager=target, updated_at=timezone.now())
        )
        if target.manager_id == source.pk:
            target.manager = None
        gaps = {
            key: getattr(source, key)
            for key in ("phone", "email")
            if getattr(source, key) and not getattr(target, key)
        }
        source_id = source.pk
        source.delete()
        for key, value in gaps.items():
            setattr(target, key, value)
        target.save(update_fields=[*gaps, "manager", "updated_at"])
        audit_record(
            organization=target.organization,
            action="member.merged",
            actor=actor,
            actor_label=actor_label,
            detail={
                "source": name,
                "source_id": source_id,
                "target": target.full_name or str(target),
                "target_id": target.pk,
                "resources": resources,
            },
        )
    return MemberMerge(
        source_id, name, target.pk, resources, groups_added, departments_added, reports
    )


def member_delete_refusal(*, member: Member, sync: DirectorySyncStatus) -> str | None:
    """Why an administrator may not delete ``member`` by hand now (None: they may, once their
    resources have a new owner)."""
    if member.directory_managed and sync.active:
        return _(
            "This member is synced from %(directory)s and directory sync is active: remove them "
            "from the Beem app's users in %(directory)s (or delete them there) and the next "
            "provisioning cycle deletes them here, applying your deletion rule. Stop the sync "
            "to delete them by hand."
        ) % {"directory": sync.directory_name}
    return None


def member_delete_by_admin(
    *, member: Member, actor=None, heir: Member | None = None
) -> MemberDeletion:
    """An administrator's deletion of ``member``, audited as ``member.deleted``.

    Refused while they own resources unless ``heir`` (a member of the same organization)
    receives them in the same transaction: the customer document asks admins to reassign
    every resource before deleting, and nothing is ever left unassigned by hand. Refused for
    a synced member while the sync is active (:func:`member_delete_refusal`). The result's
    ``resources_to_manager`` counts the resources given to ``heir``.
    """
    if heir is not None:
        if heir.organization_id != member.organization_id:
            raise MemberError(_("The new owner belongs to another organization."), field="heir")
        if heir.pk == member.pk:
            raise MemberError(_("Choose another member to receive the resources."), field="heir")
    with transaction.atomic():
        member = Member.objects.select_for_update().get(pk=member.pk)
        refusal = member_delete_refusal(
            member=member, sync=directory_sync_status(organization=member.organization)
        )
        if refusal:
            raise MemberError(refusal)
        owned = Resource.objects.filter(owner=member).count()
        if owned and heir is None:
            raise MemberError(
                ngettext(
                    "%(name)s owns %(count)d resource: choose who receives it, or reassign it "
                    "first.",
                    "%(name)s owns %(count)d resources: choose who receives them, or reassign "
                    "them first.",
                    owned,
                )
                % {"name": member.full_name or str(member), "count": owned},
                field="heir",
            )
        name = member.full_name or str(member)
        moved = resources_move_from_deleted_owner(
            owner=member, name=name, heir_id=heir.pk if heir is not None and owned else None
        )
        member_id = member.pk
        member.delete()
        detail = {"member_id": member_id, "member": name, "resources": moved}
        if moved:
            detail["to"] = heir.full_name or str(heir)
            detail["to_id"] = heir.pk
        audit_record(
            organization=member.organization, action="member.deleted", actor=actor, detail=detail
        )
    return MemberDeletion(member_id, name, 0, moved)
