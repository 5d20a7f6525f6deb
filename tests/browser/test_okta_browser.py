"""Sync with Okta in real Chromium (issue 17): Directory Syncs lists both directories, the
confirmed switch, Save and Activate, Set up in Okta (base URL, userName, provisioning actions,
HTTP Header and the API token shown once, copy buttons, mappings, steps), Okta's connection
test arriving on the Status page, English and Arabic screenshots.

Okta is simulated with httpx: ``Authorization: Bearer <API token>`` ("HTTP Header" mode) and
its connection test ``GET /Users?startIndex=1&count=2``.
"""

import httpx
from playwright.sync_api import Page, expect

from directory_sync.models import ProvisioningRun, SyncSettings
from members.models import Member, Organization
from tests.browser.test_sync_e2e import USER_SCHEMA, _open_sync
from tests.browser.test_sync_status_browser import _arabic, _english

POLL_MS = 15_000


def _org() -> Organization:
    return Organization.objects.get(slug="demo")


def _switch_to_okta(page: Page, screenshot) -> None:
    _open_sync(page)
    expect(page.locator("#directory-okta")).to_contain_text("Not in use")
    screenshot("directory-syncs")
    page.click("#directory-okta [data-switch=okta]")
    expect(page.locator("#switch-consequences")).to_contain_text("members already synced")
    screenshot("switch-confirm")
    _arabic(page)
    screenshot("switch-confirm-arabic")
    _english(page)
    # The browser will not submit without the confirmation.
    expect(page.locator("input[name=confirm]")).to_have_attribute("required", "")
    assert not SyncSettings.objects.filter(organization=_org(), directory="okta").exists()
    page.check("input[name=confirm]")
    with page.expect_navigation():
        page.click("#switch-confirm")
    expect(page.locator("h1")).to_contain_text("Sync with Okta")


def test_admin_switches_to_okta_and_okta_connects_with_the_token_shown(admin_page, screenshot):
    page = admin_page
    _switch_to_okta(page, screenshot)
    page.check("input[name=identify_by][value=email]")
    page.check("input[name=department_format][value=plain_name]")
    with page.expect_navigation():
        page.click("button#save")
    expect(page.locator("h1")).to_contain_text("Set up in Okta")
    base_url = page.inner_text("#okta-base-url").strip()
    token = page.inner_text("#okta-token").strip()
    assert base_url.endswith(f"/scim/v2/{_org().pk}") and token.startswith("beem_okta_")
    expect(page.locator("#okta-unique-id")).to_have_text("userName")
    expect(page.locator("#okta-auth-mode")).to_have_text("HTTP Header")
    for action in ("Import New Users and Profile Updates", "Push New Users", "Push Groups"):
        expect(page.locator("#okta-actions")).to_contain_text(action)
    expect(page.locator("#okta-user-mapping")).to_contain_text('phoneNumbers[type eq "mobile"]')
    expect(page.locator("#okta-steps li")).to_have_count(8)
    expect(page.locator("#go-to-okta")).to_have_attribute("href", "https://login.okta.com/")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("[data-copy=okta-token]")
    assert page.evaluate("navigator.clipboard.readText()") == token
    screenshot("set-up-in-okta")

    # Reloading never shows the token again.
    page.reload()
    expect(page.locator("#token-hidden")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text(token)
    _arabic(page)
    expect(page.locator("h1")).to_contain_text("الإعداد في Okta")
    screenshot("set-up-in-okta-arabic")
    _english(page)

    # Okta's connection test and first provisioning with the token, as Okta sends them.
    page.click("nav.tabs >> text=Status")
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as okta:
        test = okta.get(base_url + "/Users", params={"startIndex": 1, "count": 2})
        assert test.status_code == 200, test.text
        expect(page.locator("#last-test-connection")).not_to_have_text("never", timeout=POLL_MS)
        created = okta.post(
            base_url + "/Users",
            json={
                "schemas": [USER_SCHEMA],
                "userName": "ada@okta.example.com",
                "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"primary": True, "value": "ada@okta.example.com", "type": "work"}],
                "password": "t1meMachine",
                "locale": "en-US",
                "groups": [],
                "active": True,
            },
        )
        assert created.status_code == 201, created.text
        wrong = okta.get(base_url.rsplit("/", 1)[0] + "/999999/Users")
        assert wrong.status_code == 401
    assert ProvisioningRun.objects.filter(organization=_org()).exists()
    expect(page.locator("h1")).to_contain_text("Sync with Okta")
    screenshot("status")
    _arabic(page)
    expect(page.locator("h1")).to_contain_text("المزامنة مع Okta")
    screenshot("status-arabic")
    _english(page)
    assert Member.objects.filter(organization=_org(), email="ada@okta.example.com").exists()

    _open_sync(page)
    expect(page.locator("#directory-entra_id")).to_contain_text("Not in use")
    screenshot("directory-syncs-okta")
    _arabic(page)
    screenshot("directory-syncs-okta-arabic")
