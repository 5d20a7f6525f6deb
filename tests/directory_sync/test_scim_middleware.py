"""SCIM requests skip the browser-only middleware (sessions, locale, user, messages);
everything else keeps it, and SCIM keeps the request id, security headers and metrics."""

from django.conf import settings

from beem_admin import middleware

SKIPPED = [
    "SessionMiddleware",
    "LocaleMiddleware",
    "AuthenticationMiddleware",
    "MessageMiddleware",
]


def test_settings_use_the_scim_skipping_middleware():
    for name in SKIPPED:
        assert f"beem_admin.middleware.{name}" in settings.MIDDLEWARE
    assert settings.MIDDLEWARE[0] == "beem_admin.middleware.RequestIdMiddleware"
    assert "directory_sync.metrics.MetricsMiddleware" in settings.MIDDLEWARE


def test_scim_request_gets_no_session_user_or_cookie(scim):
    response = scim.get("/Users", HTTP_COOKIE="sessionid=abc")

    assert response.status_code == 200
    request = response.wsgi_request
    assert not hasattr(request, "session")
    assert not hasattr(request, "user")
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert response["X-Request-ID"] == request.request_id
    assert response["X-Frame-Options"] == "DENY"


def test_scim_write_needs_no_csrf_token(scim):
    from django.test import Client

    scim.client = Client(enforce_csrf_checks=True)
    response = scim.post(
        "/Groups",
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops"},
    )

    assert response.status_code == 201, response.content


def test_other_requests_keep_sessions_csrf_and_user(client, db):
    response = client.get("/login/")

    request = response.wsgi_request
    assert hasattr(request, "session")
    assert request.user.is_anonymous
    assert "csrftoken" in response.cookies
    assert response["X-Request-ID"]


def test_skipped_for_scim_keeps_the_class_name():
    assert middleware.SessionMiddleware.__name__ == "SessionMiddleware"
    from django.contrib.sessions.middleware import SessionMiddleware

    assert issubclass(middleware.SessionMiddleware, SessionMiddleware)


def test_scim_request_runs_in_the_default_language(scim, settings):
    from django.utils import translation

    translation.activate("ar")  # as an admin page in Arabic leaves the thread
    seen = []
    from directory_sync.scim import views

    real = views.UsersView.get

    def spy(self, request, *args, **kwargs):
        seen.append(translation.get_language())
        return real(self, request, *args, **kwargs)

    views.UsersView.get = spy
    try:
        assert scim.get("/Users").status_code == 200
    finally:
        views.UsersView.get = real
    assert seen == [settings.LANGUAGE_CODE]
