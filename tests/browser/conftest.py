"""Browser tests: Playwright (sync API) driving Debian's Chromium against pytest-django's
``live_server``.

Reusable fixtures (the Entra-sync pages' browser tests use them too):

- ``browser_page``: a fresh English browser context and page, ``base_url`` = the live server.
- ``screenshot(name)``: saves ``test-artifacts/<test name>--<name>.png`` (gitignored) and
  returns the path; a failing test gets a ``--FAILED`` screenshot automatically.
- ``demo_admin``: the demo organization and admin created by ``manage.py seed_demo``;
  ``(username, password)``.
- ``login(username, password)``: logs in through the real login form.
- ``admin_page``: ``browser_page`` already logged in as the demo admin, on the members list.

Tests here are marked ``browser`` automatically and skip only when Chromium is missing (under
CI, ``BEEM_REQUIRE_SERVICES=1`` turns that skip into a failure).
"""

import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from members.management.commands.seed_demo import DEMO_PASSWORD

# Playwright's sync API runs an asyncio event loop in the test thread; Django would then refuse
# ORM calls made by the test itself (fixtures, assertions) as "async unsafe". The test thread
# and the live server's thread never share a connection, so the check is a false alarm here.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path(os.environ.get("BEEM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DEMO_USERNAME = "admin@demo.beem"
# Generous: CI machines are small and the first request of a live server compiles templates.
TIMEOUT_MS = 60_000


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.browser_call_failed = report.failed


@pytest.fixture(scope="session")
def playwright_driver():
    if not CHROMIUM.exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (Debian package 'chromium'; `make chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def chromium(playwright_driver):
    browser = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


def _artifact_path(request: pytest.FixtureRequest, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    test = re.sub(r"[^\w.-]+", "_", request.node.name)
    return ARTIFACTS / f"{test}--{name}.png"


@pytest.fixture
def browser_page(chromium, live_server, request):
    context = chromium.new_context(
        base_url=live_server.url,
        locale="en-US",
        viewport={"width": 1280, "height": 860},
    )
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    yield page
    if getattr(request.node, "browser_call_failed", False):
        try:
            page.screenshot(path=str(_artifact_path(request, "FAILED")), full_page=True)
        except Exception:  # a failed screenshot must not hide the real failure
            pass
    context.close()


@pytest.fixture
def screenshot(browser_page, request) -> Callable[[str], Path]:
    def take(name: str) -> Path:
        path = _artifact_path(request, name)
        browser_page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def demo_admin(transactional_db) -> tuple[str, str]:
    call_command("seed_demo", username=DEMO_USERNAME, password=DEMO_PASSWORD, stdout=io.StringIO())
    return DEMO_USERNAME, DEMO_PASSWORD


@pytest.fixture
def login(browser_page) -> Callable[[str, str], None]:
    def log_in(username: str, password: str) -> None:
        browser_page.goto("/login/")
        browser_page.fill("input[name=username]", username)
        browser_page.fill("input[name=password]", password)
        with browser_page.expect_navigation():
            browser_page.click("form button[type=submit]")

    return log_in


@pytest.fixture
def admin_page(browser_page, demo_admin, login) -> Iterator:
    login(*demo_admin)
    browser_page.wait_for_url(re.compile(r"/members/$"))
    yield browser_page
