"""Organization isolation in the admin suite: every page of the members and directory_sync apps,
walked from their URLconfs, with organization B's administrator aiming at organization A's
objects. Each answer is a refusal (403/404/405, or a redirect) that never shows A's data, and
A's rows are unchanged afterwards. A new route with an id in its URL fails this file until it
is added to ``MODEL_OF_ROUTE``.
"""

import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from directory_sync import services as sync_services
from directory_sync.models import ProvisioningRun, ReviewItem, SyncSettings
from members import services as member_services
from members.models import AuditEntry, Department, Group, Member, Resource

SECRET = "zqxsecret"  # appears in every piece of organization A's data

# Which model the integer in each route's URL names.
MODEL_OF_ROUTE = {
    "members:member_detail": Member,
    "members:member_edit": Member,
    "members:member_delete": Member,
    "members:department_edit": Department,
    "members:group_detail": Group,
    "members:resource_reassign": Resource,
    "directory_sync:run_detail": ProvisioningRun,
    "directory_sync:review_department_choose": ReviewItem,
    "directory_sync:review_duplicate_resolve": ReviewItem,
}


def app_routes(app: str) -> list[tuple[str, list[str]]]:
    """``[(namespaced route name, [URL keyword names])]`` of one app's URLconf."""
    resolver = next(
        r for r in get_resolver().url_patterns if isinstance(r, URLResolver) and r.namespace == app
    )
    routes = []
    for pattern in resolver.url_patterns:
        assert isinstance(pattern, URLPattern), f"nested URLconf in {app}: cover it here"
        routes.append((f"{app}:{pattern.name}", list(pattern.pattern.converters)))
    return routes


ALL_ROUTES = app_routes("members") + app_routes("directory_sync")


class OrganizationA:
    """Organization A with one of everything an admin page can show or change."""

    def __init__(self, organization):
        self.organization = organization
        sync_services.sync_activate(organization=organization, actor_label="test")
        self.department = member_services.department_get_or_create(
            organization=organization, name=f"Dept {SECRET}"
        )
        member_services.department_get_or_create(organization=organization, name=f"Dept {SECRET}")
        self.member = member_services.member_create(
            organization=organization,
            display_name=f"Alice {SECRET}",
            email=f"alice@{SECRET}.test",
            phone="+966501110001",
        )
        self.other_member = member_services.member_create(
            organization=organization,
            display_name=f"Bob {SECRET}",
            email=f"bob@{SECRET}.test",
            phone="+966501110002",
        )
        self.group = member_services.group_create(organization=organization, name=f"G {SECRET}")
        member_services.group_members_set(group=self.group, member_ids=[self.member.pk])
        self.resource = member_services.resource_create(
            organization=organization, kind="document", name=f"Plan {SECRET}", owner=None
        )
        self.run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
        self.department_item = ReviewItem.objects.create(
            organization=organization,
            kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT,
            member=self.member,
            directory_value=f"Dept {SECRET}",
            detail=f"held {SECRET}",
        )
        self.department_item.candidates.set([self.department])
        self.duplicate_item = ReviewItem.objects.create(
            organization=organization,
            kind=ReviewItem.Kind.POSSIBLE_DUPLICATE,
            member=self.member,
            other_member=self.other_member,
            detail=f"duplicate {SECRET}",
        )
        member_services.audit_record(
            organization=organization, action="test.secret", actor_label=f"admin:{SECRET}"
        )

    def object_id(self, model) -> list[int]:
        return {
            Member: [self.member.pk, self.other_member.pk],
            Department: [self.department.pk],
            Group: [self.group.pk],
            Resource: [self.resource.pk],
            ProvisioningRun: [self.run.pk],
            ReviewItem: [self.department_item.pk, self.duplicate_item.pk],
        }[model]

    def snapshot(self) -> str:
        org = self.organization
        rows = {
            "members": list(Member.objects.filter(organization=org).order_by("pk").values()),
            "groups": list(Group.objects.filter(organization=org).order_by("pk").values()),
            "group_members": sorted(self.group.memberships.values_list("member_id", flat=True)),
            "departments": list(Department.objects.filter(organization=org).values()),
            "resources": list(Resource.objects.filter(organization=org).values()),
            "review": list(ReviewItem.objects.filter(organization=org).values()),
            "sync": list(SyncSettings.objects.filter(organization=org).values()),
            "audit": AuditEntry.objects.filter(organization=org).count(),
        }
        return json.dumps(rows, sort_keys=True, default=str)


@pytest.fixture
def org_a(organization) -> OrganizationA:
    return OrganizationA(organization)


@pytest.fixture
def b_client(client, org_a, other_organization, other_admin_user):
    """Organization B's administrator, logged in; B has its own member and resource (created
    after A's rows, so no id of B's coincides with one of A's)."""
    member_services.member_create(
        organization=other_organization, display_name="Bea Globex", phone="+966502220001"
    )
    member_services.resource_create(
        organization=other_organization, kind="document", name="Globex doc", owner=None
    )
    client.force_login(other_admin_user)
    return client


def form_data_aimed_at(a: OrganizationA, pk: int) -> dict:
    """A POST body that names A's objects in every field an admin form has."""
    data = {
        "owner": a.member.email,
        "heir": a.member.email,
        "name": "hijacked",
        "parent": a.department.pk,
        "department": a.department.pk,
        "action": "merge",
        "confirm": "on",
        "manager": a.member.email,
        "departments": [a.department.pk],
        "display_name": "hijacked",
        "status": "active",
        "department_display": "full_path",
    }
    for prefix in (f"item{pk}-",):
        data.update({prefix + "department": a.department.pk, prefix + "action": "merge"})
    return data


def test_every_admin_route_with_an_id_is_covered():
    with_ids = {name for name, kwargs in ALL_ROUTES if kwargs}

    assert with_ids == set(MODEL_OF_ROUTE), (
        "a route takes an id but has no isolation case in MODEL_OF_ROUTE"
    )


@pytest.mark.parametrize("route", sorted(MODEL_OF_ROUTE))
def test_other_organizations_admin_cannot_see_or_change_objects_by_id(route, org_a, b_client):
    before = org_a.snapshot()

    for pk in org_a.object_id(MODEL_OF_ROUTE[route]):
        url = reverse(route, kwargs={"pk": pk})
        for method in ("get", "post"):
            if method == "get":
                response = b_client.get(url)
            else:
                response = b_client.post(url, form_data_aimed_at(org_a, pk))
            assert response.status_code in (403, 404, 405), (method, url, response.status_code)
            assert SECRET not in response.content.decode(), (method, url)

    assert org_a.snapshot() == before


@pytest.mark.parametrize("route", sorted(name for name, kwargs in ALL_ROUTES if not kwargs))
def test_other_organizations_admin_sees_none_of_a_on_list_pages(route, org_a, b_client):
    before = org_a.snapshot()
    url = reverse(route)

    page = b_client.get(url, {"q": "Alice", "search": "Alice", "text": "Alice"}, follow=True)
    posted = b_client.post(url, form_data_aimed_at(org_a, 0), follow=True)

    assert page.status_code in (200, 405), page.status_code
    assert SECRET not in page.content.decode()
    assert posted.status_code in (200, 403, 404, 405), posted.status_code
    # A form with an error shows B's own input again as typed (A's email, which B knew): that
    # is not a leak; anything else of A's is.
    assert SECRET not in posted.content.decode().replace(org_a.member.email, "")
    assert org_a.snapshot() == before


def test_b_cannot_give_its_resource_to_a_member_of_a(org_a, b_client, other_organization):
    resource = Resource.objects.get(organization=other_organization)

    route = reverse("members:resource_reassign", kwargs={"pk": resource.pk})
    b_client.post(route, {"owner": org_a.member.email})
    b_client.post(route, {"owner": org_a.member.pk})

    resource.refresh_from_db()
    assert resource.owner_id is None


def test_b_cannot_make_a_member_of_a_its_members_manager_or_department(
    org_a, b_client, other_organization
):
    member = Member.objects.get(organization=other_organization)

    b_client.post(
        reverse("members:member_edit", kwargs={"pk": member.pk}),
        {
            "display_name": "Bea Globex",
            "phone": member.phone,
            "status": "active",
            "department_display": "full_path",
            "manager": org_a.member.email,
            "departments": [org_a.department.pk],
        },
    )

    member.refresh_from_db()
    assert member.manager_id is None
    assert not member.department_links.exists()


def test_organization_admins_get_a_404_from_every_django_admin_page(org_a, b_client):
    from django.contrib import admin

    urls = [reverse("admin:index"), reverse("admin:login"), "/django-admin/no/such/page/"]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        urls.append(reverse("admin:{}_{}_add".format(*info)))
    for url in urls:
        for method in ("get", "post"):
            response = getattr(b_client, method)(url)
            assert response.status_code == 404, (method, url, response.status_code)
            assert SECRET not in response.content.decode()
            assert "Page not found" in response.content.decode()


def test_superusers_and_staff_without_an_organization_keep_the_django_admin(
    client, org_a, other_admin_user
):
    from django.contrib.auth import get_user_model

    operator = get_user_model().objects.create_user("operator", password="x" * 12, is_staff=True)
    # A superuser who also administers an organization is still an operator.
    other_admin_user.is_superuser = True
    other_admin_user.save()

    client.force_login(operator)
    assert client.get(reverse("admin:index")).status_code == 200
    client.force_login(other_admin_user)
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(reverse("admin:members_member_changelist")).status_code == 200


def test_a_logged_out_visitor_is_sent_to_login_from_every_page(client, org_a):
    for route, kwargs in ALL_ROUTES:
        pk = org_a.object_id(MODEL_OF_ROUTE[route])[0] if kwargs else None
        url = reverse(route, kwargs={"pk": pk} if kwargs else None)
        response = client.get(url)
        assert response.status_code in (302, 405), (url, response.status_code)
        if response.status_code == 302:
            assert response["Location"].startswith("/login/"), url
        assert SECRET not in response.content.decode()


def test_a_staff_user_without_an_organization_is_refused_everywhere(client, org_a):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("drifter", password="x" * 12, is_staff=True)
    client.force_login(user)

    for route, kwargs in ALL_ROUTES:
        pk = org_a.object_id(MODEL_OF_ROUTE[route])[0] if kwargs else None
        url = reverse(route, kwargs={"pk": pk} if kwargs else None)
        response = client.get(url)
        assert response.status_code in (403, 405), (url, response.status_code)
        assert SECRET not in response.content.decode()


def test_b_cannot_create_a_member_managed_by_a_or_in_a_department_of_a(
    org_a, b_client, other_organization
):
    b_client.post(
        reverse("members:member_create"),
        {
            "display_name": "Bea New",
            "phone": "+966502220009",
            "manager": org_a.member.email,
            "department": org_a.department.pk,
        },
    )
    b_client.post(
        reverse("members:member_create"),
        {"display_name": "Bea Newer", "phone": "+966502220008", "manager": org_a.member.phone},
    )

    assert not Member.objects.filter(manager=org_a.member).exists()
    assert not Member.objects.filter(organization=other_organization, manager__isnull=False)
    assert not org_a.department.memberships.exclude(member__organization=org_a.organization)


def test_b_cannot_put_a_department_under_one_of_a(org_a, b_client, other_organization):
    before = org_a.snapshot()
    b_client.post(
        reverse("members:department_list"), {"name": "Ops", "parent": org_a.department.pk}
    )

    assert not Department.objects.filter(parent=org_a.department).exists()
    assert org_a.snapshot() == before


def test_b_cannot_give_a_deleted_members_resources_to_a_member_of_a(
    org_a, b_client, other_organization
):
    member = Member.objects.get(organization=other_organization)
    Resource.objects.filter(organization=other_organization).update(owner=member)

    b_client.post(
        reverse("members:member_delete", kwargs={"pk": member.pk}), {"heir": org_a.member.email}
    )

    assert Member.objects.filter(pk=member.pk).exists()
    assert not Resource.objects.filter(owner=org_a.member).exists()


def test_the_member_picker_finds_only_the_admins_own_members(org_a, b_client):
    for q in ("Alice", "alice@", SECRET, "+9665011", ""):
        response = b_client.get(reverse("members:member_search"), {"q": q})
        assert response.status_code == 200
        assert SECRET not in response.content.decode()
        assert all(r["name"] != f"Alice {SECRET}" for r in response.json()["results"])
