"""Departments from the directory: plain names, structure strings, duplicate policies."""

import pytest

from directory_sync.models import ReviewItem, SyncSettings
from members import services as member_services
from members.models import Department, Member

from .engine_factories import directory_differences, sync_settings_make, user_create, user_update
from .test_apply_users import apply_all, apply_mode, last_event  # noqa: F401 - both modes

pytestmark = pytest.mark.django_db

Policy = SyncSettings.DuplicateDepartmentPolicy


def member_departments(record) -> list[tuple[str, bool]]:
    record.refresh_from_db()
    return sorted(
        (link.department.name, link.is_primary)
        for link in record.member.department_links.select_related("department")
    )


def two_engineering_departments(organization) -> tuple[Department, Department]:
    riyadh = member_services.department_path_ensure(
        organization=organization, path=["Riyadh", "Engineering"]
    )
    jeddah = member_services.department_path_ensure(
        organization=organization, path=["Jeddah", "Engineering"]
    )
    return riyadh, jeddah


def test_plain_name_puts_the_member_in_the_department_of_that_name(organization):
    sync_settings_make(organization)
    sales = member_services.department_path_ensure(
        organization=organization, path=["Head Office", "Sales"]
    )
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="Sales"
    )

    apply_all(organization)

    record.refresh_from_db()
    assert list(record.member.department_links.values_list("department_id", "is_primary")) == [
        (sales.pk, True)
    ]


def test_plain_name_unknown_to_beem_creates_a_root_department(organization):
    sync_settings_make(organization)
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="Legal"
    )

    apply_all(organization)

    legal = Department.objects.get(organization=organization, name="Legal")
    assert legal.parent_id is None
    assert member_departments(record) == [("Legal", True)]


def test_department_change_moves_the_member_and_removal_clears_it(organization):
    sync_settings_make(organization)
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="Legal"
    )
    apply_all(organization)

    user_update(record, department="Finance")
    apply_all(organization)
    assert member_departments(record) == [("Finance", True)]

    user_update(record, department=None)
    apply_all(organization)
    assert member_departments(record) == []


def test_structure_string_builds_the_tree_and_shows_the_current_department_only(organization):
    sync_settings_make(
        organization,
        department_format=SyncSettings.DepartmentFormat.STRUCTURE_STRING,
        department_delimiter="/",
    )
    record = user_create(
        organization,
        user_name="a@x.example",
        email="a@x.example",
        department="Head Office / Engineering/Platform",
    )

    apply_all(organization)

    platform = Department.objects.get(organization=organization, name="Platform")
    assert (platform.parent.name, platform.parent.parent.name, platform.parent.parent.parent) == (
        "Engineering",
        "Head Office",
        None,
    )
    record.refresh_from_db()
    assert record.member.department_display == Member.DepartmentDisplay.CURRENT_ONLY
    assert member_departments(record) == [("Platform", True)]
    assert directory_differences(organization) == []


def test_structure_string_with_a_custom_delimiter_reuses_existing_nodes(organization):
    sync_settings_make(
        organization,
        department_format=SyncSettings.DepartmentFormat.STRUCTURE_STRING,
        department_delimiter=">",
    )
    existing = member_services.department_path_ensure(organization=organization, path=["HQ", "Ops"])
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="HQ>Ops"
    )

    apply_all(organization)

    assert Department.objects.filter(organization=organization).count() == 2
    record.refresh_from_db()
    assert record.member.department_links.get().department_id == existing.pk


def test_duplicate_name_first_match_takes_the_oldest_department(organization):
    sync_settings_make(organization, duplicate_department_policy=Policy.FIRST_MATCH)
    riyadh, _ = two_engineering_departments(organization)
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="Engineering"
    )

    apply_all(organization)

    record.refresh_from_db()
    assert list(record.member.department_links.values_list("department_id", flat=True)) == [
        riyadh.pk
    ]
    assert not ReviewItem.objects.exists()


def test_duplicate_name_all_matches_joins_every_department(organization):
    sync_settings_make(organization, duplicate_department_policy=Policy.ALL_MATCHES)
    riyadh, jeddah = two_engineering_departments(organization)
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="Engineering"
    )

    apply_all(organization)

    record.refresh_from_db()
    assert sorted(
        record.member.department_links.values_list("department_id", "is_primary")
    ) == sorted([(riyadh.pk, True), (jeddah.pk, False)])


def test_duplicate_name_hold_opens_a_review_item_and_applies_the_rest_of_the_profile(
    organization,
):
    sync_settings_make(organization, duplicate_department_policy=Policy.HOLD_FOR_ADMIN)
    riyadh, jeddah = two_engineering_departments(organization)
    record = user_create(
        organization,
        user_name="a@x.example",
        email="a@x.example",
        title="Engineer",
        department="Engineering",
    )

    apply_all(organization)

    record.refresh_from_db()
    assert record.member.job_title == "Engineer"
    assert member_departments(record) == []
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT)
    assert (item.status, item.directory_value, item.member_id, item.record_id) == (
        "open",
        "Engineering",
        record.member_id,
        record.pk,
    )
    assert sorted(item.candidates.values_list("pk", flat=True)) == sorted([riyadh.pk, jeddah.pk])
    event = last_event(record)
    assert (event.status, event.outcome) == ("applied", "created")
    assert (
        event.reason == "Department “Engineering” matches 2 departments: held for an administrator."
    )
    # A later change to another attribute keeps the hold and reports it.
    user_update(record, title="Lead")
    apply_all(organization)
    assert last_event(record).outcome == "held"
    assert ReviewItem.objects.filter(kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT).count() == 1


def test_admins_pick_is_kept_until_the_directory_value_changes(organization, admin_user):
    from directory_sync.review import review_department_choose

    sync_settings_make(organization, duplicate_department_policy=Policy.HOLD_FOR_ADMIN)
    riyadh, jeddah = two_engineering_departments(organization)
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="Engineering"
    )
    apply_all(organization)
    item = ReviewItem.objects.get()

    review_department_choose(item=item, department=jeddah, actor=admin_user)
    record.refresh_from_db()
    assert list(record.member.department_links.values_list("department_id", flat=True)) == [
        jeddah.pk
    ]

    # Same directory value: the pick sticks.
    user_update(record, title="Lead")
    apply_all(organization)
    record.refresh_from_db()
    assert list(record.member.department_links.values_list("department_id", flat=True)) == [
        jeddah.pk
    ]
    assert last_event(record).outcome == "updated"

    # Another duplicated value: a new hold; the member keeps its department meanwhile.
    member_services.department_path_ensure(organization=organization, path=["Riyadh", "Ops"])
    member_services.department_path_ensure(organization=organization, path=["Jeddah", "Ops"])
    user_update(record, department="Ops")
    apply_all(organization)
    items = list(ReviewItem.objects.order_by("id").values_list("directory_value", "status"))
    assert items == [("Engineering", "resolved"), ("Ops", "open")]
    record.refresh_from_db()
    assert list(record.member.department_links.values_list("department_id", flat=True)) == [
        jeddah.pk
    ]

    # Back to "Engineering": the old pick no longer applies; the admin is asked again.
    user_update(record, department="Engineering")
    apply_all(organization)
    assert ReviewItem.objects.filter(status="open").get().directory_value == "Engineering"


def test_a_placed_member_is_not_held_when_a_second_department_takes_the_name(organization):
    """Placed while "Engineering" was unique; another "Engineering" appears in Beem: a
    title-only change keeps the member where they are (the directory value did not change)."""
    sync_settings_make(organization, duplicate_department_policy=Policy.HOLD_FOR_ADMIN)
    riyadh = member_services.department_path_ensure(
        organization=organization, path=["Riyadh", "Engineering"]
    )
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="Engineering"
    )
    apply_all(organization)
    member_services.department_path_ensure(
        organization=organization, path=["Jeddah", "Engineering"]
    )

    user_update(record, title="Lead")
    apply_all(organization)

    assert not ReviewItem.objects.exists()
    assert member_departments(record) == [("Engineering", True)]
    assert record.member.department_links.get().department_id == riyadh.pk
    assert (last_event(record).outcome, record.member.job_title) == ("updated", "Lead")
    # A changed value is judged again: held, the member stays where they are meanwhile.
    member_services.department_path_ensure(organization=organization, path=["Riyadh", "Ops"])
    member_services.department_path_ensure(organization=organization, path=["Jeddah", "Ops"])
    user_update(record, department="Ops")
    apply_all(organization)
    assert list(ReviewItem.objects.values_list("directory_value", "status")) == [("Ops", "open")]
    assert member_departments(record) == [("Engineering", True)]


def test_a_hold_for_a_former_value_is_superseded_when_the_value_changes(organization):
    sync_settings_make(organization, duplicate_department_policy=Policy.HOLD_FOR_ADMIN)
    two_engineering_departments(organization)
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="Engineering"
    )
    apply_all(organization)
    assert ReviewItem.objects.get().status == "open"

    user_update(record, department="Sales")
    apply_all(organization)

    item = ReviewItem.objects.get()
    assert (item.status, item.resolution) == ("resolved", "superseded")
    assert member_departments(record) == [("Sales", True)]
