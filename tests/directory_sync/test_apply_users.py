"""The sync engine applied to directory users: identification, profile, manager, deletion."""

import pytest

from directory_sync.engine import drain, events_drain
from directory_sync.models import ChangeEvent, DirectoryRecord, ReviewItem, SyncSettings
from members import services as member_services
from members.models import AuditEntry, Member, Resource

from .engine_factories import (
    directory_differences,
    event_record_apply,
    record_delete,
    sync_settings_make,
    user_create,
    user_update,
)

pytestmark = pytest.mark.django_db


_APPLY_MODE = {"value": "per_event"}


@pytest.fixture(autouse=True, params=["per_event", "drain"])
def apply_mode(request, monkeypatch):
    """Every engine test runs twice: one record at a time in event order (``record_apply``,
    as a drain applies a record outside a batch; records meet each other's changes in
    separate transactions) and the organization drain the outbox wakes (``events_drain``:
    batched users, small chunks so a test's records span several)."""
    monkeypatch.setattr(drain, "DRAIN_CHUNK", 3)
    _APPLY_MODE["value"] = request.param
    yield request.param
    _APPLY_MODE["value"] = "per_event"


def apply_all(organization):
    """Run every pending event's job, oldest first (what the worker does)."""
    if _APPLY_MODE["value"] == "drain":
        return events_drain(organization_id=organization.pk)
    results = []
    for event_id in ChangeEvent.objects.filter(
        organization=organization, status=ChangeEvent.Status.PENDING
    ).values_list("id", flat=True):
        results.append(event_record_apply(event_id))
    return results


def last_event(record) -> ChangeEvent:
    return ChangeEvent.objects.filter(scim_id=record.scim_id).order_by("-id").first()


SARA = dict(
    user_name="sara@acme.example",
    display_name="Sara Al-Harbi",
    given_name="Sara",
    family_name="Al-Harbi",
    email="Sara@Acme.example",
    phone="+966 51 234 5678",
    title="Engineer",
    country="SA",
    employee_number="E-1",
)


def test_new_user_creates_a_directory_managed_member_with_the_whole_profile(organization):
    sync_settings_make(organization)
    record = user_create(organization, **SARA)

    apply_all(organization)

    member = Member.objects.get(organization=organization)
    assert (
        member.display_name,
        member.given_name,
        member.family_name,
        member.email,
        member.phone,
        member.job_title,
        member.country,
        member.employee_number,
        member.directory_managed,
    ) == (
        "Sara Al-Harbi",
        "Sara",
        "Al-Harbi",
        "sara@acme.example",
        "+966512345678",
        "Engineer",
        "SA",
        "E-1",
        True,
    )
    record.refresh_from_db()
    assert record.member == member
    assert record.applied_version == record.version == 1
    event = last_event(record)
    assert (event.status, event.outcome) == ("applied", "created")
    assert directory_differences(organization) == []


def test_existing_member_with_the_same_phone_is_linked_and_updated(organization):
    sync_settings_make(organization, identify_by=SyncSettings.IdentifyBy.PHONE)
    existing = member_services.member_create(
        organization=organization, display_name="S. Harbi", phone="+966512345678"
    )
    record = user_create(organization, **SARA)

    apply_all(organization)

    assert Member.objects.filter(organization=organization).count() == 1
    existing.refresh_from_db()
    assert (existing.display_name, existing.email, existing.directory_managed) == (
        "Sara Al-Harbi",
        "sara@acme.example",
        True,
    )
    record.refresh_from_db()
    assert record.member_id == existing.pk
    assert last_event(record).outcome == "linked"


def test_phone_without_country_code_is_normalised_with_the_default_country(organization):
    sync_settings_make(organization, identify_by="phone", default_phone_country="SA")
    existing = member_services.member_create(organization=organization, phone="+966512345678")
    record = user_create(organization, **{**SARA, "phone": "051 234 5678"})

    apply_all(organization)

    record.refresh_from_db()
    assert record.member_id == existing.pk
    assert last_event(record).outcome == "linked"


def test_existing_member_with_the_same_email_in_another_case_is_linked(organization):
    sync_settings_make(organization, identify_by=SyncSettings.IdentifyBy.EMAIL)
    existing = member_services.member_create(organization=organization, email="sara@acme.example")
    record = user_create(organization, **{**SARA, "email": "SARA@ACME.EXAMPLE"})

    apply_all(organization)

    record.refresh_from_db()
    assert record.member_id == existing.pk
    existing.refresh_from_db()
    assert existing.phone == "+966512345678"


def test_member_linked_to_another_directory_user_is_not_taken_over(organization):
    sync_settings_make(organization, identify_by="phone")
    first = user_create(organization, user_name="a@acme.example", phone="+966512345678")
    apply_all(organization)
    second = user_create(organization, user_name="b@acme.example", phone="+966512345678")

    apply_all(organization)

    first.refresh_from_db()
    second.refresh_from_db()
    assert second.member_id is None
    event = last_event(second)
    assert event.status == "failed"
    assert (
        event.reason
        == "The mobile number +966512345678 already belongs to directory user a@acme.example."
    )
    assert Member.objects.filter(organization=organization).count() == 1


def test_identifier_mismatch_creates_a_second_member_and_a_possible_duplicate_review(
    organization,
):
    # The member was created in Beem by email; the organization identifies by phone.
    sync_settings_make(organization, identify_by="phone")
    by_email = member_services.member_create(
        organization=organization, display_name="Sara (email)", email="sara@acme.example"
    )
    record = user_create(organization, **SARA)

    apply_all(organization)

    record.refresh_from_db()
    created = record.member
    assert created.pk != by_email.pk
    assert (created.phone, created.email) == ("+966512345678", None)
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE)
    assert (item.record_id, item.member_id, item.other_member_id, item.status) == (
        record.pk,
        created.pk,
        by_email.pk,
        "open",
    )
    event = last_event(record)
    assert event.outcome == "created"
    assert "belongs to member Sara (email)" in event.reason
    # Applying again does not open the same review twice.
    user_update(record, title="Lead")
    apply_all(organization)
    assert ReviewItem.objects.filter(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE).count() == 1


def test_invalid_mobile_fails_the_event_when_members_are_identified_by_phone(organization):
    sync_settings_make(organization, identify_by="phone")
    record = user_create(organization, user_name="x@acme.example", phone="0512345678")

    apply_all(organization)

    event = last_event(record)
    assert event.status == "failed"
    assert event.reason.startswith("The mobile number cannot be used to identify the member:")
    assert "country code" in event.reason
    assert not Member.objects.exists()


def test_invalid_mobile_is_skipped_with_a_reason_when_members_are_identified_by_email(
    organization,
):
    sync_settings_make(organization, identify_by="email")
    record = user_create(
        organization, user_name="x@acme.example", email="x@acme.example", phone="0512345678"
    )

    apply_all(organization)

    event = last_event(record)
    assert (event.status, event.outcome) == ("applied", "created")
    assert event.reason.startswith("Mobile number not synced:")
    assert Member.objects.get().phone is None


def test_directory_owned_fields_are_overwritten_and_beem_owned_fields_kept(organization):
    sync_settings_make(organization)
    record = user_create(organization, **SARA)
    apply_all(organization)
    member = Member.objects.get()
    Member.objects.filter(pk=member.pk).update(
        job_title="Edited in Beem", status=Member.Status.SUSPENDED
    )

    user_update(record, title="Principal Engineer", given_name="Sarah", country=None)
    apply_all(organization)

    member.refresh_from_db()
    assert (member.job_title, member.given_name, member.country, member.status) == (
        "Principal Engineer",
        "Sarah",
        "",
        "suspended",
    )
    assert last_event(record).outcome == "updated"


def test_applying_an_unchanged_document_again_reports_unchanged(organization):
    sync_settings_make(organization)
    record = user_create(organization, **SARA)
    apply_all(organization)

    user_update(record, title="Engineer")
    apply_all(organization)

    assert last_event(record).outcome == "unchanged"


def test_manager_is_linked_to_the_manager_records_member(organization):
    sync_settings_make(organization)
    boss = user_create(organization, user_name="boss@acme.example", email="boss@acme.example")
    apply_all(organization)
    report = user_create(
        organization, user_name="r@acme.example", email="r@acme.example", manager=boss
    )

    apply_all(organization)

    boss.refresh_from_db()
    report.refresh_from_db()
    assert report.member.manager_id == boss.member_id


def test_manager_created_after_the_report_is_linked_as_soon_as_it_exists(organization):
    sync_settings_make(organization)
    boss = user_create(organization, user_name="boss@acme.example", email="boss@acme.example")
    report = user_create(
        organization, user_name="r@acme.example", email="r@acme.example", manager=boss
    )
    # The report's job runs first: its manager has no member yet.
    event_record_apply(last_event(report).pk)
    report.refresh_from_db()
    assert report.member.manager_id is None

    event_record_apply(last_event(boss).pk)

    boss.refresh_from_db()
    report.refresh_from_db()
    assert report.member.manager_id == boss.member_id
    assert directory_differences(organization) == []


def test_removing_the_manager_in_the_directory_clears_it(organization):
    sync_settings_make(organization)
    boss = user_create(organization, user_name="boss@acme.example", email="boss@acme.example")
    report = user_create(
        organization, user_name="r@acme.example", email="r@acme.example", manager=boss
    )
    apply_all(organization)

    user_update(report, manager=None)
    apply_all(organization)

    report.refresh_from_db()
    assert report.member.manager_id is None


def test_deactivation_deletes_the_member_and_unassigns_its_resources(organization):
    sync_settings_make(organization)
    record = user_create(organization, **SARA)
    apply_all(organization)
    member = Member.objects.get()
    doc = member_services.resource_create(
        organization=organization, kind="document", name="Handbook", owner=member
    )

    user_update(record, active=False)
    apply_all(organization)

    assert not Member.objects.exists()
    record.refresh_from_db()
    assert (record.member_id, record.active) == (None, False)
    doc.refresh_from_db()
    assert (doc.owner_id, doc.previous_owner_name, doc.unassigned_at is not None) == (
        None,
        "Sara Al-Harbi",
        True,
    )
    event = last_event(record)
    assert (event.status, event.outcome, event.kind) == ("applied", "deleted", "deactivated")
    assert event.reason == "1 resource moved to Unassigned."
    assert AuditEntry.objects.filter(action="member.resources_moved").count() == 1


def test_transfer_rule_gives_the_deleted_members_resources_to_the_manager(organization):
    sync_settings_make(
        organization, deletion_rule=SyncSettings.DeletionRule.DELETE_TRANSFER_TO_MANAGER
    )
    boss = user_create(organization, user_name="boss@acme.example", email="boss@acme.example")
    report = user_create(organization, **SARA, manager=boss)
    apply_all(organization)
    report.refresh_from_db()
    boss.refresh_from_db()
    doc = member_services.resource_create(
        organization=organization, kind="channel", name="Ops", owner=report.member
    )

    user_update(report, active=False)
    apply_all(organization)

    doc.refresh_from_db()
    assert (doc.owner_id, doc.unassigned_at) == (boss.member_id, None)
    assert last_event(report).reason == "1 resource given to the manager."


def test_hard_delete_deletes_the_member_and_purges_the_tombstone(organization):
    sync_settings_make(organization)
    record = user_create(organization, **SARA)
    apply_all(organization)
    scim_id = record.scim_id

    record_delete(record)
    apply_all(organization)

    assert not DirectoryRecord.objects.filter(scim_id=scim_id).exists()
    assert not Member.objects.exists()
    events = list(ChangeEvent.objects.filter(scim_id=scim_id).order_by("id"))
    assert [(e.kind, e.status, e.outcome, e.record_id, e.label) for e in events] == [
        ("created", "applied", "created", None, "sara@acme.example"),
        ("deleted", "applied", "deleted", None, "sara@acme.example"),
    ]


def test_reactivation_creates_a_new_member_and_keeps_the_scim_id(organization):
    sync_settings_make(organization)
    record = user_create(organization, **SARA)
    apply_all(organization)
    first_member_id = Member.objects.get().pk
    user_update(record, active=False)
    apply_all(organization)

    user_update(record, active=True)
    apply_all(organization)

    new_member = Member.objects.get()
    assert new_member.pk != first_member_id
    record.refresh_from_db()
    assert record.member_id == new_member.pk
    assert DirectoryRecord.objects.get(pk=record.pk).scim_id == record.scim_id
    event = last_event(record)
    assert (event.kind, event.outcome) == ("reactivated", "created")


def test_deactivated_user_that_never_had_a_member_is_unchanged(organization):
    sync_settings_make(organization)
    record = user_create(organization, **SARA, active=False)

    apply_all(organization)

    assert not Member.objects.exists()
    assert last_event(record).outcome == "unchanged"


def test_resources_of_a_deleted_member_survive_and_stay_listed(organization):
    sync_settings_make(organization)
    record = user_create(organization, **SARA)
    apply_all(organization)
    member_services.resource_create(
        organization=organization, kind="approval_flow", name="Leave", owner=Member.objects.get()
    )

    record_delete(record)
    apply_all(organization)

    assert list(Resource.objects.filter(owner__isnull=True).values_list("name", flat=True)) == [
        "Leave"
    ]


def test_invalid_email_is_skipped_with_a_reason_when_members_are_identified_by_phone(
    organization,
):
    sync_settings_make(organization, identify_by="phone")
    record = user_create(
        organization, user_name="x@acme.example", email="not-an-email", phone="+966512345678"
    )

    apply_all(organization)

    event = last_event(record)
    assert (event.status, event.outcome, event.reason) == (
        "applied",
        "created",
        "Email not synced: not-an-email is not a valid email address.",
    )
    assert Member.objects.get().email is None
