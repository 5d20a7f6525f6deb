"""Fixtures for SCIM tests: an organization whose Entra sync is active, its credentials, a
token from the real ``/o/token/`` endpoint, and ``scim`` — a test client that talks to
``/scim/v2/<organization id>`` with that token.

    def test_probe(scim):
        response = scim.get('/Users?filter=userName eq "0c5b..."')
        assert response.status_code == 200
        assert response.json()["totalResults"] == 0

    def test_create(scim):
        response = scim.post("/Users", json={...})
"""

import base64
import json as jsonlib
from urllib.parse import urlencode

import pytest
from django.test import Client

from directory_sync import services
from directory_sync.models import SyncSettings
from directory_sync.services import IssuedCredentials

SCIM_CONTENT_TYPE = "application/scim+json"


def token_obtain(
    client_id: str, client_secret: str, *, client: Client | None = None, basic: bool = True
):
    """POST /o/token/ as Entra does (client credentials); returns the response."""
    client = client or Client()
    data = {"grant_type": "client_credentials"}
    headers = {}
    if basic:
        pair = f"{client_id}:{client_secret}".encode()
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(pair).decode()
    else:
        data.update(client_id=client_id, client_secret=client_secret)
    return client.post(
        "/o/token/",
        data=urlencode(data),
        content_type="application/x-www-form-urlencoded",
        **headers,
    )


class SCIMClient:
    """Django's test client, pointed at one organization's Tenant URL with a Bearer token.

    ``get/post/put/patch/delete(path, json=None, params=None, **extra)``: ``path`` is relative
    to the Tenant URL (``"/Users"``, ``"/Groups/<id>"``); ``json`` is sent as
    ``application/scim+json``; ``params`` are added to the query string. Responses are Django
    test responses (``.status_code``, ``.json()``, ``["Content-Type"]``).
    """

    def __init__(self, *, organization, token: str | None, client: Client | None = None):
        self.organization = organization
        self.token = token
        self.client = client or Client()
        self.base = f"/scim/v2/{organization.pk}"

    def url(self, path: str = "", params: dict | None = None) -> str:
        url = self.base + path
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        return url

    def with_token(self, token: str | None) -> "SCIMClient":
        return SCIMClient(organization=self.organization, token=token, client=self.client)

    def request(self, method: str, path: str, json=None, params=None, **extra):
        if self.token is not None:
            extra.setdefault("HTTP_AUTHORIZATION", f"Bearer {self.token}")
        kwargs = {}
        if json is not None:
            kwargs["data"] = json if isinstance(json, str | bytes) else jsonlib.dumps(json)
            kwargs["content_type"] = SCIM_CONTENT_TYPE
        call = getattr(self.client, method)
        return call(self.url(path, params), **kwargs, **extra)

    def get(self, path: str, params=None, **extra):
        return self.request("get", path, params=params, **extra)

    def post(self, path: str, json=None, params=None, **extra):
        return self.request("post", path, json=json, params=params, **extra)

    def put(self, path: str, json=None, params=None, **extra):
        return self.request("put", path, json=json, params=params, **extra)

    def patch(self, path: str, json=None, params=None, **extra):
        return self.request("patch", path, json=json, params=params, **extra)

    def delete(self, path: str, json=None, params=None, **extra):
        return self.request("delete", path, json=json, params=params, **extra)


@pytest.fixture(autouse=True)
def _fast_secret_hashing(settings):
    """Client secrets are hashed like passwords (PBKDF2, ~0.5 s per issue and per token
    request); a cheap hasher keeps SCIM tests fast without changing what is checked."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _activate(organization) -> IssuedCredentials:
    issued = services.sync_activate(organization=organization, actor_label="operator")
    if issued is None:  # already had credentials: rotate to learn a secret
        issued = services.credentials_issue(organization=organization, actor_label="operator")
    return issued


def _token(issued: IssuedCredentials) -> str:
    response = token_obtain(issued.client_id, issued.client_secret)
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


@pytest.fixture
def credentials(organization) -> IssuedCredentials:
    """Organization A's sync activated; its freshly issued client id and plaintext secret."""
    return _activate(organization)


@pytest.fixture
def sync_settings_active(credentials):
    """Organization A's SyncSettings, active, with credentials issued."""
    return services.sync_settings_get(organization=credentials.organization)


@pytest.fixture
def scim_token(credentials) -> str:
    """An access token for organization A from the real token endpoint."""
    return _token(credentials)


@pytest.fixture
def scim(organization, scim_token, sync_settings_active) -> SCIMClient:
    """SCIM client for organization A (Tenant URL /scim/v2/<A id>, A's token)."""
    return SCIMClient(organization=organization, token=scim_token)


@pytest.fixture
def other_credentials(other_organization) -> IssuedCredentials:
    return _activate(other_organization)


@pytest.fixture
def other_org_scim(other_organization, other_credentials) -> SCIMClient:
    """SCIM client for organization B, with B's own token."""
    return SCIMClient(organization=other_organization, token=_token(other_credentials))


def okta_connect(organization, *, settings_fields: dict | None = None) -> str:
    """Make Okta the organization's directory and activate it; its plaintext API token."""
    from directory_sync import directories

    directories.directory_switch(
        organization=organization, directory=SyncSettings.Directory.OKTA, actor_label="operator"
    )
    if settings_fields:
        services.sync_settings_update(
            organization=organization, actor_label="operator", **settings_fields
        )
    issued = services.sync_activate(organization=organization, actor_label="operator")
    if issued is None:
        issued = directories.api_token_rotate(organization=organization, actor_label="operator")
    return issued.token


@pytest.fixture
def okta_token(organization) -> str:
    """Organization A synced with Okta, active; its API token."""
    return okta_connect(organization)


@pytest.fixture
def okta_scim(organization, okta_token) -> SCIMClient:
    """SCIM client for organization A with A's Okta API token."""
    return SCIMClient(organization=organization, token=okta_token)


@pytest.fixture
def scim_client_for(db):
    """Factory: ``scim_client_for(organization)`` activates its sync and returns a client."""

    def make(organization) -> SCIMClient:
        return SCIMClient(organization=organization, token=_token(_activate(organization)))

    return make
