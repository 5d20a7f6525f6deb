import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from directory_sync.models import SyncSettings
from members import services
from members.models import Administrator, AuditEntry, DeletionRule, Member, Resource


@pytest.fixture
def acme(organization):
    """A small organization: Sara (manager) and Omar in Head Office / Engineering."""
    eng = services.department_path_ensure(
        organization=organization, path=["Head Office", "Engineering"]
    )
    sara = services.member_create(
        organization=organization,
        display_name="Sara Al-Harbi",
        given_name="Sara",
        family_name="Al-Harbi",
        phone="+966512345678",
        email="sara@acme.test",
        employee_number="E-100",
        job_title="Head of Engineering",
    )
    omar = services.member_create(
        organization=organization,
        display_name="Omar Haddad",
        phone="+966512345679",
        employee_number="E-200",
    )
    services.member_update(member=omar, manager=sara)
    services.member_departments_set(member=omar, departments=[eng])
    group = services.group_create(organization=organization, name="Acme Engineers")
    services.group_members_set(group=group, member_ids=[omar.pk])
    handbook = services.resource_create(
        organization=organization, kind="document", name="Acme handbook", owner=omar
    )
    orphan = services.resource_create(
        organization=organization, kind="channel", name="Acme orphan channel", owner=None
    )
    return {
        "sara": sara,
        "omar": omar,
        "eng": eng,
        "group": group,
        "handbook": handbook,
        "orphan": orphan,
    }


@pytest.fixture
def globex_client(client, other_admin_user):
    client.force_login(other_admin_user)
    return client


def page_urls(acme) -> list[str]:
    """Every page of the suite, with ids of acme's rows where a page takes one."""
    return [
        reverse("members:member_list"),
        reverse("members:member_detail", args=[acme["omar"].pk]),
        reverse("members:member_edit", args=[acme["omar"].pk]),
        reverse("members:department_list"),
        reverse("members:group_list"),
        reverse("members:group_detail", args=[acme["group"].pk]),
        reverse("members:resource_list"),
        reverse("members:resource_unassigned_list"),
    ]


def text_of(response) -> str:
    return response.content.decode()


# --- login and who may use the suite ----------------------------------------------------


def test_login_page_renders_the_form(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    body = text_of(response)
    assert 'name="username"' in body and 'name="password"' in body
    assert 'dir="ltr"' in body


def test_administrator_logs_in_through_the_form_and_lands_on_members(client, admin_user):
    response = client.post(
        reverse("login"), {"username": "admin@acme", "password": "correct horse 42"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("members:member_list")
    assert client.get(reverse("members:member_list")).status_code == 200


def test_wrong_password_shows_an_error_and_does_not_log_in(client, admin_user):
    response = client.post(reverse("login"), {"username": "admin@acme", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter the correct email and password" in text_of(response)
    assert client.get(reverse("members:member_list")).status_code == 302


def test_logout_ends_the_session(admin_client):
    response = admin_client.post(reverse("logout"))
    assert response.status_code == 302 and response["Location"] == reverse("login")
    assert admin_client.get(reverse("members:member_list")).status_code == 302


def test_every_page_sends_anonymous_visitors_to_login(client, acme):
    for url in page_urls(acme):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"{reverse('login')}?next={url}", url


def test_staff_user_without_an_organization_is_refused_everywhere(client, acme):
    user = get_user_model().objects.create_user("stray", password="x", is_staff=True)
    client.force_login(user)
    for url in page_urls(acme):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Only administrators of an organization" in text_of(response)


def test_non_staff_user_linked_to_an_organization_is_refused(client, organization, acme):
    user = get_user_model().objects.create_user("member-only", password="x", is_staff=False)
    Administrator.objects.create(user=user, organization=organization)
    client.force_login(user)
    for url in page_urls(acme):
        assert client.get(url).status_code == 403, url


def test_reassign_refuses_anonymous_posts(client, acme):
    url = reverse("members:resource_reassign", args=[acme["orphan"].pk])
    response = client.post(url, {"owner": "sara@acme.test"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    acme["orphan"].refresh_from_db()
    assert acme["orphan"].owner_id is None


# --- organization isolation ---------------------------------------------------------------


def test_another_organizations_member_is_not_found(globex_client, acme):
    for name in ("members:member_detail", "members:member_edit"):
        response = globex_client.get(reverse(name, args=[acme["omar"].pk]))
        assert response.status_code == 404, name


def test_another_organizations_member_cannot_be_edited_by_post(globex_client, acme):
    url = reverse("members:member_edit", args=[acme["omar"].pk])
    response = globex_client.post(url, {"display_name": "Owned", "status": "active"})
    assert response.status_code == 404
    acme["omar"].refresh_from_db()
    assert acme["omar"].display_name == "Omar Haddad"


def test_another_organizations_group_is_not_found(globex_client, acme):
    url = reverse("members:group_detail", args=[acme["group"].pk])
    assert globex_client.get(url).status_code == 404


def test_another_organizations_resource_cannot_be_reassigned(
    globex_client, other_organization, acme
):
    services.member_create(organization=other_organization, email="thief@globex.test")
    url = reverse("members:resource_reassign", args=[acme["orphan"].pk])
    response = globex_client.post(url, {"owner": "thief@globex.test"})
    assert response.status_code == 404
    acme["orphan"].refresh_from_db()
    assert acme["orphan"].owner_id is None


def test_lists_never_show_another_organizations_rows(globex_client, other_organization, acme):
    services.member_create(
        organization=other_organization, display_name="Globex Gina", email="gina@globex.test"
    )
    acme_names = [
        "Sara Al-Harbi",
        "Omar Haddad",
        "sara@acme.test",
        "+966512345678",
        "Engineering",
        "Acme Engineers",
        "Acme handbook",
        "Acme orphan channel",
    ]
    urls = [
        reverse("members:member_list"),
        reverse("members:member_list") + "?q=Sara",
        reverse("members:member_list") + "?q=%2B966",
        reverse("members:member_list") + "?q=E-100",
        reverse("members:department_list"),
        reverse("members:group_list"),
        reverse("members:resource_list"),
        reverse("members:resource_unassigned_list"),
    ]
    for url in urls:
        response = globex_client.get(url)
        assert response.status_code == 200, url
        body = text_of(response)
        leaked = [name for name in acme_names if name in body]
        assert leaked == [], (url, leaked)
    assert "Globex Gina" in text_of(globex_client.get(reverse("members:member_list")))


def test_manager_of_another_organization_cannot_be_set(admin_client, other_organization, acme):
    services.member_create(organization=other_organization, email="boss@globex.test")
    url = reverse("members:member_edit", args=[acme["omar"].pk])
    response = admin_client.post(
        url, {"manager": "boss@globex.test", "status": "active", "department_display": "full_path"}
    )
    assert response.status_code == 200
    assert "No member of your organization" in text_of(response)
    acme["omar"].refresh_from_db()
    assert acme["omar"].manager_id == acme["sara"].pk


# --- members list: search and pagination ---------------------------------------------------


def names_in(response) -> list[str]:
    return re.findall(r'<a href="/members/\d+/">([^<]+)</a>', text_of(response))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("harbi", ["Sara Al-Harbi"]),
        ("SARA@ACME", ["Sara Al-Harbi"]),
        ("+966 51 234 5679", ["Omar Haddad"]),
        ("966512345", ["Omar Haddad", "Sara Al-Harbi"]),
        ("E-200", ["Omar Haddad"]),
        ("nobody", []),
    ],
)
def test_member_search_matches_name_email_phone_and_employee_number(
    admin_client, acme, query, expected
):
    response = admin_client.get(reverse("members:member_list"), {"q": query})
    assert response.status_code == 200
    assert names_in(response) == expected


def test_member_search_without_results_says_so(admin_client, acme):
    response = admin_client.get(reverse("members:member_list"), {"q": "nobody"})
    assert "No member matches “nobody”." in text_of(response)


@pytest.fixture
def many_members(organization):
    members = [
        Member(organization=organization, display_name=f"Member {i:03d}", email=f"m{i}@acme.test")
        for i in range(120)
    ]
    Member.objects.bulk_create(members)
    return [f"Member {i:03d}" for i in range(120)]


def follow(client, response, rel: str):
    match = re.search(rf'rel="{rel}" href="([^"]+)"', text_of(response))
    assert match, f"no {rel} link"
    return client.get(reverse("members:member_list") + match.group(1).replace("&amp;", "&"))


def test_members_list_pages_forward_and_back_in_name_order(admin_client, many_members):
    first = admin_client.get(reverse("members:member_list"))
    assert names_in(first) == many_members[:50]
    assert 'rel="prev"' not in text_of(first)
    second = follow(admin_client, first, "next")
    assert names_in(second) == many_members[50:100]
    third = follow(admin_client, second, "next")
    assert names_in(third) == many_members[100:]
    assert 'rel="next"' not in text_of(third)
    back = follow(admin_client, third, "prev")
    assert names_in(back) == many_members[50:100]
    assert names_in(follow(admin_client, back, "prev")) == many_members[:50]


def test_members_list_pagination_keeps_the_search(admin_client, organization, many_members):
    services.member_create(organization=organization, display_name="Zara", email="z@acme.test")
    first = admin_client.get(reverse("members:member_list"), {"q": "member"})
    second = follow(admin_client, first, "next")
    third = follow(admin_client, second, "next")
    assert names_in(first) + names_in(second) + names_in(third) == many_members
    assert 'rel="next"' not in text_of(third)


def test_members_list_does_not_count_or_offset(admin_client, many_members):
    first = admin_client.get(reverse("members:member_list"))
    with CaptureQueriesContext(connection) as queries:
        follow(admin_client, first, "next")
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    assert "COUNT(" not in sql
    assert "OFFSET" not in sql


def test_a_tampered_cursor_shows_the_first_page(admin_client, many_members):
    response = admin_client.get(reverse("members:member_list"), {"after": "!!not-base64"})
    assert response.status_code == 200
    assert names_in(response) == many_members[:50]


# --- member detail ------------------------------------------------------------------------


def test_member_detail_shows_profile_manager_departments_groups_and_resources(admin_client, acme):
    response = admin_client.get(reverse("members:member_detail", args=[acme["omar"].pk]))
    assert response.status_code == 200
    body = text_of(response)
    assert "+966512345679" in body and "E-200" in body
    assert f'<a href="/members/{acme["sara"].pk}/">Sara Al-Harbi</a>' in body
    assert "<li>Head Office › Engineering</li>" in body
    assert "Acme Engineers" in body
    assert "Acme handbook" in body
    assert "Managed in Beem" in body


def test_member_detail_shows_current_department_only_when_chosen(admin_client, acme):
    services.member_update(member=acme["omar"], department_display="current_only")
    response = admin_client.get(reverse("members:member_detail", args=[acme["omar"].pk]))
    body = text_of(response)
    assert "<li>Engineering</li>" in body
    assert "Head Office › Engineering" not in body


def test_member_detail_says_when_a_member_is_managed_by_directory_sync(admin_client, acme):
    services.member_update(member=acme["omar"], directory_managed=True)
    response = admin_client.get(reverse("members:member_detail", args=[acme["omar"].pk]))
    assert "Managed by directory sync (Entra ID)" in text_of(response)


# --- member edit --------------------------------------------------------------------------


def edit_post(client, member, **overrides):
    data = {
        "display_name": member.display_name,
        "given_name": member.given_name,
        "family_name": member.family_name,
        "email": member.email or "",
        "phone": member.phone or "",
        "job_title": member.job_title,
        "country": member.country,
        "employee_number": member.employee_number,
        "status": member.status,
        "department_display": member.department_display,
        "manager": member.manager.email if member.manager else "",
        "departments": [link.department_id for link in member.department_links.all()],
    }
    data.update(overrides)
    return client.post(reverse("members:member_edit", args=[member.pk]), data)


def test_member_edit_saves_through_the_service_and_audits(admin_client, admin_user, acme):
    response = edit_post(
        admin_client, acme["omar"], job_title="Platform engineer", phone="+966 50 000 0001"
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("members:member_detail", args=[acme["omar"].pk])
    acme["omar"].refresh_from_db()
    assert (acme["omar"].job_title, acme["omar"].phone) == ("Platform engineer", "+966500000001")
    audit = AuditEntry.objects.get(action="member.edited")
    assert audit.actor == admin_user
    assert sorted(audit.detail["fields"]) == ["job_title", "phone"]


def test_member_edit_shows_the_phone_error_for_an_invalid_number(admin_client, acme):
    response = edit_post(admin_client, acme["omar"], phone="0500000001")
    assert response.status_code == 200
    assert "0500000001 is not a valid mobile number: use the international format" in text_of(
        response
    )
    acme["omar"].refresh_from_db()
    assert acme["omar"].phone == "+966512345679"


def test_member_edit_refuses_another_members_phone(admin_client, acme):
    response = edit_post(admin_client, acme["omar"], phone="+966512345678")
    assert response.status_code == 200
    assert "Another member already has the mobile number +966512345678" in text_of(response)


def test_member_edit_changes_manager_by_email_and_departments(admin_client, organization, acme):
    sales = services.department_get_or_create(organization=organization, name="Sales")
    lina = services.member_create(organization=organization, email="lina@acme.test")
    response = edit_post(
        admin_client, acme["omar"], manager="LINA@acme.test", departments=[sales.pk]
    )
    assert response.status_code == 302
    acme["omar"].refresh_from_db()
    assert acme["omar"].manager_id == lina.pk
    assert [link.department.name for link in acme["omar"].department_links.all()] == ["Sales"]


def test_member_cannot_become_their_own_manager(admin_client, acme):
    response = edit_post(admin_client, acme["omar"], manager="E-200")
    assert "cannot be their own manager" in text_of(response)


@pytest.fixture
def synced_omar(organization, acme):
    SyncSettings.objects.create(organization=organization, status=SyncSettings.Status.ACTIVE)
    services.member_update(member=acme["omar"], directory_managed=True)
    return acme["omar"]


def test_directory_fields_are_disabled_with_a_note_while_sync_is_active(admin_client, synced_omar):
    response = admin_client.get(reverse("members:member_edit", args=[synced_omar.pk]))
    body = text_of(response)
    assert 'id="locked-note"' in body
    for name in ("display_name", "email", "phone", "job_title", "employee_number", "manager"):
        tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', body).group(0)
        assert " disabled" in tag, name
    assert " disabled" in re.search(r'<select[^>]*name="departments"[^>]*>', body).group(0)
    assert " disabled" not in re.search(r'<select[^>]*name="status"[^>]*>', body).group(0)


def test_posted_directory_fields_are_ignored_while_sync_is_active(admin_client, synced_omar):
    response = edit_post(
        admin_client,
        synced_omar,
        display_name="Renamed in Beem",
        job_title="Hacked title",
        phone="+966500000009",
        manager="",
        departments=[],
        status="suspended",
    )
    assert response.status_code == 302
    synced_omar.refresh_from_db()
    assert synced_omar.display_name == "Omar Haddad"
    assert synced_omar.job_title == ""
    assert synced_omar.phone == "+966512345679"
    assert synced_omar.manager is not None
    assert synced_omar.department_links.count() == 1
    # Fields Beem owns stay editable.
    assert synced_omar.status == "suspended"
    assert AuditEntry.objects.get(action="member.edited").detail["fields"] == ["status"]


def test_directory_fields_are_editable_once_sync_is_stopped(
    admin_client, organization, synced_omar
):
    SyncSettings.objects.filter(organization=organization).update(
        status=SyncSettings.Status.STOPPED
    )
    response = edit_post(admin_client, synced_omar, job_title="Edited while stopped")
    assert response.status_code == 302
    synced_omar.refresh_from_db()
    assert synced_omar.job_title == "Edited while stopped"


def test_members_created_in_beem_stay_editable_while_sync_is_active(
    admin_client, organization, acme
):
    SyncSettings.objects.create(organization=organization, status=SyncSettings.Status.ACTIVE)
    response = edit_post(admin_client, acme["sara"], job_title="CTO")
    assert response.status_code == 302
    acme["sara"].refresh_from_db()
    assert acme["sara"].job_title == "CTO"


# --- departments, groups, resources --------------------------------------------------------


def test_department_page_shows_the_tree_with_member_counts(admin_client, acme):
    body = text_of(admin_client.get(reverse("members:department_list")))
    head = body.index("Head Office")
    eng = body.index("Engineering")
    assert head < eng
    rows = re.findall(r"<tr>\s*<td[^>]*>(.*?)</td>\s*<td>(\d+)</td>", body, re.S)
    assert [(re.sub(r"<[^>]+>|└", "", n).strip(), c) for n, c in rows] == [
        ("Head Office", "0"),
        ("Engineering", "1"),
    ]


def test_group_page_lists_groups_and_their_members(admin_client, acme):
    body = text_of(admin_client.get(reverse("members:group_list")))
    assert "Acme Engineers" in body
    detail = admin_client.get(reverse("members:group_detail", args=[acme["group"].pk]))
    assert names_in(detail) == ["Omar Haddad"]


def test_resource_page_lists_owned_and_unassigned_resources(admin_client, acme):
    body = text_of(admin_client.get(reverse("members:resource_list")))
    assert "Acme handbook" in body and "Omar Haddad" in body
    assert "Acme orphan channel" in body and "Unassigned" in body


def test_unassigned_page_lists_resources_of_deleted_members(admin_client, acme):
    services.member_delete(member=acme["omar"])
    body = text_of(admin_client.get(reverse("members:resource_unassigned_list")))
    assert "Acme handbook" in body and "Omar Haddad" in body
    assert body.count('name="owner"') == 2


def test_resource_pages_show_the_original_owner_and_the_managers_it_passed(
    admin_client, organization, acme
):
    # Omar's handbook goes to his manager Sara when he is deleted, then to the unassigned list
    # when Sara is deleted: the pages still name Omar first.
    rule = DeletionRule.DELETE_TRANSFER_TO_MANAGER
    services.member_delete(member=acme["omar"], rule=rule)
    services.member_delete(member=acme["sara"], rule=rule)
    chain = re.compile(
        r"Originally Omar Haddad \(deleted [A-Z][a-z]+\.? \d+, \d{4}\); "
        r"via Sara Al-Harbi \(deleted [A-Z][a-z]+\.? \d+, \d{4}\)"
    )

    for name in ("members:resource_unassigned_list", "members:resource_list"):
        body = text_of(admin_client.get(reverse(name)))
        assert chain.search(body), body
    review = text_of(admin_client.get(reverse("directory_sync:review_list")))
    assert chain.search(review), review


def test_reassign_gives_the_resource_to_a_member_and_audits(admin_client, admin_user, acme):
    url = reverse("members:resource_reassign", args=[acme["orphan"].pk])
    response = admin_client.post(url, {"owner": "+966 51 234 5678"}, follow=True)
    assert response.redirect_chain == [(reverse("members:resource_unassigned_list"), 302)]
    assert "Acme orphan channel now belongs to Sara Al-Harbi." in text_of(response)
    acme["orphan"].refresh_from_db()
    assert acme["orphan"].owner_id == acme["sara"].pk
    assert AuditEntry.objects.get(action="resource.reassigned").actor == admin_user


def test_reassign_to_an_unknown_member_changes_nothing(admin_client, acme):
    url = reverse("members:resource_reassign", args=[acme["orphan"].pk])
    response = admin_client.post(url, {"owner": "ghost@acme.test"}, follow=True)
    assert "No member of your organization has the email" in text_of(response)
    acme["orphan"].refresh_from_db()
    assert acme["orphan"].owner_id is None


def test_reassign_goes_back_only_to_a_page_of_this_site(admin_client, acme):
    url = reverse("members:resource_reassign", args=[acme["orphan"].pk])
    review = reverse("directory_sync:review_list")
    # On an error the page comes back with the owner as typed (issue 18), in its query string.
    response = admin_client.post(url, {"owner": "ghost@acme.test", "next": review})
    assert response["Location"].split("?")[0] == review
    response = admin_client.post(url, {"owner": "ghost@acme.test", "next": "https://evil.test/"})
    assert response["Location"].split("?")[0] == reverse("members:resource_unassigned_list")


def test_reassign_needs_a_post(admin_client, acme):
    url = reverse("members:resource_reassign", args=[acme["orphan"].pk])
    assert admin_client.get(url).status_code == 405
    assert Resource.objects.get(pk=acme["orphan"].pk).owner_id is None


def test_reassign_needs_the_csrf_token(admin_user, acme):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    url = reverse("members:resource_reassign", args=[acme["orphan"].pk])
    assert client.post(url, {"owner": "sara@acme.test"}).status_code == 403
    assert Resource.objects.get(pk=acme["orphan"].pk).owner_id is None


# --- navigation and languages ---------------------------------------------------------------


def test_navigation_links_every_section(admin_client, acme):
    body = text_of(admin_client.get(reverse("members:member_list")))
    for name in ("member_list", "department_list", "group_list", "resource_list"):
        assert f'href="{reverse("members:" + name)}"' in body, name
    assert "Basic Settings" in body


def test_switching_to_arabic_renders_right_to_left(admin_client, acme):
    response = admin_client.post(
        reverse("set_language"), {"language": "ar", "next": reverse("members:member_list")}
    )
    assert response.status_code == 302
    body = text_of(admin_client.get(reverse("members:member_list")))
    assert '<html lang="ar" dir="rtl">' in body
    assert "الأعضاء" in body  # "Members"
    assert "بحث" in body  # "Search"
    assert "Members" not in body


def test_switching_back_to_english_renders_left_to_right(admin_client, acme):
    admin_client.post(reverse("set_language"), {"language": "ar"})
    admin_client.post(reverse("set_language"), {"language": "en"})
    body = text_of(admin_client.get(reverse("members:member_list")))
    assert '<html lang="en" dir="ltr">' in body


def test_login_page_is_translated_to_arabic(client, db):
    client.post(reverse("set_language"), {"language": "ar"})
    body = text_of(client.get(reverse("login")))
    assert 'dir="rtl"' in body
    assert "تسجيل الدخول" in body  # "Log in"
