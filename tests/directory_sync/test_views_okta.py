"""The Okta pages (issue 17): Directory Syncs lists both directories, the confirmed switch,
Save and Activate for Okta, "Set up in Okta" (token shown once), a new API token, stop and
reactivate, the shared pages naming Okta; English and Arabic."""

import pytest
from django.urls import reverse

from directory_sync import services
from directory_sync.models import SyncSettings
from members import services as member_services
from members.directory import directory_sync_status
from members.models import AuditEntry, Department, Member

from .conftest import SCIMClient, okta_connect
from .test_views_setup import SETUP_URL, VALID

pytestmark = pytest.mark.django_db

LIST_URL = reverse("directory_sync:sync_list")
OKTA_URL = reverse("directory_sync:sync_okta")
SWITCH_OKTA_URL = reverse("directory_sync:directory_switch_okta")


def _switch(admin_client):
    return admin_client.post(SWITCH_OKTA_URL, {"confirm": "on"})


def test_directory_syncs_lists_both_and_offers_the_switch(admin_client):
    page = admin_client.get(LIST_URL).content.decode()
    assert "Sync with Entra ID" in page and "Sync with Okta" in page
    assert f'href="{SWITCH_OKTA_URL}"' in page


def test_switch_needs_the_confirmation_and_explains_members(admin_client, organization):
    page = admin_client.get(SWITCH_OKTA_URL).content.decode()
    assert "members already synced stay in Beem" in page and "userName" in page
    refused = admin_client.post(SWITCH_OKTA_URL, {})
    assert refused.status_code == 200 and refused.context["form"].errors
    assert services.sync_settings_get(organization=organization).directory == "entra_id"

    response = _switch(admin_client)
    assert response.status_code == 302 and response.url == SETUP_URL
    assert services.sync_settings_get(organization=organization).directory == "okta"
    assert AuditEntry.objects.filter(action="sync.directory_switched").exists()
    page = admin_client.get(LIST_URL).content.decode()
    assert 'href="' + reverse("directory_sync:directory_switch_entra_id") in page


def test_save_and_activate_for_okta_shows_the_token_once(admin_client, organization):
    _switch(admin_client)
    response = admin_client.post(SETUP_URL, VALID)
    assert response.status_code == 200
    assert response.templates[0].name == "directory_sync/sync_okta.html"
    token = response.context["api_token"]
    page = response.content.decode()
    assert token in page and f"/scim/v2/{organization.pk}" in page
    for text in (
        "userName",
        "Import New Users and Profile Updates",
        "Push New Users",
        "Push Profile Updates",
        "Push Groups",
        "HTTP Header",
        "Go to Okta",
        "employeeNumber",
        "phoneNumbers[type eq &quot;mobile&quot;].value",
    ):
        assert text in page, text
    assert SCIMClient(organization=organization, token=token).get("/Users").status_code == 200
    # Never again: a later visit shows it hidden.
    again = admin_client.get(OKTA_URL).content.decode()
    assert token not in again and 'id="token-hidden"' in again
    # The Entra page sends an Okta organization to its own page.
    assert admin_client.get(reverse("directory_sync:sync_entra")).url == OKTA_URL


def test_new_api_token_after_confirmation(admin_client, organization):
    old = okta_connect(organization)
    url = reverse("directory_sync:api_token_rotate")
    assert admin_client.post(url, {}).status_code == 200  # not confirmed: nothing changes
    assert SCIMClient(organization=organization, token=old).get("/Users").status_code == 200
    response = admin_client.post(url, {"confirm": "on"})
    new = response.context["api_token"]
    assert new != old and response.context["token_rotated"]
    assert SCIMClient(organization=organization, token=old).get("/Users").status_code == 401
    assert SCIMClient(organization=organization, token=new).get("/Users").status_code == 200


def test_rotate_sends_an_entra_organization_to_its_own_page(admin_client, organization):
    services.sync_activate(organization=organization)
    response = admin_client.post(reverse("directory_sync:api_token_rotate"), {"confirm": "on"})
    assert response.status_code == 302 and response.url == reverse("directory_sync:sync_entra")
    assert not AuditEntry.objects.filter(action="sync.api_token_rotated").exists()


def test_stop_and_reactivate_for_okta(admin_client, organization):
    token = okta_connect(organization)
    stop = admin_client.get(reverse("directory_sync:sync_stop")).content.decode()
    assert "Stop sync with Okta" in stop and "API token is revoked" in stop
    admin_client.post(reverse("directory_sync:sync_stop"), {"confirm": "on"})
    assert SCIMClient(organization=organization, token=token).get("/Users").status_code == 401
    page = admin_client.get(reverse("directory_sync:sync_reactivate")).content.decode()
    assert "Reactivate sync with Okta" in page
    response = admin_client.post(reverse("directory_sync:sync_reactivate"), {"confirm": "on"})
    new = response.context["api_token"]
    assert "Sync with Okta is active again" in response.content.decode()
    assert SCIMClient(organization=organization, token=new).get("/Users").status_code == 200


def test_shared_pages_name_okta(admin_client, organization):
    okta_connect(organization)
    for name in ("sync_status", "run_list", "sync_settings_form", "audit_list"):
        page = admin_client.get(reverse(f"directory_sync:{name}")).content.decode()
        assert "Sync with Okta" in page, name
        assert f'href="{OKTA_URL}"' in page, name
    status = admin_client.get(reverse("directory_sync:sync_status")).content.decode()
    assert "In Okta, enter the values from Set up in Okta" in status
    assert "Last request from Okta" in status
    assert "Waiting for Okta&#x27;s connection test" in status
    assert "Entra" not in status
    # Set up in Beem and Review speak of Okta too (their help texts name the directory).
    for name in ("sync_settings_form", "review_list"):
        page = admin_client.get(reverse(f"directory_sync:{name}")).content.decode()
        assert "Entra" not in page, name
    setup = admin_client.get(reverse("directory_sync:sync_settings_form")).content.decode()
    assert "Directory Sync for Okta keeps your members in step with Okta" in setup
    assert "Sync with Okta maps department names from Okta" in setup


def test_okta_pages_in_arabic(admin_client, organization):
    okta_connect(organization)
    admin_client.cookies["django_language"] = "ar"
    page = admin_client.get(OKTA_URL).content.decode()
    assert "المزامنة مع Okta" in page and "Set up in Okta" not in page
    assert "Push Groups" in page  # Okta's own labels stay as Okta shows them
    listing = admin_client.get(LIST_URL).content.decode()
    assert "Sync with Okta" not in listing


def test_okta_pages_are_scoped_to_the_organization(client, other_admin_user, organization):
    okta_connect(organization)
    client.force_login(other_admin_user)
    # Organization B (Entra, not set up) sees its own Entra state, never A's Okta.
    assert client.get(OKTA_URL).url == reverse("directory_sync:sync_entra")
    assert SyncSettings.objects.get(organization=organization).directory == "okta"


def test_runs_review_and_audit_for_okta(admin_client, organization):
    token = okta_connect(organization)
    okta = SCIMClient(organization=organization, token=token)
    assert okta.get("/Users", params={"startIndex": 1, "count": 2}).status_code == 200
    runs = admin_client.get(reverse("directory_sync:run_list")).content.decode()
    assert "Okta connection test or import" in runs and "Entra" not in runs
    review = admin_client.get(reverse("directory_sync:review_list")).content.decode()
    assert "Sync with Okta" in review
    audit = admin_client.get(reverse("directory_sync:audit_list")).content.decode()
    assert "switched the directory from Entra ID to Okta" in audit
    assert "created the Okta API token" in audit
    assert "activated sync with Okta and created its API token" in audit
    assert "activated sync with Entra ID" not in audit
    services.sync_stop(organization=organization, actor_label="operator")
    audit = admin_client.get(reverse("directory_sync:audit_list")).content.decode()
    assert "stopped sync with Okta; its API token is revoked" in audit


def test_status_json_names_okta_while_waiting(admin_client, organization):
    okta_connect(organization)
    data = admin_client.get(reverse("directory_sync:sync_status_json")).json()
    assert data["state_label"] == "Waiting for Okta's connection test"
    assert "Waiting for Okta" in data["html"]["badge"]


def test_members_pages_name_okta(admin_client, organization):
    okta_connect(organization)
    member = Member.objects.create(
        organization=organization, display_name="Grace Hopper", directory_managed=True
    )
    detail = admin_client.get(reverse("members:member_detail", args=[member.pk])).content.decode()
    assert "Managed by directory sync (Okta)" in detail and "Entra" not in detail
    listing = admin_client.get(reverse("members:member_list")).content.decode()
    assert '<span class="badge">Okta</span>' in listing and "Entra" not in listing


def test_members_refusals_name_okta(organization):
    okta_connect(organization)
    sync = directory_sync_status(organization=organization)
    member = Member.objects.create(organization=organization, directory_managed=True)
    department = Department.objects.create(
        organization=organization, name="Sales", directory_managed=True
    )
    assert "users in Okta" in member_services.member_delete_refusal(member=member, sync=sync)
    refusal = member_services.department_change_refusal(
        department=department, sync=sync, rename=True, move=False
    )
    assert "rename it in Okta" in refusal and "Entra" not in refusal
