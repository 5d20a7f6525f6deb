"""The demo admin creates and deletes members, shapes departments and picks members with the
searchable picker, in a real browser (issue 18), in English and Arabic."""

import re

from playwright.sync_api import expect

from directory_sync import services as sync_services
from members.models import AuditEntry, Department, Member, Organization, Resource


def to_arabic(page) -> None:
    with page.expect_navigation():
        page.select_option("select[name=language]", "ar")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")


def pick(page, input_selector: str, typed: str, name: str) -> None:
    """Type into a member picker and choose ``name`` from its search results."""
    field = page.locator(input_selector)
    field.fill(typed)
    option = page.locator("[role=listbox] [role=option]", has_text=name)
    expect(option).to_be_visible()
    option.click()


def test_an_admin_creates_a_member_choosing_the_manager_with_the_picker(admin_page, screenshot):
    admin_page.click("#member-create")
    expect(admin_page.locator("h1")).to_have_text("New member")
    admin_page.fill("input[name=display_name]", "Grace Hopper")
    admin_page.fill("input[name=phone]", "0500")  # not a mobile number: refused, kept
    admin_page.select_option("select[name=department]", label="Head Office › Engineering")
    pick(admin_page, "input[name=manager]", "Al-Har", "Sara Al-Harbi")
    expect(admin_page.locator("input[name=manager]")).to_have_value("sara@demo.beem")
    expect(admin_page.locator(".member-picker-chosen")).to_have_text("Sara Al-Harbi")
    screenshot("picker")
    with admin_page.expect_navigation():
        admin_page.click("main form.card button[type=submit]")

    expect(admin_page.locator(".errorlist")).to_contain_text("0500 is not a valid mobile number")
    expect(admin_page.locator("input[name=display_name]")).to_have_value("Grace Hopper")
    expect(admin_page.locator("input[name=manager]")).to_have_value("sara@demo.beem")
    screenshot("error-keeps-input")
    admin_page.fill("input[name=phone]", "+966 51 234 5600")
    with admin_page.expect_navigation():
        admin_page.click("main form.card button[type=submit]")

    expect(admin_page.locator("h1")).to_have_text("Grace Hopper")
    expect(admin_page.locator(".messages")).to_contain_text("Grace Hopper was added")
    expect(admin_page.locator("dl.profile")).to_contain_text("Sara Al-Harbi")
    grace = Member.objects.get(display_name="Grace Hopper")
    assert (grace.phone, grace.manager.display_name) == ("+966512345600", "Sara Al-Harbi")
    screenshot("created")


def test_the_picker_in_arabic_keeps_numbers_left_to_right(admin_page, screenshot):
    admin_page.goto("/members/new/")
    to_arabic(admin_page)
    # A whole mobile number typed is the pick itself: no list to click through.
    admin_page.locator("input[name=manager]").fill("+966 51 234 5679")
    expect(admin_page.locator("input[name=manager]")).to_have_value("+966512345679")
    expect(admin_page.locator(".member-picker-chosen")).to_have_text("Omar Haddad")
    admin_page.locator("input[name=manager]").fill("Om")
    expect(admin_page.locator("[role=listbox]")).to_contain_text("اكتب 3 أحرف على الأقل")
    admin_page.locator("input[name=manager]").fill("+966 51 234")
    phone = admin_page.locator("[role=option] bdi[dir=ltr]", has_text="+966512345679")
    expect(phone).to_be_visible()
    assert phone.evaluate("e => getComputedStyle(e).direction") == "ltr"
    screenshot("picker-arabic")


def test_deleting_a_member_moves_their_resources_to_the_member_picked(admin_page, screenshot):
    admin_page.click("text=Sara Al-Harbi")
    admin_page.click("#member-delete")
    expect(admin_page.locator("main")).to_contain_text("Sara Al-Harbi owns 1 resource.")
    with admin_page.expect_navigation():
        admin_page.click("button.danger")
    expect(admin_page.locator(".errorlist")).to_contain_text("choose who receives it")
    screenshot("refused")
    pick(admin_page, "input[name=heir]", "Lina", "Lina Nasser")
    with admin_page.expect_navigation():
        admin_page.click("button.danger")

    expect(admin_page.locator(".messages")).to_contain_text(
        "Sara Al-Harbi was deleted; 1 resource now belongs to Lina Nasser."
    )
    assert Resource.objects.get(name="Sara's handbook").owner.display_name == "Lina Nasser"
    assert AuditEntry.objects.filter(action="member.deleted").count() == 1
    screenshot("deleted")


def test_a_synced_member_cannot_be_deleted_while_sync_is_active(admin_page, screenshot):
    demo = Organization.objects.get(slug="demo")
    sync_services.sync_activate(organization=demo, actor_label="test")
    Member.objects.filter(display_name="Omar Haddad").update(directory_managed=True)
    omar = Member.objects.get(display_name="Omar Haddad")

    admin_page.goto(f"/members/{omar.pk}/delete/")
    expect(admin_page.locator("#delete-refusal")).to_contain_text("synced from Entra ID")
    expect(admin_page.locator("button.danger")).to_have_count(0)
    screenshot("refused")
    to_arabic(admin_page)
    expect(admin_page.locator("#delete-refusal")).to_contain_text("متزامن من Entra ID")
    screenshot("refused-arabic")


def test_an_admin_creates_renames_and_moves_departments(admin_page, screenshot):
    admin_page.click("nav.suite >> text=Departments")
    admin_page.fill("#department-create input[name=name]", "Support")
    admin_page.select_option("#department-create select[name=parent]", label="Head Office")
    with admin_page.expect_navigation():
        admin_page.click("#department-create button[type=submit]")
    expect(admin_page.locator(".messages")).to_contain_text("Department Support was created.")
    row = admin_page.locator("table.departments tr", has_text="Support")
    screenshot("created")

    with admin_page.expect_navigation():
        row.locator("text=Rename or move").click()
    admin_page.fill("input[name=name]", "Customer Support")
    admin_page.select_option("select[name=parent]", label="Head Office › Engineering")
    with admin_page.expect_navigation():
        admin_page.click("main form.card button[type=submit]")

    support = Department.objects.get(name="Customer Support")
    assert support.parent.name == "Engineering"
    expect(admin_page.locator("table.departments")).to_contain_text("Customer Support")
    to_arabic(admin_page)
    expect(admin_page.locator("#department-create h2")).to_have_text("قسم جديد")
    screenshot("arabic")


def test_departments_the_sync_created_are_read_only_while_it_is_active(admin_page, screenshot):
    demo = Organization.objects.get(slug="demo")
    sync_services.sync_activate(organization=demo, actor_label="test")
    Department.objects.filter(name="Engineering").update(directory_managed=True)

    admin_page.click("nav.suite >> text=Departments")
    expect(admin_page.locator("#directory-departments-note")).to_be_visible()
    row = admin_page.locator("table.departments tr", has_text="Engineering")
    with admin_page.expect_navigation():
        row.locator("text=Rename or move").click()
    expect(admin_page.locator(".department-locked").first).to_contain_text("rename it in Entra ID")
    expect(admin_page.locator("input[name=name]")).to_be_disabled()
    expect(admin_page).to_have_url(re.compile(r"/departments/\d+/edit/$"))
    screenshot("locked")
