"""How jobs finish change events: converge once, skip the superseded, fail with a reason."""

import pytest
from django.db import connection

from directory_sync.engine import events_drain, records
from directory_sync.models import ChangeEvent, DirectoryRecord, ProvisioningRun
from directory_sync.redispatch import change_events_redispatch
from directory_sync.selectors import run_summary
from directory_sync.tasks import MAX_RETRIES, apply_change_events
from members import services as member_services
from members.models import Member

from .engine_factories import event_record_apply, sync_settings_make, user_create, user_update
from .test_apply_users import apply_all, apply_mode  # noqa: F401 - both modes

pytestmark = pytest.mark.django_db


def events_of(record) -> list[tuple[int, str, str, str]]:
    return list(
        ChangeEvent.objects.filter(scim_id=record.scim_id)
        .order_by("record_version")
        .values_list("record_version", "status", "outcome", "reason")
    )


def test_several_pending_changes_of_one_user_are_applied_once(organization):
    sync_settings_make(organization)
    record = user_create(organization, user_name="a@x.example", email="a@x.example")
    user_update(record, title="Engineer")
    user_update(record, title="Lead")
    first_event = ChangeEvent.objects.filter(scim_id=record.scim_id).order_by("id").first()

    event_record_apply(first_event.pk)

    assert events_of(record) == [
        (1, "skipped", "", "Superseded: the directory record was applied at version 3."),
        (2, "skipped", "", "Superseded: the directory record was applied at version 3."),
        (3, "applied", "created", ""),
    ]
    assert Member.objects.get().job_title == "Lead"
    # The other two jobs arrive later and change nothing.
    assert not apply_all(organization)


def test_a_duplicated_job_is_a_no_op(organization):
    sync_settings_make(organization)
    record = user_create(organization, user_name="a@x.example", email="a@x.example")
    event = ChangeEvent.objects.get(scim_id=record.scim_id)
    events_drain(organization_id=organization.pk)

    assert events_drain(organization_id=organization.pk) == 0

    event.refresh_from_db()
    assert (event.status, event.outcome, event.attempts) == ("applied", "created", 1)
    assert Member.objects.count() == 1


def test_jobs_run_out_of_order_end_in_the_newest_state(organization):
    sync_settings_make(organization)
    record = user_create(organization, user_name="a@x.example", email="a@x.example")
    user_update(record, title="Lead")
    older, newer = ChangeEvent.objects.filter(scim_id=record.scim_id).order_by("id")

    event_record_apply(newer.pk)
    event_record_apply(older.pk)

    assert Member.objects.get().job_title == "Lead"
    assert events_of(record) == [
        (1, "skipped", "", "Superseded: the directory record was applied at version 2."),
        (2, "applied", "created", ""),
    ]


def test_event_for_a_record_applied_at_a_newer_version_is_skipped(organization):
    sync_settings_make(organization)
    record = user_create(organization, user_name="a@x.example", email="a@x.example")
    apply_all(organization)
    user_update(record, title="Lead")
    apply_all(organization)
    # An old event reset to pending by hand; its record is already at its newest version.
    ChangeEvent.objects.filter(scim_id=record.scim_id, record_version=1).update(status="pending")

    result = event_record_apply(
        ChangeEvent.objects.get(scim_id=record.scim_id, record_version=1).pk
    )

    assert result.status == "skipped"
    assert events_of(record)[0] == (
        1,
        "skipped",
        "",
        "Superseded: the directory record was applied at version 2.",
    )


def test_event_of_a_purged_record_is_skipped_with_a_reason(organization):
    sync_settings_make(organization)
    record = user_create(organization, user_name="a@x.example", email="a@x.example")
    event = ChangeEvent.objects.get(scim_id=record.scim_id)
    DirectoryRecord.objects.filter(pk=record.pk).delete()

    events_drain(organization_id=organization.pk)

    event.refresh_from_db()
    assert (event.status, event.reason) == ("skipped", "The directory record no longer exists.")


def test_permanent_error_fails_the_event_with_its_reason_and_changes_nothing(organization):
    sync_settings_make(organization, identify_by="email")
    member_services.member_create(organization=organization, email="taken@x.example")
    record = user_create(organization, user_name="a@x.example", email="a@x.example")
    apply_all(organization)
    # The directory changes the identifying email to one another member already has...
    user_update(record, email="taken@x.example", title="Changed")
    apply_all(organization)

    assert events_of(record)[-1] == (
        2,
        "failed",
        "",
        "The email taken@x.example already belongs to taken@x.example.",
    )
    record.refresh_from_db()
    # ... the whole apply rolled back: the title did not change either.
    assert (record.applied_version, record.member.job_title) == (1, "")

    # Fixed in the directory: the next version applies.
    user_update(record, email="a@x.example")
    apply_all(organization)
    assert events_of(record)[-1][:3] == (3, "applied", "updated")


def test_unexpected_error_fails_the_event_instead_of_leaving_it_pending(organization):
    sync_settings_make(organization)
    record = user_create(organization, user_name="a@x.example", email="a@x.example")
    # A document that breaks the contract (never written by the SCIM layer).
    DirectoryRecord.objects.filter(pk=record.pk).update(document=["not", "an", "object"])
    event = ChangeEvent.objects.get(scim_id=record.scim_id)

    apply_change_events.apply(args=[organization.pk])

    event.refresh_from_db()
    assert event.status == "failed"
    assert event.reason.startswith("Unexpected error (AttributeError):")


@pytest.mark.django_db(transaction=True)
def test_lock_timeout_is_retried_then_fails_and_redispatch_applies_it_later(
    require_postgres, organization, monkeypatch
):
    import psycopg

    monkeypatch.setattr(records, "LOCK_TIMEOUT", "50ms")
    sync_settings_make(organization)
    record = user_create(organization, user_name="a@x.example", email="a@x.example")
    event = ChangeEvent.objects.get(scim_id=record.scim_id)
    # In this transactional test the create was applied on commit already: make it pending
    # again, as if its job had not run yet.
    ChangeEvent.objects.filter(pk=event.pk).update(status="pending", outcome="", attempts=0)
    DirectoryRecord.objects.filter(pk=record.pk).update(applied_version=0)
    params = connection.get_connection_params()
    other = psycopg.connect(
        dbname=params["dbname"],
        user=params.get("user"),
        host=params.get("host"),
        port=params.get("port"),
    )
    try:
        # Another transaction holds the record (a slow SCIM write, a stuck job).
        other.execute(
            "SELECT id FROM directory_sync_directoryrecord WHERE id = %s FOR UPDATE", [record.pk]
        )
        apply_change_events.apply(args=[organization.pk])
        event.refresh_from_db()
        assert event.status == "failed"
        assert event.attempts == MAX_RETRIES + 1
        assert event.reason.startswith(f"Gave up after {MAX_RETRIES} retries:")
        assert "lock timeout" in event.reason
    finally:
        other.rollback()
        other.close()

    result = change_events_redispatch(include_failed=True, older_than_seconds=0)

    event.refresh_from_db()
    assert (result.failed_reset, event.status, event.outcome) == (1, "applied", "unchanged")


def test_run_summary_counts_outcomes_and_lists_failures(organization):
    sync_settings_make(organization, identify_by="email")
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    member_services.member_create(organization=organization, email="old@x.example")
    gone = user_create(organization, user_name="gone@x.example", email="gone@x.example")
    changed = user_create(organization, user_name="c@x.example", email="c@x.example")
    apply_all(organization)

    user_create(organization, run=run, user_name="new@x.example", email="new@x.example")
    user_create(organization, run=run, user_name="old@x.example", email="old@x.example")
    user_update(changed, run=run, title="Lead")
    user_update(gone, run=run, active=False)
    # Its email belongs to the member of another directory user: refused.
    bad = user_create(organization, run=run, user_name="bad@x.example", email="c@x.example")
    user_update(bad, run=run, title="x")
    apply_all(organization)

    summary = run_summary(run)

    assert (
        summary.created,
        summary.linked,
        summary.updated,
        summary.deleted,
        summary.failed,
        summary.skipped,
        summary.pending,
    ) == (1, 1, 1, 1, 1, 1, 0)
    assert [(e.label, e.reason) for e in summary.failures] == [
        ("bad@x.example", "The email c@x.example already belongs to directory user c@x.example.")
    ]


def test_run_summary_is_one_query(organization, django_assert_num_queries):
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    with django_assert_num_queries(1):
        run_summary(run)
