"""The short soak (bench/soak.py) runs in CI: Entra cycles for several tenants against gunicorn,
a private Redis, a real Celery worker and beat, while the worker is restarted and SIGKILLed and
Redis is stopped and started. Nothing may be lost, duplicated or left different."""

import shutil

import pytest
from django.db import connection

from bench.soak import SoakOptions, run_soak

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def soak_environment(transactional_db):
    # The web server and the worker are separate processes: they must see committed rows,
    # hence transactional_db, and PostgreSQL for real row locks.
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://...")
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (the soak starts a private one)")


def test_short_soak_loses_nothing_under_worker_kills_and_broker_restarts(soak_environment):
    options = SoakOptions(
        duration=30, tenants=3, chaos_interval=5, redis_down_seconds=3, converge_timeout=240
    )

    report = run_soak(options)

    assert report.problems == [], "\n".join(report.lines())
    assert report.chaos["worker_kill"] >= 1
    assert report.chaos["redis_bounce"] >= 1
    assert report.chaos["worker_restart"] >= 1
    assert report.events["pending"] == 0
    assert report.events["applied"] > 0
    assert report.requests["create 201"] >= 3
