"""Okta's request shapes (issue 17), replayed over HTTP with a real token, through the apply jobs.

Written from Okta's public documents, not from a capture:
- Okta's Runscope "SCIM 2.0 SPEC Test" (developer.okta.com/standards/SCIM/SCIMFiles/, and the
  older ``SCIM_tests_for_Runscope.json`` of github.com/oktadev/okta-scim-beta): the connection
  test ``GET /Users?count=2&startIndex=1``, then ``GET /Groups?count=100&startIndex=1``; a
  ``userName eq`` lookup with ``count=100&startIndex=1``; ``GET /Users/<unknown id>`` → 404 with
  an Error body; POST of a user with ``Content-Type: application/json``; deactivation by a
  path-less ``replace`` of ``{"active": false}`` answered 200 with ``active`` false.
- Okta's "SCIM 2.0 protocol reference" (developer.okta.com/docs/api/openapi/okta-scim/guides/
  scim-20): POST with ``password``, ``locale``, ``groups: []``; profile updates by PUT of the
  whole resource; reactivation by ``replace`` of ``{"active": true}``; Okta never deletes
  users; Group Push: ``displayName eq`` lookups, POST with ``members: []``, PATCH ``replace`` of
  ``{id, displayName}``, member ``add`` with ``display``, ``remove`` with
  ``members[value eq "..."]``, ``replace`` of all members, PUT, DELETE; import pages through
  ``GET /Users`` and ``GET /Groups`` by ``startIndex`` steps of 100.

The credential is what Okta's "HTTP Header" mode sends: ``Authorization: Bearer <API token>``
with the organization's Okta API token (directory_sync.okta), Okta being its directory.
"""

import json
import uuid

import pytest

from directory_sync import services
from directory_sync.models import SyncSettings
from members.models import Group, Member

from .conftest import ERROR_SCHEMA, GROUP_SCHEMA, LIST_SCHEMA, PATCH_SCHEMA, USER_SCHEMA

pytestmark = pytest.mark.django_db(transaction=True)


class Okta:
    """Sends what Okta sends: JSON bodies as ``application/json``, Okta's user agent."""

    def __init__(self, scim):
        self.scim = scim

    def __call__(self, method: str, path: str, body=None, params=None, expect=None):
        extra = {
            "HTTP_USER_AGENT": "Okta SCIM Client 1.0.0",
            "HTTP_ACCEPT": "application/scim+json",
        }
        call = getattr(self.scim.client, method)
        kwargs = {}
        if body is not None:
            kwargs = {"data": json.dumps(body), "content_type": "application/json"}
        response = call(
            self.scim.url(path, params),
            HTTP_AUTHORIZATION=f"Bearer {self.scim.token}",
            **kwargs,
            **extra,
        )
        if expect is not None:
            assert response.status_code == expect, (method, path, body, response.content)
        return response


def _user(user_name: str, given: str, family: str, *, phone: str | None = None) -> dict:
    body = {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": f"{given} {family}",
        "locale": "en-US",
        "externalId": f"00u{uuid.uuid4().hex[:17]}",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    if phone:
        body["phoneNumbers"] = [{"type": "mobile", "value": phone, "primary": True}]
    return body


@pytest.fixture
def okta(okta_scim, organization):
    settings = services.sync_settings_get(organization=organization)
    SyncSettings.objects.filter(pk=settings.pk).update(identify_by=SyncSettings.IdentifyBy.EMAIL)
    assert okta_scim.token.startswith("beem_okta_")
    return Okta(okta_scim)


def test_connection_test_and_lookups(okta):
    users = okta("get", "/Users", params={"startIndex": 1, "count": 2}, expect=200).json()
    assert LIST_SCHEMA in users["schemas"]
    for key in ("itemsPerPage", "startIndex", "totalResults"):
        assert isinstance(users[key], int)
    groups = okta("get", "/Groups", params={"startIndex": 1, "count": 100}, expect=200).json()
    assert groups["startIndex"] == 1 and isinstance(groups["totalResults"], int)

    lookup = okta(
        "get",
        "/Users",
        params={"filter": 'userName eq "nobody@okta.example.com"', "startIndex": 1, "count": 100},
        expect=200,
    ).json()
    assert lookup["totalResults"] == 0
    missing = okta("get", f"/Users/{uuid.uuid4()}", expect=404).json()
    assert ERROR_SCHEMA in missing["schemas"] and missing["detail"]


def test_user_lifecycle_create_put_deactivate_reactivate(okta, organization):
    body = _user("grace@okta.example.com", "Grace", "Hopper", phone="+966555010201")
    created = okta("post", "/Users", body, expect=201).json()
    assert created["active"] is True and created["userName"] == body["userName"]
    assert created["name"] == {"givenName": "Grace", "familyName": "Hopper"} | {
        k: v for k, v in created["name"].items() if k not in ("givenName", "familyName")
    }
    assert "password" not in created
    user_id = created["id"]
    assert okta("get", f"/Users/{user_id}", expect=200).json()["userName"] == body["userName"]
    member = Member.objects.get(organization=organization, email="grace@okta.example.com")
    assert (member.given_name, member.family_name) == ("Grace", "Hopper")

    # Profile update: PUT of the whole resource (Okta's default), with the password again.
    changed = body | {
        "id": user_id,
        "title": "Rear Admiral",
        "name": {"givenName": "Grace", "familyName": "Murray Hopper"},
    }
    put = okta("put", f"/Users/{user_id}", changed, expect=200).json()
    assert put["title"] == "Rear Admiral" and "password" not in put
    member.refresh_from_db()
    assert (member.job_title, member.family_name) == ("Rear Admiral", "Murray Hopper")

    # Deactivation: a path-less replace of {"active": false}; Okta reads the answer's body.
    off = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]}
    answer = okta("patch", f"/Users/{user_id}", off)
    assert answer.status_code in (200, 204), answer.content
    if answer.status_code == 200:
        assert answer.json()["active"] is False
    assert okta("get", f"/Users/{user_id}", expect=200).json()["active"] is False
    # The customer document's rule: a deactivated member is deleted.
    assert not Member.objects.filter(pk=member.pk).exists()

    # Reactivation makes a new member.
    on = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": True}}]}
    assert okta("patch", f"/Users/{user_id}", on).status_code in (200, 204)
    again = Member.objects.get(organization=organization, email="grace@okta.example.com")
    assert again.pk != member.pk and again.job_title == "Rear Admiral"


def test_group_push_every_membership_form(okta, organization):
    ids = [
        okta(
            "post", "/Users", _user(f"u{i}@okta.example.com", f"User{i}", "Okta"), expect=201
        ).json()["id"]
        for i in range(3)
    ]
    name = "Engineering Push"
    assert (
        okta(
            "get",
            "/Groups",
            params={"filter": f'displayName eq "{name}"', "startIndex": 1, "count": 100},
            expect=200,
        ).json()["totalResults"]
        == 0
    )
    group = okta(
        "post",
        "/Groups",
        {"schemas": [GROUP_SCHEMA], "displayName": name, "members": []},
        expect=201,
    ).json()
    gid = group["id"]
    found = okta("get", "/Groups", params={"filter": f'displayName eq "{name}"'}, expect=200)
    assert [g["id"] for g in found.json()["Resources"]] == [gid]

    def patch(*operations):
        response = okta(
            "patch", f"/Groups/{gid}", {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}
        )
        assert response.status_code in (200, 204), response.content

    def members_now() -> set[str]:
        group = Group.objects.get(organization=organization, name=name)
        return {link.member.email for link in group.memberships.select_related("member")}

    # Every membership push starts with a replace of {id, displayName}.
    patch({"op": "replace", "value": {"id": gid, "displayName": name}})
    patch(
        {
            "op": "add",
            "path": "members",
            "value": [
                {"value": ids[0], "display": "u0@okta.example.com"},
                {"value": ids[1], "display": "u1@okta.example.com"},
            ],
        }
    )
    assert members_now() == {"u0@okta.example.com", "u1@okta.example.com"}
    patch({"op": "remove", "path": f'members[value eq "{ids[0]}"]'})
    assert members_now() == {"u1@okta.example.com"}
    patch(
        {
            "op": "replace",
            "path": "members",
            "value": [
                {"value": ids[2], "display": "u2@okta.example.com"},
                {"value": ids[0], "display": "u0@okta.example.com"},
            ],
        }
    )
    assert members_now() == {"u0@okta.example.com", "u2@okta.example.com"}

    # Rename and membership by PUT of the whole group.
    renamed = "Engineering Pushed"
    put = okta(
        "put",
        f"/Groups/{gid}",
        {
            "schemas": [GROUP_SCHEMA],
            "id": gid,
            "displayName": renamed,
            "members": [{"value": ids[1], "display": "u1"}],
        },
        expect=200,
    ).json()
    assert put["displayName"] == renamed
    name = renamed
    assert members_now() == {"u1@okta.example.com"}

    okta("delete", f"/Groups/{gid}", expect=204)
    assert not Group.objects.filter(organization=organization, name=renamed).exists()
    okta("get", f"/Groups/{gid}", expect=404)


def test_import_pages_by_100_are_stable_and_complete(okta):
    created = {
        okta(
            "post",
            "/Users",
            _user(f"import{i:03d}@okta.example.com", f"Imp{i}", "Okta"),
            expect=201,
        ).json()["id"]
        for i in range(205)
    }
    seen: list[str] = []
    start = 1
    while True:
        page = okta("get", "/Users", params={"startIndex": start, "count": 100}, expect=200).json()
        assert page["totalResults"] == 205
        seen += [u["id"] for u in page["Resources"]]
        if start + 100 > page["totalResults"]:
            break
        start += 100
    assert len(seen) == len(set(seen)) == 205 and set(seen) == created
