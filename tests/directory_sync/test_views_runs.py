"""Runs: the list of provisioning runs and a run's changes and SCIM requests."""

from django.urls import reverse

from directory_sync.engine import events_drain
from directory_sync.models import ChangeEvent, ProvisioningRun, RequestLog
from members.display import phone_ltr
from tests.directory_sync.engine_factories import sync_settings_make, user_create

RUNS_URL = reverse("directory_sync:run_list")


def _apply_all(organization) -> None:
    """Drain the pending events, as the worker does after the SCIM transaction commits."""
    events_drain(organization_id=organization.pk)


def _run_url(run) -> str:
    return reverse("directory_sync:run_detail", args=[run.pk])


def _run_with_events(organization):
    """A run where Entra created three users: two apply, one has a phone Beem refuses."""
    sync_settings_make(organization, identify_by="phone")
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    user_create(organization, run=run, user_name="sara@acme.test", phone="+966512345678")
    user_create(organization, run=run, user_name="omar@acme.test", phone="+966512345679")
    user_create(organization, run=run, user_name="bad@acme.test", phone="12")
    _apply_all(organization)
    return run


def test_run_list_shows_runs_with_their_counts(admin_client, organization):
    run = _run_with_events(organization)

    response = admin_client.get(RUNS_URL)

    assert response.status_code == 200
    row = response.context["page"].object_list[0]
    assert row.pk == run.pk
    assert (row.event_count, row.applied_count, row.failed_count, row.pending_count) == (3, 2, 1, 0)
    assert f'href="{_run_url(run)}"' in response.content.decode()


def test_run_list_without_runs_says_so(admin_client):
    response = admin_client.get(RUNS_URL)

    assert 'id="no-runs"' in response.content.decode()


def test_run_detail_lists_each_change_with_outcome_and_failure_reason(admin_client, organization):
    run = _run_with_events(organization)

    response = admin_client.get(_run_url(run))

    assert response.status_code == 200
    events = list(response.context["events"].object_list)
    assert [(e.label, e.status) for e in events] == [
        ("sara@acme.test", "applied"),
        ("omar@acme.test", "applied"),
        ("bad@acme.test", "failed"),
    ]
    html = response.content.decode()
    failed = ChangeEvent.objects.get(label="bad@acme.test")
    assert "no country code" in failed.reason
    assert phone_ltr(failed.reason) in html  # +966… left to right
    assert "Member created" in html
    assert response.context["summary"].created == 2


def test_run_detail_filters_by_status(admin_client, organization):
    run = _run_with_events(organization)

    response = admin_client.get(_run_url(run), {"status": "failed"})

    assert [e.label for e in response.context["events"].object_list] == ["bad@acme.test"]


def test_run_detail_filters_by_outcome_and_text(admin_client, organization):
    run = _run_with_events(organization)

    by_outcome = admin_client.get(_run_url(run), {"outcome": "created", "q": "omar"})
    by_reason = admin_client.get(_run_url(run), {"q": "country code"})

    assert [e.label for e in by_outcome.context["events"].object_list] == ["omar@acme.test"]
    assert [e.label for e in by_reason.context["events"].object_list] == ["bad@acme.test"]


def test_run_detail_ignores_an_unknown_filter_value(admin_client, organization):
    run = _run_with_events(organization)

    response = admin_client.get(_run_url(run), {"status": "exploded"})

    assert response.status_code == 200
    assert response.context["filters"].errors["status"]
    assert len(response.context["events"].object_list) == 3


def test_run_detail_paginates_changes_and_keeps_the_filter(admin_client, organization):
    sync_settings_make(organization, identify_by="email")
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    for n in range(55):
        user_create(organization, run=run, user_name=f"u{n:02}@acme.test", email=f"u{n:02}@a.test")
    _apply_all(organization)

    first = admin_client.get(_run_url(run), {"status": "applied"})
    second = admin_client.get(_run_url(run), {"status": "applied", "page": 2})

    assert len(first.context["events"].object_list) == 50
    assert "?status=applied&amp;outcome=&amp;q=&amp;page=2" in first.content.decode() or (
        "page=2" in first.content.decode() and "status=applied" in first.content.decode()
    )
    assert [e.label for e in second.context["events"].object_list] == [
        f"u{n:02}@acme.test" for n in range(50, 55)
    ]


def test_run_detail_shows_the_masked_request_log_of_that_run(admin_client, organization):
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    other_run = ProvisioningRun.objects.create(organization=organization, trigger="activity")
    RequestLog.objects.create(
        organization=organization,
        run=run,
        request_id="req-1",
        method="POST",
        path=f"/scim/v2/{organization.pk}/Users",
        status=400,
        duration_ms=12.5,
        request_body='{"userName": "s***@acme.test"}',
        response_body='{"scimType": "invalidValue"}',
    )
    RequestLog.objects.create(
        organization=organization,
        run=other_run,
        request_id="req-2",
        method="DELETE",
        path="/elsewhere",
        status=204,
        duration_ms=1,
    )

    html = admin_client.get(_run_url(run)).content.decode()

    assert f"POST /scim/v2/{organization.pk}/Users" in html
    assert "s***@acme.test" in html
    assert "invalidValue" in html
    assert "/elsewhere" not in html


def test_another_organizations_run_is_not_found(admin_client, other_organization):
    run = ProvisioningRun.objects.create(organization=other_organization, trigger="probe")

    assert admin_client.get(_run_url(run)).status_code == 404
    assert admin_client.get(reverse("directory_sync:run_detail", args=[999999])).status_code == 404


def test_run_list_hides_other_organizations_runs(admin_client, other_organization):
    ProvisioningRun.objects.create(organization=other_organization, trigger="probe")

    assert list(admin_client.get(RUNS_URL).context["page"].object_list) == []


def test_run_page_counts_and_lists_the_writes_beem_refused(admin_client, scim, organization):
    """Two 400s in a run: "2 failed", each with Entra's object and the reason it was given."""
    scim.get('/Users?filter=userName+eq+"0b5c9a57-9d5e-4d4b-8d43-1a8b6f0e2c11"')
    refused = [
        scim.post(
            "/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": f"no.mobile.{i}@contoso.com",
                "externalId": f"entra-object-{i}",
                "active": True,
            },
        )
        for i in range(2)
    ]
    assert [r.status_code for r in refused] == [400, 400]
    run = ProvisioningRun.objects.get(organization=organization)

    detail = admin_client.get(_run_url(run))
    listing = admin_client.get(RUNS_URL)

    assert detail.status_code == 200
    assert (detail.context["counts"]["failed"], detail.context["counts"]["refused"]) == (2, 2)
    html = detail.content.decode()
    assert "2 failed" in html
    assert 'id="refused-table"' in html
    for i, response in enumerate(refused):
        assert f"no.mobile.{i}@contoso.com" in html
        assert f"externalId entra-object-{i}" in html
        assert phone_ltr(response.json()["detail"]) in html
    row = listing.context["page"].object_list[0]
    assert (row.failed_count, row.refused_count) == (2, 2)
    assert '<span class="badge err">2</span>' in listing.content.decode()


def test_run_page_without_refusals_has_no_refused_table(admin_client, organization):
    run = _run_with_events(organization)

    html = admin_client.get(_run_url(run)).content.decode()

    assert 'id="refused-table"' not in html
    assert 'id="run-refused">0<' in html


def test_run_page_names_the_refused_writes_in_arabic(admin_client, scim, organization):
    scim.get('/Users?filter=userName+eq+"0b5c9a57-9d5e-4d4b-8d43-1a8b6f0e2c11"')
    for i in range(2):
        refused = scim.post(
            "/Users",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": f"no.mobile.{i}@contoso.com",
                "active": True,
            },
        )
        assert refused.status_code == 400, refused.content
    run = ProvisioningRun.objects.get(organization=organization)
    admin_client.cookies["django_language"] = "ar"

    html = admin_client.get(_run_url(run)).content.decode()

    assert "رفضها Beem" in html
    assert "2 طلبان مرفوضان (يُحتسبان فاشلَين)" in html
    assert "أرسل Entra ID هذه التغييرات" in html
    assert "Refused by Beem" not in html
