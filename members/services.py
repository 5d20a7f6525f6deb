"""Writes to the members domain. The only code that changes members' rows.

Every service is keyword-only, owns its transaction, and is safe to call again with the same
arguments (it converges instead of duplicating).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from .models import (
    Administrator,
    AuditEntry,
    DeletionRule,
    Department,
    DepartmentMembership,
    Group,
    GroupMembership,
    Member,
    Organization,
    Resource,
)
from .phones import InvalidPhoneNumber, phone_to_e164


class MemberError(ValueError):
    """A member write was refused; ``field`` names the offending attribute."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


MEMBER_FIELDS = (
    "display_name",
    "given_name",
    "family_name",
    "phone",
    "email",
    "job_title",
    "country",
    "employee_number",
)


# --- audit -------------------------------------------------------------------------------


def audit_record(
    *,
    organization: Organization,
    action: str,
    actor=None,
    actor_label: str | None = None,
    detail: dict | None = None,
) -> AuditEntry:
    label = actor_label or (f"admin:{actor.get_username()}" if actor is not None else "system")
    return AuditEntry.objects.create(
        organization=organization,
        actor=actor,
        actor_label=label,
        action=action,
        detail=detail or {},
    )


# --- organizations and administrators ---------------------------------------------------


def organization_get_or_create(*, slug: str, name: str) -> Organization:
    organization, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
    return organization


def administrator_ensure(
    *, organization: Organization, username: str, password: str, email: str = ""
) -> Administrator:
    """Create (or reset the password of) a staff user administering ``organization``."""
    User = get_user_model()
    with transaction.atomic():
        user, _ = User.objects.get_or_create(username=username, defaults={"email": email})
        user.is_staff = True
        user.set_password(password)
        user.save()
        admin, _ = Administrator.objects.update_or_create(
            user=user, defaults={"organization": organization}
        )
    return admin


# --- members -----------------------------------------------------------------------------


def _normalise_member_fields(
    fields: dict, *, default_country: str | None, validated: bool = False
) -> dict:
    clean = {}
    for key, value in fields.items():
        if key not in MEMBER_FIELDS and key not in (
            "manager",
            "directory_managed",
            "status",
            "department_display",
        ):
            raise MemberError(f"Unknown member field {key!r}.", field=key)
        if key in ("manager", "directory_managed", "status", "department_display"):
            clean[key] = value
            continue
        value = (value or "").strip() if isinstance(value, str) or value is None else value
        if validated and key in ("phone", "email"):
            # The caller (the sync engine) already normalised and validated both.
            value = (value.lower() if key == "email" else value) if value else None
        elif key == "phone":
            if value:
                try:
                    value = phone_to_e164(value, default_country=default_country)
                except InvalidPhoneNumber as exc:
                    raise MemberError(str(exc), field="phone")
            else:
                value = None
        elif key == "email":
            if value:
                value = value.lower()
                try:
                    validate_email(value)
                except DjangoValidationError:
                    raise MemberError(f"'{value}' is not a valid email address.", field="email")
            else:
                value = None
        clean[key] = value
    return clean


def _check_unique(*, organization: Organization, fields: dict, exclude_pk: int | None) -> None:
    others = Member.objects.filter(organization=organization)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    phone = fields.get("phone")
    if phone and others.filter(phone=phone).exists():
        raise MemberError(f"Another member already has the mobile number {phone}.", field="phone")
    email = fields.get("email")
    if email and others.annotate(e=Lower("email")).filter(e=email).exists():
        raise MemberError(f"Another member already has the email {email}.", field="email")


def member_create(
    *, organization: Organization, default_country: str | None = None, **fields
) -> Member:
    """Create a member; phone is normalised to E.164, email lower-cased, both unique."""
    clean = _normalise_member_fields(fields, default_country=default_country)
    if not clean.get("phone") and not clean.get("email"):
        raise MemberError("A member needs a mobile number or an email address.", field="phone")
    _check_unique(organization=organization, fields=clean, exclude_pk=None)
    try:
        with transaction.atomic():
            return Member.objects.create(organization=organization, **clean)
    except IntegrityError:
        # A concurrent writer took the phone or email between the check and the insert.
        _check_unique(organization=organization, fields=clean, exclude_pk=None)
        raise


def members_build(
    *,
    organization: Organization,
    rows: Sequence[dict],
    default_country: str | None = None,
    validated: bool = False,
) -> list[Member]:
    """Unsaved members for ``rows`` (as ``member_create`` normalises and validates them).

    For the sync engine's batches, which check phone and email against other members itself
    and saves them with :func:`members_insert`. ``validated``: phone is E.164 and email a
    valid address already (not parsed again).
    """
    built = []
    for fields in rows:
        clean = _normalise_member_fields(
            fields, default_country=default_country, validated=validated
        )
        if not clean.get("phone") and not clean.get("email"):
            raise MemberError("A member needs a mobile number or an email address.", field="phone")
        built.append(Member(organization=organization, **clean))
    return built


def members_insert(*, members: Sequence[Member]) -> list[Member]:
    """Insert built members in one statement (primary keys set). A phone or email taken
    concurrently raises IntegrityError: the caller's transaction rolls back and retries."""
    return Member.objects.bulk_create(members) if members else []


def rows_update(*, model, objs: Sequence, fields: Sequence[str]) -> int:
    """Write ``fields`` of ``objs`` (saved rows of ``model``) in one statement.

    ``bulk_update`` builds a CASE WHEN per row and field, which costs more Python than the
    whole rest of a sync batch; on PostgreSQL this is one ``UPDATE ... FROM unnest(...)``.
    No signals, no ``auto_now`` (list the field to write it).
    """
    if not objs:
        return 0
    if connection.vendor != "postgresql":
        return model.objects.bulk_update(objs, fields)
    meta = model._meta
    quote = connection.ops.quote_name
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    arrays = [[obj.pk for obj in objs]] + [
        [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs] for f in columns
    ]
    types = [pk.rel_db_type(connection)] + [f.db_type(connection) for f in columns]
    names = [quote(pk.column)] + [quote(f.column) for f in columns]
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    unnest = ", ".join(f"%s::{db_type}[]" for db_type in types)
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "  # names from models
        f"FROM unnest({unnest}) AS v({', '.join(names)}) WHERE t.{names[0]} = v.{names[0]}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
        return cursor.rowcount


def members_field_clear(*, member_ids: Sequence[int], field: str) -> int:
    """Empty ``field`` (``phone`` or ``email``) of ``member_ids``, so values can move between
    these members inside one transaction: the caller sets the new values right after (the
    unique constraints are partial indexes, which PostgreSQL cannot defer)."""
    if field not in ("phone", "email"):
        raise MemberError(f"{field!r} is not an identifier.", field=field)
    if not member_ids:
        return 0
    return Member.objects.filter(pk__in=member_ids).update(**{field: None})


def members_save_fields(*, members: Sequence[Member], fields: Sequence[str]) -> int:
    """Write ``fields`` of already validated members in one statement (``updated_at`` too)."""
    if not members:
        return 0
    now = timezone.now()
    for member in members:
        member.updated_at = now
    return rows_update(model=Member, objs=members, fields=[*fields, "updated_at"])


def _current_value(member: Member, key: str):
    return member.manager_id if key == "manager" else getattr(member, key)


def _comparable(key: str, value):
    if key == "manager":
        return value.pk if value is not None else None
    return value


def member_update(
    *,
    member: Member,
    default_country: str | None = None,
    check_unique: bool = True,
    **fields,
) -> tuple[Member, list[str]]:
    """Update the given fields; returns the member and the names of fields that changed.

    ``check_unique=False``: the caller already checked phone and email against the other
    members (the sync engine's batches); the unique constraints still guard the row.
    """
    clean = _normalise_member_fields(fields, default_country=default_country)
    changed = [k for k, v in clean.items() if _current_value(member, k) != _comparable(k, v)]
    if not changed:
        return member, []
    if check_unique:
        _check_unique(
            organization=member.organization,
            fields={k: clean[k] for k in changed},
            exclude_pk=member.pk,
        )
    for key in changed:
        setattr(member, key, clean[key])
    if not member.phone and not member.email:
        raise MemberError("A member needs a mobile number or an email address.", field="phone")
    with transaction.atomic():
        member.save(update_fields=[*changed, "updated_at"])
    return member, changed


# Fields Entra ID owns for a directory-managed member: read-only in the admin suite while the
# organization's sync is active, or Entra would overwrite the admin's edit on its next cycle.
DIRECTORY_OWNED_FIELDS = frozenset({*MEMBER_FIELDS, "manager", "departments"})


def member_edit(
    *,
    member: Member,
    actor=None,
    locked_fields: frozenset[str] | set[str] = frozenset(),
    default_country: str | None = None,
    departments: Sequence[Department] | None = None,
    **fields,
) -> tuple[Member, list[str]]:
    """An administrator's edit of a member, audited as ``member.edited``.

    ``locked_fields`` are refused outright (the caller computes them, e.g. the directory-owned
    fields while sync is active): a disabled form input is not a security boundary.
    ``departments`` (when given) become the member's departments; the current primary stays
    primary when kept. Returns the member and the names of the fields that changed.
    """
    given = set(fields) | ({"departments"} if departments is not None else set())
    refused = sorted(given & set(locked_fields))
    if refused:
        raise MemberError(
            f"These fields are managed by directory sync: {', '.join(refused)}.",
            field=refused[0],
        )
    if departments is not None:
        for department in departments:
            if department.organization_id != member.organization_id:
                raise MemberError(
                    "The department belongs to another organization.", field="departments"
                )
    manager = fields.get("manager")
    if manager is not None:
        if manager.organization_id != member.organization_id:
            raise MemberError("The manager belongs to another organization.", field="manager")
        if manager.pk == member.pk:
            raise MemberError("A member cannot be their own manager.", field="manager")
    with transaction.atomic():
        member, changed = member_update(member=member, default_country=default_country, **fields)
        if departments is not None:
            current_primary = (
                DepartmentMembership.objects.filter(member=member, is_primary=True)
                .values_list("department_id", flat=True)
                .first()
            )
            primary = next((d for d in departments if d.pk == current_primary), None)
            if member_departments_set(member=member, departments=departments, primary=primary):
                changed.append("departments")
        if changed:
            audit_record(
                organization=member.organization,
                action="member.edited",
                actor=actor,
                detail={"member_id": member.pk, "member": member.full_name, "fields": changed},
            )
    return member, changed


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


# --- departments -------------------------------------------------------------------------


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


def member_departments_set_many(
    *, plans: Sequence[tuple[Member, Sequence[Department], Department | None]]
) -> set[int]:
    """``member_departments_set`` for many members in a few statements (the sync batches).

    ``plans``: (member, departments, primary or None for the first). Returns the ids of the
    members whose departments changed. Call inside a transaction.
    """
    if not plans:
        return set()
    member_ids = [member.pk for member, _deps, _primary in plans]
    current: dict[int, dict[int, DepartmentMembership]] = {}
    for link in DepartmentMembership.objects.select_for_update().filter(member_id__in=member_ids):
        current.setdefault(link.member_id, {})[link.department_id] = link
    stale: list[int] = []
    unset_primary: list[int] = []
    set_primary: list[int] = []
    create: list[DepartmentMembership] = []
    changed: set[int] = set()
    for member, departments, primary in plans:
        wanted = {d.pk for d in departments}
        primary_id = primary.pk if primary else (departments[0].pk if departments else None)
        links = current.get(member.pk, {})
        for pk, link in links.items():
            if pk not in wanted:
                stale.append(link.pk)
                changed.add(member.pk)
            elif link.is_primary and pk != primary_id:
                unset_primary.append(link.pk)
                changed.add(member.pk)
            elif not link.is_primary and pk == primary_id:
                set_primary.append(link.pk)
                changed.add(member.pk)
        for pk in wanted - set(links):
            create.append(
                DepartmentMembership(member=member, department_id=pk, is_primary=pk == primary_id)
            )
            changed.add(member.pk)
    if stale:
        DepartmentMembership.objects.filter(pk__in=stale).delete()
    # Clear old primaries first: at most one primary per member (constraint).
    if unset_primary:
        DepartmentMembership.objects.filter(pk__in=unset_primary).update(is_primary=False)
    if set_primary:
        DepartmentMembership.objects.filter(pk__in=set_primary).update(is_primary=True)
    if create:
        DepartmentMembership.objects.bulk_create(create)
    return changed


# --- groups ------------------------------------------------------------------------------


def group_create(
    *, organization: Organization, name: str, directory_managed: bool = False
) -> Group:
    return Group.objects.create(
        organization=organization, name=name.strip(), directory_managed=directory_managed
    )


def group_rename(*, group: Group, name: str) -> Group:
    if group.name != name:
        group.name = name
        group.save(update_fields=["name", "updated_at"])
    return group


def group_members_set(*, group: Group, member_ids: Iterable[int]) -> tuple[int, int]:
    """Make the group's members exactly ``member_ids`` by set difference; (added, removed)."""
    wanted = set(member_ids)
    with transaction.atomic():
        Group.objects.select_for_update().filter(pk=group.pk).first()
        current = set(
            GroupMembership.objects.filter(group=group).values_list("member_id", flat=True)
        )
        to_add = wanted - current
        to_remove = current - wanted
        if to_remove:
            GroupMembership.objects.filter(group=group, member_id__in=to_remove).delete()
        GroupMembership.objects.bulk_create(
            [GroupMembership(group=group, member_id=pk) for pk in to_add],
            ignore_conflicts=True,
        )
    return len(to_add), len(to_remove)


def member_groups_add(*, member: Member, group_ids: Iterable[int]) -> int:
    """Put ``member`` in each of ``group_ids`` (already there: unchanged); returns how many new.

    Adding one member does not lock the group: concurrent adds to a large group stay cheap;
    ``group_members_set`` remains the authority on the full set.
    """
    wanted = set(group_ids)
    if not wanted:
        return 0
    current = set(
        GroupMembership.objects.filter(member=member, group_id__in=wanted).values_list(
            "group_id", flat=True
        )
    )
    missing = wanted - current
    GroupMembership.objects.bulk_create(
        [GroupMembership(group_id=pk, member=member) for pk in sorted(missing)],
        ignore_conflicts=True,
    )
    return len(missing)


def member_groups_add_many(*, wanted: dict[int, set[int]]) -> set[int]:
    """``member_groups_add`` for many members: ``wanted`` maps member id to group ids.
    Returns the ids of the members added to a group."""
    wanted = {member_id: groups for member_id, groups in wanted.items() if groups}
    if not wanted:
        return set()
    current = set(
        GroupMembership.objects.filter(
            member_id__in=list(wanted), group_id__in=set().union(*wanted.values())
        ).values_list("member_id", "group_id")
    )
    missing = sorted(
        (member_id, group_id)
        for member_id, groups in wanted.items()
        for group_id in groups
        if (member_id, group_id) not in current
    )
    GroupMembership.objects.bulk_create(
        [
            GroupMembership(group_id=group_id, member_id=member_id)
            for member_id, group_id in missing
        ],
        ignore_conflicts=True,
    )
    return {member_id for member_id, _group_id in missing}


def group_delete(*, group: Group) -> None:
    group.delete()


# --- resources ---------------------------------------------------------------------------


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
    rows_update(
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
