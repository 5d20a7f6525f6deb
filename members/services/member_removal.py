"""Deleting a member and merging two members: nothing the member owned is ever lost."""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

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
