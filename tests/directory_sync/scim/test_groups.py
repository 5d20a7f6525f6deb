"""SCIM /Groups over HTTP with Entra ID's payloads, including every member-PATCH form."""

import uuid

import pytest

from directory_sync.models import DirectoryMembership, DirectoryRecord

from .conftest import (
    ADSCIM_GROUP,
    GROUP_SCHEMA,
    SCIM_JSON,
    assert_scim_error,
    create_group,
    create_user,
    events_of,
    patch_body,
    record_of,
    without_meta,
)


def _members_of(group_id: str) -> set[str]:
    return {
        str(scim_id)
        for scim_id in DirectoryMembership.objects.filter(
            group_record__scim_id=group_id
        ).values_list("user_record__scim_id", flat=True)
    }


@pytest.fixture
def users(scim):
    """Three users of organization A."""
    return [
        create_user(
            scim,
            user_name=f"user{i}@contoso.com",
            external_id=f"object-{i}",
            mobile=f"+96651234567{i}",
        )["id"]
        for i in range(3)
    ]


def test_post_group_answers_201_with_location_and_the_resource(scim):
    body = {
        "schemas": [GROUP_SCHEMA, ADSCIM_GROUP],
        "displayName": "Sales",
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "members": [],
        "meta": {"resourceType": "Group"},
    }

    response = scim.post("/Groups", json=body)

    assert response.status_code == 201, response.content
    assert response["Content-Type"] == SCIM_JSON
    created = response.json()
    record = record_of(created["id"])
    location = f"http://testserver/scim/v2/{scim.organization.pk}/Groups/{created['id']}"
    assert response["Location"] == location
    assert created == {
        "schemas": [GROUP_SCHEMA],
        "id": str(record.scim_id),
        "displayName": "Sales",
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "meta": {
            "resourceType": "Group",
            "created": record.created_at.isoformat(),
            "lastModified": record.updated_at.isoformat(),
            "location": location,
            "version": 'W/"1"',
        },
    }
    assert record.document == {
        "schemas": [GROUP_SCHEMA],
        "displayName": "Sales",
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
    }
    assert (record.resource_type, record.display_name) == ("Group", "Sales")
    assert events_of(created["id"]) == [("created", 1)]


def test_post_group_with_members_stores_them(scim, users):
    response = scim.post(
        "/Groups",
        json={
            "schemas": [GROUP_SCHEMA],
            "displayName": "Ops",
            "members": [{"value": users[0]}, {"value": users[1]}],
        },
    )

    assert response.status_code == 201, response.content
    group_id = response.json()["id"]
    assert _members_of(group_id) == {users[0], users[1]}
    assert sorted(m["value"] for m in response.json()["members"]) == sorted(users[:2])


def test_post_group_without_display_name_is_400_invalid_value(scim):
    response = scim.post("/Groups", json={"schemas": [GROUP_SCHEMA], "externalId": "x"})

    assert_scim_error(response, 400, "invalidValue")
    assert DirectoryRecord.objects.count() == 0


def test_duplicate_group_external_id_is_409_uniqueness(scim):
    create_group(scim, external_id="group-object-id")

    response = scim.post(
        "/Groups",
        json={"schemas": [GROUP_SCHEMA], "displayName": "Other", "externalId": "group-object-id"},
    )

    assert_scim_error(response, 409, "uniqueness")


def test_get_group_lists_members_with_references(scim, users):
    group = create_group(scim)
    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Add", "path": "members", "value": [{"value": users[0]}]}),
    )

    response = scim.get(f"/Groups/{group['id']}")

    assert response.status_code == 200
    assert response.json()["members"] == [
        {
            "value": users[0],
            "$ref": f"http://testserver/scim/v2/{scim.organization.pk}/Users/{users[0]}",
            "type": "User",
        }
    ]


def test_excluded_attributes_members_leaves_members_out(scim, users):
    group = create_group(scim, display_name="Sales")
    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Add", "path": "members", "value": [{"value": users[0]}]}),
    )

    response = scim.get(
        "/Groups",
        params={"excludedAttributes": "members", "filter": 'displayName eq "Sales"'},
    )

    assert response.status_code == 200
    resources = response.json()["Resources"]
    assert [without_meta(r) for r in resources] == [
        {
            "schemas": [GROUP_SCHEMA],
            "id": group["id"],
            "displayName": "Sales",
            "externalId": group["externalId"],
        }
    ]


def test_excluded_members_are_not_even_loaded(scim, users):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    group = create_group(scim, display_name="Sales")
    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Add", "path": "members", "value": [{"value": users[0]}]}),
    )

    with CaptureQueriesContext(connection) as queries:
        scim.get(f"/Groups/{group['id']}", params={"excludedAttributes": "members"})

    assert not any("directory_sync_directorymembership" in q["sql"] for q in queries)


def test_attributes_parameter_returns_only_those_plus_id(scim):
    group = create_group(scim, display_name="Sales")

    response = scim.get(f"/Groups/{group['id']}", params={"attributes": "displayName"})

    assert response.json() == {
        "schemas": [GROUP_SCHEMA],
        "id": group["id"],
        "displayName": "Sales",
    }


def test_add_several_members_in_one_operation_answers_204(scim, users):
    group = create_group(scim)

    response = scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body(
            {
                "op": "Add",
                "path": "members",
                "value": [{"$ref": None, "value": users[0]}, {"$ref": None, "value": users[1]}],
            }
        ),
    )

    assert response.status_code == 204
    assert response.content == b""
    assert response["Content-Type"] == SCIM_JSON
    assert _members_of(group["id"]) == {users[0], users[1]}
    assert record_of(group["id"]).version == 2
    assert events_of(group["id"]) == [("created", 1), ("members_changed", 2)]


def test_adding_members_already_present_appends_no_event(scim, users):
    group = create_group(scim)
    body = patch_body({"op": "Add", "path": "members", "value": [{"value": users[0]}]})
    scim.patch(f"/Groups/{group['id']}", json=body)

    response = scim.patch(f"/Groups/{group['id']}", json=body)

    assert response.status_code == 204
    assert events_of(group["id"]) == [("created", 1), ("members_changed", 2)]


def test_remove_by_value_list_removes_only_those_members(scim, users):
    group = create_group(scim)
    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Add", "path": "members", "value": [{"value": u} for u in users]}),
    )

    response = scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Remove", "path": "members", "value": [{"value": users[1]}]}),
    )

    assert response.status_code == 204
    assert _members_of(group["id"]) == {users[0], users[2]}
    assert events_of(group["id"])[-1] == ("members_changed", 3)


def test_remove_by_filter_path_removes_that_member(scim, users):
    group = create_group(scim)
    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body(
            {"op": "Add", "path": "members", "value": [{"value": u} for u in users[:2]]}
        ),
    )

    response = scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "remove", "path": f'members[value eq "{users[0]}"]'}),
    )

    assert response.status_code == 204
    assert _members_of(group["id"]) == {users[1]}


def test_replace_members_sets_exactly_those(scim, users):
    group = create_group(scim)
    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body(
            {"op": "Add", "path": "members", "value": [{"value": u} for u in users[:2]]}
        ),
    )

    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body(
            {
                "op": "Replace",
                "path": "members",
                "value": [{"value": users[1]}, {"value": users[2]}],
            }
        ),
    )

    assert _members_of(group["id"]) == {users[1], users[2]}


def test_remove_members_without_value_removes_all(scim, users):
    group = create_group(scim)
    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Add", "path": "members", "value": [{"value": users[0]}]}),
    )

    scim.patch(f"/Groups/{group['id']}", json=patch_body({"op": "Remove", "path": "members"}))

    assert _members_of(group["id"]) == set()


def test_rename_group_appends_updated(scim):
    group = create_group(scim, display_name="Sales")

    response = scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Replace", "path": "displayName", "value": "Sales EMEA"}),
    )

    assert response.status_code == 204
    record = record_of(group["id"])
    assert (record.document["displayName"], record.display_name) == ("Sales EMEA", "Sales EMEA")
    assert events_of(group["id"]) == [("created", 1), ("updated", 2)]


def test_pathless_replace_renames_group(scim):
    group = create_group(scim, display_name="Sales")

    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "replace", "value": {"id": group["id"], "displayName": "Renamed"}}),
    )

    assert record_of(group["id"]).display_name == "Renamed"


def test_adding_an_unknown_member_is_400_and_changes_nothing(scim, users):
    group = create_group(scim)

    response = scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body(
            {
                "op": "Add",
                "path": "members",
                "value": [{"value": users[0]}, {"value": str(uuid.uuid4())}],
            }
        ),
    )

    assert_scim_error(response, 400, "invalidValue")
    assert _members_of(group["id"]) == set()
    assert events_of(group["id"]) == [("created", 1)]


def test_adding_a_member_that_is_not_an_id_is_400_invalid_value(scim):
    group = create_group(scim)

    response = scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Add", "path": "members", "value": [{"value": "bob"}]}),
    )

    assert_scim_error(response, 400, "invalidValue")


def test_unsupported_group_path_is_400_invalid_path(scim):
    group = create_group(scim)

    response = scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Replace", "path": "owners", "value": "x"}),
    )

    assert_scim_error(response, 400, "invalidPath")


def test_deleted_user_disappears_from_group_members(scim, users):
    group = create_group(scim)
    scim.patch(
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Add", "path": "members", "value": [{"value": users[0]}]}),
    )

    scim.delete(f"/Users/{users[0]}")

    assert "members" not in scim.get(f"/Groups/{group['id']}").json()


def test_put_group_replaces_name_and_members(scim, users):
    group = create_group(scim, display_name="Sales")

    response = scim.put(
        f"/Groups/{group['id']}",
        json={
            "schemas": [GROUP_SCHEMA],
            "displayName": "Sales 2",
            "externalId": group["externalId"],
            "members": [{"value": users[2]}],
        },
    )

    assert response.status_code == 200, response.content
    assert response.json()["displayName"] == "Sales 2"
    assert _members_of(group["id"]) == {users[2]}
    assert events_of(group["id"]) == [("created", 1), ("updated", 2)]


def test_delete_group_answers_204_and_appends_deleted(scim):
    group = create_group(scim)

    response = scim.delete(f"/Groups/{group['id']}")

    assert response.status_code == 204
    assert record_of(group["id"]).deleted_at is not None
    assert events_of(group["id"]) == [("created", 1), ("deleted", 2)]
    assert_scim_error(scim.get(f"/Groups/{group['id']}"), 404)


def test_random_group_probe_answers_200_empty_list(scim):
    response = scim.get("/Groups", params={"filter": f'displayName eq "{uuid.uuid4()}"'})

    assert response.status_code == 200
    assert response.json() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0,
        "itemsPerPage": 0,
        "startIndex": 1,
        "Resources": [],
    }
