"""POST /Users/.search and /Groups/.search (RFC 7644 §3.4.3): the list path of GET, its
parameters read from a SearchRequest body; the root /.search is declined with 501."""

import pytest

from directory_sync.models import ChangeEvent, RefusedRequest

from .conftest import ENTERPRISE, LIST_SCHEMA, assert_scim_error, create_group, create_user

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


def test_the_root_search_is_501_and_says_where_to_search(scim, people):
    body = assert_scim_error(_search(scim, "/.search", filter='userName sw "a"'), 501)

    assert "/Users/.search" in body["detail"]
