"""The department tree and members' places in it."""

from collections.abc import Sequence

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ..directory import DirectorySyncStatus, directory_sync_status
from ..display import department_path_label
from ..models import Department, DepartmentMembership, Member, Organization
from .audit import audit_record
from .errors import MemberError

DEPARTMENT_NAME_MAX_LENGTH = Department._meta.get_field("name").max_length


def department_get_or_create(
    *,
    organization: Organization,
    name: str,
    parent: Department | None = None,
    directory_managed: bool = False,
) -> Department:
    """The department ``name`` under ``parent``, created when missing. ``directory_managed``
    marks a department the sync creates; an existing department keeps its owner."""
    name = name.strip()
    if not name:
        raise MemberError("A department needs a name.", field="department")
    try:
        with transaction.atomic():
            return Department.objects.get_or_create(
                organization=organization,
                parent=parent,
                name=name,
                defaults={"directory_managed": directory_managed},
            )[0]
    except IntegrityError:
        # Created concurrently under the same parent: the unique constraint makes us converge.
        return Department.objects.get(organization=organization, parent=parent, name=name)


def department_path_ensure(
    *, organization: Organization, path: Sequence[str], directory_managed: bool = False
) -> Department:
    """Create the missing part of ``path`` (root first) and return its leaf."""
    parts = [p.strip() for p in path if p and p.strip()]
    if not parts:
        raise MemberError("The department path is empty.", field="department")
    parent = None
    for part in parts:
        parent = department_get_or_create(
            organization=organization,
            name=part,
            parent=parent,
            directory_managed=directory_managed,
        )
    return parent


# --- an administrator's changes to the tree ------------------------------------------------


def department_change_refusal(
    *, department: Department, sync: DirectorySyncStatus, rename: bool, move: bool
) -> str | None:
    """Why an administrator may not rename or move ``department`` now (None: they may).

    A department the sync created is the directory's while the sync is active: a renamed one
    would be created again under its old name on the next cycle. Moving is refused only when
    the sync places departments by their complete path; with plain names it finds a department
    by name wherever it sits, so moving one is how an administrator files it.
    """
    if not (department.directory_managed and sync.active):
        return None
    if rename:
        return _(
            "Directory sync created this department from %(directory)s and is active: rename "
            "it in %(directory)s (the members' department attribute), or stop the sync to "
            "rename it here."
        ) % {"directory": sync.directory_name}
    if move and sync.departments_by_path:
        return _(
            "Directory sync places this department by its complete path from %(directory)s: "
            "move it there (the members' department attribute), or stop the sync to move it "
            "here."
        ) % {"directory": sync.directory_name}
    return None


def _clean_department_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise MemberError(_("A department needs a name."), field="name")
    if len(name) > DEPARTMENT_NAME_MAX_LENGTH:
        raise MemberError(
            _("A department name has at most %(limit)d characters.")
            % {"limit": DEPARTMENT_NAME_MAX_LENGTH},
            field="name",
        )
    return name


def _check_name_free(
    *, organization: Organization, parent: Department | None, name: str, exclude_pk: int | None
) -> None:
    siblings = Department.objects.filter(organization=organization, parent=parent, name=name)
    if exclude_pk is not None:
        siblings = siblings.exclude(pk=exclude_pk)
    if siblings.exists():
        raise MemberError(
            _("There is already a department named %(name)s there.") % {"name": name},
            field="name",
        )


def department_path_text(department: Department | None) -> str:
    """The department's full path for audit entries ("Head Office › Engineering")."""
    names = []
    node, seen = department, set()
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        names.append(node.name)
        node = node.parent
    return department_path_label(reversed(names))


def department_create(
    *, organization: Organization, name: str, parent: Department | None, actor=None
) -> Department:
    """An administrator's new department (at the root when ``parent`` is None), audited as
    ``department.created``."""
    name = _clean_department_name(name)
    if parent is not None and parent.organization_id != organization.pk:
        raise MemberError(
            _("The parent department belongs to another organization."), field="parent"
        )
    with transaction.atomic():
        _check_name_free(organization=organization, parent=parent, name=name, exclude_pk=None)
        try:
            with transaction.atomic():
                department = Department.objects.create(
                    organization=organization, parent=parent, name=name
                )
        except IntegrityError:
            # Created concurrently under the same parent.
            _check_name_free(organization=organization, parent=parent, name=name, exclude_pk=None)
            raise
        audit_record(
            organization=organization,
            action="department.created",
            actor=actor,
            detail={"department_id": department.pk, "department": department_path_text(department)},
        )
    return department


def department_change(
    *, department: Department, name: str, parent: Department | None, actor=None
) -> list[str]:
    """Rename and/or move ``department`` under ``parent`` (None: the root); returns what
    changed (``"name"``, ``"parent"``), each audited (``department.renamed``,
    ``department.moved``). Refused for a department the active sync owns
    (:func:`department_change_refusal`) and for a move under itself or its own descendant."""
    name = _clean_department_name(name)
    organization = department.organization
    if parent is not None and parent.organization_id != department.organization_id:
        raise MemberError(
            _("The parent department belongs to another organization."), field="parent"
        )
    with transaction.atomic():
        department = Department.objects.select_for_update().get(pk=department.pk)
        rename = name != department.name
        move = (parent.pk if parent else None) != department.parent_id
        if not (rename or move):
            return []
        refusal = department_change_refusal(
            department=department,
            sync=directory_sync_status(organization=organization),
            rename=rename,
            move=move,
        )
        if refusal:
            raise MemberError(refusal, field="name" if rename else "parent")
        node, seen = parent, set()
        while node is not None and node.pk not in seen:
            if node.pk == department.pk:
                raise MemberError(
                    _("A department cannot be moved under itself or one of its own departments."),
                    field="parent",
                )
            seen.add(node.pk)
            node = node.parent
        _check_name_free(
            organization=organization, parent=parent, name=name, exclude_pk=department.pk
        )
        before = department_path_text(department)
        department.name = name
        department.parent = parent
        department.save(update_fields=["name", "parent", "updated_at"])
        after = department_path_text(department)
        changed = []
        if rename:
            changed.append("name")
            audit_record(
                organization=organization,
                action="department.renamed",
                actor=actor,
                detail={"department_id": department.pk, "from": before, "to": after},
            )
        if move:
            changed.append("parent")
            audit_record(
                organization=organization,
                action="department.moved",
                actor=actor,
                detail={"department_id": department.pk, "from": before, "to": after},
            )
    return changed


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
