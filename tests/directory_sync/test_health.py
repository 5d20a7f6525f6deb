"""GET /healthz: database, broker and worker state for a load balancer."""

import os
import socket
import time
from datetime import timedelta

import pytest
from celery.signals import worker_ready
from django.db import OperationalError, connections
from django.utils import timezone

from directory_sync.health import worker_heartbeat_record
from directory_sync.models import SyncSettings, WorkerHeartbeat


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def real_broker(settings):
    """Non-eager mode with an in-memory broker (always reachable, no Redis needed)."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "memory://"
    WorkerHeartbeat.objects.all().delete()


def test_healthz_in_embedded_mode_is_ok_with_eager_broker_and_worker(client, db):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "eager",
        "worker": "eager",
    }


def test_healthz_shows_no_organization_data_or_settings(client, organization, settings):
    SyncSettings.objects.create(organization=organization, status=SyncSettings.Status.ACTIVE)
    settings.BEEM_METRICS_TOKEN = "metrics-secret-token"

    body = client.get("/healthz").content.decode()

    for leak in ("acme", "Acme", str(organization.pk) + ",", "metrics-secret-token", "active"):
        assert leak not in body


def test_healthz_with_broker_down_is_degraded_but_200(client, db, real_broker, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{_closed_port()}/0"
    worker_heartbeat_record(hostname="celery@w1")

    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "database": "ok",
        "broker": "down",
        "worker": {"last_heartbeat_seconds": 0},
    }
    assert elapsed < 3


def test_healthz_with_unreachable_non_redis_broker_is_degraded(client, db, real_broker, settings):
    settings.CELERY_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{_closed_port()}//"
    worker_heartbeat_record(hostname="celery@w1")

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["broker"] == "down"
    assert response.json()["status"] == "degraded"


def test_healthz_is_ok_with_broker_up_and_fresh_heartbeat(client, db, real_broker):
    worker_heartbeat_record(hostname="celery@w1")

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "worker": {"last_heartbeat_seconds": 0},
    }


def test_healthz_without_any_heartbeat_reports_no_worker(client, db, real_broker):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["worker"] == "none"
    assert response.json()["status"] == "degraded"


def test_healthz_with_stale_heartbeat_is_degraded(client, db, real_broker, settings):
    settings.BEEM_WORKER_HEARTBEAT_MAX_AGE_SECONDS = 120
    WorkerHeartbeat.objects.create(
        hostname="celery@old", seen_at=timezone.now() - timedelta(seconds=600)
    )

    body = client.get("/healthz").json()

    assert body["status"] == "degraded"
    assert 600 <= body["worker"]["last_heartbeat_seconds"] < 660


def test_healthz_reports_the_most_recent_of_several_workers(client, db, real_broker):
    WorkerHeartbeat.objects.create(
        hostname="celery@old", seen_at=timezone.now() - timedelta(hours=2)
    )
    worker_heartbeat_record(hostname="celery@new")

    assert client.get("/healthz").json()["worker"] == {"last_heartbeat_seconds": 0}


@pytest.mark.redis
def test_healthz_pings_a_real_redis_broker(client, db, settings):
    url = os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/2"
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"needs Redis at {url}")
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = url
    worker_heartbeat_record(hostname="celery@w1")

    body = client.get("/healthz").json()

    assert body["broker"] == "ok"
    assert body["status"] == "ok"


def test_healthz_answers_503_when_the_database_is_down(client, db, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(connections["default"], "cursor", refuse)
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["database"] == "down"
    assert response.json()["status"] == "down"


def test_healthz_answers_load_balancer_probes_by_ip_over_http(client, db, settings):
    settings.ALLOWED_HOSTS = ["beem.example.com"]
    settings.SECURE_SSL_REDIRECT = True

    response = client.get("/healthz", HTTP_HOST="10.0.3.17")

    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_healthz_refuses_writes(client, db):
    assert client.post("/healthz").status_code == 405


def test_worker_heartbeat_record_updates_one_row_per_host(db):
    first = worker_heartbeat_record(hostname="celery@w1")
    second = worker_heartbeat_record(hostname="celery@w1")

    assert WorkerHeartbeat.objects.filter(hostname="celery@w1").count() == 1
    assert second.pk == first.pk and second.seen_at >= first.seen_at


def test_worker_ready_signal_records_a_heartbeat(db):
    class Consumer:  # what the worker sends as the signal's sender
        hostname = "celery@fresh"

    worker_ready.send(sender=Consumer())

    assert WorkerHeartbeat.objects.filter(hostname="celery@fresh").exists()
