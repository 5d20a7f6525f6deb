"""Sync with Entra ID end to end: an administrator in real Chromium, Entra ID simulated with
httpx against the live server (real /o/token/ and SCIM requests).

Fixtures come from tests/browser/conftest.py (live server, demo admin, screenshots).
"""

import re
import uuid
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Page, expect

from directory_sync.models import ChangeEvent, ReviewItem, SyncSettings
from members import services as member_services
from members.models import Department, Member, Organization

SCIM = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
POLL_MS = 15_000


@dataclass
class Credentials:
    tenant_url: str
    token_endpoint: str
    client_id: str
    client_secret: str


class Entra:
    """What Entra ID's provisioning service does, over HTTP, with the admin's credentials."""

    def __init__(self, credentials: Credentials):
        self.credentials = credentials
        self.http = httpx.Client(timeout=30)
        self.token = ""

    def obtain_token(self) -> httpx.Response:
        response = self.http.post(
            self.credentials.token_endpoint,
            data={"grant_type": "client_credentials"},
            auth=(self.credentials.client_id, self.credentials.client_secret),
        )
        if response.status_code == 200:
            self.token = response.json()["access_token"]
        return response

    def request(self, method: str, path: str, json=None, params=None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        if json is not None:
            headers["Content-Type"] = SCIM
        return self.http.request(
            method, self.credentials.tenant_url + path, json=json, params=params, headers=headers
        )

    def test_connection(self) -> httpx.Response:
        """Test Connection (and the start of every cycle): look up a random userName."""
        return self.request("GET", "/Users", params={"filter": f'userName eq "{uuid.uuid4()}"'})

    def create_user(self, user_name: str, *, mobile: str, department: str = "", **extra):
        body = {
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": str(uuid.uuid4()),
            "userName": user_name,
            # Entra sends booleans as strings unless the aadOptscim062020 flag is set.
            "active": "True",
            "displayName": extra.get("display_name", user_name.split("@")[0].title()),
            "name": {"givenName": user_name.split("@")[0].title(), "familyName": "Test"},
            "emails": [{"primary": True, "type": "work", "value": user_name}],
            "phoneNumbers": [{"type": "mobile", "value": mobile}],
            "meta": {"resourceType": "User"},
            "roles": [],
        }
        if department:
            body[ENTERPRISE] = {"department": department}
        return self.request("POST", "/Users", json=body)

    def close(self) -> None:
        self.http.close()


def _open_sync(page: Page) -> None:
    page.click("nav.suite >> text=Directory Syncs")
    expect(page.locator("h1")).to_have_text("Directory Syncs")


def _save_and_activate(page: Page, screenshot) -> Credentials:
    """Set up in Beem through the form, Save and Activate, and read the credentials."""
    page.goto("/settings/directory-syncs/entra/setup/")
    page.check("input[name=identify_by][value=phone]")
    page.check("input[name=department_format][value=plain_name]")
    page.check("input[name=duplicate_department_policy][value=hold_for_admin]")
    page.select_option("select[name=default_phone_country]", "SA")
    with page.expect_navigation():
        page.click("button#save")
    expect(page).to_have_url(re.compile(r"/entra/connect/$"))
    return Credentials(
        tenant_url=page.inner_text("#tenant-url").strip(),
        token_endpoint=page.inner_text("#token-endpoint").strip(),
        client_id=page.inner_text("#client-id").strip(),
        client_secret=page.inner_text("#client-secret").strip(),
    )


def _org() -> Organization:
    return Organization.objects.get(slug="demo")


@pytest.fixture
def entra_factory():
    clients = []

    def make(credentials: Credentials) -> Entra:
        client = Entra(credentials)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_admin_sets_up_sync_and_entra_connects_with_the_credentials_shown(
    admin_page, screenshot, entra_factory, live_server
):
    page = admin_page
    _open_sync(page)
    expect(page.locator("[data-sync-state]")).to_have_text("Not configured")
    screenshot("directory-syncs")
    page.click("text=Set up")

    # The live counts tell the admin how existing members were created (demo: 2 phones, 2 emails).
    expect(page.locator("[data-count-for=phone]")).to_have_text(
        "2 of 3 existing members have a mobile number"
    )
    page.check("input[name=identify_by][value=phone]")
    expect(page.locator("#identify-mismatch")).to_contain_text(
        "1 existing member has only an email address and cannot be matched by phone."
    )
    # The delimiter only matters for complete structure strings.
    page.check("input[name=department_format][value=plain_name]")
    expect(page.locator("#field-department_delimiter")).to_be_hidden()
    page.check("input[name=department_format][value=structure_string]")
    expect(page.locator("#field-department_delimiter")).to_be_visible()
    page.fill("input[name=department_delimiter]", "a")
    with page.expect_navigation():
        page.click("button#save")
    expect(page.locator("#field-department_delimiter .errorlist")).to_contain_text(
        "Use a separator that never appears inside a department name"
    )
    assert not SyncSettings.objects.filter(status="active").exists()
    screenshot("setup-in-beem-error")
    page.fill("input[name=department_delimiter]", "/")
    screenshot("setup-in-beem")

    credentials = _save_and_activate(page, screenshot)
    assert credentials.tenant_url == f"{live_server.url}/scim/v2/{_org().pk}"
    assert credentials.token_endpoint == f"{live_server.url}/o/token/"
    assert credentials.client_secret
    expect(page.locator("#go-to-entra")).to_have_attribute("href", "https://entra.microsoft.com/")
    expect(page.locator("#go-to-entra")).to_have_attribute("target", "_blank")
    expect(page.locator("#user-mapping")).to_contain_text("userPrincipalName")
    expect(page.locator("#scoping-tip")).to_contain_text("IS NOT NULL")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("button[data-copy=client-id]")
    expect(page.locator("button[data-copy=client-id]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == credentials.client_id
    screenshot("setup-in-entra-secret-once")

    # Shown once: a reload no longer has it.
    page.reload()
    expect(page.locator("#secret-hidden")).to_be_visible()
    assert credentials.client_secret not in page.content()
    screenshot("setup-in-entra")

    # The status page follows Entra without a reload.
    page.click("nav.tabs >> text=Status")
    expect(page.locator("#sync-state")).to_have_text("Waiting for Entra ID's Test Connection")
    entra = entra_factory(credentials)
    token = entra.obtain_token()
    assert token.status_code == 200, token.text
    assert token.json()["token_type"] == "Bearer"
    probe = entra.test_connection()
    assert probe.status_code == 200, probe.text
    assert probe.json()["totalResults"] == 0
    expect(page.locator("#sync-state")).to_have_text("Connected", timeout=POLL_MS)
    expect(page.locator("#last-test-connection")).not_to_have_text("never")
    # The probe opened the first run; the progress block follows it live.
    expect(page.locator("#current-run-link")).to_be_visible()
    expect(page.locator("#run-pending")).to_have_text("0")
    screenshot("status-connected")

    # The same pages in Arabic, right to left.
    page.click("nav.tabs >> text=Set up in Beem")
    with page.expect_navigation():
        page.select_option("select[name=language]", "ar")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.locator("h1")).to_contain_text("المزامنة مع Entra ID")
    expect(page.locator("button#save")).to_have_text("حفظ")
    screenshot("setup-in-beem-arabic")
    page.click("nav.tabs >> text=الحالة")
    expect(page.locator("#sync-state")).to_have_text("متصلة")
    screenshot("status-arabic")


def _activate_with_credentials(page: Page, screenshot) -> Credentials:
    page.goto("/settings/directory-syncs/")
    return _save_and_activate(page, screenshot)


def test_entra_cycle_shows_the_run_new_members_review_item_and_failure_reason(
    admin_page, screenshot, entra_factory
):
    page = admin_page
    organization = _org()
    # Two departments named "Sales": a plain "Sales" from Entra must be held for the admin.
    riyadh = member_services.department_path_ensure(
        organization=organization, path=["Riyadh", "Sales"]
    )
    jeddah = member_services.department_path_ensure(
        organization=organization, path=["Jeddah", "Sales"]
    )
    entra = entra_factory(_activate_with_credentials(page, screenshot))
    assert entra.obtain_token().status_code == 200
    assert entra.test_connection().status_code == 200

    nora = entra.create_user("nora@demo.beem", mobile="+966 50 111 2233", department="Sales")
    fahad = entra.create_user("fahad@demo.beem", mobile="0501112244", department="Engineering")
    bad = entra.create_user("ghost@demo.beem", mobile="12345")
    # A second directory user with Nora's mobile: accepted by SCIM, refused when applied.
    twin = entra.create_user("nora.twin@demo.beem", mobile="+966501112233")
    group = entra.request(
        "POST", "/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "Platform Team"}
    )
    assert nora.status_code == 201, nora.text
    assert fahad.status_code == 201, fahad.text
    assert bad.status_code == 400, bad.text
    assert bad.json()["scimType"] == "invalidValue"
    assert twin.status_code == 201, twin.text
    assert group.status_code == 201, group.text
    add = entra.request(
        "PATCH",
        f"/Groups/{group.json()['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {
                    "op": "Add",
                    "path": "members",
                    "value": [{"value": nora.json()["id"]}, {"value": fahad.json()["id"]}],
                }
            ],
        },
    )
    assert add.status_code == 204, add.text

    # The run: every change with its outcome, and the refused request with its reason.
    page.click("nav.tabs >> text=Runs")
    run_link = page.locator("#run-table tbody tr").first.locator("a")
    run_link.click()
    events = page.locator("#event-table")
    expect(events).to_contain_text("fahad@demo.beem")
    expect(events.locator("tr", has_text="fahad@demo.beem").first).to_contain_text("Member created")
    expect(events.locator("tr", has_text="nora@demo.beem").first).to_contain_text(
        "held for an administrator"
    )
    expect(events).to_contain_text("Platform Team")
    failed = events.locator("tr[data-event-status=failed]")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("nora.twin@demo.beem")
    expect(failed).to_contain_text("already belongs to directory user nora@demo.beem")
    requests = page.locator("#request-table")
    refused = requests.locator('tr[data-status="400"]')
    expect(refused).to_have_count(1)
    refused.locator("summary").click()
    expect(refused).to_contain_text("invalidValue")
    expect(refused).to_contain_text("country code")
    assert "ghost@demo.beem" not in refused.inner_text(), "personal data must be masked"
    screenshot("run-detail")
    page.select_option("select[name=status]", "failed")
    with page.expect_navigation():
        page.click("#event-filters button[type=submit]")
    expect(page.locator("#event-table tbody tr")).to_have_count(1)
    page.select_option("select[name=status]", "")
    page.fill("#event-filters input[name=q]", "held for")
    with page.expect_navigation():
        page.click("#event-filters button[type=submit]")
    expect(page.locator("#event-table tbody tr")).to_have_count(1)
    expect(page.locator("#event-table tbody tr")).to_contain_text("nora@demo.beem")

    # The new members, in the members pages.
    page.click("nav.suite >> text=Members")
    expect(page.locator("table.members")).to_contain_text("Fahad")
    expect(page.locator("table.members")).to_contain_text("Nora")
    assert Member.objects.get(phone="+966501112244").directory_managed

    # The review item: pick the department for Nora, and change it later.
    page.goto("/settings/directory-syncs/entra/review/")
    hold = page.locator("#department-holds tbody tr", has_text="Sales")
    expect(hold).to_contain_text("Riyadh › Sales")
    screenshot("review")
    hold.locator("select").select_option(label="Jeddah › Sales")
    with page.expect_navigation():
        hold.locator("button").click()
    expect(page.locator(".messages")).to_contain_text("will be placed in Jeddah › Sales")
    nora_member = Member.objects.get(email="nora@demo.beem")
    assert [link.department_id for link in nora_member.department_links.all()] == [jeddah.pk]
    hold = page.locator("#department-holds tbody tr", has_text="Sales")
    hold.locator("select").select_option(label="Riyadh › Sales")
    with page.expect_navigation():
        hold.locator("button").click()
    assert [link.department_id for link in nora_member.department_links.all()] == [riyadh.pk]
    assert ReviewItem.objects.get(kind="duplicate_department").chosen_department == riyadh
    assert not ChangeEvent.objects.filter(status="pending").exists()

    # The audit log has the admin's decisions.
    page.click("nav.tabs >> text=Audit log")
    # Sentences, not raw action keys (issue 18).
    expect(page.locator("#audit-table")).to_contain_text(
        "admin@demo.beem placed members with department “Sales” in Riyadh"
    )
    expect(page.locator("#audit-table")).to_contain_text(
        "admin@demo.beem activated sync with Entra ID"
    )
    screenshot("audit-log")


def test_stopping_sync_makes_scim_answer_401_and_reactivation_waits_for_test_connection(
    admin_page, screenshot, entra_factory
):
    page = admin_page
    entra = entra_factory(_activate_with_credentials(page, screenshot))
    assert entra.obtain_token().status_code == 200
    assert entra.test_connection().status_code == 200

    page.goto("/settings/directory-syncs/entra/")
    page.click("text=Stop sync")
    expect(page.locator("#stop-warning")).to_contain_text(
        "SystemForCrossDomainIdentityManagementCredentialValidationFailure"
    )
    screenshot("stop")
    page.check("input[name=confirm]")
    with page.expect_navigation():
        page.click("#stop-confirm")
    expect(page.locator("#sync-state")).to_have_text("Stopped")

    refused = entra.request("GET", "/Users")
    assert refused.status_code == 401
    assert entra.test_connection().status_code == 401

    # A change in Beem while stopped is listed on the Reactivate page.
    Member.objects.filter(display_name="Sara Al-Harbi").update(directory_managed=True)
    member_services.member_update(
        member=Member.objects.get(display_name="Sara Al-Harbi"), job_title="Team lead"
    )
    page.reload()
    page.click("text=Reactivate sync")
    expect(page.locator("#reactivate-checklist")).to_contain_text("Test Connection")
    expect(page.locator("#changed-members")).to_contain_text("Sara Al-Harbi")
    screenshot("reactivate-checklist")
    page.check("input[name=confirm]")
    with page.expect_navigation():
        page.click("#reactivate-confirm")
    expect(page.locator("#waiting-test")).to_be_visible()
    expect(page.locator("#test-arrived")).to_be_hidden()

    # Entra's Test Connection arrives; the page shows it without a reload.
    assert entra.test_connection().status_code == 200
    expect(page.locator("#test-arrived")).to_be_visible(timeout=POLL_MS)
    expect(page.locator("#waiting-test")).to_be_hidden()
    expect(page.locator("#sync-state")).to_have_text("Connected")
    screenshot("reactivated-connected")
    assert entra.request("GET", "/Users").status_code == 200
    assert Department.objects.exists()
