"""Issue 18 in real Chromium: the apply engine's notes and reasons read in the page's language
on the run page and the member page (with Arabic plural forms), stored once and rendered per
reader. Screenshots in English and Arabic."""

from django.urls import reverse
from playwright.sync_api import Page, expect

from directory_sync.engine import events_drain
from directory_sync.models import ProvisioningRun, SyncSettings
from members import services as member_services
from members.models import Member, Organization
from tests.directory_sync.engine_factories import (
    group_create,
    record_delete,
    sync_settings_make,
    user_create,
)


def _language(page: Page, code: str) -> None:
    with page.expect_navigation():
        page.select_option("select[name=language]", code)
    expect(page.locator("html")).to_have_attribute("dir", "rtl" if code == "ar" else "ltr")


def test_run_and_member_pages_read_the_notes_in_the_page_language(admin_page, screenshot):
    page = admin_page
    organization = Organization.objects.get(slug="demo")
    sync_settings_make(organization, identify_by=SyncSettings.IdentifyBy.PHONE)
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    users = [
        user_create(
            organization,
            run=run,
            user_name=f"notes{i}@demo.beem",
            display_name=f"Notes User {i}",
            phone=f"+96651234990{i}",
        )
        for i in range(3)
    ]
    user_create(organization, run=run, user_name="nophone@demo.beem", phone="12")
    group_create(organization, display_name="Notes team", members=users, run=run)
    events_drain(organization_id=organization.pk)
    owner = Member.objects.get(organization=organization, phone="+966512349900")
    for name in ("Notes handbook", "Notes roadmap", "Notes budget"):
        member_services.resource_create(
            organization=organization, kind="document", name=name, owner=owner
        )
    record_delete(users[0], run=run)
    events_drain(organization_id=organization.pk)

    page.goto(reverse("directory_sync:run_detail", args=[run.pk]))
    expect(page.locator("main")).to_contain_text("3 members added, 0 removed.")
    expect(page.locator("main")).to_contain_text("3 resources moved to Unassigned.")
    screenshot("run-en")
    _language(page, "ar")
    expect(page.locator("main")).to_contain_text("أُضيف 3 أعضاء، وأُزيل 0.")
    expect(page.locator("main")).to_contain_text("نُقلت 3 موارد إلى غير المُسندة.")
    expect(page.locator("main")).to_contain_text("بلا رمز الدولة؛ استخدم الصيغة الدولية")
    expect(page.locator("main")).not_to_contain_text("moved to Unassigned")
    screenshot("run-ar")

    # A value not synced names the member that holds it, on the member's page.
    member_services.member_create(
        organization=organization, display_name="Notes Holder", email="holder@demo.beem"
    )
    record = user_create(
        organization,
        user_name="holder.dir@demo.beem",
        display_name="Notes Directory",
        phone="+966512349910",
        email="holder@demo.beem",
    )
    events_drain(organization_id=organization.pk)
    record.refresh_from_db()
    page.goto(reverse("members:member_detail", args=[record.member_id]))
    expect(page.locator("#sync-notes")).to_contain_text(
        "البريد الإلكتروني holder@demo.beem يخص العضو Notes Holder؛ لم تتم مزامنته"
    )
    screenshot("member-ar")
    _language(page, "en")
    expect(page.locator("#sync-notes")).to_contain_text(
        "The email holder@demo.beem belongs to member Notes Holder; not synced"
    )
    screenshot("member-en")
