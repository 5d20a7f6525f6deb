"""The per-organization SCIM request log, with secrets and personal data masked.

An administrator must be able to see what Entra ID sent and what Beem answered (operation
names, paths, schemas, ids, statuses, error details) without the log becoming a second copy of
the directory: values of userName, user displayName, name.*, emails, phoneNumbers, addresses
and employeeNumber are replaced by ``***`` — in bodies, in PATCH operation values and in
filter strings — and secrets (client_secret, password, access_token, ...) likewise. The
``Authorization`` header is never read here.

``BEEM_REQUEST_LOG`` chooses what is written: ``all`` (default), ``writes`` (POST, PUT,
PATCH, DELETE and every error response), ``errors`` (responses with status >= 400) or
``off``. Rows of reads (GET) are buffered per process and written in bulk at most
``BEEM_REQUEST_LOG_FLUSH_SECONDS`` (default 1; 0 writes each at once) after the request, by
the next request's end or a background flusher when the process goes idle, and at exit: a
synchronous INSERT + COMMIT per read cost more than the read itself (bench profile). A web
process killed outright loses at most that last second of read rows; rows of writes are still
written before the response. Rows older than ``BEEM_REQUEST_LOG_RETENTION_DAYS`` are deleted
by the purge (``directory_sync.maintenance.logs_purge``: the nightly beat task and
``manage.py directory_sync purge``).
"""

import atexit
import functools
import json
import logging
import os
import re
import threading
import time
import uuid
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.signals import request_finished
from django.db import connection as default_connection
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from members.models import Organization

from ..models import ProvisioningRun, RequestLog

logger = logging.getLogger(__name__)

MASK = "***"
MAX_BODY_CHARS = 16 * 1024
MAX_UNPARSED_CHARS = 4 * 1024
LOG_MODES = ("all", "writes", "errors", "off")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"

SECRET_KEYS = frozenset(
    {"client_secret", "password", "access_token", "refresh_token", "token", "secret"}
)
# Attributes (lower-cased, without URN prefix or sub-attribute) whose values identify a person.
PERSONAL_ATTRIBUTES = frozenset(
    {
        "username",
        "displayname",
        "nickname",
        "name",
        "givenname",
        "familyname",
        "middlename",
        "formatted",
        "emails",
        "phonenumbers",
        "addresses",
        "employeenumber",
        "ims",
        "photos",
        "profileurl",
        "display",
    }
)
# Inside a masked multi-valued attribute these stay readable (they describe, not identify).
KEEP_INSIDE_MASKED = frozenset({"type", "primary"})
# Free text (error details) may quote what was sent: scrub email addresses and phone numbers.
# Bounded repetitions: unbounded ones backtrack quadratically on a long text without '@'
# (a hostile 1 MB body took minutes; found by tests/hardening/test_scim_fuzz.py).
_EMAIL = re.compile(r"[^\s'\"<>(),;:@]{1,64}@[^\s'\"<>(),;:@]{1,255}")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,30}\d")
# Filter values: every quoted string except the `type eq "work"` literal of a value filter and
# values that are UUIDs (ids, objectIds, Entra's probe GUID), which identify nobody by themselves.
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_TYPE_LITERAL = re.compile(r"type\s+eq\s+$", re.IGNORECASE)
# Malformed JSON: a quoted string followed by ':' is a key.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"(\s*:)?')


@functools.lru_cache(maxsize=4096)
def attribute_of(key: str) -> str:
    """``urn:...:User:employeeNumber`` → ``employeenumber``; ``name.givenName`` → ``name``;
    ``emails[type eq "work"].value`` → ``emails``."""
    text = key.strip()
    if text.lower().startswith("urn:"):
        head = text.split("[", 1)[0]
        text = head.rsplit(":", 1)[-1] + text[len(head) :]
    return re.split(r"[.\[]", text, maxsplit=1)[0].lower()


def _blank(value):
    if isinstance(value, str):
        return MASK
    if isinstance(value, list):
        return [_blank(item) for item in value]
    if isinstance(value, dict):
        return {k: (v if k.lower() in KEEP_INSIDE_MASKED else _blank(v)) for k, v in value.items()}
    return value


def _scrub_text(text: str) -> str:
    # Only what can be stored: a detail may echo a huge hostile value.
    text = _truncate(text)
    return _PHONE.sub(MASK, _EMAIL.sub(MASK, text))


def _is_personal(key: str, *, group: bool) -> bool:
    attribute = attribute_of(key)
    if attribute == "displayname" and group:
        return False  # a group's name is what the admin needs to recognise it
    return attribute in PERSONAL_ATTRIBUTES


def _mask_operation(operation, *, group: bool):
    if not isinstance(operation, dict):
        return _mask(operation, group=group)
    masked = {}
    path = next((v for k, v in operation.items() if k.lower() == "path"), None)
    for key, value in operation.items():
        if key.lower() != "value":
            masked[key] = value
        elif isinstance(path, str) and path.strip():
            if _is_personal(path, group=group) or attribute_of(path) in SECRET_KEYS:
                masked[key] = _blank(value)
            else:
                masked[key] = _mask(value, group=group)
        else:
            # Path-less operation: the value's keys are attribute paths (possibly dotted/URN).
            masked[key] = _mask(value, group=group)
    return masked


def _mask(value, *, group: bool):
    if isinstance(value, list):
        return [_mask(item, group=group) for item in value]
    if not isinstance(value, dict):
        return value
    schemas = value.get("schemas")
    if isinstance(schemas, list) and GROUP_SCHEMA in schemas:
        group = True
    masked = {}
    for key, item in value.items():
        lowered = key.lower()
        if lowered in SECRET_KEYS:
            masked[key] = MASK
        elif lowered == "operations" and isinstance(item, list):
            masked[key] = [_mask_operation(op, group=group) for op in item]
        elif _is_personal(key, group=group):
            masked[key] = _blank(item)
        elif lowered == "detail" and isinstance(item, str):
            masked[key] = _scrub_text(item)
        else:
            masked[key] = _mask(item, group=group)
    return masked


def _truncate(text: str) -> str:
    if len(text) <= MAX_BODY_CHARS:
        return text
    return text[:MAX_BODY_CHARS] + f"… [truncated, {len(text)} characters in all]"


def mask_body(raw: bytes | str, *, group: bool = False) -> str:
    """A request or response body as it may be stored: JSON with personal data and secrets
    masked; anything unparseable keeps only its keys (quoted strings before ':')."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if not raw.strip():
        return ""
    try:
        return _truncate(json.dumps(_mask(json.loads(raw), group=group), ensure_ascii=False))
    except (ValueError, RecursionError):
        # Not JSON, or nested deeper than the parser's recursion limit (a hostile body; found
        # by tests/hardening/test_scim_fuzz.py): keep only the keys, of the first few KB (the
        # string pattern is quadratic on runs of escaped quotes).
        text = raw[:MAX_UNPARSED_CHARS]
        masked_text = _JSON_STRING.sub(lambda m: m.group(0) if m.group(1) else f'"{MASK}"', text)
        if len(raw) > len(text):
            masked_text += f"… [truncated, {len(raw)} characters in all]"
        return _scrub_text(masked_text)


def mask_value(value, *, group: bool = False) -> str:
    """An already parsed body (the dict a SCIM view rendered), masked like ``mask_body``."""
    return _truncate(json.dumps(_mask(value, group=group), ensure_ascii=False))


def mask_filter(text: str) -> str:
    def replace(match: re.Match) -> str:
        value = match.group(1)
        if _TYPE_LITERAL.search(text[: match.start()]):
            return match.group(0)
        try:
            uuid.UUID(value)
            return match.group(0)
        except ValueError:
            return f'"{MASK}"'

    return _QUOTED.sub(replace, text)


def mask_query(query_string: str) -> str:
    """The query string, decoded for reading, with filter values masked."""
    parts = []
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        if key.lower() in SECRET_KEYS:
            value = MASK
        elif key.lower() == "filter":
            value = mask_filter(value)
        parts.append(f"{key}={value}")
    return _truncate("&".join(parts))


def list_summary(page) -> str:
    """A ListResponse as logged: its counts and its resources' ids, not the resources.

    A page of 100 users is ~70 KB to parse, mask and re-serialise (17 % of a list page's CPU
    in the bench profile) and was cut at MAX_BODY_CHARS anyway; the ids identify nobody and
    lead to the records. ``page`` is the ``paging.Page`` the view answered.
    """
    summary = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": page.total,
        "itemsPerPage": page.items,
        "startIndex": page.start,
        "Resources": [{"id": scim_id} for scim_id in page.ids()],
    }
    return _truncate(json.dumps(summary))


def should_log(*, method: str, status: int) -> bool:
    mode = getattr(settings, "BEEM_REQUEST_LOG", "all")
    if mode == "off":
        return False
    if mode == "errors":
        return status >= 400
    if mode == "writes":
        return method in WRITE_METHODS or status >= 400
    return True


def _pg_text(text: str) -> str:
    """PostgreSQL text cannot hold U+0000; a hostile body or URL may (found by
    tests/hardening/test_scim_fuzz.py). Show it as the replacement character."""
    return text.replace("\x00", "\ufffd")


def _commit_without_flush_wait() -> None:
    """Let this transaction commit without waiting for PostgreSQL's WAL flush.

    A log row is written for every SCIM request, most of them reads that write nothing else;
    waiting for an fsync (~6 ms on the bench machine) on each held a web process idle for
    longer than the request's own work (bench profile). A PostgreSQL crash can lose the last
    fraction of a second of log rows, never a directory write: those commit synchronously,
    and their flush also persists every log row before them.
    """
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _request_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except Exception:  # noqa: BLE001 - a stream already consumed; log without the body
        return b""


def _response_body(response: HttpResponse, *, group: bool) -> str:
    page = getattr(response, "scim_list_page", None)
    if page is not None and response.status_code == 200:
        return list_summary(page)
    rendered = getattr(response, "scim_body", None)
    if rendered is not None:
        # The SCIM view's own dict: no need to parse the JSON it just wrote.
        return mask_value(rendered, group=group)
    return mask_body(
        b"" if getattr(response, "streaming", False) else response.content, group=group
    )


def _row_values(
    *,
    organization: Organization,
    run: ProvisioningRun | None,
    request: HttpRequest,
    response: HttpResponse,
    duration_ms: float,
) -> dict:
    group = "/Groups" in request.path
    return {
        "organization_id": organization.pk,
        "run_id": run.pk if run is not None else None,
        "request_id": _pg_text(str(getattr(request, "request_id", ""))[:64]),
        "method": _pg_text(request.method[:10]),
        "path": _pg_text(request.path[:500]),
        "query": _pg_text(mask_query(request.META.get("QUERY_STRING", ""))),
        "status": response.status_code,
        "duration_ms": round(duration_ms, 3),
        "request_body": _pg_text(mask_body(_request_body(request), group=group)),
        "response_body": _pg_text(_response_body(response, group=group)),
    }


def _flush_seconds() -> float:
    return float(getattr(settings, "BEEM_REQUEST_LOG_FLUSH_SECONDS", DEFAULT_FLUSH_SECONDS))


def request_log_write(
    *,
    organization: Organization,
    run: ProvisioningRun | None,
    request: HttpRequest,
    response: HttpResponse,
    duration_ms: float,
) -> RequestLog | None:
    """Store one SCIM request (masked) if BEEM_REQUEST_LOG asks for it: a read's row is
    buffered (returns None), any other is written at once (returns the row).

    Never raises: a log that cannot be written must not turn Entra's call into an error.
    """
    if not should_log(method=request.method, status=response.status_code):
        return None
    try:
        values = _row_values(
            organization=organization,
            run=run,
            request=request,
            response=response,
            duration_ms=duration_ms,
        )
        if request.method in BUFFERED_METHODS and _flush_seconds() > 0:
            _buffer_add(values)
            return None
        connection = transaction.get_connection()
        outermost = not connection.in_atomic_block
        if not outermost and connection.vendor == "postgresql":
            _insert_in_savepoint(connection, values)
            return None
        # A savepoint: a row that cannot be written must not break the caller's transaction.
        with transaction.atomic():
            if outermost:
                _commit_without_flush_wait()
            return RequestLog.objects.create(**values)
    except Exception:  # noqa: BLE001 - whatever went wrong, Entra's call still gets its answer
        logger.exception("could not write the SCIM request log")
        return None


_SAVEPOINT = "beem_request_log"


def _insert_in_savepoint(connection, values: dict) -> None:
    """The row of a write, inside the write's transaction (PostgreSQL): savepoint, INSERT and
    release sent as one round trip instead of three, and no model instance (bench profile:
    the ORM create and its savepoint were a sixth of a POST). If the INSERT fails, only the
    savepoint is rolled back and the caller's transaction goes on; the error is raised."""
    columns = ", ".join(_COLUMNS)
    marks = ", ".join(["%s"] * len(_COLUMNS))
    row = [values[c] for c in _COLUMNS[:-1]] + [timezone.now()]
    with connection.cursor() as cursor:
        try:
            cursor.execute(
                f"SAVEPOINT {_SAVEPOINT}; INSERT INTO {RequestLog._meta.db_table} ({columns}) "
                f"VALUES ({marks}); RELEASE SAVEPOINT {_SAVEPOINT}",
                row,
            )
        except Exception:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}")
            raise


# --- buffered rows of reads ----------------------------------------------------------------

DEFAULT_FLUSH_SECONDS = 1.0
BUFFERED_METHODS = frozenset({"GET", "HEAD"})
_MAX_BUFFERED = 5_000  # beyond this a request writes the batch itself (a stuck flusher)
_INSERT_CHUNK = 500
_COLUMNS = (
    "organization_id",
    "run_id",
    "request_id",
    "method",
    "path",
    "query",
    "status",
    "duration_ms",
    "request_body",
    "response_body",
    "created_at",
)
_buffer: list[tuple] = []
_buffer_lock = threading.Lock()
_oldest: float | None = None  # monotonic time of the oldest buffered row
_flusher_pid: int | None = None
# Tests that buffer turn the background flusher off: its own connection cannot see rows of
# a test's transaction.
BACKGROUND_FLUSH = True


def _buffer_add(values: dict) -> None:
    global _oldest
    row = tuple(values[c] for c in _COLUMNS[:-1]) + (timezone.now(),)
    with _buffer_lock:
        _buffer.append(row)
        if _oldest is None:
            _oldest = time.monotonic()
        size = len(_buffer)
    if BACKGROUND_FLUSH and _flusher_pid != os.getpid():
        _flusher_start()
    if size >= _MAX_BUFFERED:
        request_log_flush()


def _take() -> list[tuple]:
    global _buffer, _oldest
    with _buffer_lock:
        batch, _buffer, _oldest = _buffer, [], None
    return batch


def _due() -> bool:
    oldest = _oldest
    return oldest is not None and time.monotonic() - oldest >= _flush_seconds()


def _insert(rows: list[tuple]) -> None:
    table = RequestLog._meta.db_table
    columns = ", ".join(_COLUMNS)
    with default_connection.cursor() as cursor:
        if default_connection.vendor == "postgresql":
            # COPY: no SQL text to build and parse per row, for Python or for PostgreSQL.
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        placeholder = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start : start + _INSERT_CHUNK]
            values = ", ".join([placeholder] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {values}",
                [value for row in chunk for value in row],
            )


def request_log_flush() -> int:
    """Write this process's buffered read rows; returns how many were written."""
    batch = _take()
    if not batch:
        return 0
    try:
        with transaction.atomic():
            _commit_without_flush_wait()
            _insert(batch)
        return len(batch)
    except Exception:  # noqa: BLE001 - e.g. an organization deleted meanwhile: row by row
        logger.warning(
            "bulk write of %d SCIM request log rows failed; retrying one by one", len(batch)
        )
    written = 0
    for row in batch:
        try:
            with transaction.atomic():
                _insert([row])
            written += 1
        except Exception:  # noqa: BLE001
            logger.exception("could not write a SCIM request log row")
    return written


def request_log_buffer_discard() -> None:
    """Drop unwritten rows (tests)."""
    _take()


def _flush_if_due(**_kwargs) -> None:
    # request_finished: after the response went out (the WSGI server closes it), so the
    # request that happens to flush does not wait for it.
    if _due():
        try:
            request_log_flush()
        except Exception:  # noqa: BLE001
            logger.exception("could not write the SCIM request log")


request_finished.connect(_flush_if_due, dispatch_uid="beem_request_log_flush")


def _flusher_loop() -> None:
    """Writes rows a process left buffered when no request came to do it (idle worker)."""
    from django.db import connections

    while True:
        time.sleep(max(_flush_seconds(), 0.2))
        oldest = _oldest
        # Twice the interval: normally the next request's end flushes first.
        if oldest is None or time.monotonic() - oldest < 2 * _flush_seconds():
            continue
        try:
            request_log_flush()
        except Exception:  # noqa: BLE001
            logger.exception("could not write the SCIM request log")
        finally:
            connections.close_all()  # this thread's connections only


def _flusher_start() -> None:
    global _flusher_pid
    with _buffer_lock:
        if _flusher_pid == os.getpid():
            return
        _flusher_pid = os.getpid()  # after a fork the child starts its own
    threading.Thread(target=_flusher_loop, name="request-log-flusher", daemon=True).start()


@atexit.register
def _flush_at_exit() -> None:
    try:
        if _buffer:
            request_log_flush()
    except Exception:  # noqa: BLE001 - interpreter shutdown, best effort
        logger.debug("could not write the last SCIM request log rows at exit")
