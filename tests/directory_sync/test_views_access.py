"""Who may see the Entra sync pages, CSRF, both languages, and the audit log page."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from directory_sync import services as sync_services
from members import services as member_services

GET_PAGES = [
    "sync_list",
    "sync_status",
    "sync_status_json",
    "sync_settings_form",
    "sync_entra",
    "credentials_rotate",
    "sync_stop",
    "sync_reactivate",
    "run_list",
    "review_list",
    "audit_list",
]
POST_ONLY = [
    ("review_department_choose", [1]),
    ("review_duplicate_resolve", [1]),
]


@pytest.mark.parametrize("name", GET_PAGES + ["run_detail"])
def test_anonymous_visitors_are_sent_to_login(client, db, name):
    url = reverse(f"directory_sync:{name}", args=[1] if name == "run_detail" else [])

    response = client.get(url)

    assert response.status_code == 302
    assert response.url.startswith(reverse("login") + "?next=")


@pytest.mark.parametrize(("name", "args"), POST_ONLY)
def test_anonymous_posts_are_sent_to_login(client, db, name, args):
    response = client.post(reverse(f"directory_sync:{name}", args=args))

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("name", GET_PAGES)
def test_users_who_are_not_staff_are_forbidden(client, organization, name):
    admin = member_services.administrator_ensure(
        organization=organization, username="clerk", password="correct horse 42"
    )
    get_user_model().objects.filter(pk=admin.user_id).update(is_staff=False)
    client.force_login(admin.user)

    assert client.get(reverse(f"directory_sync:{name}")).status_code == 403


@pytest.mark.parametrize("name", GET_PAGES)
def test_staff_without_an_organization_are_forbidden(client, db, name):
    user = get_user_model().objects.create_user("loner", password="x", is_staff=True)
    client.force_login(user)

    assert client.get(reverse(f"directory_sync:{name}")).status_code == 403


def test_each_administrator_sees_their_own_organization_only(
    client, organization, other_organization, admin_user, other_admin_user
):
    sync_services.sync_activate(organization=other_organization)
    client.force_login(admin_user)

    html = client.get(reverse("directory_sync:sync_list")).content.decode()

    assert 'data-sync-state="not_configured"' in html


def test_posts_without_a_csrf_token_are_refused(organization, admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    sync_services.sync_activate(organization=organization)

    response = client.post(reverse("directory_sync:sync_stop"), {"confirm": "on"})

    assert response.status_code == 403
    assert client.get(reverse("directory_sync:sync_status")).context["state"] != "stopped"


def test_forms_carry_a_csrf_token(admin_client, organization):
    sync_services.sync_activate(organization=organization)

    for name in ("sync_settings_form", "sync_stop", "credentials_rotate"):
        html = admin_client.get(reverse(f"directory_sync:{name}")).content.decode()
        assert 'name="csrfmiddlewaretoken"' in html, name


@pytest.mark.parametrize("name", GET_PAGES)
def test_every_page_renders_in_arabic_right_to_left(admin_client, organization, name):
    sync_services.sync_activate(organization=organization)
    admin_client.cookies["django_language"] = "ar"

    response = admin_client.get(reverse(f"directory_sync:{name}"), follow=True)

    assert response.status_code == 200
    if name != "sync_status_json":
        html = response.content.decode()
        assert '<html lang="ar" dir="rtl">' in html


def test_setup_page_is_translated_to_arabic(admin_client):
    admin_client.cookies["django_language"] = "ar"

    html = admin_client.get(reverse("directory_sync:sync_settings_form")).content.decode()

    assert "المزامنة مع Entra ID" in html
    assert "حفظ وتفعيل" in html
    assert "Save and Activate" not in html


def test_audit_log_lists_this_organizations_entries_newest_first(
    admin_client, organization, other_organization
):
    member_services.audit_record(organization=organization, action="sync.activated")
    member_services.audit_record(
        organization=organization, action="sync.stopped", detail={"why": "maintenance"}
    )
    member_services.audit_record(organization=other_organization, action="sync.secret_of_globex")

    response = admin_client.get(reverse("directory_sync:audit_list"))

    actions = [e.action for e in response.context["page"].object_list]
    assert actions == ["sync.stopped", "sync.activated"]
    html = response.content.decode()
    # Sentences, not raw keys or dicts (issue 18).
    assert "Beem stopped sync with Entra ID" in html
    assert "maintenance" not in html
    assert "globex" not in html
