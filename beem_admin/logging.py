"""Logging helpers: a request id on every log line, and redaction of secrets and personal data.

The request id lives in a context variable. ``beem_admin.middleware.RequestIdMiddleware`` sets
it for each HTTP request; the Celery signal pair below carries it in the message headers of
every task published while it is set, so the logs of the job a SCIM request queued carry the
same id as the request's own lines (design.md §3: the request → outbox → job path).

This module is imported when Django configures logging (``LOGGING`` names its filters), which
happens in the web process, in management commands and in the Celery worker alike, so the
signal receivers are connected wherever tasks are published or run.
"""

import contextvars
import logging
import re
import uuid

from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

# "-" rather than "": a log line outside any request still has a visible, greppable value.
NO_REQUEST_ID = "-"
REQUEST_ID_HEADER = "request_id"

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar(
    "beem_request_id", default=NO_REQUEST_ID
)

# Accept a caller's X-Request-ID only when it is short and plain: it is echoed into headers,
# logs and the change-event table, so anything else (newlines, markup, huge values) is replaced.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def request_id_new() -> str:
    return uuid.uuid4().hex


def request_id_clean(value: str | None) -> str | None:
    """Return ``value`` if it is acceptable as a request id, else ``None``."""
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return None


def request_id_get() -> str:
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (the current request's or job's id, "-" outside both)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return True


# Patterns masked in every emitted line. Loggers should never be handed secrets or personal
# data in the first place; this is the safety net for the lines we do not write ourselves
# (runserver/gunicorn request lines with SCIM filters such as `userName eq "a@b.com"`,
# database errors quoting the duplicate key, third-party debug output).
_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # Authorization headers and bearer/basic credentials.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [redacted]"),
    # key=value / "key": "value" pairs whose key names a secret.
    (
        re.compile(
            r"(?i)(\b(?:client_secret|access_token|refresh_token|password|secret|token|"
            r"authorization)\b[\"']?\s*[:=]\s*[\"']?)([^\"'&\s,}]+)"
        ),
        r"\1[redacted]",
    ),
    # Email addresses (also URL-encoded: %40). Bounded repetitions (RFC 5321 lengths): an
    # unbounded local part backtracks quadratically on a long line without "@" (a 20 KB line
    # took 16 s; found by tests/hardening/test_scim_fuzz.py).
    (
        re.compile(r"[A-Za-z0-9._%+-]{1,64}(?:@|%40)[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}"),
        "[email]",
    ),
    # Phone numbers in international form (E.164 and spaced/dashed variants, %2B-encoded).
    (re.compile(r"(?:\+|%2B)\d(?:[\d\s().-]{6,18})\d"), "[phone]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks credentials, email addresses and phone numbers in the message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# --- Celery -----------------------------------------------------------------------------


@setup_logging.connect(dispatch_uid="beem_keep_django_logging")
def _keep_django_logging(**kwargs) -> None:
    """Leave logging to Django's ``LOGGING`` in the worker and beat too.

    With no receiver Celery configures logging itself: it resets the root level to the
    worker's ``--loglevel`` and gives the ``celery.task`` loggers their own handler that does
    not propagate, so task lines would bypass the request-id and redaction filters and the
    JSON format. Connecting this receiver is Celery's documented way to opt out.
    """


# Carry the request id from the publisher into the job.


@before_task_publish.connect(dispatch_uid="beem_request_id_publish")
def _request_id_into_headers(headers=None, **kwargs) -> None:
    request_id = request_id_var.get()
    if headers is not None and request_id != NO_REQUEST_ID:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


_task_tokens: dict[str, contextvars.Token] = {}


@task_prerun.connect(dispatch_uid="beem_request_id_prerun")
def _request_id_from_headers(task_id=None, task=None, **kwargs) -> None:
    request = getattr(task, "request", None)
    if request is None or getattr(request, "is_eager", False):
        # Eager (embedded mode): the job runs inside the request, whose id is already set.
        return
    request_id = request_id_clean(getattr(request, REQUEST_ID_HEADER, None))
    # A job nobody's request queued (beat, sweeps) gets its own id so its lines group together.
    _task_tokens[task_id] = request_id_var.set(request_id or request_id_new())


@task_postrun.connect(dispatch_uid="beem_request_id_postrun")
def _request_id_reset(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        request_id_var.reset(token)
