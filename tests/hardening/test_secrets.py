"""Secrets at rest and in logs: client secrets hashed and shown once, access tokens stored as
checksums and never logged, SCIM request logs without personal data or credentials."""

import base64
import hashlib
import json
import logging

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse
from oauth2_provider.models import AccessToken, Application

from directory_sync import directories
from directory_sync import services as sync_services
from directory_sync.models import RequestLog, SyncSettings

from .conftest import PATCH_SCHEMA, SETTINGS_FORM, scim_user, token_for


def test_client_secret_is_stored_hashed_and_still_authenticates(client, organization):
    issued = sync_services.credentials_issue(organization=organization, actor_label="test")
    sync_services.sync_activate(organization=organization, actor_label="test")

    stored = Application.objects.get(client_id=issued.client_id).client_secret

    assert stored != issued.client_secret
    assert issued.client_secret not in stored
    assert stored.startswith("beem_client_secret_hmac_sha256$")
    assert token_for(client, client_id=issued.client_id, client_secret=issued.client_secret)


def test_access_tokens_are_stored_as_checksums_only(client, organization):
    issued = sync_services.sync_activate(organization=organization, actor_label="test")

    token = token_for(client, client_id=issued.client_id, client_secret=issued.client_secret)

    row = AccessToken.objects.get(application__client_id=issued.client_id)
    assert row.token == ""
    assert row.token_checksum == hashlib.sha256(token.encode()).hexdigest()


def _sessions_text() -> str:
    return "\n".join(str(session.get_decoded()) for session in Session.objects.all())


def test_client_secret_is_shown_once_after_save_and_activate_and_never_stored(admin_client):
    first = admin_client.post(reverse("directory_sync:sync_settings_form"), SETTINGS_FORM)
    application = Application.objects.get()
    shown = first.context["client_secret"]

    second = admin_client.get(reverse("directory_sync:sync_entra"))

    assert first.status_code == 200
    assert shown and shown in first.content.decode()
    assert application.client_id in first.content.decode()
    assert second.context["client_secret"] is None
    assert shown not in second.content.decode()
    assert application.client_id in second.content.decode()
    # Shown in the answer that issued it: the session never held the plaintext secret.
    assert shown not in _sessions_text()


def test_new_client_secret_is_shown_once_never_stored_and_the_old_one_stops_working(
    admin_client, client, organization
):
    first = sync_services.sync_activate(organization=organization, actor_label="test")
    old_token = token_for(client, client_id=first.client_id, client_secret=first.client_secret)

    page = admin_client.post(reverse("directory_sync:credentials_rotate"), {"confirm": "on"})
    again = admin_client.get(reverse("directory_sync:sync_entra"))
    new_secret = page.context["client_secret"]

    assert page.context["client_id"] == first.client_id
    assert new_secret and new_secret in page.content.decode()
    assert new_secret not in again.content.decode()
    assert new_secret not in _sessions_text()
    basic = base64.b64encode(f"{first.client_id}:{first.client_secret}".encode()).decode()
    old = client.post(
        "/o/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}"
    )
    assert old.status_code == 401
    scim = client.get(f"/scim/v2/{organization.pk}/Users", HTTP_AUTHORIZATION=f"Bearer {old_token}")
    assert scim.status_code == 401
    assert token_for(client, client_id=first.client_id, client_secret=new_secret)


@pytest.fixture
def every_log_record(caplog):
    """Capture every log record of every logger, at DEBUG, for the duration of the test."""
    caplog.set_level(logging.DEBUG)
    for name in ("django_scim", "oauthlib", "oauth2_provider", "django.request", "django.db"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def rendered(caplog) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.append(repr(record.__dict__))
    return "\n".join(lines)


def test_access_tokens_and_secrets_never_reach_the_logs(every_log_record, client, organization):
    issued = sync_services.sync_activate(organization=organization, actor_label="test")
    token = token_for(client, client_id=issued.client_id, client_secret=issued.client_secret)
    base = f"/scim/v2/{organization.pk}"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    created = client.post(
        f"{base}/Users",
        scim_user("secret.person@acme.com", phone="+966501239876"),
        content_type="application/scim+json",
        **auth,
    )
    client.get(f'{base}/Users?filter=userName eq "secret.person@acme.com"', **auth)
    client.get(f"{base}/Users/{created.json()['id']}", HTTP_AUTHORIZATION="Bearer wrong-token")
    client.post(
        "/o/token/",
        {
            "grant_type": "client_credentials",
            "client_id": issued.client_id,
            "client_secret": "wrong",
        },
    )

    assert created.status_code == 201
    text = rendered(every_log_record)
    assert every_log_record.records, "nothing was logged: the capture is not working"
    assert token not in text
    assert issued.client_secret not in text
    assert "wrong-token" not in text


def test_scim_request_log_masks_personal_data_and_credentials(client, organization):
    issued = sync_services.sync_activate(organization=organization, actor_label="test")
    token = token_for(client, client_id=issued.client_id, client_secret=issued.client_secret)
    base = f"/scim/v2/{organization.pk}"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    body = scim_user(
        "layla.haddad@acme.com",
        phone="+966501239876",
        external_id="5a1e3c2b-9f0d-4a7e-8b6c-1d2e3f4a5b6c",  # Entra's objectId
        displayName="Layla Haddad",
        name={"givenName": "Layla", "familyName": "Haddad"},
        password="hunter2-secret",
    )

    created = client.post(f"{base}/Users", body, content_type="application/scim+json", **auth)
    user_id = created.json()["id"]
    client.patch(
        f"{base}/Users/{user_id}",
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {
                    "op": "Replace",
                    "path": 'phoneNumbers[type eq "mobile"].value',
                    "value": "+966501230000",
                },
                {"op": "Replace", "value": {"name.familyName": "Haddad-Nasser"}},
            ],
        },
        content_type="application/scim+json",
        **auth,
    )
    client.get(f'{base}/Users?filter=userName eq "layla.haddad@acme.com"', **auth)

    logs = list(RequestLog.objects.filter(organization=organization))
    stored = "\n".join(f"{r.path} {r.query} {r.request_body} {r.response_body}" for r in logs)
    assert len(logs) == 3
    for personal in ("layla", "Layla", "Haddad", "+966501239876", "+966501230000", "966501"):
        assert personal not in stored
    assert "hunter2-secret" not in stored
    assert token not in stored
    assert "Bearer" not in stored
    assert user_id in stored  # ids stay readable: the admin needs them


def test_okta_api_token_is_stored_as_a_digest_and_never_reaches_the_logs(
    every_log_record, client, organization
):
    directories.directory_switch(organization=organization, directory="okta", actor_label="t")
    issued = sync_services.sync_activate(organization=organization, actor_label="test")
    base = f"/scim/v2/{organization.pk}"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {issued.token}"}

    created = client.post(
        f"{base}/Users",
        scim_user("okta.person@acme.com", phone="+966501239875"),
        content_type="application/scim+json",
        **auth,
    )
    client.get(f"{base}/Users?startIndex=1&count=2", **auth)
    client.get(f"{base}/Users", HTTP_AUTHORIZATION=f"Bearer {issued.token}x")

    assert created.status_code == 201
    text = rendered(every_log_record)
    assert every_log_record.records, "nothing was logged: the capture is not working"
    assert issued.token not in text
    stored = json.dumps(list(SyncSettings.objects.values()), default=str)
    assert issued.token not in stored and issued.token[len("beem_okta_") :] not in stored
