"""The audit log records who did what: settings changes, credential creation and rotation, sync
stop and reactivation, manual merges and reassignments — from the admin UI (the administrator)
and from the operator commands ("operator"). Secrets never appear in an entry."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from directory_sync import services as sync_services
from directory_sync.models import ReviewItem
from members import services as member_services
from members.models import AuditEntry, Member

from .conftest import SETTINGS_FORM, scim_user, token_for


def entries(organization, action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(organization=organization, action=action))


def test_save_and_activate_records_settings_credentials_and_activation(
    admin_client, admin_user, organization
):
    page = admin_client.post(
        reverse("directory_sync:sync_settings_form"), {**SETTINGS_FORM, "identify_by": "email"}
    )

    (changed,) = entries(organization, "sync.settings_updated")
    (issued,) = entries(organization, "sync.credentials_issued")
    (activated,) = entries(organization, "sync.activated")
    secret = page.context["client_secret"]  # shown in the answer that issued it
    assert secret
    for entry in (changed, issued, activated):
        assert entry.actor == admin_user
        assert entry.actor_label == "admin:admin@acme"
        assert secret not in str(entry.detail)
    assert changed.detail["changed"]["identify_by"] == {"from": "phone", "to": "email"}
    assert issued.detail["client_id"]


def test_unchanged_settings_leave_no_entry(admin_client, organization):
    url = reverse("directory_sync:sync_settings_form")
    admin_client.post(url, SETTINGS_FORM)
    before = AuditEntry.objects.filter(organization=organization).count()

    admin_client.post(url, SETTINGS_FORM)

    assert AuditEntry.objects.filter(organization=organization).count() == before


def test_rotation_stop_and_reactivation_are_recorded(admin_client, admin_user, organization):
    sync_services.sync_activate(organization=organization, actor_label="test")

    page = admin_client.post(reverse("directory_sync:credentials_rotate"), {"confirm": "on"})
    secret = page.context["client_secret"]  # shown in the answer that issued it
    assert secret
    admin_client.post(reverse("directory_sync:sync_stop"), {"confirm": "on"})
    admin_client.post(reverse("directory_sync:sync_reactivate"), {"confirm": "on"})

    actions = [
        e.action
        for e in AuditEntry.objects.filter(organization=organization, actor=admin_user).order_by(
            "id"
        )
    ]
    assert actions == ["sync.credentials_rotated", "sync.stopped", "sync.activated"]
    (rotated,) = entries(organization, "sync.credentials_rotated")
    assert secret not in str(rotated.detail)
    assert entries(organization, "sync.activated")[0].detail["previous_status"] == "stopped"


def test_operator_commands_are_recorded_as_the_operator(organization, capsys):
    call_command("directory_sync", "activate", "--org", organization.slug)
    call_command("directory_sync", "credentials", "--org", organization.slug, "--yes")
    call_command("directory_sync", "stop", "--org", organization.slug, "--yes")
    printed = capsys.readouterr().out

    labels = {e.action: e.actor_label for e in AuditEntry.objects.filter(organization=organization)}
    assert labels == {
        "sync.credentials_issued": "operator",
        "sync.activated": "operator",
        "sync.credentials_rotated": "operator",
        "sync.stopped": "operator",
    }
    for entry in AuditEntry.objects.filter(organization=organization):
        for line in printed.splitlines():
            if "Client Secret" in line:
                assert line.split()[-1] not in str(entry.detail)


def test_reassigning_a_resource_is_recorded_from_both_pages(admin_client, admin_user, organization):
    owner = member_services.member_create(
        organization=organization, display_name="New Owner", email="owner@acme.com"
    )
    first = member_services.resource_create(
        organization=organization, kind="document", name="Plan A", owner=None
    )
    second = member_services.resource_create(
        organization=organization, kind="channel", name="Channel B", owner=None
    )

    admin_client.post(
        reverse("members:resource_reassign", kwargs={"pk": first.pk}), {"owner": owner.email}
    )
    # The sync's review page posts the same form and comes back to itself.
    admin_client.post(
        reverse("members:resource_reassign", kwargs={"pk": second.pk}),
        {"owner": owner.email, "next": reverse("directory_sync:review_list")},
    )

    recorded = entries(organization, "resource.reassigned")
    assert [(e.actor, e.detail["resource"], e.detail["to"]) for e in recorded] == [
        (admin_user, "Channel B", "New Owner"),
        (admin_user, "Plan A", "New Owner"),
    ]


@pytest.fixture
def possible_duplicate(organization, client, django_capture_on_commit_callbacks):
    """A directory user matched by phone, whose email belongs to a member created by email:
    the engine creates a second member and opens a "possible duplicate" review item."""
    sync_services.sync_settings_update(
        organization=organization, actor_label="test", identify_by="phone"
    )
    issued = sync_services.sync_activate(organization=organization, actor_label="test")
    existing = member_services.member_create(
        organization=organization, display_name="Dana by email", email="dana@acme.com"
    )
    token = token_for(client, client_id=issued.client_id, client_secret=issued.client_secret)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/scim/v2/{organization.pk}/Users",
            scim_user("dana@acme.com", phone="+966501234321"),
            content_type="application/scim+json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
    assert response.status_code == 201, response.content
    item = ReviewItem.objects.get(
        organization=organization, kind=ReviewItem.Kind.POSSIBLE_DUPLICATE
    )
    assert {item.member_id, item.other_member_id} >= {existing.pk}
    return item


def test_a_manual_merge_is_recorded(possible_duplicate, admin_client, admin_user, organization):
    item = possible_duplicate
    kept, absorbed = item.member, item.other_member

    admin_client.post(
        reverse("directory_sync:review_duplicate_resolve", kwargs={"pk": item.pk}),
        {f"item{item.pk}-action": "merge", f"item{item.pk}-confirmed": "True"},
    )

    (resolved,) = entries(organization, "review.duplicate_resolved")
    (merged,) = entries(organization, "member.merged")
    assert resolved.actor == admin_user and merged.actor == admin_user
    assert resolved.detail["action"] == "merge"
    assert resolved.detail["directory_member"] == kept.pk
    assert resolved.detail["other_member"] == absorbed.pk
    assert not Member.objects.filter(pk=absorbed.pk).exists()
