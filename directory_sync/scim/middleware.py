"""Every answer under ``/scim/`` is SCIM, and a SCIM request holds the database for a bounded time.

Entra ID records a SCIM error's ``detail`` in its provisioning log; an HTML page there (Django's
404 for a path outside our routes, a debug page, the 500 page of an exception raised around the
view) tells the administrator nothing and reads as a protocol violation. ``ScimErrorMiddleware``
answers every error under ``/scim/`` with an RFC 7644 §3.12 error body, in DEBUG too:

- an exception the SCIM view lets through (a failed write re-raises it so that its transaction
  rolls back, the auth check's own queries) is answered here, from ``process_exception``;
- any other error response (Django's 404 for an unknown path, the 500 of an exception in a
  middleware) has its HTML body replaced, its status and headers kept.

``ScimDatabaseBoundsMiddleware`` bounds PostgreSQL's ``statement_timeout`` and ``lock_timeout`` in
every transaction of a SCIM request (BEEM_SCIM_STATEMENT_TIMEOUT_MS, BEEM_SCIM_LOCK_TIMEOUT_MS,
``SET LOCAL``: nothing outlives the transaction, behind PgBouncer too): a request stuck behind
another connection's lock or in a runaway statement is answered 503 with ``Retry-After`` (nothing
was changed: a write's transaction rolls back) well before the web server kills the worker and
the client gets a bare 500.

Both are in the ``/scim/`` chain of ``settings.MIDDLEWARE_BY_PATH`` only, so they do not check
the path themselves.
"""

import json
import time
from collections.abc import Callable

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    InterfaceError,
    OperationalError,
    connections,
)
from django.http import HttpRequest, HttpResponse
from django.utils.log import log_response
from django_scim.exceptions import SCIMException
from django_scim.settings import scim_settings

from ..store import db
from . import errors, request_log
from .constants import ERROR_SCHEMA, SCIM_CONTENT_TYPE

# What a 503 asks the client to wait before sending the request again.
RETRY_AFTER_SECONDS = 5

_CHANGED_NOTHING = "Nothing was changed; send the request again later."
# PostgreSQL errors after which the same request may well succeed (PostgreSQL appendix A,
# "Error Codes"): answered 503 with Retry-After instead of 500.
_RETRYABLE_SQLSTATES = {
    "57014": "The request took longer than this service allows for one database step "
    "({statement_ms} ms). " + _CHANGED_NOTHING,
    "55P03": "Another change to the same data is still in progress (waited {lock_ms} ms). "
    + _CHANGED_NOTHING,
    "40P01": "The request collided with a concurrent change. " + _CHANGED_NOTHING,
    "40001": "The request collided with a concurrent change. " + _CHANGED_NOTHING,
}
_UNAVAILABLE = "The database is unavailable. " + _CHANGED_NOTHING
# admin_shutdown, crash_shutdown, cannot_connect_now: a restart or failover in progress.
_SHUTDOWN_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def _sqlstate(exc: BaseException) -> str | None:
    # Django wraps the driver's error; psycopg 3 names the code ``sqlstate`` (psycopg2: pgcode).
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def _retryable_detail(exc: BaseException) -> str | None:
    """The 503 detail for a database failure that a retry may cure, else None."""
    if not isinstance(exc, DatabaseError):
        return None
    sqlstate = _sqlstate(exc)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return _RETRYABLE_SQLSTATES[sqlstate].format(
            statement_ms=settings.BEEM_SCIM_STATEMENT_TIMEOUT_MS,
            lock_ms=settings.BEEM_SCIM_LOCK_TIMEOUT_MS,
        )
    if sqlstate is not None and (sqlstate.startswith("08") or sqlstate in _SHUTDOWN_SQLSTATES):
        return _UNAVAILABLE
    if (
        sqlstate is None
        and isinstance(exc, OperationalError | InterfaceError)
        and connections[DEFAULT_DB_ALIAS].vendor == "postgresql"
    ):
        # psycopg raises errors of its own (no SQLSTATE) when the server cannot be reached or
        # closed the connection.
        return _UNAVAILABLE
    return None


def failure_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The SCIM answer to an exception raised while serving ``request``, logged once.

    A database timeout, lock wait, deadlock or outage is a 503 with ``Retry-After``, logged as
    a warning with its traceback; anything else is a 500 logged as an error with its traceback.
    """
    retry_detail = _retryable_detail(exc)
    if isinstance(exc, SCIMException):
        error = exc
    elif retry_detail is not None:
        error = errors.ScimError(retry_detail, status=503)
    elif scim_settings.EXPOSE_SCIM_EXCEPTIONS:
        error = errors.ScimError(str(exc), status=500)
    else:
        error = errors.ScimError(
            "The service failed to complete the SCIM request; the failure was logged with "
            f"request id {getattr(request, 'request_id', '-')}.",
            status=500,
        )
    body = error.to_dict()
    response = HttpResponse(json.dumps(body), status=error.status, content_type=SCIM_CONTENT_TYPE)
    # The request log masks this dict instead of parsing the JSON again (views.json_response).
    response.scim_body = body
    if isinstance(error, errors.ScimError):
        error.headers_set(response)
    if retry_detail is not None:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if not isinstance(exc, SCIMException):
        # Django's own line for a 5xx, with the traceback; marks the response as logged.
        log_response(
            "%s: %s",
            response.reason_phrase,
            request.path,
            response=response,
            request=request,
            level="warning" if retry_detail is not None else "error",
            exception=exc,
        )
    return response


def _error_detail(request: HttpRequest, response: HttpResponse) -> str:
    if response.status_code == 404:
        return f"{request.path} is not a SCIM endpoint."
    if response.status_code >= 500:
        return (
            "The service failed to complete the SCIM request; the failure was logged with "
            f"request id {getattr(request, 'request_id', '-')}."
        )
    return f"{response.reason_phrase}."


class ScimErrorMiddleware:
    """Under ``/scim/``: every error answer is a SCIM error body (see the module docstring).

    Listed right after the metrics middleware in the ``/scim/`` chain, so that the errors of
    every middleware after it are covered too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.scim_started = time.perf_counter()
        response = self.get_response(request)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith(
            SCIM_CONTENT_TYPE
        ):
            self._rewrite(request, response)
        return response

    @staticmethod
    def _rewrite(request: HttpRequest, response: HttpResponse) -> None:
        # In place: status, headers (Allow, WWW-Authenticate, Retry-After, ...) and Django's
        # "already logged" mark stay as they are.
        body = {
            "schemas": [ERROR_SCHEMA],
            "status": str(response.status_code),
            "detail": _error_detail(request, response),
        }
        response.content = json.dumps(body)
        response["Content-Type"] = SCIM_CONTENT_TYPE
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        response = failure_response(request, exception)
        organization = getattr(request, "scim_organization", None)
        if organization is not None:
            # The exception passed the auth check by, so its log row was never queued (or, for
            # a write whose COMMIT failed, it says 2xx): log the answer Entra really gets.
            request_log.request_log_write(
                organization=organization,
                run=None,
                request=request,
                response=response,
                duration_ms=(time.perf_counter() - request.scim_started) * 1000,
            )
        return response


# --- database bounds -------------------------------------------------------------------------


def _bounds_wanted() -> tuple[int, int] | None:
    bounds = (settings.BEEM_SCIM_STATEMENT_TIMEOUT_MS, settings.BEEM_SCIM_LOCK_TIMEOUT_MS)
    return bounds if any(bounds) else None


class ScimDatabaseBoundsMiddleware:
    """Bounds how long a SCIM request's statements may run and wait for locks (PostgreSQL).

    Every transaction the request runs (each autocommit statement, each ``atomic`` block)
    starts with the bounds as ``SET LOCAL`` settings (``db.transaction_timeouts``): the
    connection's session never changes, so nothing leaks into the next transaction on the same
    server connection, which behind PgBouncer in transaction mode may be another client's.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        bounds = _bounds_wanted()
        if bounds is None or not db.is_postgres():
            return self.get_response(request)
        with db.transaction_timeouts(*bounds):
            return self.get_response(request)
