"""Prometheus metrics: SCIM traffic, token issuance, the change-event backlog, apply outcomes.

Three sources:

* ``MetricsMiddleware`` counts and times every SCIM request (by route, method, status and
  organization id) and counts ``/o/token/`` responses by status. The SCIM auth check counts
  refused (401) requests by reason, and the request log counts rows it could not keep.
* ``DatabaseCollector`` queries the database at scrape time for what a counter in the web
  process cannot know: the pending/failed backlog per organization, the age of the oldest
  pending event, apply outcomes (status and outcome of the last hour's events), sync status
  counts and the worker heartbeat age. Apply outcomes come from the database rather than a
  counter because jobs run in Celery worker processes, which /metrics (served by the web
  processes) cannot see.
  Its queries use the partial ``change_event_pending`` index and the ``status`` and
  ``created_at`` indexes, so a scrape stays cheap with a large event table.

Multi-process servers (gunicorn with several workers) keep one set of counters per process.
Set ``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable directory before the server starts: the
library then writes counters to files there and ``/metrics`` merges all processes'
(``prometheus_client`` multiprocess mode; see README "Operations").
"""

import hmac
import os
import re
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Max, Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from .models import ChangeEvent, SyncSettings, WorkerHeartbeat

SCIM_REQUESTS = Counter(
    "beem_scim_requests",
    "SCIM requests answered, by route, method, status code and organization id.",
    ["route", "method", "status", "organization"],
)
SCIM_LATENCY = Histogram(
    "beem_scim_request_duration_seconds",
    "Time to answer a SCIM request, by route and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SCIM_UNAUTHENTICATED = Counter(
    "beem_scim_unauthenticated_requests",
    "SCIM requests refused with 401, by reason (missing_token, invalid_token, expired_token, "
    "wrong_tenant, sync_inactive). They are kept out of the organizations' request logs: "
    "anyone can send them.",
    ["reason"],
)
REQUEST_LOG_FAILURES = Counter(
    "beem_request_log_failures",
    "SCIM request log rows (stage prepare, write) and refused writes of a run "
    "(stage refused_request) that could not be kept. The requests themselves were answered "
    "and their writes kept.",
    ["stage"],
)
TOKEN_RESPONSES = Counter(
    "beem_oauth_token_responses",
    "Responses of the OAuth2 token endpoint (/o/token/), by status code.",
    ["status"],
)

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
_DISCOVERY = {"ServiceProviderConfig", "ResourceTypes", "Schemas"}
# /scim/v2/<organization id>/<Resource>[/<id>]; the organization segment is optional so a
# future single-tenant mount is still classified.
_SCIM_PATH = re.compile(r"^/scim/v2/(?:[^/]+/)?(?P<resource>[A-Za-z]+)(?P<rest>/[^/]*)?/?$")
TOKEN_PATH = "/o/token/"
# Window of the scrape-time apply-outcome gauge.
RECENT_WINDOW = timedelta(hours=1)


def scim_route(path: str) -> str | None:
    """The bounded route label of a SCIM path, or ``None`` when ``path`` is not SCIM."""
    if not path.startswith("/scim/"):
        return None
    match = _SCIM_PATH.match(path)
    if not match:
        return "other"
    resource = match["resource"]
    if resource in _DISCOVERY:
        return "discovery"
    if resource in ("Users", "Groups"):
        rest = (match["rest"] or "").strip("/")
        return f"{resource}/:id" if rest else resource
    return "other"


def _method_label(method: str) -> str:
    return method if method in _METHODS else "OTHER"


class MetricsMiddleware:
    """Counts and times SCIM requests and token-endpoint responses.

    Placed right after ``RequestIdMiddleware`` so the time covers the whole middleware chain.
    The organization label is read after the view ran, from ``request.scim_organization`` (set
    by the SCIM auth check only for an authenticated request); anything else is "unknown", so a
    caller cannot grow the label set with made-up organization ids.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        route = scim_route(path)
        if route is None:
            response = self.get_response(request)
            if path == TOKEN_PATH:
                TOKEN_RESPONSES.labels(status=str(response.status_code)).inc()
            return response
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        organization = getattr(request, "scim_organization", None)
        method = _method_label(request.method or "")
        SCIM_REQUESTS.labels(
            route=route,
            method=method,
            status=str(response.status_code),
            organization=str(organization.pk) if organization is not None else "unknown",
        ).inc()
        SCIM_LATENCY.labels(route=route, method=method).observe(elapsed)
        return response


class DatabaseCollector:
    """Gauges computed from the database at scrape time (see the module docstring)."""

    def describe(self) -> list:
        # Nothing to pre-declare: the metric families depend on what is in the database, and
        # an empty description keeps registration from running the queries.
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "beem_metrics_database_up", "1 when the scrape-time database queries succeeded."
        )
        try:
            families = list(self._collect())
        except DatabaseError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _collect(self) -> Iterable[GaugeMetricFamily]:
        now = timezone.now()
        pending = GaugeMetricFamily(
            "beem_change_events_pending",
            "Change events waiting to be applied, by organization id.",
            labels=["organization"],
        )
        oldest = GaugeMetricFamily(
            "beem_change_events_oldest_pending_age_seconds",
            "Age of the oldest pending change event, by organization id.",
            labels=["organization"],
        )
        for row in (
            ChangeEvent.objects.filter(status=ChangeEvent.Status.PENDING)
            .values("organization_id")
            .annotate(n=Count("id"), oldest=Min("created_at"))
            .order_by()
        ):
            org = str(row["organization_id"])
            pending.add_metric([org], row["n"])
            oldest.add_metric([org], max(0.0, (now - row["oldest"]).total_seconds()))
        yield pending
        yield oldest

        failed = GaugeMetricFamily(
            "beem_change_events_failed",
            "Change events whose apply failed and that wait for an operator, by organization id.",
            labels=["organization"],
        )
        for row in (
            ChangeEvent.objects.filter(status=ChangeEvent.Status.FAILED)
            .values("organization_id")
            .annotate(n=Count("id"))
            .order_by()
        ):
            failed.add_metric([str(row["organization_id"])], row["n"])
        yield failed

        recent = GaugeMetricFamily(
            "beem_change_events_recent",
            "Change events created in the last hour, by status and apply outcome.",
            labels=["status", "outcome"],
        )
        for row in (
            ChangeEvent.objects.filter(created_at__gte=now - RECENT_WINDOW)
            .values("status", "outcome")
            .annotate(n=Count("id"))
            .order_by()
        ):
            recent.add_metric([row["status"], row["outcome"] or "none"], row["n"])
        yield recent

        syncs = GaugeMetricFamily(
            "beem_sync_organizations",
            "Organizations by Entra ID sync status.",
            labels=["status"],
        )
        for row in SyncSettings.objects.values("status").annotate(n=Count("id")).order_by():
            syncs.add_metric([row["status"]], row["n"])
        yield syncs

        last = WorkerHeartbeat.objects.aggregate(last=Max("seen_at"))["last"]
        if last is not None:
            heartbeat = GaugeMetricFamily(
                "beem_worker_last_heartbeat_age_seconds",
                "Seconds since a Celery worker last recorded a heartbeat.",
            )
            heartbeat.add_metric([], max(0.0, (now - last).total_seconds()))
            yield heartbeat


def metrics_exposition() -> bytes:
    """The text exposition of every metric, merged across processes in multiprocess mode."""
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
        return generate_latest(processes) + generate_latest(database)
    return generate_latest(REGISTRY) + generate_latest(database)


def _authorized(request: HttpRequest) -> bool:
    expected = settings.BEEM_METRICS_TOKEN
    if not expected:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        supplied.strip().encode(), expected.encode()
    )


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus text format; a bearer token when BEEM_METRICS_TOKEN is set."""
    if not _authorized(request):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="beem-metrics"'
        return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
