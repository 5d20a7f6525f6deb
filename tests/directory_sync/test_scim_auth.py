"""The SCIM auth check: only a live token of this organization's sync, while it is active."""

import hashlib
import time
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken

from directory_sync import services
from directory_sync.models import RequestLog, SyncSettings
from directory_sync.scim import auth

from .conftest import SCIMClient, token_obtain

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PROBE = '/Users?filter=userName+eq+"5bd7bd4e-4ac3-4a6b-a8f8-c0d6f0b9b2a1"'


def _assert_401(response, detail_part: str, *, invalid_token: bool = True) -> None:
    assert response.status_code == 401
    assert response["Content-Type"] == "application/scim+json"
    expected_challenge = 'Bearer realm="beem-scim"'
    if invalid_token:
        expected_challenge += ', error="invalid_token"'
    assert response["WWW-Authenticate"] == expected_challenge
    body = response.json()
    assert set(body) == {"schemas", "status", "detail"}
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == "401"
    assert detail_part in body["detail"]


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_valid_token_reaches_scim_and_sets_request_context(scim, organization):
    response = scim.get(PROBE)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/scim+json"
    request = response.wsgi_request
    assert request.scim_organization == organization
    assert request.scim_sync_settings.organization_id == organization.pk
    assert request.scim_sync_settings.status == SyncSettings.Status.ACTIVE
    assert request.scim_run is not None
    assert request.scim_run.organization_id == organization.pk
    assert len(request.request_id) >= 16


def test_lowercase_bearer_scheme_is_accepted(scim):
    response = scim.get(PROBE, HTTP_AUTHORIZATION=f"bearer {scim.token}")

    assert response.status_code == 200


def test_missing_token_is_401_without_error_code(scim):
    response = scim.with_token(None).get("/Users")

    _assert_401(response, "Authorization: Bearer", invalid_token=False)


def test_basic_credentials_on_scim_are_401(scim, credentials):
    response = scim.get("/Users", HTTP_AUTHORIZATION="Basic Zm9vOmJhcg==")

    _assert_401(response, "Authorization: Bearer", invalid_token=False)


def test_unknown_token_is_401(scim):
    response = scim.with_token("not-a-real-token").get("/Users")

    _assert_401(response, "invalid or was revoked")


def test_expired_token_is_401(scim):
    AccessToken.objects.filter(token_checksum=_checksum(scim.token)).update(
        expires=timezone.now() - timedelta(seconds=1)
    )

    response = scim.get("/Users")

    _assert_401(response, "expired")


def test_token_revoked_at_revoke_endpoint_is_401(scim, credentials):
    assert scim.get(PROBE).status_code == 200

    revoke = Client().post(
        "/o/revoke_token/",
        data=urlencode(
            {
                "token": scim.token,
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )
    assert revoke.status_code == 200

    _assert_401(scim.get(PROBE), "invalid or was revoked")


def test_token_of_rotated_credentials_is_401(scim, organization):
    assert scim.get(PROBE).status_code == 200

    services.credentials_issue(organization=organization, actor_label="operator")

    _assert_401(scim.get(PROBE), "invalid or was revoked")


def test_token_of_new_credentials_works_after_rotation(scim, organization):
    issued = services.credentials_issue(organization=organization, actor_label="operator")
    token = token_obtain(issued.client_id, issued.client_secret).json()["access_token"]

    assert scim.with_token(token).get(PROBE).status_code == 200


def test_stopped_sync_is_401(scim, organization):
    assert scim.get(PROBE).status_code == 200

    services.sync_stop(organization=organization, actor_label="admin")

    _assert_401(scim.get(PROBE), "not active")


def test_reactivated_sync_accepts_the_same_token(scim, organization):
    services.sync_stop(organization=organization, actor_label="admin")
    _assert_401(scim.get(PROBE), "not active")

    services.sync_activate(organization=organization, actor_label="admin")

    assert scim.get(PROBE).status_code == 200


def test_credentials_of_never_activated_sync_are_401(organization):
    issued = services.credentials_issue(organization=organization, actor_label="operator")
    token = token_obtain(issued.client_id, issued.client_secret).json()["access_token"]

    response = SCIMClient(organization=organization, token=token).get(PROBE)

    _assert_401(response, "not active")


def test_token_of_organization_a_on_organization_b_url_is_401(scim, other_org_scim):
    response = other_org_scim.with_token(scim.token).get(PROBE)

    _assert_401(response, "not valid for this Tenant URL")


def test_unknown_organization_answers_like_another_organization(scim, other_org_scim):
    on_other = other_org_scim.with_token(scim.token).get("/Users")
    on_missing = scim.client.get("/scim/v2/987654/Users", HTTP_AUTHORIZATION=f"Bearer {scim.token}")

    assert on_missing.status_code == on_other.status_code == 401
    assert on_missing.json() == on_other.json()
    assert on_missing["WWW-Authenticate"] == on_other["WWW-Authenticate"]


def test_out_of_range_organization_id_is_401_not_an_error(scim):
    response = scim.client.get(
        "/scim/v2/99999999999999999999999/Users", HTTP_AUTHORIZATION=f"Bearer {scim.token}"
    )

    _assert_401(response, "not valid for this Tenant URL")


def test_write_with_stopped_sync_changes_nothing(scim, organization):
    services.sync_stop(organization=organization, actor_label="admin")

    response = scim.post(
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@acme.example",
            "active": True,
        },
    )

    _assert_401(response, "not active")
    assert organization.directory_records.count() == 0


def test_stop_reaches_other_processes_within_a_second(scim, organization):
    assert scim.get(PROBE).status_code == 200
    # Another web process stopped the sync: no signal reaches this process's cache.
    SyncSettings.objects.filter(organization=organization).update(
        status=SyncSettings.Status.STOPPED
    )

    time.sleep(1.05)

    _assert_401(scim.get(PROBE), "not active")


def test_revocation_reaches_other_processes_within_a_second(scim):
    assert scim.get(PROBE).status_code == 200
    # Revoked by another process: a raw delete sends no signal here.
    AccessToken.objects.filter(token_checksum=_checksum(scim.token))._raw_delete("default")

    time.sleep(1.05)

    _assert_401(scim.get(PROBE), "invalid or was revoked")


def test_token_lookup_is_one_query_then_cached(scim, organization, django_assert_num_queries, rf):
    request = rf.get("/scim/v2/x/Users", HTTP_AUTHORIZATION=f"Bearer {scim.token}")

    with django_assert_num_queries(1):
        first = auth.authenticate(request=request, organization_id=organization.pk)
    with django_assert_num_queries(0):
        second = auth.authenticate(request=request, organization_id=organization.pk)

    assert first.organization == organization
    assert second.pk == first.pk


def test_last_request_at_is_written_at_most_every_few_seconds(scim, organization):
    assert scim.get(PROBE).status_code == 200
    first = SyncSettings.objects.get(organization=organization).last_request_at
    assert first is not None

    assert scim.get("/Users").status_code == 200

    assert SyncSettings.objects.get(organization=organization).last_request_at == first


def test_request_id_of_earlier_middleware_is_kept(scim):
    response = scim.get(PROBE, HTTP_X_REQUEST_ID="entra-cycle-0001")

    assert response.wsgi_request.request_id == "entra-cycle-0001"
    assert RequestLog.objects.get().request_id == "entra-cycle-0001"


def test_rejected_request_is_not_logged_for_a_known_organization(scim, organization):
    # Anyone can send one: counted in metrics instead (tests/directory_sync/test_request_log.py).
    response = scim.with_token("stolen-or-typo").get("/Users")

    assert response.status_code == 401
    assert RequestLog.objects.count() == 0


def test_rejected_request_for_unknown_organization_is_not_logged(scim):
    scim.client.get("/scim/v2/987654/Users", HTTP_AUTHORIZATION="Bearer whatever")

    assert RequestLog.objects.count() == 0


@pytest.mark.parametrize("path", ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"])
def test_discovery_endpoints_need_a_token_too(scim, path):
    _assert_401(scim.with_token(None).get(path), "Authorization: Bearer", invalid_token=False)
    assert scim.get(path).status_code == 200


def test_organization_b_cannot_reach_organization_a_users(scim, other_org_scim, organization):
    created = scim.post(
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@acme.example",
            "externalId": "5f8a3c1e-6d2b-4e9f-a1c7-3b0d9e8f7a61",
            "phoneNumbers": [{"type": "mobile", "value": "+966512345678"}],
            "active": True,
        },
    )
    assert created.status_code == 201, created.content
    user_id = created.json()["id"]

    for query in (
        'userName eq "ada@acme.example"',
        f'id eq "{user_id}"',
        'externalId eq "5f8a3c1e-6d2b-4e9f-a1c7-3b0d9e8f7a61"',
    ):
        listed = other_org_scim.get("/Users", params={"filter": query})
        assert listed.status_code == 200
        assert listed.json()["totalResults"] == 0, query
    assert other_org_scim.get("/Users").json()["totalResults"] == 0
    assert other_org_scim.get(f"/Users/{user_id}").status_code == 404
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
    }
    assert other_org_scim.patch(f"/Users/{user_id}", json=patch).status_code == 404
    assert other_org_scim.delete(f"/Users/{user_id}").status_code == 404

    record = organization.directory_records.get()
    assert (record.active, record.deleted_at, record.version) == (True, None, 1)
