"""Settings behaviour, checked by importing the settings in a fresh interpreter with a
controlled environment (settings are read once per process, so this cannot run in-process)."""

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
from beem_admin.celery import app
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "ENGINE": settings.DATABASES["default"]["ENGINE"],
    "DB_NAME": str(settings.DATABASES["default"]["NAME"]),
    "DB_HOST": settings.DATABASES["default"].get("HOST", ""),
    "EAGER": settings.CELERY_TASK_ALWAYS_EAGER,
    "APP_EAGER": app.conf.task_always_eager,
    "BROKER": app.conf.broker_url,
    "CACHE": settings.CACHES["default"]["BACKEND"],
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "RUN_COUNT_FLUSH": settings.BEEM_RUN_COUNT_FLUSH_SECONDS,
    "AUTH_CACHE": settings.BEEM_SCIM_AUTH_CACHE_SECONDS,
    "SECRET_KEY_FALLBACKS": settings.SECRET_KEY_FALLBACKS,
}))
"""


def run_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "beem_admin.settings",
        # Keep the subprocess quiet and independent of the developer's shell.
        "BEEM_LOG_LEVEL": "ERROR",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def loaded(**env: str) -> dict:
    result = run_settings(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_no_environment_runs_embedded_with_sqlite_and_eager_celery():
    values = loaded()
    assert values["DEBUG"] is True
    assert values["ENGINE"] == "django.db.backends.sqlite3"
    assert values["DB_NAME"] == str(BASE_DIR / "db.sqlite3")
    assert (values["EAGER"], values["APP_EAGER"]) == (True, True)
    assert values["CACHE"] == "django.core.cache.backends.locmem.LocMemCache"


def test_production_without_a_secret_key_refuses_to_start_with_a_clear_message():
    result = run_settings(DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="beem.example.com")
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in result.stderr
    assert "secrets.token_urlsafe" in result.stderr


def test_production_without_allowed_hosts_refuses_to_start_with_a_clear_message():
    result = run_settings(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_ALLOWED_HOSTS is not set" in result.stderr


def test_production_with_secret_key_and_allowed_hosts_starts():
    values = loaded(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="x" * 50,
        DJANGO_ALLOWED_HOSTS="beem.example.com, admin.example.com",
    )
    assert values["DEBUG"] is False
    assert values["ALLOWED_HOSTS"] == ["beem.example.com", "admin.example.com"]


def test_earlier_secret_keys_are_read_as_fallbacks():
    # Client secrets are stored keyed with the secret key: a rotated key must stay a fallback.
    assert loaded()["SECRET_KEY_FALLBACKS"] == []
    values = loaded(DJANGO_SECRET_KEY_FALLBACKS="old-key-one, old-key-two")
    assert values["SECRET_KEY_FALLBACKS"] == ["old-key-one", "old-key-two"]


def test_database_url_selects_postgresql():
    values = loaded(DATABASE_URL="postgres://beem:pw@db.internal:5432/beem_prod")
    assert values["ENGINE"] == "django.db.backends.postgresql"
    assert (values["DB_NAME"], values["DB_HOST"]) == ("beem_prod", "db.internal")


def test_broker_url_turns_eager_mode_off():
    values = loaded(CELERY_BROKER_URL="redis://127.0.0.1:6379/9")
    assert (values["EAGER"], values["APP_EAGER"]) == (False, False)
    assert values["BROKER"] == "redis://127.0.0.1:6379/9"


def test_redis_url_selects_the_redis_cache():
    values = loaded(REDIS_URL="redis://127.0.0.1:6379/8")
    assert values["CACHE"] == "django.core.cache.backends.redis.RedisCache"


def test_token_lifetime_outside_entras_range_is_refused():
    result = run_settings(BEEM_TOKEN_LIFETIME_SECONDS="60")
    assert result.returncode != 0
    assert "BEEM_TOKEN_LIFETIME_SECONDS must be between 3600 and 21600" in result.stderr


def test_run_count_flush_and_auth_cache_seconds_are_read_from_the_environment():
    defaults = loaded()
    chosen = loaded(BEEM_RUN_COUNT_FLUSH_SECONDS="2.5", BEEM_SCIM_AUTH_CACHE_SECONDS="0")

    assert (defaults["RUN_COUNT_FLUSH"], defaults["AUTH_CACHE"]) == (1.0, 0.5)
    assert (chosen["RUN_COUNT_FLUSH"], chosen["AUTH_CACHE"]) == (2.5, 0.0)


def test_a_number_of_seconds_that_is_not_a_number_is_refused():
    result = run_settings(BEEM_SCIM_AUTH_CACHE_SECONDS="soon")
    assert result.returncode != 0
    assert "BEEM_SCIM_AUTH_CACHE_SECONDS must be a number, got 'soon'" in result.stderr


def test_product_code_reads_every_setting_from_settings_py_without_a_default_of_its_own():
    """settings.py declares every tunable (README: it reads every variable); a getattr default
    elsewhere would be a second, undocumented default."""
    found = [
        f"{path.relative_to(BASE_DIR)}:{number}"
        for package in ("beem_admin", "directory_sync", "members")
        for path in sorted((BASE_DIR / package).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "getattr(settings," in line
    ]
    assert found == []
