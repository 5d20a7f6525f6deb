"""Organization isolation on the SCIM endpoint, route by route.

Tenant A's token (Entra's OAuth token, or Okta's API token: issue 17) on tenant B's Tenant URL
is refused on every route and method (401, SCIM error
body, ``WWW-Authenticate: Bearer``). On its own URL, A cannot read, change, delete, filter for
or reference any of B's resources: by id it gets 404, by filter an empty list, as a group member
or manager a 400 that reads exactly like an id that exists nowhere (no existence oracle). B's
directory is byte-for-byte unchanged afterwards. A new SCIM route fails
``test_every_scim_route_is_covered`` until it is added here.
"""

import json
import uuid

import pytest
from django.urls import URLResolver, get_resolver

from directory_sync.models import DirectoryMembership, DirectoryRecord

from .conftest import ENTERPRISE, GROUP_SCHEMA, scim_user, tenant_create
from .scim_invariants import response_problems

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

# Every route of directory_sync/scim/urls.py, with a path under the Tenant URL that reaches it
# ("{user}"/"{group}" are replaced by ids).
ROUTE_PATHS = {
    "root": ["/"],
    "search": ["/.search"],
    "users-search": ["/Users/.search"],
    "groups-search": ["/Groups/.search"],
    "me": ["/Me"],
    "bulk": ["/Bulk"],
    "users": ["/Users", "/Users/{user}", '/Users?filter=userName eq "{user_name}"'],
    "groups": [
        "/Groups",
        "/Groups/{group}",
        '/Groups?excludedAttributes=members&filter=displayName eq "B group"',
    ],
    "service-provider-config": ["/ServiceProviderConfig"],
    "resource-types": ["/ResourceTypes", "/ResourceTypes/User"],
    "schemas": ["/Schemas", f"/Schemas/{ENTERPRISE}"],
    "not-found": ["/Nothing/here"],
}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def scim_route_names() -> set[str]:
    tenant = next(
        r
        for r in get_resolver().url_patterns
        if isinstance(r, URLResolver) and r.pattern.describe().startswith("'scim/v2/")
    )
    return {p.name for p in tenant.url_patterns}


class TwoTenants:
    def __init__(self, tenant_a, tenant_b):
        self.a, self.b = tenant_a, tenant_b
        self.a_user = self._ok(self.a.request("POST", "/Users", scim_user("ann@acme.com")))
        self.a_group = self._ok(
            self.a.request("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "A group"})
        )
        self.b_user = self._ok(
            self.b.request("POST", "/Users", scim_user("bob@globex.com", phone="+966551234567"))
        )
        self.b_manager = self._ok(
            self.b.request("POST", "/Users", scim_user("boss@globex.com", phone="+966551234568"))
        )
        self.b_group = self._ok(
            self.b.request(
                "POST",
                "/Groups",
                {
                    "schemas": [GROUP_SCHEMA],
                    "displayName": "B group",
                    "externalId": "b-group-ext",
                    "members": [{"value": self.b_user["id"]}],
                },
            )
        )
        patched = self.b.request(
            "PATCH",
            f"/Users/{self.b_user['id']}",
            {
                "schemas": [PATCH],
                "Operations": [
                    {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": self.b_manager["id"]}
                ],
            },
        )
        assert patched.status_code == 200, patched.content
        self.before = self.b_state()

    @staticmethod
    def _ok(response) -> dict:
        assert response.status_code == 201, response.content
        return response.json()

    def b_state(self) -> str:
        org = self.b.organization
        records = DirectoryRecord.objects.filter(organization=org).order_by("pk")
        links = DirectoryMembership.objects.filter(group_record__organization=org)
        return json.dumps(
            {
                "records": list(
                    records.values("scim_id", "version", "document", "deleted_at", "active")
                ),
                "links": sorted(links.values_list("group_record_id", "user_record_id")),
            },
            default=str,
            sort_keys=True,
        )

    def fill(self, path: str) -> str:
        return (
            path.replace("{user}", self.b_user["id"])
            .replace("{group}", self.b_group["id"])
            .replace("{user_name}", self.b_user["userName"])
        )


@pytest.fixture(params=["entra_id", "okta"])
def tenants(request, db) -> TwoTenants:
    """Both organizations synced with Entra ID (OAuth tokens), or both with Okta (API tokens,
    issue 17); an Okta token against an Entra organization is in test_okta.py."""
    return TwoTenants(
        tenant_create(slug="tenant-a", name="Tenant A", directory=request.param),
        tenant_create(slug="tenant-b", name="Tenant B", directory=request.param),
    )


def test_every_scim_route_is_covered():
    assert scim_route_names() == set(ROUTE_PATHS)


def body_for(method: str, tenants: TwoTenants) -> dict | None:
    if method in ("POST", "PUT"):
        return scim_user("intruder@acme.com", phone="+966561234599")
    if method == "PATCH":
        return {
            "schemas": [PATCH],
            "Operations": [{"op": "Replace", "path": "displayName", "value": "pwned"}],
        }
    return None


@pytest.mark.parametrize("route", sorted(ROUTE_PATHS))
def test_a_token_is_refused_on_another_organizations_tenant_url(route, tenants):
    for template in ROUTE_PATHS[route]:
        path, _, query = tenants.fill(template).partition("?")
        for method in METHODS:
            response = tenants.a.request(
                method, path, body_for(method, tenants), query=query, base=tenants.b.base
            )

            assert response.status_code == 401, (method, path, response.content)
            assert response_problems(response) == []
            assert response["WWW-Authenticate"].startswith("Bearer")
            assert "bob@globex.com" not in response.content.decode()

    assert tenants.b_state() == tenants.before


@pytest.mark.parametrize("method", METHODS[:1] + METHODS[2:])
@pytest.mark.parametrize("resource", ["Users", "Groups"])
def test_another_organizations_ids_are_not_found_on_ones_own_url(method, resource, tenants):
    target = tenants.b_user if resource == "Users" else tenants.b_group
    body = body_for(method, tenants)
    if body is not None and resource == "Groups":
        body = {"schemas": [GROUP_SCHEMA], "displayName": "pwned"} if method == "PUT" else body

    response = tenants.a.request(method, f"/{resource}/{target['id']}", body)

    assert response.status_code == 404, response.content
    assert response_problems(response) == []
    assert target["id"] in response.json()["detail"]
    assert tenants.b_state() == tenants.before


@pytest.mark.parametrize(
    "resource, scim_filter",
    [
        ("Users", 'userName eq "{b_user_name}"'),
        ("Users", 'userName eq "{B_USER_NAME}"'),
        ("Users", 'externalId eq "{b_user_external}"'),
        ("Users", 'id eq "{b_user}"'),
        ("Users", 'emails[type eq "work"].value eq "{b_user_name}"'),
        ("Users", 'id eq "{b_user}" and manager eq "{b_manager}"'),
        ("Users", 'id eq "{a_user}" and manager eq "{b_manager}"'),
        ("Groups", 'displayName eq "B group"'),
        ("Groups", 'externalId eq "b-group-ext"'),
        ("Groups", 'id eq "{b_group}"'),
        ("Groups", 'members eq "{b_user}"'),
        ("Groups", 'id eq "{b_group}" and members eq "{b_user}"'),
        ("Groups", 'id eq "{a_group}" and members eq "{b_user}"'),
    ],
)
def test_filters_never_reach_another_organizations_resources(resource, scim_filter, tenants):
    text = scim_filter.format(
        b_user_name=tenants.b_user["userName"],
        B_USER_NAME=tenants.b_user["userName"].upper(),
        b_user_external=tenants.b_user["externalId"],
        b_user=tenants.b_user["id"],
        b_manager=tenants.b_manager["id"],
        b_group=tenants.b_group["id"],
        a_user=tenants.a_user["id"],
        a_group=tenants.a_group["id"],
    )
    from urllib.parse import urlencode

    response = tenants.a.request("GET", f"/{resource}", query=urlencode({"filter": text}))
    searched = tenants.a.request("POST", f"/{resource}/.search", {"filter": text})

    assert response.status_code == 200, response.content
    assert searched.status_code == 200, searched.content
    assert searched.json() == response.json()
    assert response.json() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0,
        "itemsPerPage": 0,
        "startIndex": 1,
        "Resources": [],
    }


def test_unfiltered_lists_show_only_ones_own_resources(tenants):
    users = tenants.a.request("GET", "/Users").json()
    groups = tenants.a.request("GET", "/Groups").json()

    assert [u["id"] for u in users["Resources"]] == [tenants.a_user["id"]]
    assert [g["id"] for g in groups["Resources"]] == [tenants.a_group["id"]]
    assert users["totalResults"] == 1 and groups["totalResults"] == 1


def _foreign_reference_answers(tenants, foreign_id: str) -> list[tuple[int, str]]:
    """What A gets when it names ``foreign_id`` as a group member or a manager."""
    group_add = tenants.a.request(
        "PATCH",
        f"/Groups/{tenants.a_group['id']}",
        {
            "schemas": [PATCH],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": foreign_id}]}],
        },
    )
    group_create = tenants.a.request(
        "POST",
        "/Groups",
        {"schemas": [GROUP_SCHEMA], "displayName": "New", "members": [{"value": foreign_id}]},
    )
    manager = tenants.a.request(
        "PATCH",
        f"/Users/{tenants.a_user['id']}",
        {
            "schemas": [PATCH],
            "Operations": [{"op": "Add", "path": f"{ENTERPRISE}:manager", "value": foreign_id}],
        },
    )
    return [
        (r.status_code, r.json()["detail"].replace(foreign_id, "<id>"))
        for r in (group_add, group_create, manager)
    ]


def test_another_organizations_users_cannot_be_made_members_or_managers(tenants):
    answers = _foreign_reference_answers(tenants, tenants.b_user["id"])

    assert [status for status, _ in answers] == [400, 400, 400]
    assert not DirectoryMembership.objects.filter(
        group_record__organization=tenants.a.organization,
        user_record__organization=tenants.b.organization,
    ).exists()
    a_user = DirectoryRecord.objects.get(scim_id=tenants.a_user["id"])
    assert a_user.manager_scim_id is None
    assert ENTERPRISE not in a_user.document or "manager" not in a_user.document[ENTERPRISE]
    assert not DirectoryRecord.objects.filter(
        organization=tenants.a.organization, display_name="New"
    ).exists()
    assert tenants.b_state() == tenants.before


def test_a_foreign_id_is_refused_exactly_like_an_id_that_exists_nowhere(tenants):
    foreign = _foreign_reference_answers(tenants, tenants.b_user["id"])
    nowhere = _foreign_reference_answers(tenants, str(uuid.uuid4()))

    assert foreign == nowhere


def test_a_body_naming_another_organizations_id_does_not_redirect_the_write(tenants):
    body = scim_user("ann@acme.com", id=tenants.b_user["id"], displayName="Renamed")

    response = tenants.a.request("PUT", f"/Users/{tenants.a_user['id']}", body)

    assert response.status_code == 200, response.content
    assert response.json()["id"] == tenants.a_user["id"]
    assert DirectoryRecord.objects.get(scim_id=tenants.a_user["id"]).display_name == "Renamed"
    assert tenants.b_state() == tenants.before


def test_the_same_user_name_in_two_organizations_is_two_separate_records(tenants):
    response = tenants.a.request(
        "POST", "/Users", scim_user(tenants.b_user["userName"], phone="+966561234570")
    )

    assert response.status_code == 201, response.content
    assert response.json()["id"] != tenants.b_user["id"]
    record = DirectoryRecord.objects.get(scim_id=response.json()["id"])
    assert record.organization_id == tenants.a.organization.pk
    assert tenants.b_state() == tenants.before
