"""Entra's default attribute mappings work as they are (issue 15).

Over HTTP with real tokens. The whole provisioning cycle of ``entra_defaults`` runs on the
embedded default (SQLite, eager) and on PostgreSQL (with DATABASE_URL set).
"""

import uuid

import pytest
from django.urls import reverse

from directory_sync.engine import events_drain
from directory_sync.models import ChangeEvent
from members.display import phone_ltr
from members.models import Member

from .conftest import GROUP_SCHEMA, patch_body
from .entra_defaults import (
    DOCUMENTED_SPELLINGS,
    MANAGER,
    USER_MAPPINGS,
    user_post_body,
    value_at,
)


class Cycle:
    """Records every response of a cycle; ``problems`` lists each one that is not a 2xx."""

    def __init__(self, scim):
        self.scim = scim
        self.problems: list[str] = []

    def __call__(self, method: str, path: str, json=None, params=None):
        response = getattr(self.scim, method)(path, json=json, params=params)
        if response.status_code >= 400:
            self.problems.append(f"{method.upper()} {path} {json}: {response.content[:300]}")
        return response


def _entra_value(value, manager_id: str):
    return manager_id if value is MANAGER else value


def _changed(path: str, value):
    """A second value for ``path``, as an attribute change in Entra would send."""
    if value is MANAGER or path in ("userName", "active"):
        return value
    if path == 'emails[type eq "work"].value':
        return "alice.w@contoso.com"
    if path.startswith("phoneNumbers"):
        return value[:-1] + "0"
    if path.endswith(".country"):
        return "AE"
    return f"{value} 2"


@pytest.mark.django_db(transaction=True)
def test_the_default_mapping_cycle_has_no_4xx_and_applies_what_beem_uses(scim, organization):
    cycle = Cycle(scim)
    # Test Connection and the start of the cycle: a random user and group probed.
    probe = cycle("get", "/Users", params={"filter": f'userName eq "{uuid.uuid4()}"'})
    assert probe.json()["totalResults"] == 0
    cycle("get", "/Groups", params={"filter": f'displayName eq "{uuid.uuid4()}"'})

    boss_rows = [
        (p, s, v)
        for p, s, v in USER_MAPPINGS
        if v is not MANAGER and p not in ("userName", "externalId")
    ]
    boss_rows[2:2] = [
        ("userName", "userPrincipalName", "omar@contoso.com"),
        ("externalId", "mailNickname", "omar"),
    ]
    boss_body = user_post_body(boss_rows)
    boss_body["emails"][0]["value"] = "omar@contoso.com"
    boss_body["phoneNumbers"] = [{"type": "mobile", "value": "+966512345671"}]
    boss = cycle("post", "/Users", json=boss_body).json()

    # Lookups before the create, by userName then by externalId (mailNickname).
    for attribute, value in (("userName", "alice.wong@contoso.com"), ("externalId", "alice.wong")):
        found = cycle("get", "/Users", params={"filter": f'{attribute} eq "{value}"'})
        assert found.json()["totalResults"] == 0
    body = user_post_body(USER_MAPPINGS + DOCUMENTED_SPELLINGS, manager_id=boss["id"])
    created = cycle("post", "/Users/", json=body)
    assert created.status_code == 201, created.content
    alice = created.json()
    got = cycle("get", f"/Users/{alice['id']}").json()
    for path, _source, value in USER_MAPPINGS + DOCUMENTED_SPELLINGS:
        expected = _entra_value(value, boss["id"])
        if path == "active":
            expected = True
        assert value_at(got, path) == expected, path
    assert "password" not in got

    # Each mapped attribute changed alone, by path (Entra's incremental cycles)...
    by_path = {}
    for path, _source, value in USER_MAPPINGS + DOCUMENTED_SPELLINGS:
        if path in ("userName", "active"):
            continue
        by_path[path] = _entra_value(_changed(path, value), boss["id"])
        cycle(
            "patch",
            f"/Users/{alice['id']}",
            json=patch_body({"op": "Replace", "path": path, "value": by_path[path]}),
        )
    got = cycle("get", f"/Users/{alice['id']}").json()
    for path, value in by_path.items():
        assert value_at(got, path) == value, path
    # ... and all at once without a path (aadOptscim062020 shape).
    pathless = {
        path: _entra_value(_changed(path, value), boss["id"])
        for path, _source, value in USER_MAPPINGS
        if path not in ("userName", "active") and value is not MANAGER
    }
    cycle("patch", f"/Users/{alice['id']}", json=patch_body({"op": "Replace", "value": pathless}))
    got = cycle("get", f"/Users/{alice['id']}").json()
    for path, value in pathless.items():
        assert value_at(got, path) == value, path
    # The older shape: the manager without the enterprise URN.
    cycle(
        "patch",
        f"/Users/{alice['id']}",
        json=patch_body({"op": "Add", "path": "manager", "value": boss["id"]}),
    )

    # Groups: lookup, create without members, add members (with display), remove one.
    name = "Platform Team"
    cycle(
        "get",
        "/Groups",
        params={"excludedAttributes": "members", "filter": f'displayName eq "{name}"'},
    )
    group = cycle(
        "post",
        "/Groups/",
        json={"schemas": [GROUP_SCHEMA], "displayName": name, "externalId": str(uuid.uuid4())},
    ).json()
    members = [
        {"value": alice["id"], "display": "Alice Wong"},
        {"value": boss["id"], "display": "Omar"},
    ]
    cycle(
        "patch",
        f"/Groups/{group['id']}/",
        json=patch_body({"op": "Add", "path": "members", "value": members}),
    )
    cycle(
        "patch",
        f"/Groups/{group['id']}",
        json=patch_body({"op": "Remove", "path": "members", "value": [{"value": boss["id"]}]}),
    )

    assert cycle.problems == []
    events_drain(organization_id=organization.pk)
    failed = ChangeEvent.objects.exclude(status=ChangeEvent.Status.APPLIED)
    assert list(failed.values_list("status", "reason")) == []

    member = Member.objects.get(organization=organization, email="alice.w@contoso.com")
    assert (member.given_name, member.family_name, member.display_name) == (
        "Alice 2",
        "Wong 2",
        "Alice Wong 2",
    )
    assert (member.phone, member.job_title, member.country) == ("+966512345670", "Engineer 2", "AE")
    assert member.employee_number == "E-1001 2"
    assert member.manager.email == "omar@contoso.com"
    assert [link.department.name for link in member.department_links.all()] == ["Platform 2"]

    # Disable: Entra's string "False"; the user stays readable.
    cycle(
        "patch",
        f"/Users/{alice['id']}",
        json=patch_body({"op": "Replace", "path": "active", "value": "False"}),
    )
    assert cycle("get", f"/Users/{alice['id']}").json()["active"] is False
    assert cycle.problems == []


def test_the_member_page_shows_what_beem_keeps_from_entra_read_only(
    scim, organization, admin_client
):
    body = user_post_body(USER_MAPPINGS + DOCUMENTED_SPELLINGS)
    body["password"] = "S3cret!pass"
    response = scim.post("/Users", json=body)
    assert response.status_code == 201, response.content
    events_drain(organization_id=organization.pk)
    member = Member.objects.get(organization=organization)

    page = admin_client.get(reverse("members:member_detail", args=[member.pk]))

    html = page.content.decode()
    assert "More from Entra ID" in html
    for label, value in (
        ("name.formatted", "Alice Wong"),
        ("preferredLanguage", "en-US"),
        ("addresses[type eq &quot;work&quot;].locality", "Riyadh"),
        ("phoneNumbers[type eq &quot;fax&quot;].value", "+966112345679"),
        ("emails[type eq &quot;other&quot;].value", "SMTP:alice.wong@contoso.com"),
    ):
        # Phone numbers are written left to right (issue 18), like everywhere else.
        assert f"<code>{label}</code></dt><dd>{phone_ltr(value)}</dd>" in html, label
    # What Beem applies is shown once, in the profile above; the password never.
    assert "<code>employeeNumber</code>" not in html
    assert "<code>name.givenName</code>" not in html
    assert "S3cret" not in html and "password" not in html
