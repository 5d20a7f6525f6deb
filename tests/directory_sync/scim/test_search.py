"""POST /Users/.search, /Groups/.search and /.search (RFC 7644 §3.4.3): the list path of GET,
its parameters read from a SearchRequest body; the root searches Users and Groups at once."""

import pytest

from directory_sync.models import ChangeEvent, RefusedRequest

from .conftest import (
    ENTERPRISE,
    GROUP_SCHEMA,
    LIST_SCHEMA,
    USER_SCHEMA,
    assert_scim_error,
    create_group,
    create_user,
)

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def _search(scim, path: str = "/Users/.search", **body):
    return scim.post(path, json={"schemas": [SEARCH], **body})


@pytest.fixture
def people(scim):
    return [
        create_user(
            scim,
            user_name=f"{name}@contoso.com",
            external_id=f"{name.upper()}-ID",
            emails=[{"type": "work", "value": f"{name}@contoso.com", "primary": True}],
        )
        for name in ("carol", "alice", "bob")
    ]


def test_a_search_answers_what_the_same_get_answers(scim, people):
    query = {
        "filter": 'userName sw "a" or userName sw "b" or userName sw "c"',
        "sortBy": "userName",
        "sortOrder": "descending",
        "startIndex": 2,
        "count": 2,
    }

    searched = _search(
        scim, **query, attributes=["userName", f"{ENTERPRISE}:department", "name.givenName"]
    )
    listed = scim.get(
        "/Users",
        params=query | {"attributes": f"userName,{ENTERPRISE}:department,name.givenName"},
    )

    assert searched.status_code == 200, searched.content
    assert searched["Content-Type"] == "application/scim+json"
    body = searched.json()
    assert body == listed.json()
    assert body["schemas"] == [LIST_SCHEMA]
    assert body["totalResults"] == 3 and body["startIndex"] == 2
    assert [r["userName"] for r in body["Resources"]] == ["bob@contoso.com", "alice@contoso.com"]
    assert set(body["Resources"][0]) <= {"schemas", "id", "meta", "userName", "name", ENTERPRISE}


def test_entras_lookup_and_excluded_attributes_by_search(scim, people):
    group = create_group(scim, display_name="Ops")

    users = _search(scim, filter='externalId eq "BOB-ID"').json()
    groups = _search(
        scim, "/Groups/.search", filter='displayName eq "Ops"', excludedAttributes=["members"]
    ).json()
    everyone = _search(scim, startIndex=1, count=10).json()

    assert [r["userName"] for r in users["Resources"]] == ["bob@contoso.com"]
    assert [r["id"] for r in groups["Resources"]] == [group["id"]]
    assert "members" not in groups["Resources"][0]
    assert everyone["totalResults"] == 3 and len(everyone["Resources"]) == 3


def test_a_search_writes_nothing_and_a_bad_one_is_no_refused_write(scim, people):
    events = ChangeEvent.objects.count()

    assert _search(scim, filter='userName eq "alice@contoso.com"').status_code == 200
    assert_scim_error(_search(scim, filter="userName zz 1"), 400, "invalidFilter")

    assert ChangeEvent.objects.count() == events
    assert not RefusedRequest.objects.exists()


@pytest.mark.parametrize(
    "body,problem",
    [
        ({"count": "2"}, "count"),
        ({"startIndex": True}, "startIndex"),
        ({"filter": 5}, "filter"),
        ({"attributes": [1]}, "attributes"),
        ({"excludedAttributes": {"a": 1}}, "excludedAttributes"),
        ({"schemas": ["urn:nope"]}, "SearchRequest"),
        ({"sortBy": "nosuch"}, "nosuch"),
    ],
)
def test_a_bad_search_request_is_400_invalid_value(scim, people, body, problem):
    response = scim.post("/Users/.search", json={"schemas": [SEARCH]} | body)

    assert problem in assert_scim_error(response, 400, "invalidValue")["detail"]


def test_a_search_body_must_be_a_json_object(scim):
    assert_scim_error(scim.post("/Groups/.search", json="[1]"), 400, "invalidSyntax")


def test_get_on_a_search_endpoint_is_405(scim):
    assert_scim_error(scim.get("/Users/.search"), 405)


def _ids(body) -> list[str]:
    return [resource["id"] for resource in body["Resources"]]


def test_the_root_search_lists_users_and_groups_each_with_its_schemas(scim, people):
    ops = create_group(scim, display_name="Ops")

    body = _search(scim, "/.search").json()

    assert body["schemas"] == [LIST_SCHEMA]
    assert body["totalResults"] == 4
    assert _ids(body) == [p["id"] for p in people] + [ops["id"]]
    kinds = {r["id"]: (r["schemas"][0], r["meta"]["resourceType"]) for r in body["Resources"]}
    assert kinds[ops["id"]] == (GROUP_SCHEMA, "Group")
    assert kinds[people[0]["id"]] == (USER_SCHEMA, "User")
    assert body["Resources"][0] == people[0]


def test_the_root_search_filters_both_types_with_one_filter(scim, people):
    ops = create_group(scim, display_name="alice's team")
    create_group(scim, display_name="Sales")

    by_name = _search(scim, "/.search", filter='displayName co "team" or userName sw "alice"')
    by_external_id = _search(scim, "/.search", filter=f'externalId eq "{ops["externalId"]}"')

    # displayName: both types have it; userName: a user attribute, absent on groups.
    assert _ids(by_name.json()) == [people[1]["id"], ops["id"]]
    assert _ids(by_external_id.json()) == [ops["id"]]


@pytest.mark.parametrize(
    "text,users,groups",
    [
        ('userName eq "alice@contoso.com"', ["alice"], []),
        ("userName pr", ["carol", "alice", "bob"], []),
        ('not (userName eq "alice@contoso.com")', ["carol", "bob"], ["Ops"]),
        ('userName ne "alice@contoso.com"', ["carol", "bob"], ["Ops"]),
        ("title eq null", [], ["Ops"]),
        ('emails[type eq "work"] and displayName pr', ["carol", "alice", "bob"], []),
        ('members[value eq "5a4f6c1e-0000-4000-8000-000000000000"]', [], []),
        (
            'not (members eq "5a4f6c1e-0000-4000-8000-000000000000")',
            ["carol", "alice", "bob"],
            ["Ops"],
        ),
    ],
)
def test_a_term_on_an_attribute_of_one_type_is_an_absent_attribute_on_the_other(
    scim, people, text, users, groups
):
    ops = create_group(scim, display_name="Ops")
    by_name = {p["userName"].split("@")[0]: p["id"] for p in people} | {"Ops": ops["id"]}

    body = _search(scim, "/.search", filter=text)

    assert body.status_code == 200, body.content
    assert sorted(_ids(body.json())) == sorted(by_name[n] for n in users + groups)


def test_a_root_filter_on_an_attribute_of_no_type_is_400_invalid_filter(scim, people):
    body = assert_scim_error(
        _search(scim, "/.search", filter='nickName eq "x" or nosuch eq "y"'), 400, "invalidFilter"
    )

    assert "nosuch" in body["detail"]


def test_root_search_pages_are_stable_across_both_types(scim, people):
    groups = [create_group(scim, display_name=f"G{i}") for i in range(3)]
    everything = [p["id"] for p in people] + [g["id"] for g in groups]

    pages = [_search(scim, "/.search", startIndex=start, count=2).json() for start in (1, 3, 5, 7)]

    assert [page["totalResults"] for page in pages] == [6, 6, 6, 6]
    assert [i for page in pages for i in _ids(page)] == everything
    assert [page["itemsPerPage"] for page in pages] == [2, 2, 2, 0]


def test_root_search_sorts_and_projects_per_type(scim, people):
    ops = create_group(scim, display_name="Bravo team")

    body = _search(
        scim,
        "/.search",
        sortBy="displayName",
        attributes=["displayName", "userName", f"{GROUP_SCHEMA}:members"],
        filter='userName sw "a" or userName sw "b" or displayName pr',
    ).json()

    # People are all "Alice Wong" (entra_user); groups and users sort by displayName together.
    assert [r.get("displayName") for r in body["Resources"]] == [
        "Alice Wong",
        "Alice Wong",
        "Alice Wong",
        "Bravo team",
    ]
    group = body["Resources"][-1]
    assert group == {"schemas": [GROUP_SCHEMA], "id": ops["id"], "displayName": "Bravo team"}
    assert set(body["Resources"][0]) == {"schemas", "id", "displayName", "userName"}


def test_root_search_bad_bodies_are_400_like_the_typed_searches(scim, people):
    assert_scim_error(_search(scim, "/.search", count="2"), 400, "invalidValue")
    assert_scim_error(_search(scim, "/.search", sortBy="nosuch"), 400, "invalidValue")
    assert_scim_error(scim.post("/.search", json="[1]"), 400, "invalidSyntax")
    assert_scim_error(scim.get("/.search"), 405)
