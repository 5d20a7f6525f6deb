"""Okta as the organization's directory (issue 17): its API token, the switch, its runs.

Okta's "HTTP Header" mode sends ``Authorization: Bearer <token>`` with a token the admin pasted
(developer.okta.com, "SCIM technical questions": "Okta also supports connections with basic
auth and header token auth options"); its connection test is ``GET /Users?startIndex=1&count=2``
and its import pages through ``GET /Users`` by ``startIndex`` steps of 100 (Okta's Runscope
"SCIM 2.0 SPEC Test", github.com/oktadev/okta-scim-beta ``SCIM_tests_for_Runscope.json``).
"""

import pytest
from oauth2_provider.models import AccessToken, Application

from directory_sync import directories, okta, services
from directory_sync.models import ProvisioningRun, SyncSettings
from directory_sync.scim import auth
from members.models import AuditEntry

from .conftest import SCIMClient, _token, okta_connect

pytestmark = pytest.mark.django_db


def _status(organization, token: str, path: str = "/Users") -> int:
    return SCIMClient(organization=organization, token=token).get(path).status_code


def test_token_is_random_shown_once_and_stored_as_a_keyed_digest(organization, okta_token):
    sync = services.sync_settings_get(organization=organization)
    assert sync.directory == SyncSettings.Directory.OKTA and sync.is_active
    assert okta_token.startswith(okta.TOKEN_PREFIX) and len(okta_token) > 40
    assert sync.api_token_digest == okta.api_token_digest(okta_token)
    assert okta_token not in repr(list(SyncSettings.objects.values()))
    assert okta_token not in repr(list(AuditEntry.objects.values()))
    assert sync.oauth_application_id is None and not Application.objects.exists()
    assert _status(organization, okta_token) == 200


def test_a_token_survives_a_secret_key_rotation_with_fallbacks(settings, organization, okta_token):
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    auth.auth_cache_clear()
    assert _status(organization, okta_token) == 200
    settings.SECRET_KEY_FALLBACKS = []
    auth.auth_cache_clear()
    assert _status(organization, okta_token) == 401


def test_okta_token_of_a_is_refused_on_b_url(organization, other_organization, okta_token):
    other_token = okta_connect(other_organization)
    assert _status(other_organization, other_token) == 200
    response = SCIMClient(organization=other_organization, token=okta_token).get("/Users")
    assert response.status_code == 401
    assert response.json()["detail"] == "The access token is not valid for this Tenant URL."
    # And B's on A's.
    assert _status(organization, other_token) == 401


def test_okta_token_of_a_is_refused_on_b_entra_url(
    organization, other_organization, okta_token, other_org_scim
):
    assert other_org_scim.get("/Users").status_code == 200
    assert _status(other_organization, okta_token) == 401


def test_switching_revokes_the_previous_directorys_credential_at_once(
    settings, organization, credentials
):
    settings.BEEM_SCIM_AUTH_CACHE_SECONDS = 600  # the revocation must not wait for the cache
    entra_token = _token(credentials)
    assert _status(organization, entra_token) == 200
    token = okta_connect(organization)
    assert _status(organization, entra_token) == 401
    assert not Application.objects.exists() and not AccessToken.objects.exists()
    assert _status(organization, token) == 200

    directories.directory_switch(
        organization=organization, directory=SyncSettings.Directory.ENTRA_ID, actor_label="t"
    )
    assert _status(organization, token) == 401
    sync = services.sync_settings_get(organization=organization)
    assert sync.status == SyncSettings.Status.NOT_CONFIGURED and sync.api_token_digest is None
    actions = list(
        AuditEntry.objects.filter(action="sync.directory_switched").order_by("pk").values("detail")
    )
    assert [a["detail"] for a in actions] == [
        {"from": "entra_id", "to": "okta"},
        {"from": "okta", "to": "entra_id"},
    ]


def test_a_token_for_the_other_directory_is_refused(organization, okta_token):
    """Defence in depth: even a stored Okta token is refused once Entra is the directory."""
    SyncSettings.objects.filter(organization=organization).update(
        directory=SyncSettings.Directory.ENTRA_ID
    )
    auth.auth_cache_clear()
    response = SCIMClient(organization=organization, token=okta_token).get("/Users")
    assert response.status_code == 401
    assert "directory" in response.json()["detail"]


def test_switch_refuses_an_unknown_directory(organization):
    with pytest.raises(directories.DirectoryError):
        directories.directory_switch(organization=organization, directory="ldap")


def test_rotation_revokes_the_old_token_at_once(settings, organization, okta_token):
    settings.BEEM_SCIM_AUTH_CACHE_SECONDS = 600
    assert _status(organization, okta_token) == 200  # cached now
    issued = directories.api_token_rotate(organization=organization, actor_label="t")
    assert issued.rotated and issued.token != okta_token
    assert _status(organization, okta_token) == 401
    assert _status(organization, issued.token) == 200
    assert AuditEntry.objects.filter(action="sync.api_token_rotated").count() == 1


def test_a_lookup_cached_by_another_process_expires_with_the_cache(
    settings, organization, okta_token
):
    settings.BEEM_SCIM_AUTH_CACHE_SECONDS = 0.05
    assert _status(organization, okta_token) == 200
    # As another process would: the row changes without this process's post_save.
    SyncSettings.objects.filter(organization=organization).update(api_token_digest=None)
    import time

    time.sleep(0.1)
    assert _status(organization, okta_token) == 401


def test_stop_revokes_the_token_and_reactivation_issues_a_new_one(
    settings, organization, okta_token
):
    settings.BEEM_SCIM_AUTH_CACHE_SECONDS = 600
    assert _status(organization, okta_token) == 200
    services.sync_stop(organization=organization, actor_label="t")
    assert _status(organization, okta_token) == 401
    issued = services.sync_activate(organization=organization, actor_label="t")
    assert isinstance(issued, okta.IssuedApiToken) and not issued.rotated
    assert _status(organization, okta_token) == 401
    assert _status(organization, issued.token) == 200


def test_rotation_is_refused_while_entra_is_the_directory(organization, credentials):
    with pytest.raises(directories.DirectoryError):
        directories.api_token_rotate(organization=organization)


def test_an_entra_token_cannot_reach_an_okta_organization(
    organization, other_organization, okta_token, other_org_scim
):
    entra_b = SCIMClient(organization=organization, token=other_org_scim.token)
    assert entra_b.get("/Users").status_code == 401


# --- runs -----------------------------------------------------------------------------------


def test_connection_test_opens_a_run_and_records_the_test(okta_scim, organization):
    assert services.sync_settings_get(organization=organization).last_test_connection_at is None
    okta_scim.get("/Users", params={"startIndex": 1, "count": 2})
    first = ProvisioningRun.objects.get(organization=organization)
    assert first.trigger == ProvisioningRun.Trigger.PROBE
    assert services.sync_settings_get(organization=organization).last_test_connection_at
    okta_scim.get("/Groups", params={"startIndex": 1, "count": 100})
    assert ProvisioningRun.objects.filter(organization=organization).count() == 1


def test_import_opens_one_run_for_all_its_pages(okta_scim, organization, settings):
    settings.BEEM_PROBE_COALESCE_SECONDS = 0
    okta_scim.get("/Users", params={"startIndex": 1, "count": 2})  # connection test
    okta_scim.get("/Users", params={"startIndex": 1, "count": 100})  # import, page 1
    okta_scim.get("/Users", params={"startIndex": 101, "count": 100})  # page 2
    okta_scim.get("/Users", params={"filter": 'userName eq "a@b.c"', "startIndex": 1})
    runs = list(ProvisioningRun.objects.filter(organization=organization).order_by("pk"))
    assert len(runs) == 2
    assert runs[0].ended_at is not None and runs[1].ended_at is None


def test_an_unfiltered_first_page_does_not_start_an_entra_run(scim, organization, settings):
    settings.BEEM_PROBE_COALESCE_SECONDS = 0
    scim.get("/Users", params={"startIndex": 1, "count": 2})
    scim.get("/Users", params={"startIndex": 1, "count": 2})
    assert ProvisioningRun.objects.filter(organization=organization).count() == 1
    assert services.sync_settings_get(organization=organization).last_test_connection_at is None
