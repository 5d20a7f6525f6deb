"""The OAuth2 token endpoint Entra ID calls (client credentials grant)."""

import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from directory_sync import services

from .conftest import token_obtain


def _stored(access_token: str) -> AccessToken:
    checksum = hashlib.sha256(access_token.encode()).hexdigest()
    return AccessToken.objects.select_related("application").get(token_checksum=checksum)


def test_basic_auth_gets_a_bearer_token_with_scim_scope(credentials):
    response = token_obtain(credentials.client_id, credentials.client_secret, basic=True)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "scim"
    assert _stored(body["access_token"]).application.client_id == credentials.client_id


def test_body_fields_get_a_bearer_token(credentials):
    response = token_obtain(credentials.client_id, credentials.client_secret, basic=False)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "scim"
    assert _stored(body["access_token"]).application.client_id == credentials.client_id


def test_token_is_stored_as_checksum_not_plaintext(credentials):
    access_token = token_obtain(credentials.client_id, credentials.client_secret).json()[
        "access_token"
    ]

    stored = _stored(access_token)
    assert stored.token == ""
    assert stored.user is None


def test_request_without_user_agent_is_served(credentials):
    client = Client()
    response = client.post(
        "/o/token/",
        data=urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )

    assert "HTTP_USER_AGENT" not in response.wsgi_request.META
    assert response.status_code == 200


def test_wrong_secret_is_invalid_client(credentials):
    response = token_obtain(credentials.client_id, "not-the-secret")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert AccessToken.objects.count() == 0


def test_wrong_secret_in_body_is_invalid_client(credentials):
    response = token_obtain(credentials.client_id, "not-the-secret", basic=False)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unknown_client_is_invalid_client(db):
    response = token_obtain("nobody", "nothing")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_secret_of_rotated_credentials_is_refused(organization, credentials):
    services.credentials_issue(organization=organization, actor_label="operator")

    response = token_obtain(credentials.client_id, credentials.client_secret)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_expires_in_follows_configured_lifetime(settings, credentials):
    settings.BEEM_TOKEN_LIFETIME_SECONDS = 7200

    before = timezone.now()
    response = token_obtain(credentials.client_id, credentials.client_secret)

    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 7200
    expires = _stored(body["access_token"]).expires
    assert before + timedelta(seconds=7190) < expires <= timezone.now() + timedelta(seconds=7200)


def test_default_lifetime_is_one_hour():
    assert django_settings.BEEM_TOKEN_LIFETIME_SECONDS == 3600


@pytest.mark.parametrize("value", ["3599", "21601"])
def test_lifetime_outside_entra_range_refuses_to_start(value):
    env = {**os.environ, "BEEM_TOKEN_LIFETIME_SECONDS": value, "DJANGO_SETTINGS_MODULE": ""}
    env.pop("DJANGO_SETTINGS_MODULE")
    result = subprocess.run(
        [sys.executable, "-c", "import beem_admin.settings"],
        env=env,
        capture_output=True,
        text=True,
        cwd=django_settings.BASE_DIR,
        timeout=60,
    )

    assert result.returncode != 0
    assert "BEEM_TOKEN_LIFETIME_SECONDS must be between 3600 and 21600" in result.stderr


def test_stopped_sync_still_gets_a_token(organization, credentials):
    # Decision: credentials stay valid while sync is stopped (reactivation needs no new secret
    # in Entra); the SCIM endpoint is what refuses (test_scim_auth).
    services.sync_stop(organization=organization, actor_label="operator")

    response = token_obtain(credentials.client_id, credentials.client_secret)

    assert response.status_code == 200


def test_application_not_bound_to_a_sync_gets_no_token(db):
    Application.objects.create(
        name="hand-made",
        client_id="hand-made-id",
        client_secret="hand-made-secret",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )

    response = token_obtain("hand-made-id", "hand-made-secret")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert AccessToken.objects.count() == 0


def test_other_grant_types_are_refused(credentials):
    response = Client().post(
        "/o/token/",
        data=urlencode(
            {
                "grant_type": "password",
                "username": "x",
                "password": "y",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("unauthorized_client", "invalid_grant")
    assert AccessToken.objects.count() == 0


def test_oauth_management_pages_are_not_exposed(admin_client):
    for path in ("/o/applications/", "/o/authorize/", "/o/authorized_tokens/", "/o/introspect/"):
        assert admin_client.get(path).status_code == 404, path


def test_revoked_token_via_revoke_endpoint_is_deleted(credentials):
    access_token = token_obtain(credentials.client_id, credentials.client_secret).json()[
        "access_token"
    ]

    response = Client().post(
        "/o/revoke_token/",
        data=urlencode(
            {
                "token": access_token,
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    assert AccessToken.objects.count() == 0


@pytest.mark.parametrize("scope", ["", "scim"])
def test_empty_or_scim_scope_gets_the_scim_scope(credentials, scope):
    response = Client().post(
        "/o/token/",
        data=urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
                "scope": scope,
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "scim"


def test_unknown_scope_is_refused(credentials):
    response = Client().post(
        "/o/token/",
        data=urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
                "scope": "admin",
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert AccessToken.objects.count() == 0
