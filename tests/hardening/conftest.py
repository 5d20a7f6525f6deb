"""Fixtures for the hardening tests: tenants with live Entra credentials, and a SCIM client.

Tokens are obtained from the real token endpoint (``/o/token/``) with the client credentials
grant, exactly as Entra ID does; nothing here reaches into the OAuth tables.
"""

import base64
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.test import Client

from directory_sync import directories
from directory_sync import services as sync_services
from members import services as member_services

SCIM_CONTENT_TYPE = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"

# Every SCIM request the hardening tests send, reported at the end of the run.
REQUEST_COUNTER = {"scim": 0}
# What the model-based test (test_model.py) ran, reported at the end of the run.
MODEL_COUNTER = {"examples": 0, "steps": 0, "settles": 0, "sweeps": 0, "rules": Counter()}


def token_for(client: Client, *, client_id: str, client_secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    response = client.post(
        "/o/token/",
        {"grant_type": "client_credentials"},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


@dataclass
class Tenant:
    """One organization with active sync, its credentials, a token and a SCIM client."""

    organization: object
    client_id: str
    client_secret: str
    token: str
    client: Client = field(default_factory=lambda: Client(raise_request_exception=True))

    @property
    def base(self) -> str:
        return f"/scim/v2/{self.organization.pk}"

    def request(
        self,
        method: str,
        path: str,
        body=None,
        *,
        raw: bytes | str | None = None,
        content_type: str = SCIM_CONTENT_TYPE,
        query: str = "",
        token: str | None = None,
        base: str | None = None,
        headers: dict | None = None,
    ):
        """Send one SCIM request; ``path`` is relative to the tenant URL (``/Users``)."""
        url = (base if base is not None else self.base) + path
        if query:
            url += "?" + query
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body)
        else:
            data = ""
        extra = {"HTTP_AUTHORIZATION": f"Bearer {token if token is not None else self.token}"}
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        REQUEST_COUNTER["scim"] += 1
        return self.client.generic(method, url, data, content_type=content_type, **extra)


def tenant_create(*, slug: str, name: str, directory: str = "entra_id", **sync_fields) -> Tenant:
    """An organization with active sync; ``directory="okta"``: synced with Okta, whose API
    token is the tenant's token (no OAuth client)."""
    organization = member_services.organization_get_or_create(slug=slug, name=name)
    if directory != "entra_id":
        directories.directory_switch(
            organization=organization, directory=directory, actor_label="test"
        )
    if sync_fields:
        sync_services.sync_settings_update(
            organization=organization, actor_label="test", **sync_fields
        )
    issued = sync_services.sync_activate(organization=organization, actor_label="test")
    client = Client(raise_request_exception=True)
    if directory != "entra_id":
        return Tenant(
            organization=organization,
            client_id="",
            client_secret="",
            token=issued.token,
            client=client,
        )
    token = token_for(client, client_id=issued.client_id, client_secret=issued.client_secret)
    return Tenant(
        organization=organization,
        client_id=issued.client_id,
        client_secret=issued.client_secret,
        token=token,
        client=client,
    )


@pytest.fixture
def tenant_factory(db) -> Callable[..., Tenant]:
    return tenant_create


@pytest.fixture
def tenant_a(db) -> Tenant:
    return tenant_create(slug="tenant-a", name="Tenant A")


@pytest.fixture
def tenant_b(db) -> Tenant:
    return tenant_create(slug="tenant-b", name="Tenant B")


def scim_user(
    user_name: str, *, phone: str = "+966501234567", external_id: str | None = None, **extra
) -> dict:
    """An Entra-shaped user creation body (string boolean, as Entra sends without the flag)."""
    body = {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": user_name,
        "externalId": external_id or user_name.split("@")[0],
        "active": "True",
        "displayName": user_name.split("@")[0].title(),
        "name": {"givenName": "Given", "familyName": "Family"},
        "emails": [{"type": "work", "value": user_name, "primary": True}],
        "phoneNumbers": [{"type": "mobile", "value": phone}],
    }
    body.update(extra)
    return body


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if REQUEST_COUNTER["scim"]:
        terminalreporter.write_line(
            f"hardening: {REQUEST_COUNTER['scim']} SCIM requests sent in-process"
        )
    if MODEL_COUNTER["examples"]:
        terminalreporter.write_line(
            "model: {examples} examples, {steps} steps, {settles} settled checks, "
            "{sweeps} sweeps of events left pending".format(**MODEL_COUNTER)
        )
        terminalreporter.write_line(
            "model steps by rule: "
            + ", ".join(f"{name} {n}" for name, n in sorted(MODEL_COUNTER["rules"].items()))
        )


# The "Set up in Beem" form with every rule filled in (tests post it and change one field).
SETTINGS_FORM = {
    "deletion_rule": "delete_directly",
    "identify_by": "phone",
    "department_format": "plain_name",
    "department_delimiter": "/",
    "duplicate_department_policy": "hold_for_admin",
    "default_phone_country": "",
}
