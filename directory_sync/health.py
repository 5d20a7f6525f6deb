"""``GET /healthz`` and the worker heartbeat it reports.

The answer is meant for a load balancer and for humans: fast (one ``SELECT 1``, one broker
ping with a short timeout, one heartbeat read), unauthenticated, and free of secrets and of
any organization's data.

Status semantics (also in README "Operations"):

* ``database`` is "ok" or "down". The HTTP status follows it alone: **200** while the database
  answers, **503** when it does not, because a web process without its database cannot serve
  anything, while one without a broker or worker still serves SCIM correctly (events stay in
  the outbox and are dispatched later, design.md §3).
* ``broker`` is "ok", "down", or "eager" when no broker is configured (embedded mode).
* ``worker`` is ``{"last_heartbeat_seconds": N}``, "none" when no worker ever recorded a
  heartbeat, or "eager" in embedded mode where jobs run in-process.
* ``status`` is "down" when the database is down, "degraded" when the broker is down or the
  last heartbeat is missing or older than ``BEEM_WORKER_HEARTBEAT_MAX_AGE_SECONDS``, else "ok".
"""

import logging
import socket

from celery.signals import worker_ready
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Max
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from .models import WorkerHeartbeat
from .store import db

logger = logging.getLogger(__name__)

OK = "ok"
DOWN = "down"
DEGRADED = "degraded"
EAGER = "eager"
NONE = "none"
HEALTHZ_PATH = "/healthz"


def worker_heartbeat_record(*, hostname: str | None = None) -> WorkerHeartbeat:
    """Record that the worker ``hostname`` (default: this host) is alive, now."""
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(
        hostname=(hostname or socket.gethostname())[:255],
        defaults={"seen_at": timezone.now()},
    )
    return heartbeat


@worker_ready.connect(dispatch_uid="beem_worker_ready_heartbeat")
def _heartbeat_on_worker_ready(sender=None, **kwargs) -> None:
    # A freshly started worker shows up in /healthz at once instead of after the first beat
    # tick. Settings list this module in CELERY_IMPORTS so the worker connects this receiver.
    try:
        worker_heartbeat_record(hostname=getattr(sender, "hostname", None))
    except DatabaseError:
        logger.warning("could not record the worker heartbeat at start-up")


def database_status() -> str:
    try:
        db.ping()
    except DatabaseError:
        return DOWN
    except Exception:  # e.g. a driver error raised outside DatabaseError
        return DOWN
    return OK


def broker_status() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return EAGER
    url = settings.CELERY_BROKER_URL
    timeout = settings.BEEM_HEALTHZ_BROKER_TIMEOUT_SECONDS
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=timeout) as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception:  # any failure to reach the broker means "down"
        return DOWN
    return OK


def worker_status(*, database: str) -> dict | str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return EAGER
    if database != OK:
        return NONE
    try:
        last = WorkerHeartbeat.objects.aggregate(last=Max("seen_at"))["last"]
    except DatabaseError:
        return NONE
    if last is None:
        return NONE
    return {"last_heartbeat_seconds": max(0, int((timezone.now() - last).total_seconds()))}


def health_report() -> tuple[dict, int]:
    """The /healthz body and HTTP status (see the module docstring)."""
    database = database_status()
    broker = broker_status()
    worker = worker_status(database=database)
    if database != OK:
        status = DOWN
    elif broker == DOWN:
        status = DEGRADED
    elif worker == NONE or (
        isinstance(worker, dict)
        and worker["last_heartbeat_seconds"] > settings.BEEM_WORKER_HEARTBEAT_MAX_AGE_SECONDS
    ):
        status = DEGRADED
    else:
        status = OK
    body = {"status": status, "database": database, "broker": broker, "worker": worker}
    return body, (200 if database == OK else 503)


@never_cache
@require_http_methods(["GET", "HEAD"])
def healthz(request: HttpRequest) -> JsonResponse:
    body, status = health_report()
    return JsonResponse(body, status=status)


class HealthzMiddleware:
    """Answers ``GET /healthz`` before the rest of the middleware chain.

    Load balancers probe backends by IP address and over plain HTTP: going through the chain,
    ``ALLOWED_HOSTS`` would answer 400 and ``SECURE_SSL_REDIRECT`` a 301, hiding the real state.
    Listed right after ``RequestIdMiddleware`` so the answer still carries ``X-Request-ID``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if request.path_info == HEALTHZ_PATH and request.method in ("GET", "HEAD"):
            return healthz(request)
        return self.get_response(request)
