"""The short scale-out soak (bench/scaleout.py) runs in CI: Entra-like cycles of three tenants
through HAProxy to two gunicorn groups, two Celery workers and PgBouncer in transaction mode,
while one worker and one web group are SIGKILLed (and started again, as a supervisor would).
Every change must be applied, nothing lost or duplicated, no two drains of one organization
may overlap, and nothing session-level may be left on PgBouncer's server connections.

``make soak-scale`` runs it at length.
"""

import socket

import pytest

from bench.scaleout import WEB_GROUPS, WORKERS, ScaleOptions, run_scale_soak

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _redis_port() -> int:
    """A port for the soak's private Redis: the first free one of 6391-6394 (6390 is the
    default of a manual run)."""
    for port in range(6391, 6395):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("ports 6391-6394 are all taken")


def test_short_scaleout_soak_converges_with_one_drain_per_organization(scaleout_services):
    options = ScaleOptions(
        duration=36,
        tenants=3,
        web_workers=1,
        worker_concurrency=2,
        pool_size=10,
        redis_port=_redis_port(),
        converge_timeout=150,
    )

    report = run_scale_soak(options)

    assert report.problems == [], "\n".join(report.lines())
    killed = {name for name, _at in report.kills}
    assert killed & set(WORKERS) and killed & set(WEB_GROUPS)
    assert all(report.drains[name] > 0 for name in WORKERS), report.drains
    assert report.overlaps == []
    assert report.session_leaks == [] and report.server_connections_checked > 0
    assert report.events["pending"] == 0 and report.events["applied"] > 0
    assert report.requests["create 201"] >= 3
