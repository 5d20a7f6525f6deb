"""Review decisions: the department pick and possible duplicate members."""

import pytest

from directory_sync.models import DirectoryRecord, ReviewItem, SyncSettings
from directory_sync.review import ReviewError, review_department_choose, review_duplicate_resolve
from members import services as member_services
from members.models import AuditEntry, Department, GroupMembership, Member, Resource

from .engine_factories import group_create, sync_settings_make, user_create, user_update
from .test_apply_users import apply_all, apply_mode, last_event  # noqa: F401 - both modes

pytestmark = pytest.mark.django_db


@pytest.fixture
def duplicate(organization):
    """Sara exists in Beem by email; the directory identifies by phone and creates a second."""
    sync_settings_make(organization, identify_by=SyncSettings.IdentifyBy.PHONE)
    existing = member_services.member_create(
        organization=organization, display_name="Sara (Beem)", email="sara@acme.example"
    )
    member_services.resource_create(
        organization=organization, kind="document", name="Old handbook", owner=existing
    )
    record = user_create(
        organization,
        user_name="sara@acme.example",
        display_name="Sara Al-Harbi",
        email="sara@acme.example",
        phone="+966512345678",
    )
    group = group_create(organization, display_name="Engineers", members=[record])
    apply_all(organization)
    record.refresh_from_db()
    member_services.resource_create(
        organization=organization, kind="channel", name="New channel", owner=record.member
    )
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE)
    return record, existing, record.member, item, group


def test_link_moves_the_directory_record_to_the_existing_member(duplicate, admin_user):
    record, existing, created, item, group = duplicate

    review_duplicate_resolve(item=item, action="link", actor=admin_user)

    assert list(Member.objects.values_list("pk", flat=True)) == [existing.pk]
    record.refresh_from_db()
    assert record.member_id == existing.pk
    existing.refresh_from_db()
    assert (
        existing.display_name,
        existing.email,
        existing.phone,
        existing.directory_managed,
    ) == ("Sara Al-Harbi", "sara@acme.example", "+966512345678", True)
    assert sorted(Resource.objects.filter(owner=existing).values_list("name", flat=True)) == [
        "New channel",
        "Old handbook",
    ]
    group.refresh_from_db()
    assert list(
        GroupMembership.objects.filter(group=group.group).values_list("member_id", flat=True)
    ) == [existing.pk]
    item.refresh_from_db()
    assert (item.status, item.resolution, item.resolved_by, item.member_id) == (
        "resolved",
        "link",
        admin_user,
        existing.pk,
    )
    audit = AuditEntry.objects.get(action="review.duplicate_resolved")
    assert (audit.actor_label, audit.detail["action"], audit.detail["other_member"]) == (
        "admin:admin@acme",
        "link",
        existing.pk,
    )


def test_merge_folds_the_existing_member_into_the_directory_member(duplicate, admin_user):
    record, existing, created, item, _group = duplicate

    review_duplicate_resolve(item=item, action="merge", actor=admin_user)

    assert list(Member.objects.values_list("pk", flat=True)) == [created.pk]
    created.refresh_from_db()
    # The email the existing member held is free now and comes from the directory.
    assert (created.email, created.phone) == ("sara@acme.example", "+966512345678")
    assert sorted(Resource.objects.filter(owner=created).values_list("name", flat=True)) == [
        "New channel",
        "Old handbook",
    ]
    record.refresh_from_db()
    assert record.member_id == created.pk
    assert AuditEntry.objects.filter(action="member.merged").count() == 1
    item.refresh_from_db()
    assert (item.status, item.resolution) == ("resolved", "merge")


def test_keep_both_changes_nothing_and_is_not_raised_again(duplicate, admin_user):
    record, existing, created, item, _group = duplicate

    review_duplicate_resolve(item=item, action="keep_both", actor=admin_user)
    user_update(record, title="Lead")
    apply_all(record.organization)

    assert Member.objects.count() == 2
    item.refresh_from_db()
    assert (item.status, item.resolution) == ("resolved", "keep_both")
    assert ReviewItem.objects.filter(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE).count() == 1
    assert AuditEntry.objects.filter(action="review.duplicate_resolved").count() == 1


def test_a_resolved_duplicate_cannot_be_resolved_twice(duplicate, admin_user):
    *_rest, item, _group = duplicate
    review_duplicate_resolve(item=item, action="keep_both", actor=admin_user)

    with pytest.raises(ReviewError, match="already resolved"):
        review_duplicate_resolve(item=item, action="link", actor=admin_user)


def test_unknown_action_is_refused(duplicate, admin_user):
    *_rest, item, _group = duplicate

    with pytest.raises(ReviewError, match="Unknown action"):
        review_duplicate_resolve(item=item, action="delete", actor=admin_user)


def test_choosing_a_department_that_is_not_a_candidate_is_refused(organization, admin_user):
    sync_settings_make(organization)
    member_services.department_path_ensure(organization=organization, path=["A", "Ops"])
    member_services.department_path_ensure(organization=organization, path=["B", "Ops"])
    user_create(organization, user_name="a@x.example", email="a@x.example", department="Ops")
    apply_all(organization)
    item = ReviewItem.objects.get()
    other = member_services.department_get_or_create(organization=organization, name="Sales")

    with pytest.raises(ReviewError, match="Choose one of the departments named “Ops”"):
        review_department_choose(item=item, department=other, actor=admin_user)
    item.refresh_from_db()
    assert (item.status, item.chosen_department) == ("open", None)


def test_department_pick_is_audited_applied_and_can_be_changed(organization, admin_user):
    sync_settings_make(organization)
    first = member_services.department_path_ensure(organization=organization, path=["A", "Ops"])
    second = member_services.department_path_ensure(organization=organization, path=["B", "Ops"])
    record = user_create(
        organization, user_name="a@x.example", email="a@x.example", department="Ops"
    )
    apply_all(organization)
    item = ReviewItem.objects.get()

    review_department_choose(item=item, department=first, actor=admin_user)
    review_department_choose(item=item, department=second, actor=admin_user)

    record.refresh_from_db()
    assert list(record.member.department_links.values_list("department_id", flat=True)) == [
        second.pk
    ]
    entries = list(
        AuditEntry.objects.filter(action="review.department_chosen")
        .order_by("id")
        .values_list("detail__department_name", "detail__previous")
    )
    assert entries == [("Ops", None), ("Ops", "Ops")]
    assert Department.objects.filter(name="Ops").count() == 2
    assert last_event(record).status == "applied"
    assert DirectoryRecord.objects.get(pk=record.pk).applied_version == record.version


@pytest.mark.django_db(transaction=True)
def test_a_decision_that_loses_a_deadlock_is_run_again(
    require_postgres, duplicate, admin_user, caplog
):
    """A real deadlock: another transaction (a drain) holds the review item and then asks for
    the directory record the decision holds. PostgreSQL aborts the decision (the other side
    checks for deadlocks later); the decision runs again once the other side is done."""
    import threading
    import time

    import psycopg
    from django.db import connection

    record, existing, created, item, group = duplicate
    params = connection.get_connection_params()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        decision_pid = cursor.fetchone()[0]
    other = psycopg.connect(
        dbname=params["dbname"],
        user=params.get("user"),
        host=params.get("host"),
        port=params.get("port"),
    )
    holding = threading.Event()
    errors = []

    def drain_side():
        try:
            other.execute("SET deadlock_timeout = '20s'")
            other.execute(
                "SELECT id FROM directory_sync_reviewitem WHERE id = %s FOR UPDATE", [item.pk]
            )
            holding.set()
            # Until the decision waits for the review item (it holds the record by then).
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                row = other.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [decision_pid]
                ).fetchone()
                if row and row[0] == "Lock":
                    break
                time.sleep(0.02)
            other.execute(
                "SELECT id FROM directory_sync_directoryrecord WHERE id = %s FOR UPDATE",
                [record.pk],
            )
            other.rollback()
        except Exception as exc:  # reported by the test
            errors.append(exc)
            holding.set()

    thread = threading.Thread(target=drain_side)
    thread.start()
    try:
        assert holding.wait(10)
        with caplog.at_level("INFO", logger="directory_sync.review"):
            review_duplicate_resolve(item=item, action="link", actor=admin_user)
    finally:
        thread.join(30)
        other.close()

    assert errors == []
    assert "review decision retried after DeadlockDetected" in caplog.text
    item.refresh_from_db()
    record.refresh_from_db()
    assert (item.status, item.resolution, record.member_id) == ("resolved", "link", existing.pk)
    assert list(Member.objects.values_list("pk", flat=True)) == [existing.pk]
