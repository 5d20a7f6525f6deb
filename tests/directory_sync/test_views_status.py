"""Directory Syncs list, status (and its JSON), stop and reactivate."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from directory_sync import services as sync_services
from directory_sync.models import ChangeEvent, DirectoryRecord, ProvisioningRun, SyncSettings
from members import services as member_services
from members.models import AuditEntry, Member

LIST_URL = reverse("directory_sync:sync_list")
STATUS_URL = reverse("directory_sync:sync_status")
JSON_URL = reverse("directory_sync:sync_status_json")
STOP_URL = reverse("directory_sync:sync_stop")
REACTIVATE_URL = reverse("directory_sync:sync_reactivate")


def _activate(organization) -> SyncSettings:
    sync_services.sync_activate(organization=organization)
    return SyncSettings.objects.get(organization=organization)


def _test_connection(sync_settings: SyncSettings, when=None) -> None:
    SyncSettings.objects.filter(pk=sync_settings.pk).update(
        last_test_connection_at=when or timezone.now(), last_request_at=when or timezone.now()
    )


def _event(run, *, status, outcome="", reason="", label="user@acme.test", n=0):
    record = DirectoryRecord.objects.create(
        organization=run.organization,
        resource_type="User",
        user_name=f"{n}{label}",
        user_name_key=f"{n}{label}".casefold(),
        document={"userName": f"{n}{label}"},
    )
    return ChangeEvent.objects.create(
        organization=run.organization,
        record=record,
        run=run,
        resource_type="User",
        scim_id=record.scim_id,
        label=record.user_name,
        kind="created",
        record_version=1,
        status=status,
        outcome=outcome,
        reason=reason,
    )


def test_directory_syncs_list_shows_entra_sync_not_configured(admin_client):
    response = admin_client.get(LIST_URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Sync with Entra ID" in html
    assert 'data-sync-state="not_configured">Not configured<' in html
    assert reverse("directory_sync:sync_settings_form") in html


def test_activated_sync_waits_for_entra_test_connection(admin_client, organization):
    _activate(organization)

    response = admin_client.get(STATUS_URL)

    assert response.context["state"] == "waiting_for_test_connection"
    assert "Waiting for Entra ID&#x27;s Test Connection" in response.content.decode()


def test_test_connection_after_activation_means_connected(admin_client, organization):
    sync_settings = _activate(organization)
    _test_connection(sync_settings)

    response = admin_client.get(LIST_URL)

    assert 'data-sync-state="connected">Connected<' in response.content.decode()


def test_test_connection_before_a_reactivation_does_not_count(admin_client, organization):
    sync_settings = _activate(organization)
    _test_connection(sync_settings, timezone.now() - timedelta(hours=1))
    SyncSettings.objects.filter(pk=sync_settings.pk).update(activated_at=timezone.now())

    assert admin_client.get(STATUS_URL).context["state"] == "waiting_for_test_connection"


def test_status_json_reports_state_times_and_current_run_progress(admin_client, organization):
    sync_settings = _activate(organization)
    _test_connection(sync_settings)
    old = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    _event(old, status="failed", n=9)
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    ProvisioningRun.objects.filter(pk=run.pk).update(requests_received=7)
    _event(run, status="pending", n=1)
    _event(run, status="pending", n=2)
    _event(run, status="applied", outcome="created", n=3)
    _event(run, status="failed", reason="bad phone", n=4)

    data = admin_client.get(JSON_URL).json()

    sync_settings.refresh_from_db()
    assert data["state"] == "connected"
    assert data["state_label"] == "Connected"
    assert data["last_test_connection_at"] == sync_settings.last_test_connection_at.isoformat()
    assert data["pending_total"] == 2
    assert data["run"] == {
        "id": run.pk,
        "started_at": run.started_at.isoformat(),
        "ended_at": None,
        "requests_received": 7,
        "pending": 2,
        "applied": 1,
        "failed": 1,
        "skipped": 0,
    }


def test_status_json_without_settings_is_not_configured(admin_client):
    data = admin_client.get(JSON_URL).json()

    assert data["state"] == "not_configured"
    assert data["run"] is None
    assert data["last_test_connection_at"] is None


def test_status_page_polls_the_json_endpoint(admin_client, organization):
    _activate(organization)

    html = admin_client.get(STATUS_URL).content.decode()

    assert JSON_URL in html
    assert "setInterval(refresh" in html


def test_stop_page_warns_about_401_and_quarantine(admin_client, organization):
    _activate(organization)

    html = admin_client.get(STOP_URL).content.decode()

    assert "401" in html
    assert "SystemForCrossDomainIdentityManagementCredentialValidationFailure" in html
    assert "quarantine" in html


def test_stop_needs_confirmation(admin_client, organization):
    _activate(organization)

    response = admin_client.post(STOP_URL, {})

    assert response.status_code == 200
    assert response.context["form"].errors["confirm"]
    assert SyncSettings.objects.get(organization=organization).status == "active"


def test_stop_with_confirmation_stops_and_audits(admin_client, organization, admin_user):
    _activate(organization)

    response = admin_client.post(STOP_URL, {"confirm": "on"})

    assert response.status_code == 302
    assert response.url == STATUS_URL
    assert SyncSettings.objects.get(organization=organization).status == "stopped"
    entry = AuditEntry.objects.get(organization=organization, action="sync.stopped")
    assert entry.actor == admin_user
    assert entry.actor_label == "admin:admin@acme"


def test_stop_when_not_active_redirects_to_status(admin_client):
    response = admin_client.get(STOP_URL)

    assert response.status_code == 302
    assert response.url == STATUS_URL


def test_reactivate_page_lists_checklist_and_changes_made_while_stopped(admin_client, organization):
    _activate(organization)
    synced = member_services.member_create(
        organization=organization,
        phone="+966512345678",
        display_name="Sara",
        directory_managed=True,
    )
    untouched = member_services.member_create(
        organization=organization,
        phone="+966512345679",
        display_name="Omar",
        directory_managed=True,
    )
    Member.objects.filter(pk__in=[synced.pk, untouched.pk]).update(
        updated_at=timezone.now() - timedelta(hours=2)
    )
    sync_services.sync_stop(organization=organization)
    member_services.member_update(member=Member.objects.get(pk=synced.pk), display_name="Sara H")
    member_services.audit_record(organization=organization, action="member.updated")

    response = admin_client.get(REACTIVATE_URL)

    html = response.content.decode()
    assert "Test Connection" in html
    assert 'id="reactivate-checklist"' in html
    changes = response.context["changes"]
    assert [m.pk for m in changes.members] == [synced.pk]
    assert "Sara H" in html
    assert "Omar" not in html
    assert [e.action for e in changes.audit_entries] == ["member.updated"]


def test_reactivate_activates_and_then_waits_for_test_connection(admin_client, organization):
    sync_settings = _activate(organization)
    _test_connection(sync_settings, timezone.now() - timedelta(minutes=5))
    sync_services.sync_stop(organization=organization)

    response = admin_client.post(REACTIVATE_URL, {"confirm": "on"}, follow=True)

    assert response.redirect_chain == [(REACTIVATE_URL, 302)]
    assert SyncSettings.objects.get(organization=organization).status == "active"
    assert response.context["state"] == "waiting_for_test_connection"
    html = response.content.decode()
    assert "Waiting for Test Connection from Entra ID" in html
    assert (
        AuditEntry.objects.filter(organization=organization, action="sync.activated").count() == 2
    )


def test_reactivate_page_shows_test_connection_once_it_arrives(admin_client, organization):
    sync_settings = _activate(organization)
    sync_services.sync_stop(organization=organization)
    admin_client.post(REACTIVATE_URL, {"confirm": "on"})
    _test_connection(sync_settings)

    response = admin_client.get(REACTIVATE_URL)
    data = admin_client.get(JSON_URL).json()

    assert response.context["state"] == "connected"
    assert 'id="test-arrived"' in response.content.decode()
    assert data["state"] == "connected"
