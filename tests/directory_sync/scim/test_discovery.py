"""Discovery endpoints and unsupported URLs: SCIM JSON everywhere, advertising only what works."""

import pytest

from .conftest import (
    ENTERPRISE,
    GROUP_SCHEMA,
    LIST_SCHEMA,
    SCIM_JSON,
    USER_SCHEMA,
    assert_scim_error,
    create_user,
    patch_body,
)

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def _base(scim) -> str:
    return f"http://testserver/scim/v2/{scim.organization.pk}"


def test_service_provider_config_advertises_what_is_supported(scim):
    response = scim.get("/ServiceProviderConfig")

    assert response.status_code == 200
    assert response["Content-Type"] == SCIM_JSON
    assert response.json() == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": 200},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "OAuth2 client credentials grant; send the token as a Bearer token.",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{_base(scim)}/ServiceProviderConfig",
        },
    }


def test_every_capability_the_config_advertises_is_answered(scim):
    config = scim.get("/ServiceProviderConfig").json()
    user = create_user(scim)
    path = f"/Users/{user['id']}"
    maximum = config["filter"]["maxResults"]

    filtered = scim.get("/Users", params={"filter": 'userName sw "a"', "count": maximum + 1})
    sorted_ = scim.get("/Users", params={"sortBy": "userName", "sortOrder": "descending"})
    patched = scim.patch(
        path,
        json=patch_body({"op": "replace", "path": "title", "value": "Lead"}),
        HTTP_IF_MATCH=scim.get(path)["ETag"],
    )
    searched = scim.post("/.search", json={"schemas": [SEARCH], "filter": "id pr"})

    assert config["filter"]["supported"] and filtered.status_code == 200
    assert filtered.json()["itemsPerPage"] <= maximum
    assert config["sort"]["supported"] and sorted_.status_code == 200
    assert config["patch"]["supported"] and config["etag"]["supported"]
    assert patched.status_code == 200 and patched["ETag"] == patched.json()["meta"]["version"]
    assert searched.status_code == 200 and searched.json()["totalResults"] == 1
    assert not config["bulk"]["supported"]
    assert_scim_error(scim.post("/Bulk", json={}), 501)


def test_resource_types_list_user_with_enterprise_extension_and_group(scim):
    body = scim.get("/ResourceTypes").json()

    assert (body["schemas"], body["totalResults"], body["itemsPerPage"], body["startIndex"]) == (
        [LIST_SCHEMA],
        2,
        2,
        1,
    )
    user, group = body["Resources"]
    assert user == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User Account",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{"schema": ENTERPRISE, "required": False}],
        "meta": {"resourceType": "ResourceType", "location": f"{_base(scim)}/ResourceTypes/User"},
    }
    assert (group["id"], group["endpoint"], group["schema"]) == ("Group", "/Groups", GROUP_SCHEMA)
    assert scim.get("/ResourceTypes/Group").json() == group


def test_schemas_list_the_whole_user_enterprise_and_group_schemas(scim):
    body = scim.get("/Schemas").json()

    assert (body["schemas"], body["totalResults"]) == ([LIST_SCHEMA], 3)
    by_id = {schema["id"]: schema for schema in body["Resources"]}
    assert list(by_id) == [USER_SCHEMA, ENTERPRISE, GROUP_SCHEMA]
    # The whole RFC 7643 core User schema and enterprise extension (issue 15), without the
    # user's read-only groups, which users do not hold.
    assert [a["name"] for a in by_id[USER_SCHEMA]["attributes"]] == [
        "userName",
        "name",
        "displayName",
        "nickName",
        "profileUrl",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "active",
        "password",
        "emails",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "entitlements",
        "roles",
        "x509Certificates",
    ]
    user = {a["name"]: a for a in by_id[USER_SCHEMA]["attributes"]}
    assert [s["name"] for s in user["name"]["subAttributes"]] == [
        "formatted",
        "familyName",
        "givenName",
        "middleName",
        "honorificPrefix",
        "honorificSuffix",
    ]
    assert [s["name"] for s in user["addresses"]["subAttributes"]] == [
        "formatted",
        "streetAddress",
        "locality",
        "region",
        "postalCode",
        "country",
        "type",
        "primary",
    ]
    assert (user["password"]["mutability"], user["password"]["returned"]) == (
        "writeOnly",
        "never",
    )
    assert [a["name"] for a in by_id[ENTERPRISE]["attributes"]] == [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
    ]
    assert [a["name"] for a in by_id[GROUP_SCHEMA]["attributes"]] == ["displayName", "members"]
    assert by_id[USER_SCHEMA]["meta"] == {
        "resourceType": "Schema",
        "location": f"{_base(scim)}/Schemas/{USER_SCHEMA}",
    }
    assert scim.get(f"/Schemas/{ENTERPRISE}").json() == by_id[ENTERPRISE]


@pytest.mark.parametrize("path", ["/Schemas/urn:nope", "/ResourceTypes/Printer"])
def test_unknown_discovery_ids_are_scim_404s(scim, path):
    assert_scim_error(scim.get(path), 404)


@pytest.mark.parametrize("path", ["/Bulk", "/Me"])
def test_unsupported_endpoints_are_501_with_a_scim_body(scim, path):
    assert_scim_error(scim.post(path, json={}), 501)


def test_unknown_url_under_the_tenant_url_is_a_scim_404(scim):
    assert_scim_error(scim.get("/Printers"), 404)


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_discovery_endpoints_refuse_writes_with_405(scim, method):
    assert_scim_error(getattr(scim, method)("/Schemas", json={}), 405)


def test_discovery_needs_a_token(scim):
    response = scim.with_token(None).get("/ServiceProviderConfig")

    assert response.status_code == 401
    assert response["Content-Type"] == SCIM_JSON


def test_tenant_url_pasted_with_a_trailing_slash_still_works(scim):
    # Entra appends "/Users" to the Tenant URL as pasted: ".../scim/v2/<id>/" gives "//Users".
    response = scim.get("//Users", params={"filter": 'userName eq "nobody"'})

    assert response.status_code == 200
    assert response.json()["totalResults"] == 0
