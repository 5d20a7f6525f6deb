"""Shared fixtures.

Services: tests marked ``postgres``/``redis``/``browser`` skip on a laptop without them; with
``BEEM_REQUIRE_SERVICES=1`` (set by ``.ci/run``) every skip is turned into a failure.
"""

import os

import pytest
from django.db import connection

from members import services as member_services

REQUIRE_SERVICES = os.environ.get("BEEM_REQUIRE_SERVICES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SERVICES and report.skipped:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI (BEEM_REQUIRE_SERVICES=1): {reason}"


@pytest.fixture(autouse=True)
def _celery_eager_unless_real_worker(request, settings):
    """Unit tests run Celery eagerly; tests marked ``redis`` talk to a real broker/worker."""
    from beem_admin.celery import app

    if request.node.get_closest_marker("redis"):
        yield
        return
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    settings.CELERY_TASK_ALWAYS_EAGER = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _no_login_lockout(settings):
    settings.AXES_ENABLED = False


@pytest.fixture(autouse=True)
def _no_token_rate_limit(settings):
    """Every test client comes from 127.0.0.1 and the cache outlives a test: the token
    endpoint's limits are tested where they are turned on (tests/directory_sync/test_token.py)."""
    settings.BEEM_TOKEN_RATE_LIMIT = 0
    settings.BEEM_TOKEN_RATE_LIMIT_PER_ADDRESS = 0


@pytest.fixture(autouse=True)
def _default_language():
    """Every test starts in the default language: a request in Arabic leaves Arabic active in
    the thread (LocaleMiddleware does not deactivate it), which would translate the next test's
    engine reasons and errors."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _request_log_unbuffered(settings, monkeypatch):
    """Request log rows are written at the end of their request, as a test reads them right
    after it (tests/directory_sync/test_request_log.py covers the buffered mode). No
    background flusher: its own connection cannot see a test's uncommitted runs, so the
    counts it took would be lost (tests that need it turn it on)."""

    settings.BEEM_REQUEST_LOG_FLUSH_SECONDS = 0
    monkeypatch.setattr("directory_sync.flusher.BACKGROUND_FLUSH", False)


@pytest.fixture(autouse=True)
def _process_state_reset():
    """Per-process caches and buffers (auth cache, batched run counts and request-log rows,
    wake-ups known to be pending, ...) must not leak between tests: run ids and tokens are
    reused after a rolled-back test."""
    from directory_sync import process_state

    process_state.reset_all()
    yield
    process_state.reset_all()


@pytest.fixture
def require_postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://...")


@pytest.fixture
def organization(db):
    return member_services.organization_get_or_create(slug="acme", name="Acme")


@pytest.fixture
def other_organization(db):
    return member_services.organization_get_or_create(slug="globex", name="Globex")


@pytest.fixture
def admin_user(organization):
    return member_services.administrator_ensure(
        organization=organization, username="admin@acme", password="correct horse 42"
    ).user


@pytest.fixture
def other_admin_user(other_organization):
    return member_services.administrator_ensure(
        organization=other_organization, username="admin@globex", password="correct horse 42"
    ).user


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client
