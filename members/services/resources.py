"""Resources: what members own, moved on deletion and reassigned by administrators."""

from django.db import transaction
from django.utils import timezone

from ..bulk_update import bulk_update_rows
from ..models import Member, Organization, Resource
from .audit import audit_record
from .errors import MemberError


def resources_move_from_deleted_owner(*, owner: Member, name: str, heir_id: int | None) -> int:
    """Move what ``owner`` (being deleted, locked by the caller) owns to ``heir_id`` or to the
    unassigned list; returns how many moved.

    Each resource appends ``owner`` to its ``owner_history``, so a resource that passes through
    several deleted managers still names its original owner and every step after it.
    """
    now = timezone.now()
    step = {"name": name, "deleted_at": now.isoformat()}
    owned = list(
        Resource.objects.select_for_update()
        .filter(owner=owner)
        .only("pk", "owner_history", "unassigned_at")
    )
    for resource in owned:
        resource.owner_id = heir_id
        resource.owner_history = [*resource.owner_history, step]
        resource.previous_owner_name = name
        resource.unassigned_at = None if heir_id else now
        resource.updated_at = now
    bulk_update_rows(
        model=Resource,
        objs=owned,
        fields=["owner", "owner_history", "previous_owner_name", "unassigned_at", "updated_at"],
    )
    return len(owned)


def resource_create(
    *, organization: Organization, kind: str, name: str, owner: Member | None
) -> Resource:
    return Resource.objects.create(organization=organization, kind=kind, name=name, owner=owner)


def resource_reassign(*, resource: Resource, owner: Member, actor=None) -> Resource:
    """Give an (unassigned) resource to a member of the same organization."""
    if owner.organization_id != resource.organization_id:
        raise MemberError("The new owner belongs to another organization.", field="owner")
    with transaction.atomic():
        resource = Resource.objects.select_for_update().get(pk=resource.pk)
        previous = resource.owner.full_name if resource.owner_id else resource.previous_owner_name
        resource.owner = owner
        resource.unassigned_at = None
        resource.save(update_fields=["owner", "unassigned_at", "updated_at"])
        audit_record(
            organization=resource.organization,
            action="resource.reassigned",
            actor=actor,
            detail={"resource": resource.name, "from": previous, "to": owner.full_name},
        )
    return resource
