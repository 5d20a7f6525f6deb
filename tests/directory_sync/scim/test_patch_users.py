"""PATCH /Users/<id> with the shapes Entra ID really sends (entra-contract.md #1-#8)."""

import uuid

import pytest

from .conftest import (
    ENTERPRISE,
    SCIM_JSON,
    assert_scim_error,
    create_user,
    events_of,
    patch_body,
    record_of,
    without_meta,
)


def _patch(scim, user_id, *operations):
    return scim.patch(f"/Users/{user_id}", json=patch_body(*operations))


@pytest.mark.parametrize("op", ["Replace", "replace", "REPLACE", "Add", "add"])
def test_op_is_accepted_in_any_case(scim, op):
    user = create_user(scim)

    response = _patch(scim, user["id"], {"op": op, "path": "title", "value": "Lead"})

    assert response.status_code == 200, response.content
    assert response.json()["title"] == "Lead"
    assert record_of(user["id"]).document["title"] == "Lead"


def test_user_patch_answers_200_with_the_whole_resource(scim):
    user = create_user(scim)

    response = _patch(scim, user["id"], {"op": "Replace", "path": "displayName", "value": "A. W."})

    assert response.status_code == 200
    assert response["Content-Type"] == SCIM_JSON
    record = record_of(user["id"])
    expected = {**without_meta(user), "displayName": "A. W."}
    assert without_meta(response.json()) == expected
    assert response.json()["meta"] == {
        **user["meta"],
        "lastModified": record.updated_at.isoformat(),
        "version": 'W/"2"',
    }
    assert events_of(user["id"]) == [("created", 1), ("updated", 2)]


def test_disable_with_active_false_deactivates_and_keeps_the_user_readable(scim, entra_bool):
    user = create_user(scim)

    response = _patch(
        scim, user["id"], {"op": "Replace", "path": "active", "value": entra_bool(False)}
    )

    assert response.status_code == 200
    assert response.json()["active"] is False
    record = record_of(user["id"])
    assert (record.document["active"], record.active, record.version) == (False, False, 2)
    assert events_of(user["id"]) == [("created", 1), ("deactivated", 2)]
    assert scim.get(f"/Users/{user['id']}").json()["active"] is False


def test_re_enable_with_active_true_appends_reactivated(scim, entra_bool):
    user = create_user(scim, active="False")

    _patch(scim, user["id"], {"op": "Replace", "path": "active", "value": entra_bool(True)})

    record = record_of(user["id"])
    assert (record.document["active"], record.active) == (True, True)
    assert events_of(user["id"]) == [("created", 1), ("reactivated", 2)]


def test_patch_that_changes_nothing_appends_no_event(scim):
    user = create_user(scim)

    response = _patch(scim, user["id"], {"op": "Replace", "path": "title", "value": "Engineer"})

    assert response.status_code == 200
    assert response.json() == user
    assert record_of(user["id"]).version == 1
    assert events_of(user["id"]) == [("created", 1)]


def test_replace_work_email_creates_the_entry_when_missing(scim, organization):
    from directory_sync import services

    services.sync_settings_update(organization=organization, identify_by="email")
    user = create_user(scim, emails=None)
    assert "emails" not in user

    response = _patch(
        scim,
        user["id"],
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "Alice@Contoso.com"},
    )

    assert response.json()["emails"] == [{"value": "Alice@Contoso.com", "type": "work"}]
    record = record_of(user["id"])
    assert record.document["emails"] == [{"value": "Alice@Contoso.com", "type": "work"}]
    assert record.work_email == "alice@contoso.com"


def test_replace_work_email_updates_the_existing_entry(scim):
    user = create_user(scim)

    _patch(
        scim,
        user["id"],
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@contoso.com"},
    )

    record = record_of(user["id"])
    assert record.document["emails"] == [
        {"value": "new@contoso.com", "type": "work", "primary": True}
    ]
    assert record.work_email == "new@contoso.com"


def test_add_mobile_creates_the_phone_entry(scim):
    user = create_user(scim, mobile=None, active="False")

    _patch(
        scim,
        user["id"],
        {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+966512345678"},
    )

    assert record_of(user["id"]).document["phoneNumbers"] == [
        {"value": "+966512345678", "type": "mobile"}
    ]


def test_replace_work_country_creates_the_address_entry(scim):
    user = create_user(scim, addresses=None)

    _patch(
        scim,
        user["id"],
        {"op": "Replace", "path": 'addresses[type eq "work"].country', "value": "AE"},
    )

    assert record_of(user["id"]).document["addresses"] == [{"country": "AE", "type": "work"}]


def test_dotted_sub_attribute_path(scim):
    user = create_user(scim)

    _patch(scim, user["id"], {"op": "Replace", "path": "name.familyName", "value": "Wang"})

    assert record_of(user["id"]).document["name"] == {"givenName": "Alice", "familyName": "Wang"}


def test_enterprise_urn_path(scim):
    user = create_user(scim)

    _patch(scim, user["id"], {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Data"})

    assert record_of(user["id"]).document[ENTERPRISE] == {
        "employeeNumber": "E-1001",
        "department": "Data",
    }


def test_pathless_replace_with_dotted_and_urn_keys(scim, entra_bool):
    user = create_user(scim)

    response = _patch(
        scim,
        user["id"],
        {
            "op": "replace",
            "value": {
                "displayName": "Bjfe",
                "name.givenName": "Kkom",
                f"{ENTERPRISE}:employeeNumber": "Aklq",
                "active": entra_bool(True),
            },
        },
    )

    assert response.status_code == 200, response.content
    document = record_of(user["id"]).document
    assert document["displayName"] == "Bjfe"
    assert document["name"] == {"givenName": "Kkom", "familyName": "Wong"}
    assert document[ENTERPRISE]["employeeNumber"] == "Aklq"
    assert document["active"] is True


def test_pathless_value_ignores_meta_schemas_and_unknown_attributes(scim):
    user = create_user(scim)

    response = _patch(
        scim,
        user["id"],
        {
            "op": "Replace",
            "value": {"meta": {"version": "x"}, "roles": [], "title": "Lead", "foo": 1},
        },
    )

    assert response.status_code == 200, response.content
    assert record_of(user["id"]).document["title"] == "Lead"


def test_replace_with_null_clears_the_attribute(scim):
    user = create_user(scim)

    _patch(scim, user["id"], {"op": "Replace", "path": "title", "value": None})

    assert "title" not in record_of(user["id"]).document


def test_remove_clears_the_attribute(scim):
    user = create_user(scim)

    response = _patch(scim, user["id"], {"op": "Remove", "path": "title"})

    assert "title" not in response.json()
    assert "title" not in record_of(user["id"]).document


@pytest.fixture
def boss(scim):
    return create_user(
        scim, user_name="boss@contoso.com", external_id="boss-object-id", mobile="+966512345670"
    )


@pytest.mark.parametrize("form", ["reference list", "object", "bare id"])
def test_manager_in_every_entra_form(scim, boss, form):
    user = create_user(scim)
    value = {
        "reference list": [{"$ref": f"../Users/{boss['id']}", "value": boss["id"]}],
        "object": {"value": boss["id"]},
        "bare id": boss["id"],
    }[form]

    response = _patch(
        scim, user["id"], {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": value}
    )

    assert response.status_code == 200, response.content
    assert response.json()[ENTERPRISE]["manager"] == {
        "value": boss["id"],
        "$ref": f"http://testserver/scim/v2/{scim.organization.pk}/Users/{boss['id']}",
    }
    record = record_of(user["id"])
    assert record.document[ENTERPRISE]["manager"] == {"value": boss["id"]}
    assert str(record.manager_scim_id) == boss["id"]
    assert events_of(user["id"]) == [("created", 1), ("updated", 2)]


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": ""},
        {"op": "Remove", "path": f"{ENTERPRISE}:manager"},
        {"op": "Remove", "path": f"{ENTERPRISE}:manager", "value": [{"value": "old"}]},
        {"op": "replace", "value": {f"{ENTERPRISE}:manager": ""}},
    ],
    ids=["empty string", "remove", "remove with value", "pathless empty"],
)
def test_manager_is_cleared(scim, boss, operation):
    user = create_user(scim)
    _patch(scim, user["id"], {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": boss["id"]})

    response = _patch(scim, user["id"], operation)

    assert response.status_code == 200, response.content
    assert "manager" not in response.json()[ENTERPRISE]
    record = record_of(user["id"])
    assert "manager" not in record.document[ENTERPRISE]
    assert record.manager_scim_id is None


def test_manager_of_another_organization_is_refused(scim, other_org_scim):
    user = create_user(scim)
    foreign = create_user(other_org_scim, user_name="x@globex.com", external_id="x")

    response = _patch(
        scim, user["id"], {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": foreign["id"]}
    )

    assert_scim_error(response, 400, "invalidValue")
    assert record_of(user["id"]).manager_scim_id is None


@pytest.mark.parametrize(
    "path",
    ["favouriteColour", "name.nick", "urn:ietf:params:scim:schemas:extension:Custom:2.0:User:foo"],
)
def test_an_attribute_outside_the_schema_is_ignored_as_in_a_post(scim, path):
    # The consistency rule (issue 15): what a POST ignores, a PATCH by path ignores too.
    user = create_user(scim)
    before = record_of(user["id"]).document

    response = _patch(scim, user["id"], {"op": "Replace", "path": path, "value": "x"})

    assert response.status_code == 200, response.content
    assert record_of(user["id"]).document == before


def test_a_path_that_is_no_attribute_path_is_400_invalid_path(scim):
    user = create_user(scim)

    response = _patch(scim, user["id"], {"op": "Replace", "path": "title..x y", "value": "x"})

    body = assert_scim_error(response, 400, "invalidPath")
    assert "title..x y" in body["detail"]
    assert events_of(user["id"]) == [("created", 1)]


def test_wrong_value_type_is_400_invalid_value(scim):
    user = create_user(scim)

    response = _patch(scim, user["id"], {"op": "Replace", "path": "active", "value": "perhaps"})

    assert_scim_error(response, 400, "invalidValue")
    assert record_of(user["id"]).document["active"] is True


def test_unknown_op_is_400_invalid_value(scim):
    user = create_user(scim)

    response = _patch(scim, user["id"], {"op": "merge", "path": "title", "value": "x"})

    assert_scim_error(response, 400, "invalidValue")


def test_patch_without_operations_is_400_invalid_syntax(scim):
    user = create_user(scim)

    response = scim.patch(f"/Users/{user['id']}", json={"schemas": []})

    assert_scim_error(response, 400, "invalidSyntax")


def test_malformed_patch_json_is_400_invalid_syntax(scim):
    user = create_user(scim)

    assert_scim_error(
        scim.patch(f"/Users/{user['id']}", json='{"Operations": ['), 400, "invalidSyntax"
    )


def test_failed_operation_leaves_the_whole_patch_unapplied(scim):
    user = create_user(scim)

    response = _patch(
        scim,
        user["id"],
        {"op": "Replace", "path": "title", "value": "Lead"},
        {"op": "Replace", "path": "active", "value": "perhaps"},
    )

    assert_scim_error(response, 400, "invalidValue")
    assert record_of(user["id"]).document["title"] == "Engineer"


def test_patch_removing_the_mobile_is_refused_when_identifying_by_phone(scim):
    user = create_user(scim)

    response = _patch(
        scim, user["id"], {"op": "Remove", "path": 'phoneNumbers[type eq "mobile"].value'}
    )

    body = assert_scim_error(response, 400, "invalidValue")
    assert 'phoneNumbers[type eq "mobile"].value' in body["detail"]
    assert record_of(user["id"]).document["phoneNumbers"] == [
        {"value": "+966512345678", "type": "mobile"}
    ]


def test_patch_user_name_to_one_taken_is_409(scim):
    create_user(scim, user_name="bob@contoso.com", external_id="bob", mobile="+966512345670")
    user = create_user(scim)

    response = _patch(
        scim, user["id"], {"op": "Replace", "path": "userName", "value": "BOB@contoso.com"}
    )

    assert_scim_error(response, 409, "uniqueness")
    assert record_of(user["id"]).user_name == "Alice.Wong@contoso.com"


def test_patch_unknown_user_is_404(scim):
    response = _patch(scim, str(uuid.uuid4()), {"op": "Replace", "path": "title", "value": "x"})

    assert_scim_error(response, 404)


def test_tenant_url_flag_aadoptscim062020_in_the_query_string_is_accepted(scim):
    # With the flag, the Tenant URL ends in "?aadOptscim062020" and Entra sends real booleans.
    user = create_user(scim)

    response = scim.patch(
        f"/Users/{user['id']}",
        json=patch_body({"op": "replace", "path": "active", "value": False}),
        params={"aadOptscim062020": ""},
    )
    listed = scim.get(
        "/Users",
        params={"aadOptscim062020": "", "filter": 'userName eq "alice.wong@contoso.com"'},
    )

    assert response.status_code == 200
    assert response.json()["active"] is False
    assert [r["id"] for r in listed.json()["Resources"]] == [user["id"]]
