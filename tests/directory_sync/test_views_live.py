"""Issue 18: the live status (one renderer for the first render and every poll), the Status
overview, the sync log and the audit log in sentences, one date-time format."""

import json
import re

from django.urls import reverse
from django.utils import timezone, translation

from beem_admin.template_filters import when_text
from directory_sync import services as sync_services
from directory_sync.engine import events_drain
from directory_sync.models import ProvisioningRun, RequestLog, SyncSettings
from members import services as member_services
from members.models import Member, Resource
from tests.directory_sync.engine_factories import (
    group_create,
    record_delete,
    sync_settings_make,
    user_create,
)

STATUS_URL = reverse("directory_sync:sync_status")
JSON_URL = reverse("directory_sync:sync_status_json")
REACTIVATE_URL = reverse("directory_sync:sync_reactivate")
AUDIT_URL = reverse("directory_sync:audit_list")
WAITING = "Waiting for Entra ID&#x27;s Test Connection"
HINT = "click Test Connection"


def _apply_all(organization) -> None:
    events_drain(organization_id=organization.pk)


def _test_connection(organization) -> None:
    SyncSettings.objects.filter(organization=organization).update(
        last_test_connection_at=timezone.now(), last_request_at=timezone.now()
    )


def test_the_poll_renders_badge_hint_and_counters_with_the_first_render_templates(
    admin_client, organization
):
    sync_services.sync_activate(organization=organization)

    page = admin_client.get(STATUS_URL).content.decode()
    waiting = admin_client.get(JSON_URL).json()["html"]

    assert WAITING in waiting["badge"]
    assert HINT in waiting["overview"]
    assert WAITING in waiting["overview"]
    # One source of truth: the first render shows exactly what the poll renders.
    assert f'data-state-badge aria-live="polite">{waiting["badge"]}</span>' in page
    assert f'id="status-overview">{waiting["overview"]}</div>' in page

    _test_connection(organization)
    connected = admin_client.get(JSON_URL).json()

    assert connected["state"] == "connected"
    for part in ("badge", "overview"):
        assert WAITING not in connected["html"][part]
        assert ">Connected<" in connected["html"][part]
    assert HINT not in connected["html"]["overview"]
    assert "never" not in connected["html"]["overview"].split('id="last-request"')[0]


def test_reactivate_page_polls_the_same_badge_and_its_test_connection_card(
    admin_client, organization
):
    sync_services.sync_activate(organization=organization)

    page = admin_client.get(REACTIVATE_URL).content.decode()
    assert 'data-live-html="test_connection"' in page
    assert "Waiting for Test Connection from Entra ID" in page
    _test_connection(organization)
    html = admin_client.get(JSON_URL).json()["html"]

    assert 'id="test-arrived"' in html["test_connection"]
    assert "Waiting for Test Connection" not in html["test_connection"]
    assert ">Connected<" in html["badge"]


def test_status_overview_counts_synced_users_and_groups_held_members_and_last_cycle(
    admin_client, organization
):
    sync_settings_make(organization, identify_by="phone")
    _test_connection(organization)
    good = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    user_create(organization, run=good, user_name="sara@acme.test", phone="+966512345678")
    group_create(organization, run=good, display_name="Platform Team")
    _apply_all(organization)
    ProvisioningRun.objects.filter(pk=good.pk).update(ended_at=timezone.now())
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    user_create(organization, run=run, user_name="bad@acme.test", phone="12")
    _apply_all(organization)

    response = admin_client.get(STATUS_URL)

    live = response.context["live"]
    assert (live.users_synced, live.groups_synced) == (2, 1)
    assert live.last_success == good
    assert live.running
    html = response.content.decode()
    members_url, groups_url = reverse("members:member_list"), reverse("members:group_list")
    assert f'id="users-synced">2</strong><a href="{members_url}">users synced' in html
    assert f'id="groups-synced">1</strong><a href="{groups_url}">group synced' in html
    assert 'id="last-failures"' in html
    assert "bad@acme.test" in html and "no country code" in html
    assert f'href="{reverse("directory_sync:run_detail", args=[good.pk])}">#{good.pk}</a>' in html
    assert "Current cycle" in html
    assert "0 requests" in html


def test_status_overview_calls_the_admin_to_review_held_members(admin_client, organization):
    sync_settings_make(organization, identify_by="phone")
    member_services.department_path_ensure(organization=organization, path=["Riyadh", "Sales"])
    member_services.department_path_ensure(organization=organization, path=["Jeddah", "Sales"])
    user_create(organization, user_name="nora@acme.test", phone="+966512345670", department="Sales")
    _apply_all(organization)

    html = admin_client.get(STATUS_URL).content.decode()

    assert 'id="held-count">1</strong>member held for review' in html
    assert "1 member is held until you decide" in html
    assert f'href="{reverse("directory_sync:review_list")}">Review now' in html


def test_run_page_says_what_each_change_did_to_which_member(admin_client, organization):
    sync_settings_make(organization, identify_by="phone")
    sara = Member.objects.create(
        organization=organization, display_name="Sara Al-Harbi", phone="+966512345678"
    )
    omar = Member.objects.create(
        organization=organization, display_name="Omar Test", phone="+966512345677"
    )
    Resource.objects.create(organization=organization, kind="document", name="A", owner=omar)
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    user_create(
        organization,
        run=run,
        user_name="sara@acme.test",
        phone="+966512345678",
        display_name="Sara Al-Harbi",
    )
    leaving = user_create(organization, run=run, user_name="omar@acme.test", phone="+966512345677")
    user_create(
        organization,
        run=run,
        user_name="grace@acme.test",
        phone="+966512345679",
        display_name="Grace Hopper",
    )
    _apply_all(organization)
    grace = Member.objects.get(phone="+966512345679")
    record_delete(leaving, run=run)
    _apply_all(organization)

    html = admin_client.get(reverse("directory_sync:run_detail", args=[run.pk])).content.decode()

    sara_url = reverse("members:member_detail", args=[sara.pk])
    grace_url = reverse("members:member_detail", args=[grace.pk])
    assert (
        f'Linked to existing member <a href="{sara_url}" data-member-link="{sara.pk}">'
        "Sara Al-Harbi</a>"
    ) in html
    assert (
        f'Created member <a href="{grace_url}" data-member-link="{grace.pk}">Grace Hopper</a>'
    ) in html
    # The member is gone: the row names the directory user and says where the resources went.
    assert "Deleted member omar@acme.test; 1 resource moved to Unassigned." in html
    assert reverse("members:member_detail", args=[omar.pk]) not in html


def test_run_page_pretty_prints_scim_bodies_with_a_show_hide_toggle(admin_client, organization):
    run = ProvisioningRun.objects.create(organization=organization, trigger="probe")
    RequestLog.objects.create(
        organization=organization,
        run=run,
        request_id="r1",
        method="POST",
        path="/scim/v2/1/Users",
        status=201,
        duration_ms=3,
        request_body=json.dumps({"userName": "***", "active": True}),
    )

    html = admin_client.get(reverse("directory_sync:run_detail", args=[run.pk])).content.decode()

    assert "{\n  &quot;userName&quot;: &quot;***&quot;,\n  &quot;active&quot;: true\n}" in html
    assert '<span class="if-closed">Show</span><span class="if-open">Hide</span>' in html


def test_an_invalid_mobile_gets_its_guidance_once_and_the_log_keeps_the_example(
    admin_client, scim, organization
):
    scim.get('/Users?filter=userName+eq+"0b5c9a57-9d5e-4d4b-8d43-1a8b6f0e2c11"')
    response = scim.post(
        "/Users",
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "no.country@contoso.com",
            "externalId": "entra-object-1",
            "phoneNumbers": [{"type": "mobile", "value": "0500000001"}],
        },
    )

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.count("e.g. +966512345678") == 1
    assert detail.count("0500000001") == 1
    log = RequestLog.objects.get(organization=organization, status=400)
    assert "e.g. +966512345678" in log.response_body
    assert "0500000001" not in log.response_body


def test_audit_log_reads_as_sentences_with_choice_labels(admin_client, organization, admin_user):
    sync_services.sync_activate(organization=organization, actor=admin_user)
    sync_services.sync_settings_update(
        organization=organization, actor=admin_user, department_format="structure_string"
    )

    html = admin_client.get(AUDIT_URL).content.decode()

    assert (
        "admin@acme changed Department format from Department name only to Complete "
        "department structure string"
    ) in html
    assert "admin@acme activated sync with Entra ID and created its credentials" in html
    assert "sync.settings_updated" not in html.replace('data-action="sync.settings_updated"', "")
    assert "structure_string" not in html
    assert "{&#x27;" not in html

    admin_client.cookies["django_language"] = "ar"
    arabic = admin_client.get(AUDIT_URL).content.decode()
    assert "admin@acme" in arabic
    assert "changed Department format" not in arabic


def test_reactivate_page_lists_recorded_actions_as_sentences(admin_client, organization):
    sync_services.sync_activate(organization=organization)
    sync_services.sync_stop(organization=organization)
    member_services.audit_record(
        organization=organization,
        action="resource.reassigned",
        actor_label="admin:lead@acme",
        detail={"resource": "Handbook", "from": "Sara", "to": "Omar"},
    )

    html = admin_client.get(REACTIVATE_URL).content.decode()

    assert "lead@acme gave Handbook to Omar (previously Sara)" in html
    assert "resource.reassigned" not in html.replace('data-action="resource.reassigned"', "")


def test_every_date_has_one_format_in_the_page_language():
    moment = timezone.now()
    with translation.override("en"):
        english = when_text(moment)
    with translation.override("ar"):
        arabic = when_text(moment)

    assert str(moment.year) in english
    assert english != arabic
    assert re.search(r"[\u0600-\u06FF]", arabic)


def test_pretty_json_indents_json_and_leaves_a_truncated_body_as_it_is():
    from beem_admin.template_filters import pretty_json, when

    assert pretty_json('{"a": [1]}') == '{\n  "a": [\n    1\n  ]\n}'
    truncated = '{"userName": "***", "na… [truncated, 20000 characters in all]'
    assert pretty_json(truncated) == truncated
    assert when(None, "never") == "never"
