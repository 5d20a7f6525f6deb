"""An administrator creates and deletes members and shapes departments (issue 18): validated as
the sync validates, refused with the reason while directory sync owns the row, always audited."""

import re

import pytest
from django.urls import reverse

from directory_sync import services as sync_services
from directory_sync.models import SyncSettings
from members import selectors, services
from members.models import AuditEntry, Department, Member, Resource


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


@pytest.fixture
def sara(organization):
    return services.member_create(
        organization=organization,
        display_name="Sara Al-Harbi",
        email="sara@acme.test",
        phone="+966512345678",
        employee_number="E-100",
    )


def sync_on(organization, **settings):
    sync_services.sync_activate(organization=organization, actor_label="test")
    if settings:
        SyncSettings.objects.filter(organization=organization).update(**settings)


# --- creating a member ----------------------------------------------------------------------


def test_an_admin_creates_a_member_with_manager_and_department(admin_client, organization, sara):
    eng = services.department_path_ensure(organization=organization, path=["HQ", "Engineering"])

    response = admin_client.post(
        reverse("members:member_create"),
        {
            "display_name": "Grace Hopper",
            "phone": "+966 51 234 5600",
            "email": "Grace@Acme.test",
            "job_title": "Engineer",
            "department": eng.pk,
            "manager": sara.email,
        },
    )

    grace = Member.objects.get(display_name="Grace Hopper")
    assert response["Location"] == reverse("members:member_detail", args=[grace.pk])
    assert (grace.phone, grace.email, grace.job_title) == (
        "+966512345600",
        "grace@acme.test",
        "Engineer",
    )
    assert grace.manager == sara
    assert [link.department for link in grace.department_links.all()] == [eng]
    assert not grace.directory_managed
    entry = AuditEntry.objects.get(action="member.created")
    assert entry.detail == {"member_id": grace.pk, "member": "Grace Hopper"}
    assert entry.actor.username == "admin@acme.test" or entry.actor is not None


def test_a_member_needs_a_mobile_or_an_email(admin_client, organization):
    response = admin_client.post(reverse("members:member_create"), {"display_name": "Nobody"})

    assert response.status_code == 200
    assert "A member needs a mobile number or an email address." in text_of(response)
    assert not Member.objects.filter(display_name="Nobody").exists()


def test_with_sync_identifying_by_phone_the_mobile_is_required(admin_client, organization):
    sync_on(organization, identify_by="phone")

    response = admin_client.post(
        reverse("members:member_create"), {"display_name": "Lina", "email": "lina@acme.test"}
    )

    assert "This field is required." in text_of(response)
    assert "identifies members by mobile number" in text_of(response)
    assert not Member.objects.filter(display_name="Lina").exists()


def test_with_sync_identifying_by_email_the_email_is_required(admin_client, organization):
    sync_on(organization, identify_by="email")

    admin_client.post(
        reverse("members:member_create"), {"display_name": "Lina", "phone": "+966512345601"}
    )
    assert not Member.objects.filter(display_name="Lina").exists()

    admin_client.post(
        reverse("members:member_create"), {"display_name": "Lina", "email": "lina@acme.test"}
    )
    assert Member.objects.get(display_name="Lina").email == "lina@acme.test"


def test_the_service_refuses_a_member_without_the_identifier_the_sync_uses(organization):
    with pytest.raises(services.MemberError) as refused:
        services.member_create_by_admin(
            organization=organization, identify_by="email", display_name="X", phone="+966512345601"
        )
    assert refused.value.field == "email"


def test_a_bad_mobile_is_refused_and_everything_typed_is_kept(admin_client, organization, sara):
    response = admin_client.post(
        reverse("members:member_create"),
        {"display_name": "Omar Haddad", "phone": "0500000001", "manager": "Sara Al-Harbi"},
    )

    page = text_of(response)
    assert "0500000001 is not a valid mobile number: use the international format" in page
    assert 'value="Omar Haddad"' in page
    assert 'value="0500000001"' in page
    assert 'value="Sara Al-Harbi"' in page  # the picker's text, kept
    assert not Member.objects.filter(display_name="Omar Haddad").exists()


def test_a_taken_email_is_refused(admin_client, organization, sara):
    response = admin_client.post(
        reverse("members:member_create"), {"display_name": "Copy", "email": "SARA@acme.test"}
    )

    assert "Another member already has the email sara@acme.test." in text_of(response)


def test_names_longer_than_the_member_column_are_refused_like_the_sync_clips_them(
    admin_client, organization
):
    limit = Member._meta.get_field("display_name").max_length
    response = admin_client.post(
        reverse("members:member_create"), {"display_name": "x" * (limit + 1), "email": "l@a.test"}
    )

    assert f"at most {limit} characters" in text_of(response)
    with pytest.raises(services.MemberError):
        services.member_create(organization=organization, email="m@a.test", job_title="y" * 300)


def test_the_manager_can_be_chosen_by_exact_name(admin_client, organization, sara):
    admin_client.post(
        reverse("members:member_create"),
        {"display_name": "Omar", "phone": "+966512345601", "manager": "sara al-harbi"},
    )

    assert Member.objects.get(display_name="Omar").manager == sara


# --- deleting a member ----------------------------------------------------------------------


def test_deleting_a_member_who_owns_nothing(admin_client, organization, sara):
    page = admin_client.get(reverse("members:member_delete", args=[sara.pk]))
    assert "owns no resources" in text_of(page)

    response = admin_client.post(reverse("members:member_delete", args=[sara.pk]))

    assert response["Location"] == reverse("members:member_list")
    assert not Member.objects.filter(pk=sara.pk).exists()
    entry = AuditEntry.objects.get(action="member.deleted")
    assert entry.detail == {"member_id": sara.pk, "member": "Sara Al-Harbi", "resources": 0}


def test_deleting_a_member_who_owns_resources_is_refused_until_someone_receives_them(
    admin_client, organization, sara
):
    handbook = services.resource_create(
        organization=organization, kind="document", name="Handbook", owner=sara
    )
    url = reverse("members:member_delete", args=[sara.pk])

    page = text_of(admin_client.get(url))
    assert "Sara Al-Harbi owns 1 resource." in page
    assert "Handbook" in page
    assert reverse("members:member_detail", args=[sara.pk]) + "#owned-resources" in page

    refused = admin_client.post(url)
    assert "Sara Al-Harbi owns 1 resource: choose who receives it" in text_of(refused)
    assert Member.objects.filter(pk=sara.pk).exists()
    handbook.refresh_from_db()
    assert handbook.owner == sara


def test_deleting_a_member_gives_their_resources_to_the_chosen_member(
    admin_client, organization, sara
):
    omar = services.member_create(
        organization=organization, display_name="Omar", phone="+966512345601"
    )
    for name in ("Handbook", "Channel"):
        services.resource_create(organization=organization, kind="document", name=name, owner=sara)

    response = admin_client.post(
        reverse("members:member_delete", args=[sara.pk]), {"heir": "+966512345601"}, follow=True
    )

    assert "Sara Al-Harbi was deleted; 2 resources now belong to Omar." in text_of(response)
    assert not Member.objects.filter(pk=sara.pk).exists()
    assert Resource.objects.filter(owner=omar).count() == 2
    assert all(r.deleted_owners[0].name == "Sara Al-Harbi" for r in Resource.objects.all())
    entry = AuditEntry.objects.get(action="member.deleted")
    assert entry.detail["resources"] == 2
    assert entry.detail["to"] == "Omar"


def test_an_unknown_heir_is_refused_and_kept_as_typed(admin_client, organization, sara):
    services.resource_create(organization=organization, kind="document", name="H", owner=sara)

    response = admin_client.post(
        reverse("members:member_delete", args=[sara.pk]), {"heir": "ghost@acme.test"}
    )

    assert "No member of your organization has" in text_of(response)
    assert 'value="ghost@acme.test"' in text_of(response)
    assert Member.objects.filter(pk=sara.pk).exists()


def test_a_synced_member_cannot_be_deleted_by_hand_while_sync_is_active(
    admin_client, organization, sara
):
    Member.objects.filter(pk=sara.pk).update(directory_managed=True)
    sync_on(organization)
    url = reverse("members:member_delete", args=[sara.pk])

    page = text_of(admin_client.get(url))
    posted = admin_client.post(url)

    assert "synced from Entra ID and directory sync is active" in page
    assert 'type="submit"' not in page.split("delete-refusal")[1]
    assert posted.status_code == 409
    assert Member.objects.filter(pk=sara.pk).exists()
    assert not AuditEntry.objects.filter(action="member.deleted").exists()


def test_a_synced_member_can_be_deleted_by_hand_once_sync_is_stopped(
    admin_client, organization, sara
):
    Member.objects.filter(pk=sara.pk).update(directory_managed=True)
    sync_on(organization)
    SyncSettings.objects.filter(organization=organization).update(status="stopped")

    admin_client.post(reverse("members:member_delete", args=[sara.pk]))

    assert not Member.objects.filter(pk=sara.pk).exists()


# --- departments ----------------------------------------------------------------------------


def test_an_admin_creates_departments_at_the_top_and_inside_another(admin_client, organization):
    admin_client.post(reverse("members:department_list"), {"name": "Head Office"})
    hq = Department.objects.get(name="Head Office")
    admin_client.post(reverse("members:department_list"), {"name": "Sales", "parent": hq.pk})

    sales = Department.objects.get(name="Sales")
    assert sales.parent == hq and hq.parent is None
    assert not hq.directory_managed
    details = [
        e.detail["department"] for e in AuditEntry.objects.filter(action="department.created")
    ]
    assert sorted(details) == ["Head Office", "Head Office › Sales"]


def test_a_name_already_used_at_that_place_is_refused(admin_client, organization):
    services.department_get_or_create(organization=organization, name="Sales")

    response = admin_client.post(reverse("members:department_list"), {"name": " Sales "})

    assert "There is already a department named Sales there." in text_of(response)
    assert Department.objects.filter(name="Sales").count() == 1


def test_an_admin_renames_and_moves_their_department(admin_client, organization):
    hq = services.department_get_or_create(organization=organization, name="HQ")
    sales = services.department_get_or_create(organization=organization, name="Sales")

    response = admin_client.post(
        reverse("members:department_edit", args=[sales.pk]), {"name": "Sales KSA", "parent": hq.pk}
    )

    assert response["Location"] == reverse("members:department_list")
    sales.refresh_from_db()
    assert (sales.name, sales.parent) == ("Sales KSA", hq)
    renamed = AuditEntry.objects.get(action="department.renamed")
    moved = AuditEntry.objects.get(action="department.moved")
    assert renamed.detail == {"department_id": sales.pk, "from": "Sales", "to": "HQ › Sales KSA"}
    assert moved.detail == renamed.detail


def test_a_department_cannot_move_under_its_own_descendant(admin_client, organization):
    leaf = services.department_path_ensure(organization=organization, path=["A", "B", "C"])
    root = leaf.parent.parent

    response = admin_client.post(
        reverse("members:department_edit", args=[root.pk]), {"name": "A", "parent": leaf.pk}
    )

    assert "cannot be moved under itself or one of its own departments" in text_of(response)
    root.refresh_from_db()
    assert root.parent is None


def test_departments_the_sync_created_are_read_only_while_it_is_active(admin_client, organization):
    sync_on(organization, department_format="structure_string")
    leaf = services.department_path_ensure(
        organization=organization, path=["HQ", "Ops"], directory_managed=True
    )
    mine = services.department_get_or_create(organization=organization, name="Mine")
    url = reverse("members:department_edit", args=[leaf.pk])

    page = text_of(admin_client.get(url))
    admin_client.post(url, {"name": "Renamed", "parent": mine.pk})

    assert "rename it in Entra ID" in page
    assert "move it there" in page
    leaf.refresh_from_db()
    assert (leaf.name, leaf.parent.name) == ("Ops", "HQ")
    with pytest.raises(services.MemberError):
        services.department_change(department=leaf, name="Renamed", parent=leaf.parent)
    # Beem's own department stays the admin's while the sync runs.
    assert services.department_change(department=mine, name="Mine 2", parent=None) == ["name"]


def test_with_plain_names_a_department_the_sync_created_can_be_moved_but_not_renamed(
    admin_client, organization
):
    sync_on(organization, department_format="plain_name")
    sales = services.department_get_or_create(
        organization=organization, name="Sales", directory_managed=True
    )
    hq = services.department_get_or_create(organization=organization, name="HQ")

    admin_client.post(
        reverse("members:department_edit", args=[sales.pk]), {"name": "Sales", "parent": hq.pk}
    )

    sales.refresh_from_db()
    assert sales.parent == hq
    with pytest.raises(services.MemberError) as refused:
        services.department_change(department=sales, name="Revenue", parent=hq)
    assert refused.value.field == "name"


def test_the_sync_keeps_an_admins_department_the_admins(organization):
    mine = services.department_get_or_create(organization=organization, name="Sales")

    found = services.department_get_or_create(
        organization=organization, name="Sales", directory_managed=True
    )

    assert found == mine and not found.directory_managed


# --- the member picker ----------------------------------------------------------------------


@pytest.mark.parametrize("q", ["Al-Har", "sara@", "+966 51 234", "E-100"])
def test_the_picker_finds_a_member_by_name_email_mobile_or_employee_number(admin_client, sara, q):
    data = admin_client.get(reverse("members:member_search"), {"q": q}).json()

    assert data["results"] == [
        {
            "id": sara.pk,
            "name": "Sara Al-Harbi",
            "email": "sara@acme.test",
            "phone": "+966512345678",
            "employee_number": "E-100",
            "value": "sara@acme.test",
        }
    ]


def test_the_picker_pages_with_a_keyset_cursor(admin_client, organization):
    for n in range(45):
        services.member_create(
            organization=organization, display_name=f"Zed {n:02d}", email=f"z{n}@acme.test"
        )
    url = reverse("members:member_search")

    first = admin_client.get(url, {"q": "Zed"}).json()
    second = admin_client.get(url, {"q": "Zed", "after": first["next"]}).json()
    third = admin_client.get(url, {"q": "Zed", "after": second["next"]}).json()

    names = [r["name"] for page in (first, second, third) for r in page["results"]]
    assert names == [f"Zed {n:02d}" for n in range(45)]
    assert third["next"] is None


def test_the_picker_waits_for_three_characters(admin_client, sara):
    assert admin_client.get(reverse("members:member_search"), {"q": "Sa"}).json()["results"] == []
    assert selectors.MEMBER_SEARCH_MIN_LENGTH == 3


def test_a_failed_reassign_shows_the_owner_as_typed(admin_client, organization, sara):
    orphan = services.resource_create(
        organization=organization, kind="channel", name="Orphan", owner=None
    )

    response = admin_client.post(
        reverse("members:resource_reassign", args=[orphan.pk]), {"owner": "ghost"}, follow=True
    )

    assert 'value="ghost"' in text_of(response)
    assert "data-member-picker" in text_of(response)
