"""The department tree and members' places in it."""

from collections.abc import Sequence

from django.db import IntegrityError, transaction

from ..models import Department, DepartmentMembership, Member, Organization
from .errors import MemberError


def department_get_or_create(
    *, organization: Organization, name: str, parent: Department | None = None
) -> Department:
    name = name.strip()
    if not name:
        raise MemberError("A department needs a name.", field="department")
    try:
        with transaction.atomic():
            return Department.objects.get_or_create(
                organization=organization, parent=parent, name=name
            )[0]
    except IntegrityError:
        # Created concurrently under the same parent: the unique constraint makes us converge.
        return Department.objects.get(organization=organization, parent=parent, name=name)


def department_path_ensure(*, organization: Organization, path: Sequence[str]) -> Department:
    """Create the missing part of ``path`` (root first) and return its leaf."""
    parts = [p.strip() for p in path if p and p.strip()]
    if not parts:
        raise MemberError("The department path is empty.", field="department")
    parent = None
    for part in parts:
        parent = department_get_or_create(organization=organization, name=part, parent=parent)
    return parent


def member_departments_set(
    *, member: Member, departments: Sequence[Department], primary: Department | None = None
) -> bool:
    """Make ``member``'s departments exactly ``departments``; returns whether anything changed."""
    wanted = {d.pk for d in departments}
    primary_id = primary.pk if primary else (departments[0].pk if departments else None)
    with transaction.atomic():
        current = {
            link.department_id: link
            for link in DepartmentMembership.objects.select_for_update().filter(member=member)
        }
        changed = False
        stale = [pk for pk in current if pk not in wanted]
        if stale:
            DepartmentMembership.objects.filter(member=member, department_id__in=stale).delete()
            changed = True
        # Clear the old primary first: at most one primary per member (constraint).
        DepartmentMembership.objects.filter(member=member, is_primary=True).exclude(
            department_id=primary_id
        ).update(is_primary=False)
        for pk in wanted:
            link = current.get(pk)
            if link is None:
                DepartmentMembership.objects.create(
                    member=member, department_id=pk, is_primary=(pk == primary_id)
                )
                changed = True
            elif link.is_primary != (pk == primary_id):
                DepartmentMembership.objects.filter(pk=link.pk).update(
                    is_primary=(pk == primary_id)
                )
                changed = True
    return changed
