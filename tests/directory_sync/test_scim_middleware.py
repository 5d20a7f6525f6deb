"""SCIM and token requests skip the browser-only middleware (sessions, locale, CSRF, user,
messages, axes): they have a chain of their own (settings.MIDDLEWARE_BY_PATH); everything else
keeps it, and SCIM keeps the request id, security headers and metrics."""

from django.conf import settings

BROWSER_ONLY = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "axes.middleware.AxesMiddleware",
]


def test_the_admin_ui_keeps_its_middleware_and_the_apis_have_their_own_chains():
    assert settings.MIDDLEWARE[:2] == [
        "beem_admin.middleware.RequestIdMiddleware",
        "beem_admin.middleware.PathRouterMiddleware",
    ]
    for name in BROWSER_ONLY:
        assert name in settings.MIDDLEWARE
    assert set(settings.MIDDLEWARE_BY_PATH) == {"/scim/", "/o/"}
    for chain in settings.MIDDLEWARE_BY_PATH.values():
        assert chain[0] == "directory_sync.metrics.MetricsMiddleware"
        assert not set(BROWSER_ONLY) & set(chain)
        assert "directory_sync.scim.limits.RequestBodyLimitMiddleware" in chain
        assert "django.middleware.security.SecurityMiddleware" in chain


def test_a_token_request_gets_no_session_user_or_cookie(client, db):
    response = client.post(
        "/o/token/",
        "grant_type=client_credentials&client_id=nobody&client_secret=wrong",
        content_type="application/x-www-form-urlencoded",
        HTTP_COOKIE="sessionid=abc",
    )

    assert response.status_code == 401
    request = response.wsgi_request
    assert not hasattr(request, "session") and not hasattr(request, "user")
    assert not response.cookies
    assert response["X-Request-ID"] == request.request_id
    assert response["X-Frame-Options"] == "DENY"


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


def test_scim_request_runs_in_the_default_language(scim, settings):
    from django.utils import translation

    translation.activate("ar")  # as an admin page in Arabic leaves the thread
    seen = []
    from directory_sync.scim import resource_views as views

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
