"""/metrics: SCIM and token counters, latency, backlog gauges, bearer protection, multiprocess."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from directory_sync.metrics import scim_route
from directory_sync.models import ChangeEvent

from .conftest import token_obtain
from .engine_factories import sync_settings_make, user_create

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


@pytest.mark.parametrize(
    "path, route",
    [
        ("/scim/v2/7/Users", "Users"),
        ("/scim/v2/7/Users/", "Users"),
        ("/scim/v2/7/Users/6f3f6a8e-1b9c-4e0b-9c52-8d1d0f6a0001", "Users/:id"),
        ("/scim/v2/7/Groups", "Groups"),
        ("/scim/v2/7/Groups/abc", "Groups/:id"),
        ("/scim/v2/7/ServiceProviderConfig", "discovery"),
        ("/scim/v2/7/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", "discovery"),
        ("/scim/v2/7/ResourceTypes", "discovery"),
        ("/scim/v2/7/Bulk", "other"),
        ("/scim/v2/7/Users/a/b/c", "other"),
        ("/members/", None),
        ("/o/token/", None),
    ],
)
def test_scim_route_labels_are_bounded(path, route):
    assert scim_route(path) == route


def test_scim_request_is_counted_by_route_method_status_and_organization(scim, organization):
    labels = dict(route="Users", method="GET", status="200", organization=str(organization.pk))
    before = sample("beem_scim_requests_total", **labels)
    timed_before = sample("beem_scim_request_duration_seconds_count", route="Users", method="GET")

    response = scim.get("/Users", params={"filter": f'userName eq "{uuid.uuid4()}"'})

    assert response.status_code == 200
    assert sample("beem_scim_requests_total", **labels) == before + 1
    assert (
        sample("beem_scim_request_duration_seconds_count", route="Users", method="GET")
        == timed_before + 1
    )


def test_scim_create_is_counted_on_the_users_route_with_201(scim, organization):
    labels = dict(route="Users", method="POST", status="201", organization=str(organization.pk))
    before = sample("beem_scim_requests_total", **labels)

    response = scim.post(
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "metrics@acme.example",
            "externalId": str(uuid.uuid4()),
            "active": "True",
            "displayName": "Metrics Probe",
            "emails": [{"type": "work", "value": "metrics@acme.example", "primary": True}],
            "phoneNumbers": [{"type": "mobile", "value": "+966512345611"}],
        },
    )

    assert response.status_code == 201, response.content
    assert sample("beem_scim_requests_total", **labels) == before + 1


def test_unauthenticated_scim_request_has_no_organization_label(client, organization):
    labels = dict(route="Users", method="GET", status="401", organization="unknown")
    before = sample("beem_scim_requests_total", **labels)

    response = client.get(f"/scim/v2/{organization.pk}/Users")

    assert response.status_code == 401
    assert sample("beem_scim_requests_total", **labels) == before + 1
    assert (
        sample(
            "beem_scim_requests_total",
            route="Users",
            method="GET",
            status="401",
            organization=str(organization.pk),
        )
        == 0
    )


def test_token_endpoint_responses_are_counted_by_status(credentials):
    ok_before = sample("beem_oauth_token_responses_total", status="200")
    refused_before = sample("beem_oauth_token_responses_total", status="401")

    assert token_obtain(credentials.client_id, credentials.client_secret).status_code == 200
    assert token_obtain(credentials.client_id, "wrong-secret").status_code == 401

    assert sample("beem_oauth_token_responses_total", status="200") == ok_before + 1
    assert sample("beem_oauth_token_responses_total", status="401") == refused_before + 1


def test_scrape_shows_the_scim_counter_moving(scim, organization, client):
    key = (
        "beem_scim_requests_total",
        tuple(
            sorted(
                dict(
                    route="Users/:id",
                    method="GET",
                    status="404",
                    organization=str(organization.pk),
                ).items()
            )
        ),
    )
    before = scraped(client).get(key, 0.0)

    assert scim.get(f"/Users/{uuid.uuid4()}").status_code == 404

    assert scraped(client)[key] == before + 1


def test_scrape_reports_backlog_failures_and_oldest_pending_age(client, organization):
    sync_settings_make(organization)
    for name in ("a", "b", "c"):
        user_create(organization, user_name=f"{name}@acme.example", email=f"{name}@acme.example")
    first = ChangeEvent.objects.order_by("id").first()
    ChangeEvent.objects.filter(pk=first.pk).update(status=ChangeEvent.Status.FAILED)
    ChangeEvent.objects.filter(pk=first.pk + 1).update(
        created_at=timezone.now() - timedelta(seconds=300)
    )
    org = (("organization", str(organization.pk)),)

    metrics = scraped(client)

    assert metrics[("beem_change_events_pending", org)] == 2
    assert metrics[("beem_change_events_failed", org)] == 1
    assert 300 <= metrics[("beem_change_events_oldest_pending_age_seconds", org)] < 360
    assert metrics[("beem_sync_organizations", (("status", "active"),))] == 1
    assert metrics[("beem_metrics_database_up", ())] == 1
    assert metrics[("beem_change_events_recent", (("outcome", "none"), ("status", "pending")))] == 2


def test_scrape_reports_apply_outcomes(client, organization, django_capture_on_commit_callbacks):
    sync_settings_make(organization)
    with django_capture_on_commit_callbacks(execute=True):
        user_create(organization, user_name="a@acme.example", email="a@acme.example")

    metrics = scraped(client)

    assert (
        metrics[("beem_change_events_recent", (("outcome", "created"), ("status", "applied")))] == 1
    )


def test_metrics_content_type_is_prometheus_text(client, db):
    response = client.get("/metrics")

    assert response["Content-Type"].startswith("text/plain; version=")


def test_metrics_token_is_required_when_configured(client, db, settings):
    settings.BEEM_METRICS_TOKEN = "scrape-secret-7"

    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-7")

    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="beem-metrics"'
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert b"# TYPE beem_scim_requests_total counter" in right.content


def test_metrics_are_open_without_a_configured_token(client, db, settings):
    settings.BEEM_METRICS_TOKEN = ""

    assert client.get("/metrics").status_code == 200


MULTIPROCESS_SCRIPT = """
import sys, django
django.setup()
from directory_sync import metrics
if sys.argv[1] == "count":
    metrics.TOKEN_RESPONSES.labels(status="200").inc()
else:
    sys.stdout.write(metrics.metrics_exposition().decode())
"""


def test_multiprocess_mode_merges_counters_of_every_process(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, /metrics sums what each (gunicorn) process counted."""
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "beem_admin.settings",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unmigrated.sqlite3'}",
    }

    def run(mode: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", MULTIPROCESS_SCRIPT, mode],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    run("count")
    run("count")
    exposition = run("show")

    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }
    assert values[("beem_oauth_token_responses_total", (("status", "200"),))] == 2
    # The scrape-time database gauges are still there, and say the database is not usable.
    assert values[("beem_metrics_database_up", ())] == 0
