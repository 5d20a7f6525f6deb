"""Review: duplicate-department holds, possible duplicate members, unassigned resources."""

import pytest
from django.urls import reverse

from directory_sync.engine import events_drain
from directory_sync.models import ReviewItem
from members import services as member_services
from members.models import AuditEntry, DepartmentMembership, Member, Resource
from tests.directory_sync.engine_factories import sync_settings_make, user_create

REVIEW_URL = reverse("directory_sync:review_list")


def _apply_all(organization) -> None:
    events_drain(organization_id=organization.pk)


@pytest.fixture
def department_hold(organization):
    """Entra sends department "Sales", which names two Beem departments: the member is held."""
    sync_settings_make(
        organization, identify_by="email", duplicate_department_policy="hold_for_admin"
    )
    riyadh = member_services.department_path_ensure(
        organization=organization, path=["Riyadh", "Sales"]
    )
    jeddah = member_services.department_path_ensure(
        organization=organization, path=["Jeddah", "Sales"]
    )
    user_create(
        organization, user_name="nora@acme.test", email="nora@acme.test", department="Sales"
    )
    _apply_all(organization)
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.DUPLICATE_DEPARTMENT)
    return item, riyadh, jeddah


@pytest.fixture
def possible_duplicate(organization):
    """Lina was created in Beem by email; Entra identifies by phone and sends her email too."""
    sync_settings_make(organization, identify_by="phone")
    existing = member_services.member_create(
        organization=organization, email="lina@acme.test", display_name="Lina (Beem)"
    )
    user_create(
        organization,
        user_name="lina@acme.test",
        display_name="Lina Nasser",
        phone="+966512345670",
        email="lina@acme.test",
    )
    _apply_all(organization)
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE)
    return item, existing


def _choose_url(item) -> str:
    return reverse("directory_sync:review_department_choose", args=[item.pk])


def _resolve_url(item) -> str:
    return reverse("directory_sync:review_duplicate_resolve", args=[item.pk])


def test_review_lists_a_department_hold_with_its_candidates(admin_client, department_hold):
    item, riyadh, jeddah = department_hold

    response = admin_client.get(REVIEW_URL)

    assert response.status_code == 200
    assert [i.pk for i in response.context["department_items"]] == [item.pk]
    html = response.content.decode()
    assert "Riyadh › Sales" in html and "Jeddah › Sales" in html
    assert _choose_url(item) in html
    assert response.context["open_review_count"] == 1


def test_choosing_a_department_places_the_member_and_audits(
    admin_client, department_hold, organization, admin_user
):
    item, riyadh, jeddah = department_hold

    response = admin_client.post(_choose_url(item), {f"item{item.pk}-department": jeddah.pk})

    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.status, item.chosen_department) == ("resolved", jeddah)
    member = Member.objects.get(email="nora@acme.test")
    assert list(
        DepartmentMembership.objects.filter(member=member).values_list("department", flat=True)
    ) == [jeddah.pk]
    entry = AuditEntry.objects.get(action="review.department_chosen")
    assert entry.actor == admin_user


def test_a_chosen_department_can_be_changed_later(admin_client, department_hold):
    item, riyadh, jeddah = department_hold
    admin_client.post(_choose_url(item), {f"item{item.pk}-department": jeddah.pk})

    page = admin_client.get(REVIEW_URL)
    admin_client.post(_choose_url(item), {f"item{item.pk}-department": riyadh.pk})

    assert [i.pk for i in page.context["department_items"]] == [item.pk]
    assert "Change</button>" in page.content.decode()
    item.refresh_from_db()
    assert item.chosen_department == riyadh
    member = Member.objects.get(email="nora@acme.test")
    assert member.department_links.get().department == riyadh


def test_a_department_that_is_not_a_candidate_is_refused(
    admin_client, department_hold, organization
):
    item, riyadh, jeddah = department_hold
    other = member_services.department_path_ensure(organization=organization, path=["Other"])

    response = admin_client.post(
        _choose_url(item), {f"item{item.pk}-department": other.pk}, follow=True
    )

    assert "Pick one of the matching departments." in response.content.decode()
    item.refresh_from_db()
    assert item.status == "open" and item.chosen_department is None


def test_review_lists_a_possible_duplicate_with_both_members(admin_client, possible_duplicate):
    item, existing = possible_duplicate

    response = admin_client.get(REVIEW_URL)

    assert [i.pk for i in response.context["duplicate_items"]] == [item.pk]
    html = response.content.decode()
    assert "Lina (Beem)" in html and "Lina Nasser" in html
    for action in ("link", "keep_both", "merge"):
        assert f'value="{action}"' in html


def test_keep_both_resolves_the_duplicate_and_keeps_both_members(
    admin_client, possible_duplicate, organization
):
    item, existing = possible_duplicate

    response = admin_client.post(_resolve_url(item), {f"item{item.pk}-action": "keep_both"})

    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.status, item.resolution) == ("resolved", "keep_both")
    assert Member.objects.filter(organization=organization).count() == 2
    assert admin_client.get(REVIEW_URL).context["duplicate_items"] == []


def test_link_makes_the_existing_member_the_directory_member(
    admin_client, possible_duplicate, organization
):
    item, existing = possible_duplicate

    admin_client.post(
        _resolve_url(item), {f"item{item.pk}-action": "link", f"item{item.pk}-confirmed": "True"}
    )

    member = Member.objects.get(organization=organization)
    assert member.pk == existing.pk
    assert (member.phone, member.email, member.directory_managed) == (
        "+966512345670",
        "lina@acme.test",
        True,
    )
    assert AuditEntry.objects.filter(action="review.duplicate_resolved").exists()


def test_an_unknown_duplicate_action_is_refused(admin_client, possible_duplicate):
    item, existing = possible_duplicate

    response = admin_client.post(
        _resolve_url(item), {f"item{item.pk}-action": "explode"}, follow=True
    )

    assert "Choose link, keep both or merge." in response.content.decode()
    item.refresh_from_db()
    assert item.status == "open"


def test_resolving_an_item_as_the_wrong_kind_is_not_found(admin_client, department_hold):
    item, riyadh, jeddah = department_hold

    response = admin_client.post(_resolve_url(item), {f"item{item.pk}-action": "keep_both"})

    assert response.status_code == 404


def test_unassigned_resources_are_listed_and_reassigned(admin_client, organization, admin_user):
    leaver = member_services.member_create(
        organization=organization, phone="+966512345678", display_name="Leaver"
    )
    heir = member_services.member_create(
        organization=organization, phone="+966512345679", display_name="Heir"
    )
    resource = member_services.resource_create(
        organization=organization, kind="document", name="Handbook", owner=leaver
    )
    member_services.member_delete(member=leaver)

    page = admin_client.get(REVIEW_URL)
    html = page.content.decode()
    # The row's form is the members page's typed lookup (no <select> of every member) and
    # comes back to the review page.
    action = reverse("members:resource_reassign", args=[resource.pk])
    assert f'action="{action}"' in html and 'name="next"' in html
    assert "<select" not in html.split(f'id="resource-{resource.pk}"')[1].split("</tr>")[0]
    response = admin_client.post(action, {"owner": heir.phone, "next": REVIEW_URL})

    assert "Handbook" in html and "Leaver" in html
    assert response.status_code == 302 and response["Location"] == REVIEW_URL
    resource.refresh_from_db()
    assert (resource.owner, resource.unassigned_at) == (heir, None)
    entry = AuditEntry.objects.get(action="resource.reassigned")
    assert entry.actor == admin_user


def test_reassigning_to_another_organizations_member_is_refused(
    admin_client, organization, other_organization
):
    resource = member_services.resource_create(
        organization=organization, kind="document", name="Handbook", owner=None
    )
    stranger = member_services.member_create(organization=other_organization, phone="+966512345678")

    response = admin_client.post(
        reverse("members:resource_reassign", args=[resource.pk]),
        {"owner": stranger.phone, "next": REVIEW_URL},
        follow=True,
    )

    assert response.redirect_chain[-1][0].split("?")[0] == REVIEW_URL  # owner kept in the query
    assert "No member of your organization has" in response.content.decode()
    resource.refresh_from_db()
    assert resource.owner is None


def test_other_organizations_review_items_and_resources_are_not_found(
    admin_client, other_organization
):
    item = ReviewItem.objects.create(organization=other_organization, kind="possible_duplicate")
    resource = Resource.objects.create(organization=other_organization, kind="document", name="X")

    assert (
        admin_client.post(_resolve_url(item), {f"item{item.pk}-action": "keep_both"}).status_code
        == 404
    )
    assert admin_client.post(_choose_url(item), {}).status_code == 404
    assert (
        admin_client.post(reverse("members:resource_reassign", args=[resource.pk]), {}).status_code
        == 404
    )
    assert admin_client.get(REVIEW_URL).context["duplicate_items"] == []


@pytest.mark.parametrize("action", ["link", "merge"])
def test_link_and_merge_ask_for_confirmation_first_and_change_nothing(
    admin_client, possible_duplicate, organization, action
):
    item, existing = possible_duplicate
    created = item.member
    member_services.resource_create(
        organization=organization, kind="document", name="Onboarding deck", owner=existing
    )
    member_services.resource_create(
        organization=organization, kind="channel", name="Team channel", owner=created
    )

    # Without JavaScript: the Review page's button posts the decision without "confirmed".
    response = admin_client.post(_resolve_url(item), {f"item{item.pk}-action": action})

    assert response.status_code == 200
    assert response.templates[0].name == "directory_sync/review_duplicate_confirm.html"
    html = response.content.decode()
    removed, kept = (created, existing) if action == "link" else (existing, created)
    preview = response.context["preview"]
    assert (preview.kept, preview.removed, preview.resources) == (kept, removed, 1)
    resource = "Team channel" if action == "link" else "Onboarding deck"
    assert (
        f"<bdi>{removed.full_name}</bdi>'s 1 resource moves to <bdi>{kept.full_name}</bdi>: "
        f"<bdi>{resource}</bdi>"
    ) in html
    assert f'name="item{item.pk}-confirmed" value="True"' in html
    if action == "link":
        assert "The member created from Entra ID, <bdi>Lina Nasser</bdi>, is deleted." in html
        assert '<bdi dir="ltr">+966512345670</bdi>' in html
    else:
        assert "The existing member <bdi>Lina (Beem)</bdi> is deleted." in html
    assert Member.objects.filter(organization=organization).count() == 2
    item.refresh_from_db()
    assert item.status == "open"
    # The same page from a link (GET), then the confirmed post.
    assert admin_client.get(_resolve_url(item), {"action": action}).context["preview"] == preview

    response = admin_client.post(
        _resolve_url(item),
        {f"item{item.pk}-action": action, f"item{item.pk}-confirmed": "True"},
        follow=True,
    )

    assert list(Member.objects.filter(organization=organization)) == [kept]
    assert sorted(Resource.objects.values_list("name", "owner")) == [
        ("Onboarding deck", kept.pk),
        ("Team channel", kept.pk),
    ]
    message = str(list(response.context["messages"])[0])
    if action == "link":
        assert message == (
            "Linked: Lina (Beem) is now managed by Entra ID. The duplicate member Lina Nasser "
            "was deleted and its 1 resource moved to Lina (Beem)."
        )
    else:
        assert message == (
            "Merged: Lina (Beem) was folded into Lina Nasser and deleted; 1 resource moved to "
            "Lina Nasser."
        )


def test_a_confirmation_of_an_item_resolved_meanwhile_changes_nothing(
    admin_client, possible_duplicate, organization
):
    item, existing = possible_duplicate
    admin_client.post(_resolve_url(item), {f"item{item.pk}-action": "keep_both"})

    page = admin_client.get(_resolve_url(item), {"action": "link"}, follow=True)
    response = admin_client.post(
        _resolve_url(item),
        {f"item{item.pk}-action": "link", f"item{item.pk}-confirmed": "True"},
        follow=True,
    )

    assert "This review item is already resolved." in page.content.decode()
    assert "This review item is already resolved." in response.content.decode()
    assert Member.objects.filter(organization=organization).count() == 2


def test_department_choices_name_the_full_path_with_one_separator(
    admin_client, department_hold, organization
):
    item, riyadh, jeddah = department_hold
    hq = member_services.department_path_ensure(
        organization=organization, path=["Head Office", "Riyadh", "Sales"]
    )
    item.candidates.add(hq)

    response = admin_client.post(
        _choose_url(item), {f"item{item.pk}-department": hq.pk}, follow=True
    )

    html = response.content.decode()
    for label in ("Riyadh › Sales", "Jeddah › Sales", "Head Office › Riyadh › Sales"):
        assert f">{label}</option>" in html
    assert "nora@acme.test will be placed in Head Office › Riyadh › Sales." in html
