"""The branded error pages in a real browser, in English and Arabic, with screenshots:
404 (also what an organization administrator gets at /django-admin/), 500 and the login
lock-out (429)."""

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

HEADINGS = {
    "en": {404: "Page not found", 500: "Something went wrong", 429: "Beem Admin Suite"},
    "ar": {404: "الصفحة غير موجودة", 500: "حدث خطأ ما", 429: "حزمة إدارة Beem"},
}


@pytest.fixture(params=["en", "ar"])
def language(request, browser_page, live_server):
    browser_page.context.add_cookies(
        [
            {
                "name": django_settings.LANGUAGE_COOKIE_NAME,
                "value": request.param,
                "url": live_server.url,
            }
        ]
    )
    return request.param


def expect_page(page, language: str, status: int) -> None:
    expect(page.locator("html")).to_have_attribute("dir", "rtl" if language == "ar" else "ltr")
    expect(page.locator("h1")).to_have_text(HEADINGS[language][status])
    expect(page.locator("link[rel=icon]")).to_have_count(1)


def test_not_found_and_the_django_admin_for_an_organization_administrator(
    browser_page, language, demo_admin, login, screenshot
):
    login(*demo_admin)

    response = browser_page.goto("/members/no-such-page/")
    assert response.status == 404
    expect_page(browser_page, language, 404)
    # Buttons (and links drawn as buttons) never break their label over two lines.
    for selector in ("a.button", "button.secondary"):
        style = browser_page.locator(selector).first.evaluate("e => getComputedStyle(e).whiteSpace")
        assert style == "nowrap", selector
    screenshot(f"404-{language}")

    response = browser_page.goto("/django-admin/")
    assert response.status == 404
    expect_page(browser_page, language, 404)
    screenshot(f"django-admin-{language}")


@pytest.mark.urls("tests.test_error_pages")
def test_server_error(browser_page, language, transactional_db, screenshot):
    response = browser_page.goto("/boom/")

    assert response.status == 500
    expect_page(browser_page, language, 500)
    screenshot(f"500-{language}")


def test_login_lockout(browser_page, language, demo_admin, login, screenshot, settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 3

    for _ in range(3):
        login(demo_admin[0], "not-the-password")

    expect_page(browser_page, language, 429)
    expect(browser_page.locator("[role=alert] h2")).to_be_visible()
    screenshot(f"429-{language}")
