"""SCIM /Users over HTTP with Entra ID's payloads: create, read, replace, delete, validation."""

import uuid

import pytest

from directory_sync import services
from directory_sync.models import ChangeEvent, DirectoryRecord

from .conftest import (
    ADSCIM_USER,
    ENTERPRISE,
    SCIM_JSON,
    USER_SCHEMA,
    assert_scim_error,
    create_user,
    entra_user,
    events_of,
    record_of,
    without_meta,
)

ALICE_DOCUMENT = {
    "schemas": [USER_SCHEMA, ENTERPRISE],
    "userName": "Alice.Wong@contoso.com",
    "externalId": "6f3f6a8e-1b9c-4e0b-9c52-8d1d0f6a0001",
    "active": True,
    "displayName": "Alice Wong",
    "title": "Engineer",
    "name": {"givenName": "Alice", "familyName": "Wong"},
    "emails": [{"value": "Alice.Wong@contoso.com", "type": "work", "primary": True}],
    "phoneNumbers": [{"value": "+966512345678", "type": "mobile"}],
    "addresses": [{"country": "SA", "type": "work"}],
    ENTERPRISE: {"employeeNumber": "E-1001", "department": "Platform"},
}


def test_post_user_answers_201_with_location_and_the_stored_resource(scim, entra_bool):
    response = scim.post("/Users", json=entra_user(active=entra_bool(True)))

    assert response.status_code == 201
    assert response["Content-Type"] == SCIM_JSON
    body = response.json()
    location = f"http://testserver/scim/v2/{scim.organization.pk}/Users/{body['id']}"
    assert response["Location"] == location
    record = record_of(body["id"])
    assert body == {
        "id": str(record.scim_id),
        **ALICE_DOCUMENT,
        "meta": {
            "resourceType": "User",
            "created": record.created_at.isoformat(),
            "lastModified": record.updated_at.isoformat(),
            "location": location,
            "version": 'W/"1"',
        },
    }


def test_post_user_stores_the_canonical_document_mirrors_and_a_created_event(scim, entra_bool):
    body = create_user(scim, active=entra_bool(True))

    record = record_of(body["id"])
    assert record.organization == scim.organization
    assert record.resource_type == "User"
    assert record.document == ALICE_DOCUMENT
    assert (record.user_name, record.user_name_key) == (
        "Alice.Wong@contoso.com",
        "alice.wong@contoso.com",
    )
    assert record.external_id == "6f3f6a8e-1b9c-4e0b-9c52-8d1d0f6a0001"
    assert record.work_email == "alice.wong@contoso.com"
    assert (record.display_name, record.active, record.version) == ("Alice Wong", True, 1)
    assert events_of(body["id"]) == [("created", 1)]


def test_post_user_ignores_client_meta_roles_nulls_and_unknown_schema_uris(scim, entra_bool):
    payload = entra_user(active=entra_bool(True))
    payload["schemas"] = [USER_SCHEMA, ADSCIM_USER]  # enterprise URN not listed (#8)
    payload["meta"] = {"resourceType": "User", "created": "2020-01-01T00:00:00Z"}
    payload["roles"] = []
    payload["nickName"] = None
    payload["title"] = None
    payload["id"] = "client-chosen-id"

    response = scim.post("/Users", json=payload)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"] != "client-chosen-id"
    expected = {k: v for k, v in ALICE_DOCUMENT.items() if k != "title"}
    assert without_meta(body) == {"id": body["id"], **expected}
    assert record_of(body["id"]).document == expected


def test_post_user_without_active_is_stored_active(scim):
    payload = entra_user()
    del payload["active"]

    body = scim.post("/Users", json=payload).json()

    assert body["active"] is True
    assert record_of(body["id"]).document["active"] is True


def test_post_user_stores_inactive_user_as_real_false(scim, entra_bool):
    body = create_user(scim, active=entra_bool(False))

    assert body["active"] is False
    record = record_of(body["id"])
    assert record.document["active"] is False
    assert record.active is False


def test_get_user_by_id_returns_the_resource(scim):
    created = create_user(scim)

    response = scim.get(f"/Users/{created['id']}")

    assert response.status_code == 200
    assert response["Content-Type"] == SCIM_JSON
    assert response.json() == created


def test_get_unknown_user_is_a_scim_404(scim):
    missing = str(uuid.uuid4())
    body = assert_scim_error(scim.get(f"/Users/{missing}"), 404)
    assert missing in body["detail"]


def test_get_user_with_a_non_uuid_id_is_a_scim_404(scim):
    assert_scim_error(scim.get("/Users/not-a-uuid"), 404)


def test_disabled_user_stays_readable_and_filterable(scim):
    created = create_user(scim, active="False")

    assert scim.get(f"/Users/{created['id']}").json()["active"] is False
    listed = scim.get("/Users", params={"filter": 'userName eq "alice.wong@contoso.com"'}).json()
    assert [r["id"] for r in listed["Resources"]] == [created["id"]]


def test_put_user_replaces_the_document_and_appends_updated(scim, entra_bool):
    created = create_user(scim)
    replacement = entra_user(active=entra_bool(True), mobile="+966512345679")
    replacement["displayName"] = "Alice W."
    del replacement["title"]

    response = scim.put(f"/Users/{created['id']}", json=replacement)

    assert response.status_code == 200, response.content
    expected = {
        **{k: v for k, v in ALICE_DOCUMENT.items() if k != "title"},
        "displayName": "Alice W.",
        "phoneNumbers": [{"value": "+966512345679", "type": "mobile"}],
    }
    assert without_meta(response.json()) == {"id": created["id"], **expected}
    assert response.json()["meta"]["version"] == 'W/"2"'
    record = record_of(created["id"])
    assert (record.document, record.version, record.display_name) == (expected, 2, "Alice W.")
    assert events_of(created["id"]) == [("created", 1), ("updated", 2)]


def test_put_user_with_the_same_document_appends_no_event(scim):
    created = create_user(scim)

    response = scim.put(f"/Users/{created['id']}", json=entra_user())

    assert response.status_code == 200
    assert response.json() == created
    assert events_of(created["id"]) == [("created", 1)]


def test_put_user_active_false_appends_deactivated(scim, entra_bool):
    created = create_user(scim)

    scim.put(f"/Users/{created['id']}", json=entra_user(active=entra_bool(False)))

    assert events_of(created["id"]) == [("created", 1), ("deactivated", 2)]


def test_delete_user_answers_204_tombstones_and_appends_deleted(scim):
    created = create_user(scim)

    response = scim.delete(f"/Users/{created['id']}")

    assert response.status_code == 204
    assert response.content == b""
    record = record_of(created["id"])
    assert record.deleted_at is not None
    assert record.version == 2
    assert events_of(created["id"]) == [("created", 1), ("deleted", 2)]
    assert_scim_error(scim.get(f"/Users/{created['id']}"), 404)
    assert scim.get("/Users").json()["totalResults"] == 0


def test_delete_unknown_user_is_a_scim_404(scim):
    assert_scim_error(scim.delete(f"/Users/{uuid.uuid4()}"), 404)


def test_deleted_user_frees_its_user_name_for_a_new_user(scim):
    created = create_user(scim)
    scim.delete(f"/Users/{created['id']}")

    again = create_user(scim)

    assert again["id"] != created["id"]


def test_duplicate_user_name_in_another_case_is_409_uniqueness(scim):
    create_user(scim)

    response = scim.post(
        "/Users",
        json=entra_user(user_name="ALICE.WONG@contoso.com", external_id="other-object-id"),
    )

    body = assert_scim_error(response, 409, "uniqueness")
    assert "userName" in body["detail"]
    assert DirectoryRecord.objects.count() == 1
    assert ChangeEvent.objects.count() == 1


def test_duplicate_external_id_is_409_uniqueness(scim):
    create_user(scim)

    response = scim.post("/Users", json=entra_user(user_name="bob@contoso.com"))

    body = assert_scim_error(response, 409, "uniqueness")
    assert "externalId" in body["detail"]
    assert DirectoryRecord.objects.count() == 1


def test_same_user_name_in_two_organizations_is_allowed(scim, other_org_scim):
    mine = create_user(scim)
    theirs = create_user(other_org_scim)

    assert mine["id"] != theirs["id"]


def test_user_without_mobile_is_refused_when_identifying_by_phone(scim):
    response = scim.post("/Users", json=entra_user(mobile=None))

    body = assert_scim_error(response, 400, "invalidValue")
    assert 'phoneNumbers[type eq "mobile"].value' in body["detail"]
    assert "+966512345678" in body["detail"]
    assert DirectoryRecord.objects.count() == 0


def test_user_with_a_mobile_without_country_code_is_refused(scim):
    response = scim.post("/Users", json=entra_user(mobile="0512345678"))

    body = assert_scim_error(response, 400, "invalidValue")
    assert 'phoneNumbers[type eq "mobile"].value' in body["detail"]
    assert "+966512345678" in body["detail"]


def test_mobile_without_country_code_passes_with_a_default_country(scim, organization):
    services.sync_settings_update(organization=organization, default_phone_country="SA")

    body = create_user(scim, mobile="0512345678")

    # Stored as sent (Entra compares what it reads back); the apply job normalises it.
    assert body["phoneNumbers"] == [{"value": "0512345678", "type": "mobile"}]


def test_disabled_user_without_mobile_is_accepted_when_identifying_by_phone(scim):
    body = create_user(scim, mobile=None, active="False")

    assert body["active"] is False


def test_user_without_mobile_is_accepted_when_identifying_by_email(scim, organization):
    services.sync_settings_update(organization=organization, identify_by="email")

    body = create_user(scim, mobile=None)

    assert "phoneNumbers" not in body


def test_malformed_json_is_400_invalid_syntax(scim):
    response = scim.post("/Users", json='{"userName": "x",')

    assert_scim_error(response, 400, "invalidSyntax")
    assert DirectoryRecord.objects.count() == 0


def test_a_json_array_body_is_400_invalid_syntax(scim):
    assert_scim_error(scim.post("/Users", json="[1, 2]"), 400, "invalidSyntax")


def test_an_empty_body_is_400_invalid_syntax(scim):
    assert_scim_error(scim.post("/Users", json=""), 400, "invalidSyntax")


def test_a_non_utf8_body_is_400_invalid_syntax(scim):
    assert_scim_error(scim.post("/Users", json=b"\xff\xfe{}"), 400, "invalidSyntax")


@pytest.mark.parametrize(
    "field,value",
    [
        ("userName", 42),
        ("active", "maybe"),
        ("emails", "alice@contoso.com"),
        ("name", "Alice Wong"),
        ("displayName", ["Alice"]),
    ],
)
def test_wrong_attribute_type_is_400_invalid_value(scim, field, value):
    response = scim.post("/Users", json=entra_user(**{field: value}))

    body = assert_scim_error(response, 400, "invalidValue")
    assert field in body["detail"]
    assert DirectoryRecord.objects.count() == 0


def test_user_without_user_name_is_400_invalid_value(scim):
    payload = entra_user()
    del payload["userName"]

    body = assert_scim_error(scim.post("/Users", json=payload), 400, "invalidValue")
    assert "userName" in body["detail"]


def test_overlong_user_name_is_400_invalid_value(scim):
    response = scim.post("/Users", json=entra_user(user_name="a" * 300 + "@contoso.com"))

    assert_scim_error(response, 400, "invalidValue")


def test_manager_that_is_not_a_user_of_the_directory_is_400_invalid_value(scim):
    payload = entra_user()
    payload[ENTERPRISE]["manager"] = {"value": str(uuid.uuid4())}

    body = assert_scim_error(scim.post("/Users", json=payload), 400, "invalidValue")
    assert "manager" in body["detail"]


def test_post_user_with_manager_as_reference_list_stores_its_id(scim):
    boss = create_user(
        scim, user_name="boss@contoso.com", external_id="boss", mobile="+966512345670"
    )
    payload = entra_user()
    payload[ENTERPRISE]["manager"] = [
        {"$ref": "https://x/Users/" + boss["id"], "value": boss["id"]}
    ]

    body = scim.post("/Users", json=payload).json()

    assert body[ENTERPRISE]["manager"] == {
        "value": boss["id"],
        "$ref": f"http://testserver/scim/v2/{scim.organization.pk}/Users/{boss['id']}",
    }
    record = record_of(body["id"])
    assert record.document[ENTERPRISE]["manager"] == {"value": boss["id"]}
    assert str(record.manager_scim_id) == boss["id"]


def test_post_on_a_user_url_is_405_with_a_scim_body(scim):
    created = create_user(scim)
    assert_scim_error(scim.post(f"/Users/{created['id']}", json=entra_user()), 405)


def test_oversized_body_is_413_with_a_scim_body(scim, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    payload = entra_user(displayName="x" * 2000)

    response = scim.post("/Users", json=payload)

    assert response.status_code == 413
    assert response["Content-Type"] == SCIM_JSON
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def test_attributes_parameter_returns_only_those_attributes_and_id(scim):
    created = create_user(scim)

    response = scim.get(
        f"/Users/{created['id']}",
        params={"attributes": f"userName,name.givenName,{ENTERPRISE}:department"},
    )

    assert response.json() == {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "id": created["id"],
        "userName": "Alice.Wong@contoso.com",
        "name": {"givenName": "Alice"},
        ENTERPRISE: {"department": "Platform"},
    }


def test_excluded_attributes_leave_those_out_of_list_results(scim):
    created = create_user(scim)

    response = scim.get("/Users", params={"excludedAttributes": f"emails,name,{ENTERPRISE},meta"})

    (resource,) = response.json()["Resources"]
    expected = {k: v for k, v in created.items() if k not in ("emails", "name", ENTERPRISE, "meta")}
    assert resource == expected
