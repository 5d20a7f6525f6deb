"""Issue 18 in real Chromium: the live status flips badge, hint and body together without a
reload; the Status overview; a sync-log row links to the member it touched; the audit log and
the Reactivate page's recorded actions read as sentences. Screenshots in English and Arabic.

Entra ID is simulated with httpx from the test (another client than the admin's browser).
"""

import re

from playwright.sync_api import Page, expect

from members import services as member_services
from members.models import Member, Organization
from tests.browser import test_sync_e2e
from tests.browser.test_sync_e2e import GROUP_SCHEMA, POLL_MS, _save_and_activate

# The simulated Entra ID clients of the end-to-end test (a fixture).
entra_factory = test_sync_e2e.entra_factory

WAITING = "Waiting for Entra ID's Test Connection"


def _org() -> Organization:
    return Organization.objects.get(slug="demo")


def _arabic(page: Page) -> None:
    with page.expect_navigation():
        page.select_option("select[name=language]", "ar")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")


def _english(page: Page) -> None:
    with page.expect_navigation():
        page.select_option("select[name=language]", "en")
    expect(page.locator("html")).to_have_attribute("dir", "ltr")


def _no_reload_marker(page: Page) -> None:
    # A reload would drop this: the test proves the page changed in place.
    page.evaluate("window.__beemNoReload = true")


def _still_same_page(page: Page) -> None:
    assert page.evaluate("window.__beemNoReload === true"), "the page was reloaded"


def test_test_connection_flips_badge_hint_and_body_together_without_reload(
    admin_page, screenshot, entra_factory
):
    page = admin_page
    entra = entra_factory(_save_and_activate(page, screenshot))
    page.goto("/settings/directory-syncs/entra/")
    header = page.locator("[data-state-badge]")
    expect(header).to_have_text(WAITING)
    expect(page.locator("#sync-state")).to_have_text(WAITING)
    expect(page.locator("#status-hint")).to_contain_text("click Test Connection")
    expect(page.locator("#last-test-connection")).to_have_text("never")
    screenshot("status-waiting")
    _no_reload_marker(page)

    assert entra.obtain_token().status_code == 200
    assert entra.test_connection().status_code == 200

    expect(header).to_have_text("Connected", timeout=POLL_MS)
    expect(page.locator("#sync-state")).to_have_text("Connected")
    expect(page.locator("#status-hint")).to_have_count(0)
    expect(page.locator("#last-test-connection time")).to_have_count(1)
    expect(page.locator("#current-run-link")).to_be_visible()
    _still_same_page(page)
    # The live update uses the first render's date format: a reload shows the same text.
    live_text = page.inner_text("#last-test-connection")
    page.reload()
    expect(page.locator("#last-test-connection")).to_have_text(live_text)
    screenshot("status-connected")
    _arabic(page)
    expect(page.locator("[data-state-badge]")).to_have_text("متصلة")
    screenshot("status-connected-arabic")

    # Reactivate: the same header badge and the Test Connection card change together.
    _english(page)
    page.click("text=Stop sync")
    page.check("input[name=confirm]")
    with page.expect_navigation():
        page.click("#stop-confirm")
    sara = Member.objects.get(display_name="Sara Al-Harbi")
    member_services.member_update(member=sara, job_title="Team lead")
    member_services.audit_record(
        organization=_org(),
        action="resource.reassigned",
        actor_label="admin:admin@demo.beem",
        detail={"resource": "Sara's handbook", "from": "Sara Al-Harbi", "to": "Omar Haddad"},
    )
    page.goto("/settings/directory-syncs/entra/reactivate/")
    recorded = page.locator("#changed-audit")
    expect(recorded).to_contain_text(
        "admin@demo.beem gave Sara's handbook to Omar Haddad (previously Sara Al-Harbi)"
    )
    expect(recorded).not_to_contain_text("resource.reassigned")
    screenshot("reactivate-recorded-actions")
    _arabic(page)
    expect(page.locator("#changed-audit")).to_contain_text("أسند admin@demo.beem")
    screenshot("reactivate-recorded-actions-arabic")
    _english(page)
    page.check("input[name=confirm]")
    with page.expect_navigation():
        page.click("#reactivate-confirm")
    expect(page.locator("[data-state-badge]")).to_have_text(WAITING)
    expect(page.locator("#waiting-test")).to_be_visible()
    _no_reload_marker(page)
    assert entra.test_connection().status_code == 200
    expect(page.locator("#test-arrived")).to_be_visible(timeout=POLL_MS)
    expect(page.locator("[data-state-badge]")).to_have_text("Connected")
    expect(page.locator("#waiting-test")).to_have_count(0)
    expect(page.locator("#sync-state")).to_have_text("Connected")
    _still_same_page(page)
    screenshot("reactivated-connected")


def test_status_overview_and_a_sync_log_row_linking_to_its_member(
    admin_page, screenshot, entra_factory
):
    page = admin_page
    organization = _org()
    member_services.department_path_ensure(organization=organization, path=["Riyadh", "Sales"])
    member_services.department_path_ensure(organization=organization, path=["Jeddah", "Sales"])
    entra = entra_factory(_save_and_activate(page, screenshot))
    assert entra.obtain_token().status_code == 200
    assert entra.test_connection().status_code == 200
    sara = entra.create_user("sara@demo.beem", mobile="+966512345678", display_name="Sara Al-Harbi")
    grace = entra.create_user(
        "grace@demo.beem", mobile="+966501234567", display_name="Grace Hopper"
    )
    nora = entra.create_user("nora@demo.beem", mobile="+966501112233", department="Sales")
    refused = entra.create_user("ghost@demo.beem", mobile="12345")
    group = entra.request(
        "POST", "/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Platform Team"}
    )
    assert [r.status_code for r in (sara, grace, nora, refused, group)] == [
        201,
        201,
        201,
        400,
        201,
    ]

    page.goto("/settings/directory-syncs/entra/")
    expect(page.locator("#users-synced")).to_have_text("3", timeout=POLL_MS)
    expect(page.locator("#groups-synced")).to_have_text("1")
    expect(page.locator("#held-count")).to_have_text("1", timeout=POLL_MS)
    expect(page.locator("#review-cta")).to_contain_text("1 member is held until you decide")
    expect(page.locator("#last-refusals")).to_contain_text("ghost@demo.beem")
    expect(page.locator("#last-refusals")).to_contain_text("e.g. +966512345678")
    expect(page.locator("#progress-h")).to_have_text("Current cycle")
    screenshot("status-overview")
    _arabic(page)
    expect(page.locator("#directory-h")).not_to_have_text("Directory")
    screenshot("status-overview-arabic")
    _english(page)
    page.click("#review-cta a")
    expect(page).to_have_url(re.compile(r"/entra/review/$"))
    page.go_back()
    page.click("#directory-counts >> text=users synced")
    expect(page).to_have_url(re.compile(r"/members/$"))

    # The lists with dates: one format, in the page's language.
    page.goto("/settings/directory-syncs/")
    expect(page.locator("td time")).to_have_count(1)
    screenshot("directory-syncs")
    page.goto("/settings/directory-syncs/entra/runs/")
    expect(page.locator("#run-table td time").first).to_be_visible()
    screenshot("runs")
    _arabic(page)
    screenshot("runs-arabic")
    page.goto("/settings/directory-syncs/")
    screenshot("directory-syncs-arabic")
    _english(page)

    # The sync log: rows say what happened, linked to the member.
    page.goto("/settings/directory-syncs/entra/runs/")
    page.locator("#run-table tbody tr").first.locator("a").click()
    events = page.locator("#event-table")
    linked = events.locator("tr", has_text="sara@demo.beem").first
    expect(linked).to_contain_text("Linked to existing member Sara Al-Harbi", timeout=POLL_MS)
    expect(events.locator("tr", has_text="grace@demo.beem").first).to_contain_text(
        "Created member Grace Hopper"
    )
    refused_row = page.locator("#refused-table tbody tr").first
    expect(refused_row).to_contain_text("ghost@demo.beem")
    expect(refused_row).to_contain_text("e.g. +966512345678")
    request = page.locator('#request-table tr[data-status="400"]').first
    expect(request.locator("summary")).to_have_text("Show", use_inner_text=True)
    request.locator("summary").click()
    expect(request.locator("summary")).to_have_text("Hide", use_inner_text=True)
    expect(request.locator("pre.json").first).to_contain_text('"schemas": [')
    screenshot("run-detail")
    _arabic(page)
    expect(page.locator("#event-table")).to_contain_text("رُبط بالعضو الحالي")
    screenshot("run-detail-arabic")
    _english(page)
    with page.expect_navigation():
        page.locator("#event-table tr", has_text="sara@demo.beem").first.locator(
            "a[data-member-link]"
        ).click()
    expect(page).to_have_url(re.compile(r"/members/\d+/$"))
    expect(page.locator("h1")).to_contain_text("Sara Al-Harbi")

    # The audit log, in sentences, in both languages.
    page.goto("/settings/directory-syncs/entra/audit/")
    audit = page.locator("#audit-table")
    expect(audit).to_contain_text("admin@demo.beem activated sync with Entra ID")
    expect(audit).to_contain_text(
        "admin@demo.beem changed Default phone country from none to Saudi Arabia"
    )
    expect(audit).not_to_contain_text("sync.activated")
    screenshot("audit-log")
    _arabic(page)
    expect(page.locator("#audit-table")).to_contain_text("فعّل admin@demo.beem المزامنة")
    screenshot("audit-log-arabic")
