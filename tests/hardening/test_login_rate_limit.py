"""Admin login is rate-limited (django-axes): repeated failures lock the user name + IP out."""

import pytest
from axes.models import AccessAttempt


@pytest.fixture
def axes_on(settings):
    # tests/conftest.py turns axes off for every other test; this file is about axes itself.
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5
    # Each login hashes a password; a fast hasher keeps this file quick (the admin user is
    # created after this fixture, with the same hasher).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


def login(client, password: str, username: str = "admin@acme", ip: str = "203.0.113.7"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_five_failed_logins_lock_the_account_even_for_the_right_password(
    axes_on, client, admin_user
):
    for _ in range(4):
        assert login(client, "wrong").status_code == 200  # form re-shown with an error

    locked = login(client, "wrong")
    after = login(client, "correct horse 42")

    assert locked.status_code == 429
    assert after.status_code == 429
    assert "_auth_user_id" not in client.session
    attempt = AccessAttempt.objects.get(username="admin@acme")
    # The attempt with the right password during lock-out counts as one more failure.
    assert attempt.failures_since_start == 6
    assert attempt.ip_address == "203.0.113.7"


def test_failed_logins_below_the_limit_still_allow_the_right_password(axes_on, client, admin_user):
    for _ in range(4):
        login(client, "wrong")

    response = login(client, "correct horse 42")

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(admin_user.pk)


def test_lockout_of_one_address_does_not_lock_the_user_out_elsewhere(axes_on, client, admin_user):
    for _ in range(5):
        login(client, "wrong", ip="203.0.113.7")

    elsewhere = login(client, "correct horse 42", ip="198.51.100.20")

    assert elsewhere.status_code == 302


def test_login_rate_limit_is_on_by_default():
    from django.conf import settings as django_settings

    # tests/conftest.py disables axes per test through the `settings` fixture; the value the
    # project ships with comes from beem_admin.settings.
    import beem_admin.settings as project_settings

    assert project_settings.AXES_ENABLED is True
    assert project_settings.AXES_FAILURE_LIMIT == 5
    assert project_settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert "axes.middleware.AxesMiddleware" in django_settings.MIDDLEWARE
    assert django_settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
