"""Issue 18 in real Chromium: Link and Merge in Review and a change of "Identify existing users
by" while sync is active confirm first, saying what will happen; department choices name the
full path; a +966… number reads left to right inside Arabic text. Screenshots in English and
Arabic."""

import re

from playwright.sync_api import Page, expect

from directory_sync.engine import events_drain
from directory_sync.models import ReviewItem, SyncSettings
from members import services as member_services
from members.models import Member, Organization, Resource
from tests.directory_sync.engine_factories import sync_settings_make, user_create

REVIEW = "/settings/directory-syncs/entra/review/"
SETUP = "/settings/directory-syncs/entra/setup/"


def _org() -> Organization:
    return Organization.objects.get(slug="demo")


def _language(page: Page, code: str) -> None:
    with page.expect_navigation():
        page.select_option("select[name=language]", code)
    expect(page.locator("html")).to_have_attribute("dir", "rtl" if code == "ar" else "ltr")


def _reads_left_to_right(page: Page, selector: str) -> bool:
    """The first character of the element's text is drawn left of its last one."""
    return page.evaluate(
        """(selector) => {
            const node = document.querySelector(selector).firstChild;
            const range = document.createRange();
            range.setStart(node, 0); range.setEnd(node, 1);
            const first = range.getBoundingClientRect().left;
            range.setStart(node, node.length - 1); range.setEnd(node, node.length);
            return first < range.getBoundingClientRect().left;
        }""",
        selector,
    )


def _duplicates(organization: Organization) -> tuple[ReviewItem, ReviewItem]:
    """Entra ID identifies by phone; Lina and Nora were created in Beem by email: each
    directory user creates a second member, flagged as a possible duplicate."""
    sync_settings_make(
        organization,
        identify_by=SyncSettings.IdentifyBy.PHONE,
        duplicate_department_policy=SyncSettings.DuplicateDepartmentPolicy.HOLD_FOR_ADMIN,
    )
    nora = member_services.member_create(
        organization=organization, display_name="Nora (Beem)", email="nora@demo.beem"
    )
    member_services.resource_create(
        organization=organization, kind="document", name="Nora's budget", owner=nora
    )
    for user_name, name, phone in (
        ("lina@demo.beem", "Lina Nasser", "+966512340001"),
        ("nora@demo.beem", "Nora Saleh", "+966512340002"),
    ):
        user_create(
            organization, user_name=user_name, display_name=name, email=user_name, phone=phone
        )
    events_drain(organization_id=organization.pk)
    created = Member.objects.get(organization=organization, phone="+966512340001")
    member_services.resource_create(
        organization=organization, kind="channel", name="Lina's channel", owner=created
    )
    items = ReviewItem.objects.filter(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE).order_by("id")
    assert items.count() == 2
    return items[0], items[1]


def test_link_and_merge_confirm_first_and_say_what_happened(admin_page, screenshot):
    page = admin_page
    organization = _org()
    lina_item, nora_item = _duplicates(organization)
    members_before = Member.objects.filter(organization=organization).count()

    page.goto(REVIEW)
    expect(page.locator(f"#review-{lina_item.pk}")).to_contain_text("Lina Nasser")
    screenshot("review")

    # Link: a confirmation page first; Cancel changes nothing.
    with page.expect_navigation():
        page.click(f"#review-{lina_item.pk} button[value=link]")
    confirm = page.locator("#duplicate-confirm")
    expect(confirm.locator("h2")).to_have_text("Link the directory user to Lina Nasser?")
    expect(confirm.locator("#confirm-removed")).to_contain_text(
        "The member created from Entra ID, Lina Nasser, is deleted."
    )
    expect(confirm.locator("#confirm-removed bdi[dir=ltr]")).to_have_text("+966512340001")
    expect(confirm.locator("#confirm-resources")).to_have_text(
        "Lina Nasser's 1 resource moves to Lina Nasser: Lina's channel"
    )
    screenshot("link-confirm")
    with page.expect_navigation():
        page.click("#duplicate-confirm a.button.secondary")
    expect(page).to_have_url(re.compile(r"/entra/review/"))
    assert Member.objects.filter(organization=organization).count() == members_before

    with page.expect_navigation():
        page.click(f"#review-{lina_item.pk} button[value=link]")
    with page.expect_navigation():
        page.click("#confirm-button")
    expect(page.locator(".messages")).to_contain_text(
        "Linked: Lina Nasser is now managed by Entra ID. The duplicate member Lina Nasser was "
        "deleted and its 1 resource moved to Lina Nasser."
    )
    screenshot("linked")
    lina = Member.objects.get(organization=organization, email="lina@demo.beem")
    assert (lina.phone, lina.directory_managed) == ("+966512340001", True)
    assert sorted(Resource.objects.filter(owner=lina).values_list("name", flat=True)) == [
        "Lina's channel",
        "Lina's handbook",
    ]

    # Merge, in Arabic: the page says who is deleted, the number reads left to right.
    _language(page, "ar")
    with page.expect_navigation():
        page.click(f"#review-{nora_item.pk} button[value=merge]")
    confirm = page.locator("#duplicate-confirm")
    expect(confirm.locator("h2")).to_have_text("دمج Nora (Beem) في Nora Saleh؟")
    expect(confirm.locator("#confirm-removed")).to_contain_text("يُحذف العضو الحالي Nora (Beem).")
    expect(confirm.locator("#confirm-resources")).to_contain_text("Nora's budget")
    screenshot("merge-confirm-ar")
    with page.expect_navigation():
        page.click("#confirm-button")
    expect(page.locator(".messages")).to_contain_text(
        "تم الدمج: دُمج Nora (Beem) في Nora Saleh وحُذف؛ انتقل مورد واحد (1) إلى Nora Saleh."
    )
    screenshot("merged-ar")
    assert not Member.objects.filter(display_name="Nora (Beem)").exists()
    assert Resource.objects.get(name="Nora's budget").owner.display_name == "Nora Saleh"


def test_department_choices_name_the_full_path(admin_page, screenshot):
    page = admin_page
    organization = _org()
    sync_settings_make(
        organization,
        duplicate_department_policy=SyncSettings.DuplicateDepartmentPolicy.HOLD_FOR_ADMIN,
    )
    member_services.department_path_ensure(
        organization=organization, path=["Riyadh Office", "Engineering"]
    )
    user_create(
        organization,
        user_name="dana@demo.beem",
        display_name="Dana Fahad",
        email="dana@demo.beem",
        phone="+966512340003",
        department="Engineering",
    )
    events_drain(organization_id=organization.pk)

    page.goto(REVIEW)
    options = page.locator("#department-holds select option").all_inner_texts()
    assert sorted(options) == ["Head Office › Engineering", "Riyadh Office › Engineering"]
    page.select_option("#department-holds select", label="Riyadh Office › Engineering")
    with page.expect_navigation():
        page.click("#department-holds button[type=submit]")
    expect(page.locator(".messages")).to_contain_text(
        "Dana Fahad will be placed in Riyadh Office › Engineering."
    )
    screenshot("department-chosen")
    _language(page, "ar")
    screenshot("department-chosen-ar")


def test_changing_identify_by_while_active_confirms_what_changes(admin_page, screenshot):
    page = admin_page
    page.goto(SETUP)
    page.check("input[name=identify_by][value=phone]")
    with page.expect_navigation():
        page.click("button#save")
    expect(page).to_have_url(re.compile(r"/entra/connect/$"))

    # English: the confirmation, then Cancel.
    page.goto(SETUP)
    page.check("input[name=identify_by][value=email]")
    with page.expect_navigation():
        page.click("button#save")
    box = page.locator("#identify-confirm")
    expect(box.locator("h3")).to_have_text(
        "Change identification from mobile number to email address?"
    )
    expect(box).to_contain_text(
        "1 existing member has no email address: a directory user for them creates a new "
        "member, flagged under Review as a possible duplicate."
    )
    expect(page.locator("button#save")).to_have_text("Confirm and save")
    screenshot("identify-confirm")
    assert SyncSettings.objects.get(organization=_org()).identify_by == "phone"

    # Arabic: confirm it.
    _language(page, "ar")
    page.goto(SETUP)
    page.check("input[name=identify_by][value=email]")
    with page.expect_navigation():
        page.click("button#save")
    box = page.locator("#identify-confirm")
    expect(box.locator("h3")).to_have_text("تغيير التعرّف من رقم الجوال إلى عنوان بريد إلكتروني؟")
    screenshot("identify-confirm-ar")
    box.locator("input[name=confirm_identify_by]").check()
    with page.expect_navigation():
        page.click("button#save")
    expect(page.locator(".messages")).to_contain_text(
        "يُتعرَّف الآن على المستخدمين الحاليين حسب عنوان بريد إلكتروني بدلاً من رقم الجوال"
    )
    screenshot("identify-changed-ar")
    assert SyncSettings.objects.get(organization=_org()).identify_by == "email"


def test_a_phone_number_reads_left_to_right_in_arabic(admin_page, screenshot):
    page = admin_page
    sara = Member.objects.get(display_name="Sara Al-Harbi")
    member_services.member_update(member=sara, country="SA")

    page.click("text=Sara Al-Harbi")
    expect(page.locator("dl.profile")).to_contain_text("Saudi Arabia")
    screenshot("member-en")
    _language(page, "ar")

    number = page.locator("dl.profile dd.phone bdi")
    expect(number).to_have_attribute("dir", "ltr")
    expect(number).to_have_text("+966512345678")
    assert number.evaluate("e => getComputedStyle(e).direction") == "ltr"
    assert _reads_left_to_right(page, "dl.profile dd.phone bdi")
    expect(page.locator("dl.profile")).to_contain_text("المملكة العربية السعودية")
    screenshot("member-ar")

    page.click("nav.suite >> text=الأعضاء")
    row = page.locator("table.members tbody tr", has_text="Sara Al-Harbi")
    expect(row.locator("td.phone bdi[dir=ltr]")).to_have_text("+966512345678")
    screenshot("members-ar")
