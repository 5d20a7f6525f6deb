"""manage.py directory_sync: every subcommand, its output, and refusal without --yes."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from directory_sync import services as sync_services
from directory_sync.engine import events_drain
from directory_sync.models import (
    ChangeEvent,
    DirectoryRecord,
    ProvisioningRun,
    RequestLog,
    SyncSettings,
)
from members import services as member_services
from members.models import AuditEntry, Member

from .conftest import token_obtain
from .engine_factories import sync_settings_make, user_create

pytestmark = pytest.mark.django_db

SUBCOMMANDS = [
    "status",
    "configure",
    "credentials",
    "activate",
    "stop",
    "redispatch",
    "reconcile",
    "purge",
]


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("directory_sync", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def apply_pending(organization) -> None:
    events_drain(organization_id=organization.pk)


def sara(organization, **extra) -> DirectoryRecord:
    attributes = dict(
        user_name="sara@acme.example",
        display_name="Sara Al-Harbi",
        given_name="Sara",
        family_name="Al-Harbi",
        email="sara@acme.example",
        phone="+966512345678",
        title="Engineer",
        country="SA",
        employee_number="E-1",
    )
    attributes.update(extra)
    return user_create(organization, **attributes)


# --- help and organization selection -----------------------------------------------------


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        call_command("directory_sync", "--help")

    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in text


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_every_subcommand_has_help(subcommand, capsys):
    with pytest.raises(SystemExit) as exit_info:
        call_command("directory_sync", subcommand, "--help")

    assert exit_info.value.code == 0
    assert f"directory_sync {subcommand}" in capsys.readouterr().out


@pytest.mark.parametrize("subcommand", ["status", "credentials", "activate", "stop"])
def test_unknown_organization_is_a_clear_command_error(subcommand):
    with pytest.raises(CommandError) as error:
        run(subcommand, "--org", "nope")

    assert str(error.value).startswith(
        "Unknown organization 'nope': no organization has that id or slug."
    )


def test_unknown_numeric_organization_is_a_clear_command_error(organization):
    with pytest.raises(CommandError, match="Unknown organization '99999'"):
        run("status", "--org", "99999")


def test_organization_is_chosen_by_id_or_slug(organization, other_organization):
    by_slug = json.loads(run("status", "--org", "acme", "--format", "json")[0])
    by_id = json.loads(run("status", "--org", str(organization.pk), "--format", "json")[0])

    assert by_slug == by_id
    assert [row["organization"]["slug"] for row in by_id] == ["acme"]


# --- status ------------------------------------------------------------------------------


def test_status_json_reports_sync_run_and_backlog(organization, other_organization):
    tested_at = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    sync_settings_make(organization, last_test_connection_at=tested_at, last_request_at=tested_at)
    run_row = ProvisioningRun.objects.create(
        organization=organization, trigger=ProvisioningRun.Trigger.PROBE
    )
    applied = sara(organization, run=run_row)
    apply_pending(organization)
    user_create(organization, user_name="omar@acme.example", email="omar@acme.example", run=run_row)
    ChangeEvent.objects.filter(record=applied).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    pending = ChangeEvent.objects.get(status=ChangeEvent.Status.PENDING)
    ChangeEvent.objects.filter(pk=pending.pk).update(
        created_at=timezone.now() - timedelta(seconds=90)
    )
    run_row.refresh_from_db()

    rows = json.loads(run("status", "--format", "json")[0])

    assert rows[0] == {
        "organization": {"id": organization.pk, "slug": "acme", "name": "Acme"},
        "directory": "entra_id",
        "status": "active",
        "settings": {
            "deletion_rule": "delete_directly",
            "identify_by": "phone",
            "department_format": "plain_name",
            "department_delimiter": "/",
            "duplicate_department_policy": "hold_for_admin",
            "default_phone_country": "",
        },
        "last_test_connection_at": "2026-11-26T09:30:00+00:00",
        "last_request_at": "2026-11-26T09:30:00+00:00",
        "current_run": {
            "id": run_row.pk,
            "started_at": run_row.started_at.isoformat(),
            "last_activity_at": run_row.last_activity_at.isoformat(),
            "requests": 0,
            "events": {"pending": 1, "applied": 1, "skipped": 0, "failed": 0},
            "refused": 0,
            "refused_latest": [],
        },
        "pending_events": 1,
        "failed_events": 0,
        "oldest_pending_age_seconds": rows[0]["oldest_pending_age_seconds"],
    }
    assert 90 <= rows[0]["oldest_pending_age_seconds"] < 150
    assert rows[1]["organization"]["slug"] == "globex"
    assert rows[1]["status"] == "not_configured"
    assert rows[1]["current_run"] is None


def test_status_table_has_one_line_per_organization(organization, other_organization):
    sync_settings_make(organization)
    sara(organization)

    out, _ = run("status")

    lines = out.splitlines()
    assert lines[0].split() == [
        "ORGANIZATION",
        "DIRECTORY",
        "STATUS",
        "LAST",
        "TEST",
        "CONNECTION",
        "LAST",
        "REQUEST",
        "CURRENT",
        "RUN",
        "PENDING",
        "FAILED",
        "OLDEST",
        "PENDING",
    ]
    assert lines[1].split() == [
        "acme",
        f"({organization.pk})",
        "entra_id",
        "active",
        "never",
        "never",
    ] + [
        "-",
        "1",
        "0",
        lines[1].split()[-1],
    ]
    assert lines[2].split()[3] == "not_configured"
    # Then the Set up in Beem choices, one line per organization (issue 18).
    assert lines[3:6] == [
        "",
        "Set up in Beem (change with `directory_sync configure`):",
        "ORGANIZATION  IDENTIFY BY  DELETION RULE    DEPARTMENT FORMAT  DELIMITER  "
        "SAME-NAME DEPARTMENTS  PHONE COUNTRY",
    ]
    assert lines[6].split() == [
        "acme",
        f"({organization.pk})",
        "phone",
        "delete_directly",
        "plain_name",
        "/",
        "hold_for_admin",
        "-",
    ]
    assert lines[7].split()[2:4] == ["phone", "delete_directly"]
    assert len(lines) == 8


# --- credentials -------------------------------------------------------------------------


def test_credentials_creates_and_prints_the_four_values_for_entra(organization):
    out, _ = run("credentials", "--org", "acme", "--base-url", "https://beem.example.com/")

    lines = dict(line.split(":", 1) for line in out.splitlines() if ":" in line[:20])
    assert lines["Tenant URL"].strip() == f"https://beem.example.com/scim/v2/{organization.pk}"
    assert lines["Token Endpoint"].strip() == "https://beem.example.com/o/token/"
    sync = SyncSettings.objects.get(organization=organization)
    assert lines["Client Identifier"].strip() == sync.oauth_application.client_id
    secret = lines["Client Secret"].strip()
    token = token_obtain(sync.oauth_application.client_id, secret)
    assert token.status_code == 200
    assert AuditEntry.objects.filter(
        organization=organization, action="sync.credentials_issued", actor_label="operator"
    ).exists()


def test_credentials_rotation_is_refused_without_yes(organization):
    issued = sync_services.credentials_issue(organization=organization, actor_label="test")

    out, _ = run("credentials", "--org", "acme")

    assert "Would issue a new Client Secret (the Client Identifier stays the same)" in out
    assert "Nothing was changed. Re-run with --yes to issue a new secret." in out
    assert f"Client Identifier: {issued.client_id}" in out
    assert "Client Secret:" not in out
    assert issued.client_secret not in out
    sync = SyncSettings.objects.get(organization=organization)
    assert sync.oauth_application.client_id == issued.client_id


def test_credentials_with_yes_issues_a_new_secret_for_the_same_client_id(organization):
    issued = sync_services.credentials_issue(organization=organization, actor_label="test")

    out, _ = run("credentials", "--org", str(organization.pk), "--yes")

    sync = SyncSettings.objects.get(organization=organization)
    assert sync.oauth_application.client_id == issued.client_id
    assert out.startswith("Issued a new Client Secret for Acme")
    assert "Unchanged: Tenant URL, Token Endpoint, Client Identifier." in out
    assert f"Client Identifier: {issued.client_id}" in out
    new_secret = out.split("Client Secret:", 1)[1].split()[0]
    assert token_obtain(issued.client_id, issued.client_secret).status_code == 401
    assert token_obtain(issued.client_id, new_secret).status_code == 200
    assert AuditEntry.objects.filter(
        action="sync.credentials_rotated", actor_label="operator"
    ).exists()


def test_credentials_help_says_which_values_change(capsys):
    with pytest.raises(SystemExit):
        call_command("directory_sync", "credentials", "--help")

    text = " ".join(capsys.readouterr().out.split())
    assert "the Tenant URL, Token Endpoint and Client Identifier do not change" in text


def test_credentials_rejects_a_base_url_without_scheme(organization):
    with pytest.raises(CommandError, match="must look like https://host"):
        run("credentials", "--org", "acme", "--base-url", "beem.example.com")


# --- activate / stop ---------------------------------------------------------------------


def test_activate_issues_credentials_once_and_is_audited_as_operator(organization):
    out, _ = run("activate", "--org", "acme", "--base-url", "https://beem.example.com")

    sync = SyncSettings.objects.get(organization=organization)
    assert sync.status == SyncSettings.Status.ACTIVE
    assert out.startswith("Activated sync of Acme (was not_configured).")
    assert "Client Secret:" in out
    entry = AuditEntry.objects.get(organization=organization, action="sync.activated")
    assert entry.actor_label == "operator"

    again, _ = run("activate", "--org", "acme")
    assert again == "Sync of Acme is already active; nothing changed.\n"


def test_stop_is_refused_without_yes(organization):
    sync_services.sync_activate(organization=organization, actor_label="test")

    out, _ = run("stop", "--org", "acme")

    assert "Would stop sync of Acme" in out
    assert "Nothing was changed. Re-run with --yes to stop." in out
    assert SyncSettings.objects.get(organization=organization).status == "active"


def test_stop_with_yes_stops_and_is_audited_as_operator(organization):
    sync_services.sync_activate(organization=organization, actor_label="test")

    out, _ = run("stop", "--org", "acme", "--yes")

    assert out == "Stopped sync of Acme.\n"
    assert SyncSettings.objects.get(organization=organization).status == "stopped"
    assert AuditEntry.objects.get(action="sync.stopped").actor_label == "operator"


def test_stop_of_an_inactive_sync_changes_nothing(organization):
    out, _ = run("stop", "--org", "acme", "--yes")

    assert out == "Sync of Acme is not active (not_configured); nothing to stop.\n"
    assert not AuditEntry.objects.filter(action="sync.stopped").exists()


# --- redispatch --------------------------------------------------------------------------


def test_redispatch_without_yes_shows_counts_per_organization(organization, other_organization):
    sync_settings_make(organization)
    sync_settings_make(other_organization)
    sara(organization)
    user_create(organization, user_name="omar@acme.example", email="omar@acme.example")
    user_create(other_organization, user_name="li@globex.example", email="li@globex.example")

    out, _ = run("redispatch")

    assert [line.split() for line in out.splitlines()] == [
        ["ORGANIZATION", "STATUS", "EVENTS"],
        ["acme", f"({organization.pk})", "pending", "2"],
        ["globex", f"({other_organization.pk})", "pending", "1"],
        "Would re-queue 3 pending change event(s).".split(),
        "Nothing was changed. Re-run with --yes to re-queue.".split(),
    ]
    assert not ChangeEvent.objects.filter(dispatched_at__isnull=False).exists()


def test_redispatch_include_failed_without_yes_leaves_failed_events_alone(organization):
    sync_settings_make(organization)
    record = sara(organization)
    ChangeEvent.objects.filter(record=record).update(
        status=ChangeEvent.Status.FAILED, reason="broken"
    )

    out, _ = run("redispatch", "--include-failed", "--org", "acme")

    assert ["acme", f"({organization.pk})", "failed", "1"] in [
        line.split() for line in out.splitlines()
    ]
    assert "Would re-queue 1 pending and failed change event(s)." in out
    assert ChangeEvent.objects.get(record=record).status == ChangeEvent.Status.FAILED


def test_redispatch_with_yes_queues_events_with_a_progress_bar(organization):
    sync_settings_make(organization)
    for name in ("a", "b", "c"):
        user_create(organization, user_name=f"{name}@acme.example", email=f"{name}@acme.example")

    out, err = run("redispatch", "--org", "acme", "--batch-size", "1", "--yes")

    assert out.splitlines()[-1] == "Re-queued 3 change event(s)."
    assert f"Re-queueing [{'#' * 30}] 3/3" in err
    # Celery is eager in tests: the re-queued jobs ran.
    assert set(ChangeEvent.objects.values_list("status", flat=True)) == {"applied"}
    assert Member.objects.filter(organization=organization).count() == 3


def test_redispatch_older_than_counts_and_queues_the_same_events(organization):
    # The count shown and the events sent are one query (dispatch.change_events_to_redispatch):
    # an event handed to the broker a moment ago is neither counted nor sent again.
    sync_settings_make(organization)
    for name in ("a", "b"):
        user_create(organization, user_name=f"{name}@acme.example", email=f"{name}@acme.example")
    old, recent = ChangeEvent.objects.order_by("id")
    ChangeEvent.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=1), dispatched_at=None
    )
    ChangeEvent.objects.filter(pk=recent.pk).update(dispatched_at=timezone.now())

    out, _ = run("redispatch", "--older-than", "60")
    assert "Would re-queue 1 pending change event(s)." in out

    out, _ = run("redispatch", "--older-than", "60", "--yes")
    assert out.splitlines()[-1] == "Re-queued 1 change event(s)."


def test_redispatch_with_nothing_pending_says_so(organization):
    out, _ = run("redispatch", "--yes")

    assert out == "No pending change events to re-queue.\n"


# --- reconcile ---------------------------------------------------------------------------


@pytest.fixture
def drifted(organization):
    """One applied user whose member drifted, one never applied (failed), one orphan member,
    and a duplicate: the applied user's email also belongs to another member."""
    sync_settings_make(organization)
    applied = sara(organization)
    apply_pending(organization)
    Member.objects.filter(directory_record=applied).update(job_title="Intern")
    missing = user_create(organization, user_name="omar@acme.example", email="omar@acme.example")
    ChangeEvent.objects.filter(record=missing).update(status=ChangeEvent.Status.FAILED)
    orphan = member_services.member_create(
        organization=organization,
        display_name="Old Timer",
        phone="+966512345670",
        directory_managed=True,
    )
    return {"applied": applied, "missing": missing, "orphan": orphan}


def test_reconcile_json_lists_missing_stale_and_orphan(organization, drifted):
    out, err = run("reconcile", "--format", "json")

    rows = json.loads(out)
    by_kind = {(r["kind"], r["scim_id"]): r for r in rows}
    stale = by_kind[("stale_field", str(drifted["applied"].scim_id))]
    assert stale == {
        "organization_id": organization.pk,
        "organization_slug": "acme",
        "kind": "stale_field",
        "resource_type": "User",
        "scim_id": str(drifted["applied"].scim_id),
        "label": "sara@acme.example",
        "member_id": drifted["applied"].member_id
        if drifted["applied"].member_id
        else DirectoryRecord.objects.get(pk=drifted["applied"].pk).member_id,
        "group_id": None,
        "detail": "job_title: member has 'Intern', directory has 'Engineer'",
        "pending_event": False,
    }
    missing = by_kind[("missing_member", str(drifted["missing"].scim_id))]
    assert missing["member_id"] is None and missing["pending_event"] is False
    orphan = by_kind[("orphan", "")]
    assert orphan["member_id"] == drifted["orphan"].pk
    assert orphan["label"] == "Old Timer"
    assert len(rows) == 3
    assert err == "2 record(s) can be re-queued with --fix --yes.\n"


def test_reconcile_reports_a_member_holding_the_directory_email_as_duplicate(organization):
    sync_settings_make(organization)
    record = sara(organization)
    apply_pending(organization)
    other = member_services.member_create(
        organization=organization, display_name="Sara (email login)", email="sara2@acme.example"
    )
    # The linked member was matched by phone; another one holds the directory's email.
    Member.objects.filter(directory_record=record).update(email=None)
    Member.objects.filter(pk=other.pk).update(email="sara@acme.example")

    rows = json.loads(run("reconcile", "--format", "json")[0])

    duplicates = [r for r in rows if r["kind"] == "duplicate"]
    assert [r["detail"] for r in duplicates] == [
        f"email also belongs to member {other.pk}, not to the linked member"
    ]


def test_reconcile_csv_to_a_file(organization, drifted, tmp_path):
    target = tmp_path / "diff.csv"

    out, _ = run("reconcile", "--org", "acme", "--format", "csv", "--output", str(target))

    assert out.splitlines()[0] == f"Wrote 3 difference(s) to {target}."
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert list(rows[0].keys()) == [
        "organization_id",
        "organization_slug",
        "kind",
        "resource_type",
        "scim_id",
        "label",
        "member_id",
        "group_id",
        "pending_event",
        "detail",
    ]
    assert sorted(r["kind"] for r in rows) == ["missing_member", "orphan", "stale_field"]


def test_reconcile_table_summarises_by_kind(organization, drifted):
    out, _ = run("reconcile")

    assert out.splitlines()[0].split()[:3] == ["ORGANIZATION", "KIND", "TYPE"]
    assert "1 missing_member, 1 orphan, 1 stale_field" in out
    assert out.rstrip().endswith("2 record(s) can be re-queued with --fix --yes.")


def test_reconcile_with_no_differences_says_so(organization):
    sync_settings_make(organization)
    sara(organization)
    apply_pending(organization)

    out, _ = run("reconcile")

    assert out == "No differences: every directory record matches its member or group.\n"


def test_reconcile_fix_without_yes_changes_nothing(organization, drifted):
    before = ChangeEvent.objects.count()

    out, _ = run("reconcile", "--fix")

    assert "Would re-queue 2 record(s) (one change event each)." in out
    assert "Nothing was changed. Re-run with --fix --yes to re-queue." in out
    assert ChangeEvent.objects.count() == before


def test_reconcile_fix_with_yes_requeues_and_converges(
    organization, drifted, django_capture_on_commit_callbacks
):
    versions = dict(DirectoryRecord.objects.values_list("pk", "version"))

    with django_capture_on_commit_callbacks(execute=True):
        out, _ = run("reconcile", "--fix", "--yes")

    assert out.rstrip().endswith("Re-queued 2 record(s).")
    requeued = ChangeEvent.objects.filter(request_id="reconcile")
    assert sorted(requeued.values_list("record_id", flat=True)) == sorted(
        [drifted["applied"].pk, drifted["missing"].pk]
    )
    assert set(requeued.values_list("kind", flat=True)) == {"updated"}
    assert dict(DirectoryRecord.objects.values_list("pk", "version")) == versions
    assert AuditEntry.objects.get(action="sync.reconcile_requeued").actor_label == "operator"
    # Eager Celery ran the jobs: only the orphan (no record to apply) remains.
    rows = json.loads(run("reconcile", "--format", "json")[0])
    assert [r["kind"] for r in rows] == ["orphan"]


# --- purge -------------------------------------------------------------------------------


@pytest.fixture
def aged(organization, settings):
    settings.BEEM_REQUEST_LOG_RETENTION_DAYS = 30
    sync_settings_make(organization)
    old = timezone.now() - timedelta(days=40)
    old_run = ProvisioningRun.objects.create(
        organization=organization, trigger="probe", ended_at=old
    )
    for _ in range(2):
        RequestLog.objects.create(
            organization=organization,
            run=old_run,
            request_id="r",
            method="GET",
            path="/scim/v2/x/Users",
            status=200,
            duration_ms=1.0,
        )
    RequestLog.objects.create(
        organization=organization,
        request_id="new",
        method="GET",
        path="/scim/v2/x/Users",
        status=200,
        duration_ms=1.0,
    )
    RequestLog.objects.filter(run=old_run).update(created_at=old)
    done = sara(organization, run=old_run)
    apply_pending(organization)
    failed = user_create(organization, user_name="omar@acme.example", email="omar@acme.example")
    ChangeEvent.objects.filter(record=failed).update(
        status=ChangeEvent.Status.FAILED, created_at=old
    )
    ChangeEvent.objects.filter(record=done).update(finished_at=old, created_at=old)
    return {"run": old_run}


def test_purge_without_yes_shows_counts_and_deletes_nothing(aged):
    out, _ = run("purge")

    assert "Would delete, older than" in out
    assert "  request logs:            2" in out
    assert "  finished change events:  1" in out
    assert "  ended provisioning runs: 1" in out
    assert out.rstrip().endswith("Nothing was changed. Re-run with --yes to delete.")
    assert RequestLog.objects.count() == 3
    assert ChangeEvent.objects.count() == 2


def test_purge_with_yes_deletes_old_logs_finished_events_and_empty_runs(aged):
    out, _ = run("purge", "--yes")

    assert out.startswith("Deleted, older than")
    assert list(RequestLog.objects.values_list("request_id", flat=True)) == ["new"]
    assert list(ChangeEvent.objects.values_list("status", flat=True)) == ["failed"]
    assert not ProvisioningRun.objects.filter(pk=aged["run"].pk).exists()


def test_purge_days_overrides_the_retention(aged):
    out, _ = run("purge", "--days", "90")

    assert "  request logs:            0" in out
    assert "  finished change events:  0" in out
