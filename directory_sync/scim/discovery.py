"""Discovery documents (RFC 7644 §4): /ServiceProviderConfig, /ResourceTypes, /Schemas.

They advertise only what is really supported (entra-contract.md, "Discovery"): scim2-models'
RFC 7643 schemas (the models the payloads are parsed with), the whole core User schema and
enterprise extension (issue 15: Entra's default mappings send most of it), without what the
records never hold — a user's ``groups`` (read-only, not kept on users), the manager's
``displayName`` and a member's ``display`` (accepted on input, not kept). A client that reads
them — scim2-tester does — only writes what we store and read back. Attributes outside these
schemas are ignored in every write form, like scim2-models' ``unknown=ignore`` policy.
"""

import copy
from typing import Any

from django.conf import settings
from scim2_models import EnterpriseUser, Group, User

from .constants import (
    ENTERPRISE_SCHEMA,
    GROUP_SCHEMA,
    LIST_RESPONSE_SCHEMA,
    RESOURCE_TYPE_SCHEMA,
    SCHEMA_SCHEMA,
    SERVICE_PROVIDER_CONFIG_SCHEMA,
    USER_SCHEMA,
)

# Attributes (None) and sub-attributes of scim2-models' schemas that are not advertised.
_NOT_KEPT: dict[str, dict[str, tuple[str, ...] | None]] = {
    USER_SCHEMA: {"groups": None},
    ENTERPRISE_SCHEMA: {"manager": ("displayName",)},
    GROUP_SCHEMA: {"members": ("display",)},
}
# Always present in what we store and answer: a group needs its name, and a user is always
# active or not (the document keeps a real boolean).
_REQUIRED = {USER_SCHEMA: ("userName", "active"), GROUP_SCHEMA: ("displayName",)}


def max_results() -> int:
    return int(settings.SCIM_SERVICE_PROVIDER.get("MAX_RESULTS", 200))


def _cut(schema: dict) -> dict:
    not_kept = _NOT_KEPT[schema["id"]]
    result = copy.deepcopy(schema)
    attributes = []
    for attribute in result["attributes"]:
        dropped = not_kept.get(attribute["name"], ())
        if dropped is None:
            continue
        if "subAttributes" in attribute:
            subs = [s for s in attribute["subAttributes"] if s["name"] not in dropped]
            for sub in subs:
                sub["required"] = False
                if sub["name"] == "$ref":
                    # Members and managers are users of this directory (no nested groups).
                    sub["referenceTypes"] = ["User"]
            attribute["subAttributes"] = subs
        attribute["required"] = attribute["name"] in _REQUIRED.get(schema["id"], ())
        attributes.append(attribute)
    if schema["id"] == GROUP_SCHEMA and not any(a["name"] == "members" for a in attributes):
        raise AssertionError("the group schema lost its members")
    result["attributes"] = attributes
    return result


_SCHEMAS = {
    schema["id"]: _cut(schema)
    for schema in (
        model.to_schema().model_dump(exclude={"schemas", "meta"})
        for model in (User, EnterpriseUser, Group)
    )
}


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
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": max_results()},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
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
