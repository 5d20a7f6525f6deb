"""Directory groups mirrored as Beem groups, membership by set difference."""

import pytest

from directory_sync.models import ChangeEvent, DirectoryRecord
from members import services as member_services
from members.models import Group, GroupMembership

from .engine_factories import (
    directory_differences,
    event_record_apply,
    group_create,
    group_update,
    record_delete,
    sync_settings_make,
    user_create,
    user_update,
)
from .test_apply_users import apply_all, apply_mode, last_event  # noqa: F401 - both modes

pytestmark = pytest.mark.django_db


def users(organization, count):
    return [
        user_create(organization, user_name=f"u{i}@x.example", email=f"u{i}@x.example")
        for i in range(count)
    ]


def group_member_ids(record) -> set[int]:
    record.refresh_from_db()
    return set(record.group.memberships.values_list("member_id", flat=True))


def linked_member_ids(records) -> set[int]:
    return set(
        DirectoryRecord.objects.filter(pk__in=[r.pk for r in records]).values_list(
            "member_id", flat=True
        )
    )


def test_directory_group_becomes_a_directory_managed_beem_group_with_its_members(organization):
    sync_settings_make(organization)
    a, b, c = users(organization, 3)
    group = group_create(organization, display_name="Engineers", members=[a, b])

    apply_all(organization)

    group.refresh_from_db()
    assert (group.group.name, group.group.directory_managed) == ("Engineers", True)
    assert group_member_ids(group) == linked_member_ids([a, b])
    event = last_event(group)
    assert (event.status, event.outcome, event.reason) == (
        "applied",
        "group_synced",
        "2 members added, 0 removed.",
    )


def test_membership_changes_apply_as_set_differences(organization):
    sync_settings_make(organization)
    a, b, c = users(organization, 3)
    group = group_create(organization, display_name="Engineers", members=[a, b])
    apply_all(organization)
    group.refresh_from_db()
    kept = GroupMembership.objects.get(
        group=group.group, member_id=DirectoryRecord.objects.get(pk=a.pk).member_id
    )

    group_update(group, members=[a, c])
    apply_all(organization)

    assert group_member_ids(group) == linked_member_ids([a, c])
    # a's membership row was left alone, not deleted and re-created.
    assert GroupMembership.objects.filter(pk=kept.pk).exists()
    assert last_event(group).reason == "1 member added, 1 removed."


def test_rename_follows_the_directory(organization):
    sync_settings_make(organization)
    group = group_create(organization, display_name="Engineers")
    apply_all(organization)

    group_update(group, display_name="Engineering")
    apply_all(organization)

    group.refresh_from_db()
    assert group.group.name == "Engineering"


def test_members_applied_after_their_group_join_it(organization):
    sync_settings_make(organization)
    a, b = users(organization, 2)
    group = group_create(organization, display_name="Engineers", members=[a, b])
    # The group's job runs before its users': nobody has a member yet.
    event_record_apply(last_event(group).pk)
    assert group_member_ids(group) == set()

    apply_all(organization)

    assert group_member_ids(group) == linked_member_ids([a, b])
    assert directory_differences(organization) == []


def test_deactivated_user_leaves_the_group_with_its_member(organization):
    sync_settings_make(organization)
    a, b = users(organization, 2)
    group = group_create(organization, display_name="Engineers", members=[a, b])
    apply_all(organization)

    user_update(a, active=False)
    apply_all(organization)

    assert group_member_ids(group) == linked_member_ids([b])
    assert directory_differences(organization) == []


def test_deleting_the_directory_group_deletes_the_beem_group_and_the_tombstone(organization):
    sync_settings_make(organization)
    (a,) = users(organization, 1)
    group = group_create(organization, display_name="Engineers", members=[a])
    apply_all(organization)
    group.refresh_from_db()
    beem_group_id = group.group_id

    record_delete(group)
    apply_all(organization)

    assert not Group.objects.filter(pk=beem_group_id).exists()
    assert not DirectoryRecord.objects.filter(pk=group.pk).exists()
    events = ChangeEvent.objects.filter(scim_id=group.scim_id).order_by("id")
    assert [(e.outcome, e.label) for e in events] == [
        ("group_synced", "Engineers"),
        ("group_deleted", "Engineers"),
    ]


def test_beem_only_groups_are_left_alone(organization):
    sync_settings_make(organization)
    (a,) = users(organization, 1)
    own = member_services.group_create(organization=organization, name="Lunch club")
    group_create(organization, display_name="Engineers", members=[a])

    apply_all(organization)

    assert Group.objects.get(pk=own.pk).directory_managed is False
    assert Group.objects.filter(organization=organization).count() == 2
