"""Discovery documents (RFC 7644 §4): /ServiceProviderConfig, /ResourceTypes, /Schemas.

They advertise only what is really supported (entra-contract.md, "Discovery"): the schemas are
django-scim2's RFC 7643 schemas cut down to the attributes Beem keeps (those the product
document asks admins to map), so a client that reads them — scim2-tester does — only writes
what we store and read back.
"""

import copy
from typing import Any

from django.conf import settings
from django_scim.schemas import ALL as RFC_SCHEMAS

from .documents import ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA

LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"

# Advertised attributes and sub-attributes, per schema.
_KEPT: dict[str, dict[str, tuple[str, ...]]] = {
    USER_SCHEMA: {
        "userName": (),
        "name": ("givenName", "familyName"),
        "displayName": (),
        "title": (),
        "active": (),
        "emails": ("value", "type", "primary"),
        "phoneNumbers": ("value", "type", "primary"),
        "addresses": ("country", "type"),
    },
    ENTERPRISE_SCHEMA: {
        "employeeNumber": (),
        "department": (),
        "manager": ("value", "$ref"),
    },
    GROUP_SCHEMA: {
        "displayName": (),
        "members": ("value", "$ref", "type"),
    },
}
# Always present in what we store and answer: a group needs its name, and a user is always
# active or not (the document keeps a real boolean).
_REQUIRED = {USER_SCHEMA: ("userName", "active"), GROUP_SCHEMA: ("displayName",)}


def max_results() -> int:
    return int(settings.SCIM_SERVICE_PROVIDER.get("MAX_RESULTS", 200))


def _cut(schema: dict) -> dict:
    kept = _KEPT[schema["id"]]
    result = copy.deepcopy(schema)
    attributes = []
    for attribute in result["attributes"]:
        if attribute["name"] not in kept:
            continue
        if "subAttributes" in attribute:
            subs = [s for s in attribute["subAttributes"] if s["name"] in kept[attribute["name"]]]
            for sub in subs:
                sub["required"] = False
                if sub["name"] == "$ref":
                    # Members and managers are users of this directory (no nested groups).
                    sub["referenceTypes"] = ["User"]
            attribute["subAttributes"] = subs
        if attribute["name"] in _REQUIRED.get(schema["id"], ()):
            attribute["required"] = True
        attributes.append(attribute)
    if schema["id"] == GROUP_SCHEMA and not any(a["name"] == "members" for a in attributes):
        raise AssertionError("the group schema lost its members")
    result["attributes"] = attributes
    return result


_SCHEMAS = {schema["id"]: _cut(schema) for schema in RFC_SCHEMAS if schema["id"] in _KEPT}


def schemas_getter() -> list[dict]:
    """django-scim2's SCHEMAS_GETTER: the schemas we advertise (without location)."""
    return list(_SCHEMAS.values())


def schema_documents(base_url: str) -> list[dict]:
    documents = []
    for schema_id in (USER_SCHEMA, ENTERPRISE_SCHEMA, GROUP_SCHEMA):
        document = copy.deepcopy(_SCHEMAS[schema_id])
        document["schemas"] = [SCHEMA_SCHEMA]
        document["meta"] = {"resourceType": "Schema", "location": f"{base_url}/Schemas/{schema_id}"}
        documents.append(document)
    return documents


def resource_type_documents(base_url: str) -> list[dict]:
    return [
        {
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": False}],
            "meta": {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/User"},
        },
        {
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": GROUP_SCHEMA,
            "meta": {
                "resourceType": "ResourceType",
                "location": f"{base_url}/ResourceTypes/Group",
            },
        },
    ]


def service_provider_config(base_url: str) -> dict[str, Any]:
    scim_settings = settings.SCIM_SERVICE_PROVIDER
    config: dict[str, Any] = {
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": max_results()},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": scim_settings["AUTHENTICATION_SCHEMES"],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base_url}/ServiceProviderConfig",
        },
    }
    if scim_settings.get("DOCUMENTATION_URI"):
        config["documentationUri"] = scim_settings["DOCUMENTATION_URI"]
    return config


def list_response(resources: list[dict], *, total: int | None = None, start: int = 1) -> dict:
    return {
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": len(resources) if total is None else total,
        "itemsPerPage": len(resources),
        "startIndex": start,
        "Resources": resources,
    }
