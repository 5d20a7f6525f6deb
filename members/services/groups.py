"""Groups and their members."""

from collections.abc import Iterable

from django.db import transaction

from ..models import Group, GroupMembership, Member, Organization


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


def group_delete(*, group: Group) -> None:
    group.delete()
