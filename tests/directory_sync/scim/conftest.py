"""Entra ID payloads and helpers for the SCIM resource tests.

Payloads are the shapes Entra's provisioning service really sends (entra-contract.md). Entra
sends booleans as the strings "True"/"False" unless the Tenant URL carries the
``aadOptscim062020`` flag, in which case it sends real booleans: the ``entra_bool`` fixture
runs a test once in each mode.
"""

import copy
import uuid

import pytest

from directory_sync.models import ChangeEvent, DirectoryRecord

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_JSON = "application/scim+json"
ADSCIM_USER = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User"
ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


@pytest.fixture(params=["string", "real"], ids=["string-booleans", "aadOptscim062020"])
def entra_bool(request):
    """``entra_bool(True)`` is "True" (Entra's default) or True (with the flag)."""
    if request.param == "string":
        return lambda value: "True" if value else "False"
    return lambda value: bool(value)


def entra_user(
    *,
    user_name: str = "Alice.Wong@contoso.com",
    external_id: str = "6f3f6a8e-1b9c-4e0b-9c52-8d1d0f6a0001",
    active="True",
    mobile: str | None = "+966512345678",
    **extra,
) -> dict:
    """The body of Entra's POST /Users with Beem's attribute mappings."""
    body = {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": external_id,
        "userName": user_name,
        "active": active,
        "displayName": "Alice Wong",
        "title": "Engineer",
        "emails": [{"primary": True, "type": "work", "value": user_name}],
        "name": {"givenName": "Alice", "familyName": "Wong"},
        "addresses": [{"type": "work", "country": "SA"}],
        ENTERPRISE: {"employeeNumber": "E-1001", "department": "Platform"},
    }
    if mobile is not None:
        body["phoneNumbers"] = [{"type": "mobile", "value": mobile}]
    body.update(extra)
    return body


def patch_body(*operations: dict) -> dict:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


def create_user(scim, **kwargs) -> dict:
    response = scim.post("/Users", json=entra_user(**kwargs))
    assert response.status_code == 201, response.content
    return response.json()


def create_group(scim, display_name: str = "Sales", external_id: str | None = None) -> dict:
    body = {
        "schemas": [GROUP_SCHEMA, ADSCIM_GROUP],
        "displayName": display_name,
        "externalId": external_id or str(uuid.uuid4()),
        "members": [],
    }
    response = scim.post("/Groups", json=body)
    assert response.status_code == 201, response.content
    return response.json()


def record_of(scim_id: str) -> DirectoryRecord:
    return DirectoryRecord.objects.get(scim_id=scim_id)


def events_of(scim_id: str) -> list[tuple[str, int]]:
    return list(
        ChangeEvent.objects.filter(scim_id=scim_id)
        .order_by("id")
        .values_list("kind", "record_version")
    )


def without_meta(resource: dict) -> dict:
    resource = copy.deepcopy(resource)
    resource.pop("meta", None)
    return resource


def assert_scim_error(response, status: int, scim_type: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == SCIM_JSON
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]
    return body
