"""The SCIM auth check django-scim2 wraps every SCIM view with
(``SCIM_SERVICE_PROVIDER["AUTH_CHECK_MIDDLEWARE"]``): log → authenticate → attribute to run, one
step each, and the database health check a SCIM request skips when its connection answered
this process's previous one moments ago.
"""

import time
import uuid

from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse
from django.utils.log import log_response

from ..metrics import SCIM_UNAUTHENTICATED
from . import request_log
from .auth import AuthFailure, authenticate, organization_or_none, unauthorized_response

READ_METHODS = frozenset({"GET", "HEAD"})
SEARCH_SUFFIX = "/.search"


def is_read(request) -> bool:
    """GET, and ``POST .../.search`` (RFC 7644 §3.4.3): a query sent in a body, which changes
    nothing, so it is run, logged and attributed to a provisioning run like a GET."""
    return request.method in READ_METHODS or (
        request.method == "POST" and request.path.endswith(SEARCH_SUFFIX)
    )


class SCIMAuthCheckMiddleware:
    """django-scim2 wraps ``SCIMView.dispatch`` with this (``AUTH_CHECK_MIDDLEWARE``): three
    steps, each with one responsibility, outermost first.

    1. :class:`RequestLogStep` times the request and writes its request-log row.
    2. :class:`AuthenticateStep` lets a request pass only with a valid, unexpired, unrevoked
       token of the application bound to the sync settings of the organization in the URL,
       while that sync is active; it then carries ``scim_organization`` and
       ``scim_sync_settings``.
    3. :class:`RunAttributionStep` attributes the request to its provisioning run
       (``scim_run``) and keeps a write refused with a 4xx as a failure of that run.
    """

    def __init__(self, get_response):
        self.handler = RequestLogStep(AuthenticateStep(RunAttributionStep(get_response)))

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return self.handler(request, *args, **kwargs)


class RequestLogStep:
    """Writes every authenticated request to the organization's request log. A 401 is kept
    out of it (anyone can send one) except when the token is the organization's own and its
    sync is stopped (Entra still calling): that one is logged without its request body."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        started = time.perf_counter()
        if not getattr(request, "request_id", None):
            request.request_id = uuid.uuid4().hex
        response = self.get_response(request, *args, **kwargs)
        if response.status_code == 501:
            # A feature this service does not offer (/.search, /Bulk, /Me: RFC 7644 §3.12),
            # asked for by a client: not a server fault, so not at ERROR level, where Django
            # logs every 5xx (issue 13).
            log_response(
                "Not Implemented: %s",
                request.path,
                response=response,
                request=request,
                level="info",
            )
        organization = getattr(request, "scim_organization", None)
        authenticated = organization is not None
        if not authenticated:
            organization = getattr(request, "scim_refused_organization", None)
        if organization is not None:
            request_log.request_log_write(
                organization=organization,
                run=getattr(request, "scim_run", None) if authenticated else None,
                request=request,
                response=response,
                duration_ms=(time.perf_counter() - started) * 1000,
                keep_request_body=authenticated,
            )
        return response


class AuthenticateStep:
    """401 unless :func:`authenticate` passes (counted in
    ``beem_scim_unauthenticated_requests_total`` by reason); a token of the organization
    whose sync is stopped marks the request's ``scim_refused_organization`` for the log."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        organization_id = kwargs.get("organization_id")
        try:
            sync_settings = authenticate(request=request, organization_id=organization_id)
        except AuthFailure as failure:
            SCIM_UNAUTHENTICATED.labels(reason=failure.reason).inc()
            if failure.reason == AuthFailure.SYNC_INACTIVE:
                request.scim_refused_organization = organization_or_none(organization_id)
            return unauthorized_response(failure)
        request.scim_organization = sync_settings.organization
        request.scim_sync_settings = sync_settings
        return self.get_response(request, *args, **kwargs)


class RunAttributionStep:
    """Sets ``scim_run``: the provisioning run an authenticated request belongs to."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        from .. import runs

        sync_settings = request.scim_sync_settings
        db = connections[DEFAULT_DB_ALIAS]
        health_check_if_idle()
        read = is_read(request)
        deferred_write = not read and db.vendor == "postgresql"
        if not deferred_write:
            runs.last_request_note(sync_settings=sync_settings)
        if read:
            # A read changes nothing, so it learns its run after the view, which reads
            # the open run in its own statement (views._ResourceView._read): one round
            # trip per lookup. Entra's probe is such a lookup.
            response = self.get_response(request, *args, **kwargs)
            run = runs.run_for_request(
                sync_settings=sync_settings,
                request=request,
                open_run=getattr(request, "scim_open_run", None),
            )
            request.scim_run = run
        elif deferred_write:
            # A write's change events belong to its run: the record services read the
            # open run in the write's own statement and the run is settled after the view
            # (runs.WriteRun), inside the write's transaction. Everything that locks the
            # sync settings or run rows (opening a run, run counts, last_request_at) comes
            # after the record's own locks, in every write: one lock order, no deadlock
            # between two writes of which one opens a run.
            pending = runs.WriteRun(sync_settings.organization_id)
            request.scim_run = pending
            response = self.get_response(request, *args, **kwargs)
            if db.needs_rollback:
                # The view's transaction failed (a 500): nothing to attribute.
                run = request.scim_run = None
            else:
                run = runs.write_run_settle(
                    sync_settings=sync_settings, request=request, pending=pending
                )
                request.scim_run = run
                runs.last_request_note(sync_settings=sync_settings)
        else:
            # The embedded default (SQLite): the run first, in statements of its own.
            run = runs.run_for_request(sync_settings=sync_settings, request=request)
            request.scim_run = run
            response = self.get_response(request, *args, **kwargs)
        if run is not None:
            _database_answered()
            if not read and runs.is_refused_write(
                method=request.method, status=response.status_code
            ):
                runs.refusal_record(
                    run=run, request=request, response=response, scim_id=kwargs.get("uuid")
                )
        return response


# CONN_HEALTH_CHECKS costs a "SELECT 1" round trip at the start of every request, a large
# share of a SCIM lookup's round trips. The check is for connections left idle (a database
# restart, an idle timeout); one that answered this process's previous SCIM request moments
# ago is not checked again. If it broke in between anyway, that request fails (Entra retries
# it) and Django drops the connection at the request's end.
HEALTH_CHECK_SKIP_SECONDS = 1.0
_database_ok: tuple[int, float] | None = None  # (id of the raw connection, monotonic time)


def health_check_if_idle() -> None:
    # connections[...] once: each attribute read through django.db.connection looks the
    # wrapper up again in an asgiref Local, which costs more than the check itself.
    wrapper = connections[DEFAULT_DB_ALIAS]
    raw = wrapper.connection
    if raw is None or not wrapper.health_check_enabled or wrapper.health_check_done:
        return
    last = _database_ok
    if (
        last is not None
        and last[0] == id(raw)
        and time.monotonic() - last[1] < (HEALTH_CHECK_SKIP_SECONDS)
    ):
        wrapper.health_check_done = True


def _database_answered() -> None:
    global _database_ok
    wrapper = connections[DEFAULT_DB_ALIAS]
    if wrapper.connection is not None and not wrapper.errors_occurred:
        _database_ok = (id(wrapper.connection), time.monotonic())
