"""``manage.py directory_sync ... --directory okta`` (issue 17): activate, credentials, status,
stop for an organization synced with Okta."""

import io
import json
import re

import pytest
from django.core.management import CommandError, call_command

from directory_sync import services
from directory_sync.models import SyncSettings

from .conftest import SCIMClient

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command("directory_sync", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _token(out: str) -> str:
    return re.search(r"API token \(Authorization: Bearer\): (\S+)", out).group(1)


def test_activate_with_directory_okta_prints_the_token_once(organization):
    out = run("activate", "--org", organization.slug, "--directory", "okta")
    token = _token(out)
    assert "SCIM connector base URL:" in out and f"/scim/v2/{organization.pk}" in out
    assert "Unique identifier field for users: userName" in out
    sync = services.sync_settings_get(organization=organization)
    assert sync.directory == "okta" and sync.is_active
    assert SCIMClient(organization=organization, token=token).get("/Users").status_code == 200
    # Activating again shows no token.
    assert "API token (Authorization" not in run("activate", "--org", organization.slug)


def test_switching_an_active_entra_sync_needs_yes(organization):
    run("activate", "--org", organization.slug)
    out = run("activate", "--org", organization.slug, "--directory", "okta")
    assert "Would switch Acme from Entra ID to Okta" in out and "Members already synced" in out
    assert "Nothing was changed" in out
    assert services.sync_settings_get(organization=organization).directory == "entra_id"
    out = run("activate", "--org", organization.slug, "--directory", "okta", "--yes")
    assert _token(out)
    sync = services.sync_settings_get(organization=organization)
    assert sync.directory == "okta" and sync.oauth_application_id is None


def test_credentials_rotates_the_okta_token_with_yes(organization):
    old = _token(run("activate", "--org", organization.slug, "--directory", "okta"))
    out = run("credentials", "--org", organization.slug)
    assert "Would issue a new API token" in out and "Bearer):" not in out
    new = _token(run("credentials", "--org", organization.slug, "--directory", "okta", "--yes"))
    assert new != old
    assert SCIMClient(organization=organization, token=old).get("/Users").status_code == 401
    assert SCIMClient(organization=organization, token=new).get("/Users").status_code == 200


def test_credentials_for_the_other_directory_is_refused(organization):
    run("activate", "--org", organization.slug, "--directory", "okta")
    with pytest.raises(CommandError, match="syncs with okta, not entra_id"):
        run("credentials", "--org", organization.slug, "--directory", "entra_id")


def test_stop_revokes_the_token_and_status_names_the_directory(organization, other_organization):
    token = _token(run("activate", "--org", organization.slug, "--directory", "okta"))
    out = run("stop", "--org", organization.slug, "--yes")
    assert "Okta API token is revoked" in out
    assert SCIMClient(organization=organization, token=token).get("/Users").status_code == 401
    rows = json.loads(run("status", "--format", "json"))
    by_slug = {row["organization"]["slug"]: row for row in rows}
    assert by_slug[organization.slug]["directory"] == SyncSettings.Directory.OKTA
    assert by_slug[other_organization.slug]["directory"] == SyncSettings.Directory.ENTRA_ID
    table = run("status").splitlines()
    assert table[0].split()[:3] == ["ORGANIZATION", "DIRECTORY", "STATUS"]
    assert "okta" in table[1].split() or "okta" in table[2].split()
