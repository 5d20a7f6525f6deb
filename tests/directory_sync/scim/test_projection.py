"""attributes / excludedAttributes (RFC 7644 §3.4.2.5, §3.9): one projection on every answer
holding Users or Groups — GET by id, GET lists, the .search bodies and write answers."""

import pytest

from .conftest import (
    ENTERPRISE,
    GROUP_SCHEMA,
    USER_SCHEMA,
    assert_scim_error,
    create_group,
    create_user,
    entra_user,
    patch_body,
)

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
PICK = f"name.givenName,emails.value,{ENTERPRISE}:manager,{ENTERPRISE}:employeeNumber"


@pytest.fixture
def boss(scim):
    return create_user(scim, user_name="Boss@contoso.com", external_id="BOSS")


@pytest.fixture
def alice(scim, boss):
    body = entra_user()
    body[ENTERPRISE]["manager"] = {"value": boss["id"]}
    response = scim.post("/Users", json=body)
    assert response.status_code == 201, response.content
    return response.json()


def _picked(alice, boss, base) -> dict:
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "id": alice["id"],
        "name": {"givenName": "Alice"},
        "emails": [{"value": "Alice.Wong@contoso.com"}],
        ENTERPRISE: {
            "employeeNumber": "E-1001",
            "manager": {"value": boss["id"], "$ref": f"{base}/Users/{boss['id']}"},
        },
    }


def _base(scim) -> str:
    return f"http://testserver/scim/v2/{scim.organization.pk}"


def test_sub_attributes_and_urn_names_pick_exactly_those_on_get_by_id(scim, alice, boss):
    response = scim.get(f"/Users/{alice['id']}", params={"attributes": PICK})

    assert response.status_code == 200, response.content
    assert response.json() == _picked(alice, boss, _base(scim))


def test_every_read_path_projects_the_same_way(scim, alice, boss):
    expected = _picked(alice, boss, _base(scim))
    one = f'userName eq "{alice["userName"]}"'

    by_lookup = scim.get("/Users", params={"filter": one, "attributes": PICK}).json()
    by_filter = scim.get(
        "/Users",
        params={"filter": 'title eq "Engineer" and userName sw "alice"', "attributes": PICK},
    ).json()
    listed = scim.get("/Users", params={"attributes": PICK}).json()
    searched = scim.post(
        "/Users/.search", json={"schemas": [SEARCH], "filter": one, "attributes": PICK.split(",")}
    ).json()

    for body in (by_lookup, by_filter, searched):
        assert body["Resources"] == [expected]
    assert expected in listed["Resources"]


def test_write_answers_are_projected_when_asked(scim, alice):
    posted = scim.post(
        "/Users",
        json=entra_user(user_name="Bob@contoso.com", external_id="BOB"),
        params={"attributes": "userName"},
    )
    put = scim.put(
        f"/Users/{alice['id']}",
        json=entra_user(title="Lead"),
        params={"excludedAttributes": f"emails,name,{ENTERPRISE},meta,phoneNumbers,addresses"},
    )
    patched = scim.patch(
        f"/Users/{alice['id']}",
        json=patch_body({"op": "replace", "path": "title", "value": "Chief"}),
        params={"attributes": "title"},
    )

    assert posted.status_code == 201 and set(posted.json()) == {"schemas", "id", "userName"}
    assert posted["Location"].endswith(f"/Users/{posted.json()['id']}")
    assert put.status_code == 200
    assert set(put.json()) == {
        "schemas",
        "id",
        "userName",
        "externalId",
        "active",
        "displayName",
        "title",
    }
    assert patched.json() == {"schemas": alice["schemas"], "id": alice["id"], "title": "Chief"}


def test_id_and_schemas_always_come_back_meta_only_when_named(scim, alice):
    path = f"/Users/{alice['id']}"

    excluded = scim.get(path, params={"excludedAttributes": "id,schemas,userName"}).json()
    only_name = scim.get(path, params={"attributes": "userName"}).json()
    with_version = scim.get(path, params={"attributes": "userName,meta.version"}).json()

    assert excluded["id"] == alice["id"] and excluded["schemas"] == alice["schemas"]
    assert "userName" not in excluded and excluded["meta"] == alice["meta"]
    # meta is returned: default (RFC 7643 §3.1, scim2-models' Resource.meta): left out unless
    # named; the ETag header carries the version whatever the projection.
    assert only_name == {
        "schemas": alice["schemas"],
        "id": alice["id"],
        "userName": alice["userName"],
    }
    assert with_version["meta"] == {"version": alice["meta"]["version"]}


def test_names_are_case_insensitive_and_manager_is_found_without_its_urn(scim, alice, boss):
    body = scim.get(f"/Users/{alice['id']}", params={"attributes": "USERNAME,Manager"}).json()

    assert body["userName"] == alice["userName"]
    assert body[ENTERPRISE] == {"manager": alice[ENTERPRISE]["manager"]}


def test_excluded_sub_attributes_and_extension_attributes(scim, alice):
    body = scim.get(
        f"/Users/{alice['id']}",
        params={"excludedAttributes": f"emails.value,{ENTERPRISE}:employeeNumber,name.familyName"},
    ).json()

    assert body["emails"] == [{"type": "work", "primary": True}]
    assert body["name"] == {"givenName": "Alice"}
    assert "employeeNumber" not in body[ENTERPRISE]
    assert body[ENTERPRISE]["department"] == "Platform"
    # The stored record is untouched by the projection.
    assert scim.get(f"/Users/{alice['id']}").json() == alice


def test_a_whole_schema_urn_selects_its_attributes(scim, alice):
    extension = scim.get(f"/Users/{alice['id']}", params={"attributes": ENTERPRISE}).json()
    without = scim.get(f"/Users/{alice['id']}", params={"excludedAttributes": ENTERPRISE}).json()

    assert extension == {
        "schemas": alice["schemas"],
        "id": alice["id"],
        ENTERPRISE: alice[ENTERPRISE],
    }
    assert ENTERPRISE not in without and without["userName"] == alice["userName"]


@pytest.mark.parametrize(
    "params",
    [
        {"attributes": "nickName,nosuch,urn:example:params:scim:schemas:extension:acme:2.0:User:x"},
        {"excludedAttributes": "nosuch,name.nosuch,urn:example:params:other:1.0:User:title"},
    ],
)
def test_names_of_no_attribute_select_and_remove_nothing(scim, alice, params):
    body = scim.get(f"/Users/{alice['id']}", params=params).json()

    if "attributes" in params:
        assert body == {"schemas": alice["schemas"], "id": alice["id"]}
    else:
        assert body == alice


@pytest.mark.parametrize(
    "raw", ['emails[type eq "work"]', "name..givenName", "user name", "name.givenName.x", "urn:"]
)
def test_a_name_that_is_not_attribute_notation_is_400_invalid_value(scim, alice, raw):
    for params in ({"attributes": raw}, {"excludedAttributes": raw}):
        body = assert_scim_error(
            scim.get(f"/Users/{alice['id']}", params=params), 400, "invalidValue"
        )
        assert repr(raw) in body["detail"]


def test_attributes_and_excluded_attributes_together_are_400(scim, alice):
    response = scim.get("/Users", params={"attributes": "userName", "excludedAttributes": "emails"})

    assert "mutually exclusive" in assert_scim_error(response, 400, "invalidValue")["detail"]


def test_groups_project_members_and_their_sub_attributes(scim, alice):
    group = create_group(scim, display_name="Ops")
    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "add", "path": "members", "value": [{"value": alice["id"]}]}),
    )

    name_only = scim.get(f"/Groups/{group['id']}", params={"attributes": "displayName"}).json()
    member_ids = scim.post(
        "/Groups/.search",
        json={"schemas": [SEARCH], "attributes": [f"{GROUP_SCHEMA}:members.value"]},
    ).json()["Resources"]
    user_urn_on_group = scim.get(
        f"/Groups/{group['id']}", params={"attributes": f"{USER_SCHEMA}:displayName"}
    ).json()

    assert name_only == {"schemas": [GROUP_SCHEMA], "id": group["id"], "displayName": "Ops"}
    assert member_ids == [
        {"schemas": [GROUP_SCHEMA], "id": group["id"], "members": [{"value": alice["id"]}]}
    ]
    assert user_urn_on_group == {"schemas": [GROUP_SCHEMA], "id": group["id"]}
