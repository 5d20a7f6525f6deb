"""Sync settings, status and credentials services."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from directory_sync import retention, services
from directory_sync.client_secrets import client_secret_matches
from directory_sync.models import RequestLog, SyncSettings
from directory_sync.services import SyncSettingsError
from members.models import AuditEntry

from .conftest import token_obtain


def _actions(organization) -> list[str]:
    return list(
        AuditEntry.objects.filter(organization=organization)
        .order_by("id")
        .values_list("action", flat=True)
    )


# --- settings ----------------------------------------------------------------------------


def test_settings_get_creates_defaults_once(organization):
    first = services.sync_settings_get(organization=organization)
    second = services.sync_settings_get(organization=organization)

    assert first.pk == second.pk
    assert SyncSettings.objects.count() == 1
    assert first.status == SyncSettings.Status.NOT_CONFIGURED
    assert first.identify_by == SyncSettings.IdentifyBy.PHONE
    assert first.department_delimiter == "/"
    assert first.oauth_application is None


def test_settings_update_saves_and_audits_changed_fields(organization, admin_user):
    services.sync_settings_update(
        organization=organization,
        actor=admin_user,
        identify_by="email",
        department_format="structure_string",
        department_delimiter=" > ",
        default_phone_country="sa",
        deletion_rule="delete_directly",  # the default: not a change
    )

    stored = SyncSettings.objects.get(organization=organization)
    assert stored.identify_by == "email"
    assert stored.department_format == "structure_string"
    assert stored.department_delimiter == ">"
    assert stored.default_phone_country == "SA"
    entry = AuditEntry.objects.get(organization=organization)
    assert entry.action == "sync.settings_updated"
    assert entry.actor == admin_user
    assert entry.actor_label == "admin:admin@acme"
    assert entry.detail == {
        "changed": {
            "identify_by": {"from": "phone", "to": "email"},
            "department_format": {"from": "plain_name", "to": "structure_string"},
            "department_delimiter": {"from": "/", "to": ">"},
            "default_phone_country": {"from": "", "to": "SA"},
        }
    }


def test_settings_update_without_change_writes_no_audit(organization):
    services.sync_settings_update(organization=organization, identify_by="phone")

    assert AuditEntry.objects.count() == 0


def test_default_phone_country_can_be_cleared(organization):
    services.sync_settings_update(organization=organization, default_phone_country="AE")
    services.sync_settings_update(organization=organization, default_phone_country="")

    assert SyncSettings.objects.get(organization=organization).default_phone_country == ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("department_delimiter", "", "cannot be empty"),
        ("department_delimiter", "   ", "cannot be empty"),
        ("department_delimiter", "//////", "at most 5"),
        ("default_phone_country", "XX", "not a known country code"),
        ("default_phone_country", "SAU", "not a known country code"),
        ("identify_by", "fax", "not a valid choice"),
        ("deletion_rule", "shred", "not a valid choice"),
        ("department_format", "", "not a valid choice"),
        ("duplicate_department_policy", "random", "not a valid choice"),
        ("status", "active", "Unknown sync setting"),
    ],
)
def test_settings_update_refuses_bad_input_and_saves_nothing(organization, field, value, message):
    with pytest.raises(SyncSettingsError, match=message) as caught:
        services.sync_settings_update(
            organization=organization,
            **{"deletion_rule": "delete_transfer_to_manager", field: value},
        )

    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert not SyncSettings.objects.filter(deletion_rule="delete_transfer_to_manager").exists()
    assert AuditEntry.objects.count() == 0


# --- activation and stop -----------------------------------------------------------------


def test_first_activation_issues_credentials_and_activates(organization, admin_user):
    issued = services.sync_activate(organization=organization, actor=admin_user)

    assert issued is not None
    assert issued.organization == organization
    assert issued.rotated is False
    stored = SyncSettings.objects.select_related("oauth_application").get(organization=organization)
    assert stored.status == SyncSettings.Status.ACTIVE
    assert stored.activated_at is not None
    assert stored.credentials_created_at is not None
    assert stored.oauth_application.client_id == issued.client_id
    assert _actions(organization) == ["sync.credentials_issued", "sync.activated"]
    assert AuditEntry.objects.get(action="sync.activated").detail == {
        "previous_status": "not_configured",
        "credentials_issued": True,
    }


def test_reactivation_keeps_credentials_and_returns_none(organization):
    issued = services.sync_activate(organization=organization, actor_label="admin:a")
    services.sync_stop(organization=organization, actor_label="admin:a")

    again = services.sync_activate(organization=organization, actor_label="admin:a")

    assert again is None
    stored = SyncSettings.objects.select_related("oauth_application").get(organization=organization)
    assert stored.status == SyncSettings.Status.ACTIVE
    assert stored.oauth_application.client_id == issued.client_id
    assert stored.stopped_at is not None
    assert stored.activated_at > stored.stopped_at
    assert token_obtain(issued.client_id, issued.client_secret).status_code == 200
    assert _actions(organization) == [
        "sync.credentials_issued",
        "sync.activated",
        "sync.stopped",
        "sync.activated",
    ]


def test_activating_an_active_sync_changes_nothing(organization):
    services.sync_activate(organization=organization)
    activated_at = SyncSettings.objects.get(organization=organization).activated_at

    assert services.sync_activate(organization=organization) is None

    assert SyncSettings.objects.get(organization=organization).activated_at == activated_at
    assert _actions(organization) == ["sync.credentials_issued", "sync.activated"]


def test_stop_sets_status_and_audits_once(organization, admin_user):
    services.sync_activate(organization=organization)

    services.sync_stop(organization=organization, actor=admin_user)
    services.sync_stop(organization=organization, actor=admin_user)

    stored = SyncSettings.objects.get(organization=organization)
    assert stored.status == SyncSettings.Status.STOPPED
    assert stored.stopped_at is not None
    stops = AuditEntry.objects.filter(action="sync.stopped")
    assert [(e.actor, e.actor_label) for e in stops] == [(admin_user, "admin:admin@acme")]


def test_stopping_a_never_configured_sync_changes_nothing(organization):
    services.sync_stop(organization=organization)

    assert SyncSettings.objects.get(organization=organization).status == "not_configured"
    assert AuditEntry.objects.count() == 0


# --- credentials -------------------------------------------------------------------------


def test_credentials_are_a_confidential_client_credentials_app_with_hashed_secret(organization):
    issued = services.credentials_issue(organization=organization, actor_label="operator")

    application = Application.objects.get()
    assert application.client_id == issued.client_id
    assert application.name == "Entra ID sync – Acme"
    assert application.client_type == Application.CLIENT_CONFIDENTIAL
    assert application.authorization_grant_type == Application.GRANT_CLIENT_CREDENTIALS
    assert application.user is None
    assert application.client_secret != issued.client_secret
    assert application.client_secret.startswith("beem_client_secret_hmac_sha256$")
    assert client_secret_matches(issued.client_secret, application.client_secret)
    assert not client_secret_matches(issued.client_secret + "x", application.client_secret)
    assert len(issued.client_secret) >= 40
    assert SyncSettings.objects.get(organization=organization).oauth_application == application
    assert _actions(organization) == ["sync.credentials_issued"]


def test_new_secret_keeps_the_client_id_and_revokes_the_old_secret_and_every_token(organization):
    first = services.credentials_issue(organization=organization)
    for _ in range(2):
        assert token_obtain(first.client_id, first.client_secret).status_code == 200
    assert AccessToken.objects.count() == 2

    second = services.credentials_issue(organization=organization, actor_label="operator")

    assert second.rotated is True
    assert second.client_id == first.client_id
    assert second.client_secret != first.client_secret
    assert Application.objects.count() == 1
    assert Application.objects.get().client_id == first.client_id
    assert AccessToken.objects.count() == 0
    assert token_obtain(first.client_id, first.client_secret).status_code == 401
    assert token_obtain(second.client_id, second.client_secret).status_code == 200
    rotated = AuditEntry.objects.get(action="sync.credentials_rotated")
    assert rotated.detail == {"client_id": first.client_id, "changed": ["client_secret"]}
    assert rotated.actor_label == "operator"


def test_rotation_leaves_other_organizations_tokens_alone(organization, other_organization):
    services.credentials_issue(organization=organization)
    other = services.credentials_issue(organization=other_organization)
    assert token_obtain(other.client_id, other.client_secret).status_code == 200

    services.credentials_issue(organization=organization)

    assert AccessToken.objects.filter(application__client_id=other.client_id).count() == 1


def test_no_secret_is_ever_written_to_the_audit(organization):
    secrets = [services.credentials_issue(organization=organization).client_secret]
    secrets.append(services.credentials_issue(organization=organization).client_secret)
    services.sync_stop(organization=organization)

    dump = json.dumps(list(AuditEntry.objects.values()), default=str)
    for secret in secrets:
        assert secret not in dump


# --- URLs --------------------------------------------------------------------------------


def test_urls_use_public_url_when_set(settings, organization, rf):
    settings.BEEM_PUBLIC_URL = "https://beem.example.com"
    request = rf.get("/", HTTP_HOST="internal:8000")

    assert (
        services.tenant_url(organization=organization, request=request)
        == f"https://beem.example.com/scim/v2/{organization.pk}"
    )
    assert services.token_endpoint_url(request=request) == "https://beem.example.com/o/token/"


def test_urls_follow_the_request_without_public_url(settings, organization, rf):
    settings.BEEM_PUBLIC_URL = ""
    request = rf.get("/settings/", HTTP_HOST="testserver", secure=True)

    assert (
        services.tenant_url(organization=organization, request=request)
        == f"https://testserver/scim/v2/{organization.pk}"
    )
    assert services.token_endpoint_url(request=request) == "https://testserver/o/token/"


def test_urls_without_request_or_public_url_point_at_the_dev_server(settings, organization):
    settings.BEEM_PUBLIC_URL = ""

    assert (
        services.tenant_url(organization=organization)
        == f"http://127.0.0.1:8000/scim/v2/{organization.pk}"
    )
    assert services.token_endpoint_url() == "http://127.0.0.1:8000/o/token/"


def test_tenant_url_is_where_scim_answers(scim, settings, organization):
    settings.BEEM_PUBLIC_URL = "http://testserver"
    path = services.tenant_url(organization=organization).removeprefix("http://testserver")

    response = scim.client.get(
        path + "/ServiceProviderConfig", HTTP_AUTHORIZATION=f"Bearer {scim.token}"
    )

    assert response.status_code == 200


# --- request log retention ---------------------------------------------------------------


def test_logs_purge_deletes_only_request_logs_older_than_retention(organization):
    def log(age_days: int) -> RequestLog:
        row = RequestLog.objects.create(
            organization=organization,
            request_id=f"r{age_days}",
            method="GET",
            path="/scim/v2/1/Users",
            status=200,
            duration_ms=1.0,
        )
        RequestLog.objects.filter(pk=row.pk).update(
            created_at=timezone.now() - timedelta(days=age_days)
        )
        return row

    log(40)
    log(31)
    kept = log(29)

    deleted = retention.logs_purge(retention_days=30).request_logs

    assert deleted == 2
    assert list(RequestLog.objects.values_list("pk", flat=True)) == [kept.pk]
