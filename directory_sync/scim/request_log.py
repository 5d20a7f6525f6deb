"""The per-organization SCIM request log, with secrets and personal data masked.

An administrator must be able to see what Entra ID sent and what Beem answered (operation
names, paths, schemas, ids, statuses, error details) without the log becoming a second copy of
the directory: values of userName, user displayName, name.*, emails, phoneNumbers, addresses
and employeeNumber are replaced by ``***`` — in bodies, in PATCH operation values, in the
values of value-filter paths (``emails[value eq "***"]``) and in filter strings of every form
(quoted or not, nested ``and``/``or``, in query strings and in bodies) — and secrets
(client_secret, password, access_token, ...) likewise. The ``Authorization`` header is never
read here. Requests that did not authenticate keep no request body (``keep_request_body``):
an anonymous caller must not be able to write into an organization's log.

The log can neither fail nor undo the request it records (design.md §3, "nothing around a
write may fail or undo it"): a row is prepared from storable text only (lone UTF-16
surrogates and NUL become U+FFFD) and written after the response, outside the request's
transaction, by whichever comes first of the end of a later request, the background flusher
or the process's exit. A row that cannot be prepared or written is logged (WARNING/ERROR) and
counted in ``beem_request_log_failures_total``; the request keeps its answer and its write.

``BEEM_REQUEST_LOG`` chooses what is written: ``all`` (default), ``writes`` (POST, PUT,
PATCH, DELETE and every error response), ``errors`` (responses with status >= 400) or
``off``. Rows are buffered per process and written in bulk (``COPY`` on PostgreSQL) at most
``BEEM_REQUEST_LOG_FLUSH_SECONDS`` (default 1; 0: at the end of the request itself) after the
request: a synchronous INSERT + COMMIT per request cost more than a read itself, and inside a
write's transaction the row could fail that transaction (bench profile; issue 12). A web
process killed outright loses at most that last second of rows, never a directory write.
Rows older than ``BEEM_REQUEST_LOG_RETENTION_DAYS`` are deleted by the purge
(``directory_sync.retention.logs_purge``: the nightly beat task and
``manage.py directory_sync purge``).
"""

import atexit
import functools
import json
import logging
import re
import threading
import time
import uuid
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.signals import request_finished
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from scim2_filter_parser.lexer import SCIMLexer

from members.models import Organization
from members.phones import EXAMPLE_E164

from .. import flusher, process_state
from ..models import ProvisioningRun, RequestLog
from ..store import db
from ..text import storable_text
from .constants import GROUP_SCHEMA, LIST_RESPONSE_SCHEMA

logger = logging.getLogger(__name__)

MASK = "***"
MAX_BODY_CHARS = 16 * 1024
MAX_UNPARSED_CHARS = 4 * 1024
LOG_MODES = ("all", "writes", "errors", "off")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

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
    return _PHONE.sub(_mask_phone, _EMAIL.sub(MASK, text))


_GUIDANCE = "e.g. "


def _mask_phone(match: re.Match) -> str:
    # The example of the guidance ("use the international format, e.g. +9665...") is not
    # personal data: masking it hid the guidance (issue 18). Only as the example: the same
    # number anywhere else may be someone's.
    start = match.start()
    example = match.string[max(0, start - len(_GUIDANCE)) : start] == _GUIDANCE
    return match.group(0) if example and match.group(0) == EXAMPLE_E164 else MASK


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
        if key.lower() == "path" and isinstance(value, str) and "[" in value:
            # A value-filter path names its target by value: emails[value eq "x@y"].
            masked[key] = mask_filter(value)
        elif key.lower() != "value":
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
        elif lowered == "filter" and isinstance(item, str):
            # A SearchRequest body (POST /.search, RFC 7644 §3.4.3) carries a filter.
            masked[key] = mask_filter(item)
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


_COMPARISONS = frozenset({"EQ", "NE", "CO", "SW", "EW", "GT", "GE", "LT", "LE"})
_LITERALS = frozenset({"TRUE", "FALSE", "NULL"})
# A value where an attribute path belongs: the filter is malformed from here on.
_VALUES = frozenset({"COMP_VALUE", "NUMBER"}) | _LITERALS
_TYPE_VALUE = re.compile(r"[A-Za-z]{1,20}")
# What may follow a comparison's value: a logical operator, a closing bracket or parenthesis.
_AFTER_VALUE = frozenset({"AND", "OR", "RPAREN", "RBRACKET"})


def _kept(attribute: str, value: str) -> bool:
    """A filter value that identifies nobody: the ``type`` of a value filter
    (``emails[type eq "work"]``: a canonical word) or a UUID (ids, objectIds, Entra's probe
    GUID)."""
    if attribute.lower() == "type" and _TYPE_VALUE.fullmatch(value):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def mask_filter(text: str) -> str:
    """A SCIM filter or value-filter path (RFC 7644 §3.4.2.2, §3.5.2) with every comparison
    value masked, except ``type`` literals and UUIDs.

    Tokenised with scim2-filter-parser's lexer (the library that parses our filters), so
    quoted, unquoted and nested forms are told apart by the grammar, not by a pattern. Text
    the lexer cannot read (an unquoted ``userName eq x@y``, an escaped quote, a value still
    URL-encoded) is masked from where reading stopped to the end: the filter may be invalid,
    the log must still not keep a value in clear. Never raises.
    """
    text = _truncate(text)
    spans: list[tuple[int, int]] = []  # (start, end) of quoted values to mask
    cut: int | None = None  # everything from here is masked
    attribute = ""
    previous = ""
    state = "any"  # "value": a comparison's value comes next; "after": a value was read
    end = 0
    try:
        for token in SCIMLexer().tokenize(text):
            kind = token.type
            if state == "value":
                if kind == "COMP_VALUE":
                    if not _kept(attribute, token.value):
                        spans.append((token.index, token.index + len(token.value) + 2))
                elif kind not in _LITERALS:
                    cut = token.index
                    break
                state = "after"
            elif state == "after":
                if kind not in _AFTER_VALUE:
                    cut = token.index
                    break
                state = "any"
            elif kind in _COMPARISONS:
                attribute = previous
                state = "value"
            elif kind in _VALUES:
                cut = token.index
                break
            previous = token.value if kind in ("ATTRNAME", "SUBATTR") else ""
            end = token.end
        else:
            if state == "value":  # an operator with nothing after it
                cut = len(text)
    except Exception:  # the lexer refuses a character: mask from there on
        cut = end
    parts = []
    position = 0
    for start, stop in spans:
        parts += [text[position:start], f'"{MASK}"']
        position = stop
    if cut is None:
        return "".join(parts) + text[position:]
    head = ("".join(parts) + text[position:cut]).rstrip()
    return f"{head} {MASK}" if head else MASK


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

    A page of 100 users is tens of kilobytes to parse, mask and re-serialise (a large part of
    a list page's CPU) and would be cut at MAX_BODY_CHARS anyway; the ids identify nobody and
    lead to the records. ``page`` is the ``paging.Page`` the view answered.
    """
    summary = {
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": page.total,
        "itemsPerPage": page.items,
        "startIndex": page.start,
        "Resources": [{"id": scim_id} for scim_id in page.ids()],
    }
    return _truncate(json.dumps(summary))


def should_log(*, method: str, status: int) -> bool:
    mode = settings.BEEM_REQUEST_LOG
    if mode == "off":
        return False
    if mode == "errors":
        return status >= 400
    if mode == "writes":
        return method in WRITE_METHODS or status >= 400
    return True


def _commit_without_flush_wait() -> None:
    """Let this transaction commit without waiting for PostgreSQL's WAL flush.

    A log row is written for every SCIM request, most of them reads that write nothing else;
    waiting for an fsync on each would hold a web process idle for longer than the request's
    own work. A PostgreSQL crash can lose the last
    fraction of a second of log rows, never a directory write: those commit synchronously,
    and their flush also persists every log row before them.
    """
    db.commit_without_flush_wait()


def _request_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except Exception:  # a stream already consumed; log without the body
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
    keep_request_body: bool = True,
) -> dict:
    group = "/Groups" in request.path
    request_body = mask_body(_request_body(request), group=group) if keep_request_body else ""
    return {
        "organization_id": organization.pk,
        "run_id": run.pk if run is not None else None,
        "request_id": storable_text(str(getattr(request, "request_id", ""))[:64]),
        "method": storable_text(request.method[:10]),
        "path": storable_text(request.path[:500]),
        "query": storable_text(mask_query(request.META.get("QUERY_STRING", ""))),
        "status": response.status_code,
        "duration_ms": round(duration_ms, 3),
        "request_body": storable_text(request_body),
        "response_body": storable_text(_response_body(response, group=group)),
    }


def _flush_seconds() -> float:
    return settings.BEEM_REQUEST_LOG_FLUSH_SECONDS


def _failed(stage: str) -> None:
    from ..metrics import REQUEST_LOG_FAILURES

    REQUEST_LOG_FAILURES.labels(stage=stage).inc()


def request_log_write(
    *,
    organization: Organization,
    run: ProvisioningRun | None,
    request: HttpRequest,
    response: HttpResponse,
    duration_ms: float,
    keep_request_body: bool = True,
) -> None:
    """Keep one SCIM request (masked) if BEEM_REQUEST_LOG asks for it.

    The row is only prepared here; it is written after the response (see the module
    docstring), so nothing about it can fail or roll back the request's own transaction.
    ``keep_request_body=False`` for a request that did not authenticate. A second call for
    the same request (its write's COMMIT failed after the auth check kept the row, and the
    error middleware answers 500) replaces the row while it waits: one row per request,
    with the answer Entra really got. Never raises.
    """
    if not should_log(method=request.method, status=response.status_code):
        return
    try:
        values = _row_values(
            organization=organization,
            run=run,
            request=request,
            response=response,
            duration_ms=duration_ms,
            keep_request_body=keep_request_body,
        )
    except Exception:  # whatever went wrong, Entra's call keeps its answer
        _failed("prepare")
        logger.exception("could not prepare the SCIM request log row; the request stands")
        return
    request.scim_log_slot = _buffer_add(values, replace=getattr(request, "scim_log_slot", None))
    if _flush_seconds() <= 0 and not transaction.get_connection().in_atomic_block:
        # Not inside a request's transaction (a read): written now, as asked.
        request_log_flush()


# --- buffered rows -------------------------------------------------------------------------

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
_generation = 0  # counts the buffers taken by a flush: (generation, index) names a waiting row


def _buffer_add(values: dict, *, replace: tuple[int, int] | None = None) -> tuple[int, int]:
    """Buffer a row, or put it in place of the row ``replace`` names if that still waits;
    returns the row's (generation, index)."""
    global _oldest
    row = tuple(values[c] for c in _COLUMNS[:-1]) + (timezone.now(),)
    with _buffer_lock:
        if replace is not None and replace[0] == _generation:
            _buffer[replace[1]] = row
            return replace
        _buffer.append(row)
        if _oldest is None:
            _oldest = time.monotonic()
        size = len(_buffer)
        slot = (_generation, size - 1)
    flusher.background_flusher_ensure()
    if size >= _MAX_BUFFERED and not transaction.get_connection().in_atomic_block:
        request_log_flush()
    return slot


def _take() -> list[tuple]:
    global _buffer, _oldest, _generation
    with _buffer_lock:
        batch, _buffer, _oldest = _buffer, [], None
        _generation += 1
    return batch


def _due(*, factor: float = 1.0) -> bool:
    oldest = _oldest
    return oldest is not None and time.monotonic() - oldest >= factor * _flush_seconds()


def _insert(rows: list[tuple]) -> None:
    db.rows_insert(
        table=RequestLog._meta.db_table, columns=_COLUMNS, rows=rows, chunk=_INSERT_CHUNK
    )


def request_log_flush() -> int:
    """Write this process's buffered rows, each batch in its own transaction; returns how
    many were written. Never raises: a row that cannot be written is logged and counted."""
    batch = _take()
    if not batch:
        return 0
    try:
        with transaction.atomic():
            _commit_without_flush_wait()
            _insert(batch)
        return len(batch)
    except Exception:  # e.g. an organization deleted meanwhile: row by row
        logger.warning(
            "bulk write of %d SCIM request log rows failed; retrying one by one",
            len(batch),
            exc_info=True,
        )
    written = 0
    for row in batch:
        try:
            with transaction.atomic():
                _commit_without_flush_wait()
                _insert([row])
            written += 1
        except Exception:
            _failed("write")
            logger.exception("could not write a SCIM request log row; the request stands")
    return written


def request_log_buffer_discard() -> None:
    """Drop unwritten rows (tests; a forked child: its parent writes them)."""
    _take()


process_state.register(request_log_buffer_discard, holds=("_buffer",))


def _flush_if_due(**_kwargs) -> None:
    # request_finished: after the response went out (the WSGI server closes it) and after the
    # request's transaction ended, so the request that happens to flush does not wait for it
    # and the write it made is committed whatever happens to the log.
    if _due():
        request_log_flush()


request_finished.connect(_flush_if_due, dispatch_uid="beem_request_log_flush")


def _flush_if_idle() -> None:
    # Twice the interval: normally the next request's end flushes first.
    if _due(factor=2.0):
        request_log_flush()


flusher.flush_register(_flush_if_idle, interval=_flush_seconds)


@atexit.register
def _flush_at_exit() -> None:
    try:
        if _buffer:
            request_log_flush()
    except Exception:  # interpreter shutdown, best effort
        logger.debug("could not write the last SCIM request log rows at exit")
