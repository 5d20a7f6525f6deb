"""The sync engine's batch writes of members: many members in a few statements."""

from collections.abc import Sequence

from django.utils import timezone

from ..bulk_update import bulk_update_rows
from ..models import Department, DepartmentMembership, GroupMembership, Member, Organization
from .errors import MemberError
from .member_fields import member_fields_normalise


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
        clean = member_fields_normalise(
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
    return bulk_update_rows(model=Member, objs=members, fields=[*fields, "updated_at"])


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
