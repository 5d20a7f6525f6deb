"""Production settings: `check --deploy` is clean, cookies are secure, headers are sent.

These run Django in a subprocess with ``DJANGO_DEBUG=false`` because the security settings are
chosen when the settings module is imported (they cannot be toggled inside this process).
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def production_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "BEEM_", "DATABASE_URL"))
    }
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="beem.example.com",
        DJANGO_SETTINGS_MODULE="beem_admin.settings",
        # The checks and the request below never touch the database.
        DATABASE_URL="sqlite://:memory:",
        **extra,
    )
    return env


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_reports_no_issue_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = production_env()
    del env["DJANGO_SECRET_KEY"]

    result = run_python("import django; django.setup()", env)

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


HEADERS_PROBE = """
import json, django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client(HTTP_HOST="beem.example.com")
plain = client.get("/login/")
secure = client.get("/login/", secure=True)
print(json.dumps({
    "plain_status": plain.status_code,
    "plain_location": plain.get("Location"),
    "status": secure.status_code,
    "headers": dict(secure.headers),
    "cookies": {
        name: {"secure": bool(c["secure"]), "httponly": bool(c["httponly"]),
               "samesite": c["samesite"]}
        for name, c in secure.cookies.items()
    },
}))
"""


@pytest.fixture(scope="module")
def production_login_page() -> dict:
    result = run_python(HEADERS_PROBE, production_env())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_redirects_plain_http_to_https(production_login_page):
    assert production_login_page["plain_status"] == 301
    assert production_login_page["plain_location"] == "https://beem.example.com/login/"


def test_production_sends_security_headers(production_login_page):
    headers = production_login_page["headers"]

    assert production_login_page["status"] == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_production_csrf_cookie_is_secure_and_same_site(production_login_page):
    csrf = production_login_page["cookies"]["csrftoken"]

    assert csrf == {"secure": True, "httponly": False, "samesite": "Lax"}
