"""Request bodies over BEEM_MAX_BODY_BYTES are refused early with 413 (a SCIM error on SCIM
routes), before authentication or parsing; hostile bodies under the limit are SCIM 400s."""

import json

import pytest

from directory_sync.models import DirectoryRecord, RequestLog

from .conftest import ERROR_SCHEMA, scim_user


@pytest.fixture
def tenant(tenant_factory):
    return tenant_factory(slug="acme-limits", name="Acme")


def test_a_scim_body_over_the_limit_is_refused_with_a_scim_413(tenant, settings):
    settings.BEEM_MAX_BODY_BYTES = 10_000
    body = scim_user("big@acme.com", displayName="x" * 10_001)

    response = tenant.request("POST", "/Users", body)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/scim+json"
    assert response.json() == {
        "schemas": [ERROR_SCHEMA],
        "status": "413",
        "detail": "The request body is larger than the 10000 bytes this server accepts. "
        "Send smaller requests (a SCIM resource is a few kilobytes).",
    }
    assert not DirectoryRecord.objects.exists()


def test_the_limit_applies_before_authentication(tenant, settings):
    settings.BEEM_MAX_BODY_BYTES = 1_000

    response = tenant.request("PATCH", "/Users/whatever", raw=b"{" * 1_001, token="not-a-token")

    assert response.status_code == 413
    # Refused before the SCIM view: nothing was parsed, authenticated or logged.
    assert not RequestLog.objects.exists()


def test_a_body_at_the_limit_is_processed(tenant, settings):
    body = json.dumps(scim_user("fits@acme.com"))
    settings.BEEM_MAX_BODY_BYTES = len(body)

    response = tenant.request("POST", "/Users", raw=body)

    assert response.status_code == 201, response.content


def test_the_default_limit_is_one_megabyte_and_django_agrees(settings):
    import beem_admin.settings as project

    assert project.BEEM_MAX_BODY_BYTES == 1_048_576
    assert project.DATA_UPLOAD_MAX_MEMORY_SIZE == project.BEEM_MAX_BODY_BYTES
    assert "directory_sync.scim.limits.RequestBodyLimitMiddleware" in settings.MIDDLEWARE


def test_other_routes_get_a_plain_413(client, settings):
    settings.BEEM_MAX_BODY_BYTES = 100

    response = client.post(
        "/o/token/",
        "grant_type=client_credentials&x=" + "y" * 200,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")


def test_a_body_django_refuses_while_reading_is_a_413_too(tenant, settings):
    # Django's own guard fires when the view reads the body: still 413, not Django's 400.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = scim_user("read@acme.com", displayName="x" * 2_000)

    response = tenant.request("POST", "/Users", body)

    assert response.status_code == 413
    assert response.json()["status"] == "413"


@pytest.mark.parametrize(
    "raw, scim_type",
    [
        (b"[" * 100_000 + b"]" * 100_000, "invalidSyntax"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "invalidSyntax"),
        (b'{"userName": "a\\u0000b@acme.com"}', "invalidValue"),
        (b"\xff\xfe\x00{", "invalidSyntax"),
    ],
    ids=["deep-array", "deep-object", "nul-character", "invalid-utf8"],
)
def test_hostile_bodies_under_the_limit_are_scim_400s(tenant, raw, scim_type):
    response = tenant.request("POST", "/Users", raw=raw)

    assert response.status_code == 400, response.content
    assert response.json()["scimType"] == scim_type
    assert not DirectoryRecord.objects.exists()
    # The request log kept a (masked, truncated) row instead of failing the request.
    assert RequestLog.objects.get().status == 400


def test_a_nul_character_in_a_filter_is_an_invalid_value(tenant):
    response = tenant.request("GET", "/Users", query="filter=userName%20eq%20%22a%00b%22")

    assert response.status_code == 400
    assert response.json()["scimType"] == "invalidValue"
