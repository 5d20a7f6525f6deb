"""The demo admin browses the suite in a real browser (Chromium via Playwright)."""

import re

from playwright.sync_api import expect


def member_names(page) -> list[str]:
    return page.locator("table.members tbody td:first-child a").all_inner_texts()


def test_anonymous_visitor_is_sent_to_the_login_form(browser_page, demo_admin, screenshot):
    browser_page.goto("/members/")
    expect(browser_page).to_have_url(re.compile(r"/login/\?next=/members/$"))
    expect(browser_page.locator("input[name=username]")).to_be_visible()
    screenshot("login")


def test_wrong_password_is_refused_on_the_login_form(browser_page, demo_admin, login, screenshot):
    login(demo_admin[0], "not-the-password")
    expect(browser_page).to_have_url(re.compile(r"/login/$"))
    expect(browser_page.locator("[role=alert]")).to_contain_text(
        "Please enter the correct email and password"
    )
    screenshot("refused")


def test_demo_admin_logs_in_and_browses_members(admin_page, screenshot):
    expect(admin_page.locator("h1")).to_have_text("Members")
    assert member_names(admin_page) == ["Lina Nasser", "Omar Haddad", "Sara Al-Harbi"]
    expect(admin_page.locator("nav.suite")).to_contain_text("Beem Demo")
    screenshot("members")


def test_search_narrows_the_members_list(admin_page, screenshot):
    admin_page.fill("input[name=q]", "+966 51 234 5679")
    with admin_page.expect_navigation():
        admin_page.click("form[role=search] button[type=submit]")
    assert member_names(admin_page) == ["Omar Haddad"]
    expect(admin_page.locator("input[name=q]")).to_have_value("+966 51 234 5679")
    screenshot("search")


def test_member_page_shows_profile_departments_and_resources(admin_page, screenshot):
    admin_page.click("text=Sara Al-Harbi")
    expect(admin_page.locator("h1")).to_have_text("Sara Al-Harbi")
    expect(admin_page.locator("dl.profile")).to_contain_text("+966512345678")
    expect(admin_page.locator("ul.departments")).to_have_text("Head Office › Engineering")
    expect(admin_page.locator("body")).to_contain_text("Sara's handbook")
    screenshot("member")


def test_switching_to_arabic_lays_the_page_out_right_to_left(admin_page, screenshot):
    admin_page.click("text=Omar Haddad")
    expect(admin_page.locator("h1")).to_have_text("Omar Haddad")
    with admin_page.expect_navigation():
        admin_page.select_option("select[name=language]", "ar")
    html = admin_page.locator("html")
    expect(html).to_have_attribute("dir", "rtl")
    expect(html).to_have_attribute("lang", "ar")
    # Still on Omar's page, now in Arabic.
    expect(admin_page.locator("h1")).to_have_text("Omar Haddad")
    expect(admin_page.locator("nav.suite")).to_contain_text("الأعضاء")
    expect(admin_page.locator("body")).to_contain_text("الملف الشخصي")
    assert admin_page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    # The navigation sits on the right of the content in a right-to-left layout.
    nav = admin_page.locator("nav.suite").bounding_box()
    main = admin_page.locator("main").bounding_box()
    assert nav["x"] > main["x"]
    screenshot("arabic")


def test_unassigned_resource_is_reassigned_from_its_page(admin_page, screenshot):
    from members import services
    from members.models import Organization, Resource

    demo = Organization.objects.get(slug="demo")
    omar = demo.members.get(display_name="Omar Haddad")
    services.member_delete(member=omar)
    admin_page.click("nav.suite >> text=Unassigned resources")
    row = admin_page.locator("table.resources tbody tr", has_text="Omar's handbook")
    expect(row).to_contain_text("Omar Haddad")
    screenshot("unassigned")
    row.locator("input[name=owner]").fill("lina@demo.beem")
    with admin_page.expect_navigation():
        row.locator("button[type=submit]").click()
    expect(admin_page.locator(".messages")).to_contain_text(
        "Omar's handbook now belongs to Lina Nasser."
    )
    expect(admin_page.locator("table.resources")).to_contain_text("No unassigned resources.")
    assert Resource.objects.get(name="Omar's handbook").owner.display_name == "Lina Nasser"
    screenshot("reassigned")
