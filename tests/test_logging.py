"""Request ids (header round-trip, log lines, Celery jobs) and what never reaches the logs."""

import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from beem_admin.logging import (
    RedactingFilter,
    RequestIdFilter,
    request_id_get,
    request_id_var,
)

BASE_DIR = Path(__file__).resolve().parent.parent
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def console_lines(settings):
    """What the configured console handler emits (its filters included), as JSON lines."""
    from pythonjsonlogger.json import JsonFormatter

    handler = next(
        h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler and h.filters
    )
    buffer = io.StringIO()
    previous_stream = handler.setStream(buffer)
    previous_formatter = handler.formatter
    handler.setFormatter(JsonFormatter(settings.LOGGING["formatters"]["json"]["fmt"]))
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line]
    finally:
        root.setLevel(previous_level)
        handler.setFormatter(previous_formatter)
        handler.setStream(previous_stream)


# --- request id --------------------------------------------------------------------------


def test_response_carries_a_generated_request_id(client, db):
    response = client.get("/healthz")

    assert HEX32.match(response["X-Request-ID"])


def test_sane_incoming_request_id_is_echoed(client, db):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a.2026:11")

    assert response["X-Request-ID"] == "lb-7f3a.2026:11"


@pytest.mark.parametrize("bad", ["a" * 65, "<script>", "two words", "-leading-dash"])
def test_unsafe_incoming_request_id_is_replaced(client, db, bad):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=bad)

    assert HEX32.match(response["X-Request-ID"])


def test_log_lines_during_a_request_carry_its_id(client, db, console_lines):
    client.get("/no-such-page/", HTTP_X_REQUEST_ID="req-404-check")

    not_found = [line for line in console_lines() if line["name"] == "django.request"]
    assert not_found and all(line["request_id"] == "req-404-check" for line in not_found)


def test_request_id_is_cleared_after_the_response(client, db):
    client.get("/healthz", HTTP_X_REQUEST_ID="req-done")

    assert request_id_get() == "-"


def test_json_log_format_is_selected_by_environment(tmp_path):
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('beem.check').warning('hello from %s', 'ops')"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "beem_admin.settings",
        "BEEM_LOG_FORMAT": "json",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    check = next(line for line in lines if line["name"] == "beem.check")
    assert check["message"] == "hello from ops"
    assert check["levelname"] == "WARNING"
    assert check["request_id"] == "-"


# --- Celery: the request id follows the job ----------------------------------------------


def test_celery_job_logs_carry_the_publishing_request_id(db):
    """A real worker (in a thread, in-memory broker) runs a job published under a request id:
    the id travels in the message headers, not through shared memory."""
    from beem_admin.celery import app as main_app

    probe_app = Celery("beem_probe", broker="memory://", backend="cache+memory://")
    probe_app.conf.worker_hijack_root_logger = False
    probe_app.conf.task_always_eager = False
    seen: list[logging.LogRecord] = []
    job_logger = logging.getLogger("tests.celery_probe")

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(record)

    capture = Capture()
    capture.addFilter(RequestIdFilter())
    job_logger.addHandler(capture)

    @probe_app.task(name="tests.log_probe")
    def log_probe() -> str:
        job_logger.warning("probe job ran in %s", threading.current_thread().name)
        return request_id_get()

    try:
        with start_worker(probe_app, perform_ping_check=False, shutdown_timeout=20):
            token = request_id_var.set("scim-req-42")
            try:
                result = log_probe.apply_async()
            finally:
                request_id_var.reset(token)
            assert result.get(timeout=20) == "scim-req-42"
    finally:
        job_logger.removeHandler(capture)
        main_app.set_current()
        main_app.set_default()

    assert [r.request_id for r in seen] == ["scim-req-42"]
    assert seen[0].threadName != threading.current_thread().name


def test_celery_leaves_logging_configuration_to_django():
    from celery.app.log import Logging

    from beem_admin.celery import app

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    previous = Logging._setup
    Logging._setup = False
    try:
        # What `celery worker --loglevel=ERROR` does at start-up.
        app.log.setup_logging_subsystem(loglevel="ERROR")
    finally:
        Logging._setup = previous

    assert (root.level, root.handlers) == (level, handlers)
    task_handlers = logging.getLogger("celery.task").handlers
    assert [h for h in task_handlers if not isinstance(h, logging.NullHandler)] == []
    assert logging.getLogger("celery.task").propagate


# --- redaction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, secret",
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("grant_type=client_credentials&client_secret=S3cr3tValue&x=1", "S3cr3tValue"),
        ('{"access_token": "tok_abcdefgh123"}', "tok_abcdefgh123"),
        ('GET /scim/v2/1/Users?filter=userName+eq+"sara@acme.example"', "sara@acme.example"),
        ("userName%20eq%20%22sara%40acme.example%22", "sara%40acme.example"),
        ("Another member already has the mobile number +966512345678.", "+966512345678"),
        ("phone %2B966512345678 refused", "966512345678"),
    ],
)
def test_redacting_filter_masks_secrets_and_personal_data(message, secret):
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)

    RedactingFilter().filter(record)

    assert secret not in record.getMessage()


def test_redacting_filter_masks_exception_text():
    try:
        raise ValueError("duplicate key (email)=(sara@acme.example)")
    except ValueError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())

    RedactingFilter().filter(record)

    assert "sara@acme.example" not in record.exc_text
    assert "ValueError" in record.exc_text


# --- nothing secret or personal reaches the logs -----------------------------------------


SECRET_USER = {
    "schemas": [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    ],
    "externalId": "6f3f6a8e-1b9c-4e0b-9c52-8d1d0f6a0bbb",
    "userName": "Private.Person@contoso.example",
    "active": "True",
    "displayName": "Private Person",
    "emails": [{"primary": True, "type": "work", "value": "Private.Person@contoso.example"}],
    "phoneNumbers": [{"type": "mobile", "value": "+966512349876"}],
    "name": {"givenName": "Private", "familyName": "Person"},
}


@pytest.fixture
def active_sync(organization, settings):
    from directory_sync import services as sync_services

    # Client secrets are hashed like passwords; a cheap hasher keeps the test fast.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return sync_services.sync_activate(organization=organization, actor_label="test")


def test_token_request_and_scim_post_leave_no_secret_token_or_personal_data_in_logs(
    client, organization, active_sync, console_lines, django_capture_on_commit_callbacks
):
    from tests.directory_sync.conftest import token_obtain

    token_response = token_obtain(active_sync.client_id, active_sync.client_secret, basic=False)
    token = token_response.json()["access_token"]
    refused = token_obtain(active_sync.client_id, "not-the-secret-" + active_sync.client_secret)
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            f"/scim/v2/{organization.pk}/Users",
            data=json.dumps(SECRET_USER),
            content_type="application/scim+json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        duplicate = client.post(
            f"/scim/v2/{organization.pk}/Users",
            data=json.dumps(SECRET_USER),
            content_type="application/scim+json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
    client.get(
        f"/scim/v2/{organization.pk}/Users",
        {"filter": 'userName eq "Private.Person@contoso.example"'},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert token_response.status_code == 200
    assert refused.status_code == 401
    assert created.status_code == 201, created.content
    assert duplicate.status_code == 409
    lines = console_lines()
    assert lines, "the requests logged nothing: the capture is broken"
    text = "\n".join(json.dumps(line) for line in lines).lower()
    for needle in (
        active_sync.client_secret,
        token,
        "private.person@contoso.example",
        "966512349876",
        "private person",
    ):
        assert needle.lower() not in text


@pytest.mark.django_db(transaction=True)
def test_scim_write_carries_its_request_id_to_the_change_event_and_the_job_log(
    client, organization, active_sync, console_lines
):
    from directory_sync.models import ChangeEvent
    from tests.directory_sync.conftest import token_obtain

    token = token_obtain(active_sync.client_id, active_sync.client_secret).json()["access_token"]

    response = client.post(
        f"/scim/v2/{organization.pk}/Users",
        data=json.dumps(SECRET_USER),
        content_type="application/scim+json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_X_REQUEST_ID="entra-req-1",
    )

    assert response.status_code == 201, response.content
    assert response["X-Request-ID"] == "entra-req-1"
    event = ChangeEvent.objects.get(label="Private.Person@contoso.example")
    assert event.request_id == "entra-req-1"
    assert event.status == ChangeEvent.Status.APPLIED
    job_lines = [
        line
        for line in console_lines()
        if line["name"] == "celery.app.trace" and "apply_change_event" in line["message"]
    ]
    assert job_lines and {line["request_id"] for line in job_lines} == {"entra-req-1"}
