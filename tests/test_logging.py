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
